//! `pgfleet bench push`: Web Push deliveries per second, per core, and the share of time
//! spent encrypting and signing.
//!
//! A local push sink (axum on 127.0.0.1:0, answering 201 like a push service) receives:
//! 1. **baseline**: plain POSTs of a body the size of an encrypted push, from 64 callers —
//!    what this machine's HTTP stack does with no crypto and no database;
//! 2. **send**: `PushClient::send` (aes128gcm encryption with a fresh ECDH key per message,
//!    cached VAPID token) from 64 callers — crypto + HTTP;
//! 3. **end to end**: a broadcast notification fanned out to N subscriptions and delivered
//!    by a worker — database, queue, crypto, HTTP and an attempt row per delivery.
//!
//! The sink runs in this process, so CPU figures include its share; "per core" divides by
//! the CPU seconds this process used during the phase (from /proc/self/stat).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfleet_push::client::{PushOptions, Target};
use pgfleet_push::store::NewNotification;
use pgfleet_push::{PushClient, VapidKeys, VapidSigner};
use pgfleet_queue::Queue;
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use crate::bench::{progress, round2, BenchArgs};
use pgfleet_app::database::connect_pool;

/// CPU seconds (user + system) this process has used, where /proc is available.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command: state is field 3; utime 14 and stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Phase {
    per_sec: f64,
    cores: f64,
}

impl Phase {
    fn per_core(&self) -> f64 {
        if self.cores > 0.0 {
            self.per_sec / self.cores
        } else {
            self.per_sec
        }
    }
}

/// [`crate::bench::calls_per_sec`], plus the CPU this process used meanwhile.
async fn phase<F, Fut>(callers: usize, secs: u64, call: F) -> anyhow::Result<Phase>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let per_sec = crate::bench::calls_per_sec(callers, secs, call).await?;
    let wall = start.elapsed().as_secs_f64();
    let cores = match (cpu0, cpu_secs()) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => 0.0,
    };
    Ok(Phase { per_sec, cores })
}

async fn sink() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/push/{id}",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::http::StatusCode::CREATED }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, task))
}

/// A browser-like subscription: a random P-256 key and auth secret.
fn subscription_keys() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    let ua = VapidKeys::generate("mailto:bench@pgfleet.dev").map(|k| k.public_key().to_owned());
    let auth: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
    (ua.unwrap_or_default(), B64URL.encode(auth))
}

