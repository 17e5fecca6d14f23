//! Gateway tests: a real HTTP server on port 0, a real PostgreSQL, a real worker.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod api;
mod bad_input;
mod browser;
mod console_api;
mod console_browser;
mod hardening;
mod messages;
mod poison;
mod push;
mod schedules;
mod tracing;
mod webhooks;
mod workflows;

use pgfleet_app::{App, AppConfig, Kinds};
use pgfleet_gateway::config::{ApiKey, Scope};
use pgfleet_gateway::signature::WebhookSecret;
use pgfleet_gateway::GatewayConfig;
use pgfleet_queue::Queue;
use pgfleet_testkit::TestDb;
use pgfleet_worker::WorkerSettings;
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
pub const READ_KEY: &str = "read-key-0123456789abcdef";
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const HMAC: &str = "hmac-secret-for-tests";

pub struct Gateway {
    pub db: TestDb,
    pub queue: Queue,
    pub base: String,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_gateway() -> anyhow::Result<Gateway> {
    spawn_gateway_with(|_| {}).await
}

/// A gateway whose configuration `tweak` adjusts after the test defaults.
pub async fn spawn_gateway_with(tweak: impl FnOnce(&mut GatewayConfig)) -> anyhow::Result<Gateway> {
    let (db, queue) = pgfleet_testkit::migrated().await?;
    let mut config = GatewayConfig::default();
    config.api_keys = vec![
        ApiKey {
            hash: pgfleet_gateway::config::hash_key(ADMIN_KEY),
            scope: Scope::Admin,
        },
        ApiKey {
            hash: pgfleet_gateway::config::hash_key(READ_KEY),
            scope: Scope::Read,
        },
    ];
    config.webhook_secrets.insert(
        "payments".into(),
        vec![WebhookSecret::parse(SECRET).unwrap()],
    );
    config
        .webhook_secrets
        .insert("github".into(), vec![WebhookSecret::parse(SECRET).unwrap()]);
    config.hmac_secret = Some(HMAC.as_bytes().to_vec());
    config.body_limit = 64 * 1024;
    tweak(&mut config);
    drop(queue);
    let mut app = AppConfig::new(db.options.clone(), "gateway");
    app.gateway = Some(config);
    let app = App::build(app).await?;
    let queue = app.queue().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    tokio::spawn(app.run(Some(listener), stop.clone()));
    Ok(Gateway {
        db,
        queue,
        base,
        http: reqwest::Client::new(),
        stop,
    })
}

/// Asserts a problem+json answer with `status`; returns the problem document.
pub async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    v
}

/// Sends `body` as JSON with `method` to `path` with the API key `key`.
pub async fn send_json(
    g: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    g.http
        .request(method, format!("{}{path}", g.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// GETs `path` with the read key.
pub async fn get_as_reader(g: &Gateway, path: &str) -> reqwest::Response {
    g.http
        .get(format!("{}{path}", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await
        .unwrap()
}

/// GETs `path` with the read key, expects 200 and returns the JSON body.
pub async fn get_json(g: &Gateway, path: &str) -> serde_json::Value {
    let r = get_as_reader(g, path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Rows in a table of the gateway's database.
pub async fn rows(g: &Gateway, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&g.db.pool)
        .await
        .unwrap()
}

/// Signs and posts a webhook body.
pub async fn post_webhook(g: &Gateway, source: &str, id: &str, body: &str) -> reqwest::Response {
    let ts = chrono::Utc::now().timestamp();
    webhook_request(g, source, id, ts, SECRET, body)
        .send()
        .await
        .unwrap()
}

/// A webhook request signed with `secret` at `ts` (tests vary both, or add headers).
pub fn webhook_request(
    g: &Gateway,
    source: &str,
    id: &str,
    ts: i64,
    secret: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let sig = WebhookSecret::parse(secret)
        .unwrap()
        .sign(id, ts, body.as_bytes());
    g.http
        .post(format!("{}/webhooks/{source}", g.base))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// Row counts of every table a request could write.
pub async fn counts(g: &Gateway) -> anyhow::Result<(i64, i64, i64, i64)> {
    let q = |t: &'static str| {
        let pool = g.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t}"))
                .fetch_one(&pool)
                .await
        }
    };
    Ok((
        q("pgfleet.webhook_events").await?,
        q("pgfleet.jobs").await?,
        q("pgfleet.payments").await?,
        q("pgfleet.unique_keys").await?,
    ))
}

/// A running test worker: stopped by `stop`, finished when `task` returns.
pub type WorkerHandle = (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), pgfleet_app::AppError>>,
);

/// Starts a worker process's worth of pgfleet (the built-in kinds and `payments.process`)
/// on the gateway's database.
pub async fn start_worker(g: &Gateway, queues: &[&str]) -> anyhow::Result<WorkerHandle> {
    start_worker_with(g, queues, |_| {}).await
}

/// Like [`start_worker`] with the optional kinds `setup` configures; retries back off from
/// 200 ms so retry paths run within a test.
pub async fn start_worker_with(
    g: &Gateway,
    queues: &[&str],
    setup: impl FnOnce(&mut Kinds),
) -> anyhow::Result<WorkerHandle> {
    let mut config = AppConfig::new(g.db.options.clone(), "worker");
    config.workers = 1;
    config.worker = WorkerSettings {
        pool: "pool".into(),
        queues: queues.iter().map(|s| s.to_string()).collect(),
        ownership_ttl: std::time::Duration::from_millis(1500),
        backoff: pgfleet_queue::backoff::Backoff {
            base: std::time::Duration::from_millis(200),
            max: std::time::Duration::from_secs(2),
            jitter: 0.0,
        },
        ..WorkerSettings::default()
    };
    setup(&mut config.kinds);
    let app = App::build(config).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(None, stop.clone()));
    Ok((stop, task))
}