/// Runs the push suite on a fresh database at `options`.
///
/// # Errors
/// Database, HTTP or worker failures.
pub async fn bench_push(
    args: &BenchArgs,
    options: PgConnectOptions,
) -> anyhow::Result<serde_json::Value> {
    let secs = args.ingest_secs;
    let (base, sink_task) = sink().await?;
    let endpoint = format!("{base}/push/bench");
    let plaintext = serde_json::to_vec(&json!({
        "notification_id": 1234567, "type": "payment.received", "title": "Payment received",
        "body": "We received your payment of 19.99 EUR.", "icon": null, "url": null,
        "locale": null, "data": {"event_id": "evt_123", "amount_minor": 1999, "currency": "EUR"},
    }))?;

    progress(&format!(
        "baseline: plain POSTs of the same size, 64 callers, {secs} s"
    ));
    let http = reqwest::Client::new();
    let body = vec![0u8; plaintext.len() + 103];
    let baseline = {
        let (http, endpoint, body) = (http.clone(), endpoint.clone(), body.clone());
        phase(64, secs, move || {
            let (http, endpoint, body) = (http.clone(), endpoint.clone(), body.clone());
            async move {
                http.post(&endpoint)
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await?
    };
    progress(&format!("  {:.0} requests/s", baseline.per_sec));

    progress(&format!(
        "send: encrypt + sign + POST, 64 callers, {secs} s"
    ));
    let keys = VapidKeys::generate("mailto:bench@pgfleet.dev")?;
    let client = PushClient::new(Arc::new(VapidSigner::new(keys)), Duration::from_secs(10))?;
    let (p256dh, auth) = subscription_keys();
    let opts = PushOptions {
        ttl: 3600,
        urgency: "normal".into(),
        topic: None,
    };
    let send = {
        let (client, endpoint, p256dh, auth, plaintext, opts) = (
            client.clone(),
            endpoint.clone(),
            p256dh.clone(),
            auth.clone(),
            plaintext.clone(),
            opts.clone(),
        );
        phase(64, secs, move || {
            let (client, endpoint, p256dh, auth, plaintext, opts) = (
                client.clone(),
                endpoint.clone(),
                p256dh.clone(),
                auth.clone(),
                plaintext.clone(),
                opts.clone(),
            );
            async move {
                let target = Target {
                    endpoint: &endpoint,
                    p256dh: &p256dh,
                    auth: &auth,
                };
                let d = client.send(target, &plaintext, &opts).await;
                anyhow::ensure!(d.http_status == Some(201), "push failed: {:?}", d.error);
                Ok(())
            }
        })
        .await?
    };
    // The CPU cost of encryption and signing alone, on one thread with nothing else to do
    // (wall time inside concurrent sends would count waiting for a core as crypto).
    let crypto_us = {
        let target = Target {
            endpoint: &endpoint,
            p256dh: &p256dh,
            auth: &auth,
        };
        let url = url::Url::parse(&endpoint)?;
        let n = 500;
        let t = Instant::now();
        for _ in 0..n {
            pgfleet_push::client::encrypt(target, &plaintext).map_err(anyhow::Error::msg)?;
            client.signer().authorization(&url)?;
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    // Share of the CPU the send phase used that went to crypto.
    let crypto_share = if send.cores > 0.0 {
        (crypto_us * 1e-6 * send.per_sec / send.cores).min(1.0)
    } else {
        0.0
    };
    progress(&format!(
        "  {:.0} pushes/s, {:.0} per core, {:.0} % of CPU in encryption and signing",
        send.per_sec,
        send.per_core(),
        100.0 * crypto_share
    ));

    let n = args.push_subscriptions;
    progress(&format!(
        "end to end: a broadcast to {n} subscriptions delivered by a worker"
    ));
    let pool = connect_pool(options.clone(), 20).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    let users: Vec<String> = (0..n).map(|i| format!("bench-user-{i}")).collect();
    let endpoints: Vec<String> = (0..n).map(|i| format!("{base}/push/{i}")).collect();
    sqlx::query(
        "INSERT INTO pgfleet.push_subscriptions (user_id, endpoint, p256dh, auth) \
         SELECT u, e, $3, $4 FROM unnest($1::text[], $2::text[]) AS t(u, e)",
    )
    .bind(&users)
    .bind(&endpoints)
    .bind(&p256dh)
    .bind(&auth)
    .execute(&pool)
    .await?;
    let mut note = NewNotification::new("bench", Vec::new(), "Bench", "end to end");
    note.broadcast = true;
    let worker_pool =
        connect_pool(pgfleet_worker::worker_connect_options(options.clone()), 10).await?;
    let worker_queue = Queue::new(worker_pool.clone()).await?;
    let mut registry = Registry::new();
    let metrics = pgfleet_telemetry::Metrics::new("bench");
    registry.add(pgfleet_push::PushHandler::new(
        worker_pool.clone(),
        client.clone(),
        &metrics,
    ));
    let mut config = WorkerConfig::new("bench", vec!["default".into()]);
    config.concurrency = 256;
    config.maintenance = false;
    let worker = Worker::new(worker_queue.clone(), options.clone(), config, registry)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    let cpu0 = cpu_secs();
    let start = Instant::now();
    pgfleet_push::store::create_notification(&queue, &note, None).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.delivery_attempts")
            .fetch_one(&pool)
            .await?;
        if done >= n as i64 {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let e2e = Phase {
        per_sec: n as f64 / wall,
        cores: match (cpu0, cpu_secs()) {
            (Some(a), Some(b)) => (b - a) / wall,
            _ => 0.0,
        },
    };
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pgfleet.delivery_attempts WHERE status <> 'delivered'",
    )
    .fetch_one(&pool)
    .await?;
    progress(&format!(
        "  {:.0} deliveries/s ({:.0} per core of this process; PostgreSQL's CPU not counted), {failed} failed",
        e2e.per_sec,
        e2e.per_core()
    ));
    stop.cancel();
    task.await??;
    worker_queue.close().await;
    queue.close().await;
    worker_pool.close().await;
    pool.close().await;
    sink_task.abort();
    Ok(json!({
        "suite": "push",
        "baseline_posts_per_sec": baseline.per_sec.round(),
        "send_pushes_per_sec": send.per_sec.round(),
        "send_pushes_per_core": send.per_core().round(),
        "send_vs_baseline": round2(send.per_sec / baseline.per_sec),
        "crypto_share_of_cpu": round2(crypto_share),
        "crypto_us_per_push": round2(crypto_us),
        "vapid_tokens_signed": client.signer().signed(),
        "end_to_end_deliveries_per_sec": e2e.per_sec.round(),
        "end_to_end_per_core": e2e.per_core().round(),
        "end_to_end_subscriptions": n,
        "end_to_end_failed": failed,
    }))
}

/// Prints the push suite's report.
pub fn print_push(r: &serde_json::Value) {
    println!(
        "pgfleet bench push (PostgreSQL {} via {})",
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  plain POST baseline   {:>8} /s",
        r["baseline_posts_per_sec"]
    );
    println!(
        "  encrypt+sign+POST     {:>8} /s   ({:.2}x the baseline), {} per core",
        r["send_pushes_per_sec"],
        r["send_vs_baseline"].as_f64().unwrap_or(0.0),
        r["send_pushes_per_core"]
    );
    println!(
        "  crypto                {:>8} us per push, {:.0} % of CPU; VAPID tokens signed: {}",
        r["crypto_us_per_push"],
        100.0 * r["crypto_share_of_cpu"].as_f64().unwrap_or(0.0),
        r["vapid_tokens_signed"]
    );
    println!(
        "  end to end            {:>8} deliveries/s over {} subscriptions, {} per core, {} failed",
        r["end_to_end_deliveries_per_sec"],
        r["end_to_end_subscriptions"],
        r["end_to_end_per_core"],
        r["end_to_end_failed"]
    );
}
