use std::time::Duration;

use pgfleet_testkit::{eventually, TestDb};

use crate::{pgfleet, signal, spawn, stderr, wait_exit};

async fn completed(db: &TestDb) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE state = 'completed'")
            .fetch_one(&db.pool)
            .await?,
    )
}

/// A worker process is SIGKILLed with jobs in hand; another worker process runs them within
/// the rescue promise (lease + rescue interval), and SIGTERM stops it cleanly.
#[tokio::test]
async fn a_sigkilled_workers_jobs_run_again_on_another_process() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let dir = std::env::temp_dir().join(format!("pgfleet-it-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let args = [
        "worker",
        "--concurrency",
        "5",
        "--lease-secs",
        "2",
        "--ownership-ttl-secs",
        "2",
        "--poll-ms",
        "200",
        "--health-addr",
        "",
    ];
    let mut first = spawn(Some(&db.url), &args, &dir.join("first.log"), &[]);
    let out = pgfleet(
        &db.url,
        &[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 60000}"#,
            "--count",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(
        "the first worker holds 5 jobs",
        Duration::from_secs(15),
        || async {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs WHERE state = 'running'")
                    .fetch_one(&db.pool)
                    .await?;
            Ok((n == 5).then_some(()))
        },
    )
    .await?;
    signal(&first, "KILL");
    wait_exit(&mut first, Duration::from_secs(5)).await;
    // Make the rescued jobs short so the second worker can finish them.
    sqlx::query("UPDATE pgfleet.jobs SET payload = '{\"ms\": 10}'")
        .execute(&db.pool)
        .await?;
    let killed_at = tokio::time::Instant::now();
    let mut second = spawn(Some(&db.url), &args, &dir.join("second.log"), &[]);
    eventually("rescued and completed", Duration::from_secs(20), || async {
        Ok((completed(&db).await? == 5).then_some(()))
    })
    .await?;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "rescue took {took:?}");
    signal(&second, "TERM");
    let status = wait_exit(&mut second, Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let workers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.workers WHERE expires_at > now()")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(workers, 0, "the stopped worker deregistered");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub fn rand_suffix() -> String {
    format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// SIGTERM in the middle of a burn-down: the worker stops claiming, lets its in-flight jobs
/// finish, deregisters and exits 0; nothing is left running, nothing is lost, and a second
/// worker finishes the rest with every job completed on its first attempt (none ran twice).
#[tokio::test]
async fn sigterm_during_a_burn_down_loses_nothing_and_runs_nothing_twice() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let out = pgfleet(
        &db.url,
        &[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 20}"#,
            "--count",
            "400",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = std::env::temp_dir().join(format!("pgfleet-it-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let args = ["worker", "--concurrency", "20", "--health-addr", ""];
    let mut first = spawn(Some(&db.url), &args, &dir.join("first.log"), &[]);
    eventually(
        "the burn-down is under way",
        Duration::from_secs(20),
        || async { Ok((completed(&db).await? >= 60).then_some(())) },
    )
    .await?;
    signal(&first, "TERM");
    let status = wait_exit(&mut first, Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs WHERE state = 'running'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(running, 0, "in-flight jobs finished or were released");
    let done_by_first = completed(&db).await?;
    assert!(
        done_by_first < 400,
        "stopped part-way ({done_by_first} done)"
    );
    let mut second = spawn(Some(&db.url), &args, &dir.join("second.log"), &[]);
    eventually("the rest is done", Duration::from_secs(30), || async {
        Ok((completed(&db).await? == 400).then_some(()))
    })
    .await?;
    signal(&second, "TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(30))
        .await
        .success());
    let reruns: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE attempt <> 1")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(reruns, 0, "no job ran twice");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Secrets never reach the logs: a gateway logging at `trace` serves requests carrying an API
/// key, a signed webhook and an HMAC-signed request, and a worker at `trace` signs a real push
/// with the VAPID key; none of the key, the webhook secret, the signatures, the HMAC secret,
/// the VAPID private key or the messages secret appears in what they printed.
#[tokio::test]
async fn secrets_never_appear_in_the_gateways_logs() -> anyhow::Result<()> {
    use pgfleet_gateway::signature::{sign_request, WebhookSecret};
    let db = TestDb::new().await?;
    let dir = std::env::temp_dir().join(format!("pgfleet-it-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let key = "pgf_live_SECRETKEY_0123456789abcdef";
    let webhook_secret = "whsec_c3VwZXItc2VjcmV0LXdlYmhvb2sta2V5";
    let hmac = "HMAC_SECRET_value_42";
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let keys = format!("{key}:admin");
    let secrets = format!("payments={webhook_secret}");
    let vapid = pgfleet_push::VapidKeys::generate("mailto:logs@pgfleet.dev").unwrap();
    let vapid_private = vapid.private_key();
    let messages_secret = "whsec_bWVzc2FnZXMtc2lnbmluZy1zZWNyZXQ=";
    let env = [
        ("PGFLEET_API_KEYS", keys.as_str()),
        ("PGFLEET_WEBHOOK_SECRETS", secrets.as_str()),
        ("PGFLEET_HMAC_SECRET", hmac),
        ("PGFLEET_VAPID_PRIVATE_KEY", vapid_private.as_str()),
        ("PGFLEET_VAPID_SUBJECT", "mailto:logs@pgfleet.dev"),
        ("PGFLEET_MESSAGES_SECRET", messages_secret),
        ("PGFLEET_PUSH_ALLOW_HTTP_LOOPBACK", "true"),
        ("RUST_LOG", "trace"),
    ];
    let log = dir.join("gateway.log");
    let mut gw = spawn(Some(&db.url), &["gateway", "--listen", &listen], &log, &env);
    // A worker at trace too, signing a real push with the VAPID key.
    let wlog = dir.join("worker.log");
    let mut worker = spawn(
        Some(&db.url),
        &["worker", "--health-addr", "", "--queues", "default"],
        &wlog,
        &env,
    );
    let fake = pgfleet_testkit::push::FakePushService::start().await?;
    let sub = fake.subscribe();
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    eventually("gateway up", Duration::from_secs(30), || async {
        Ok(http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ()))
    })
    .await?;
    let r = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(key)
        .body(r#"{"kind":"noop"}"#)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let body = r#"{"event_id":"evt_log","type":"payment.succeeded","amount":1,"currency":"EUR"}"#;
    let ts = chrono::Utc::now().timestamp();
    let sig = WebhookSecret::parse(webhook_secret)
        .map_err(anyhow::Error::msg)?
        .sign("m1", ts, body.as_bytes());
    let r = http
        .post(format!("{base}/webhooks/payments"))
        .header("webhook-id", "m1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", &sig)
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let req_sig = sign_request(
        hmac.as_bytes(),
        ts,
        "POST",
        "/v1/jobs",
        br#"{"kind":"noop"}"#,
    );
    let r = http
        .post(format!("{base}/v1/jobs"))
        .header("x-timestamp", ts.to_string())
        .header("x-signature", &req_sig)
        .body(r#"{"kind":"noop"}"#)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth("wrong-key-but-still-secret-123")
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(key)
        .json(&sub.to_json("log-user"))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/notifications"))
        .bearer_auth(key)
        .json(
            &serde_json::json!({"type": "t", "user_ids": ["log-user"], "title": "t", "body": "b"}),
        )
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    eventually(
        "the push, VAPID-signed",
        Duration::from_secs(30),
        || async {
            Ok(fake
                .received_by(&sub)
                .into_iter()
                .find(|r| r.plaintext.is_some())
                .map(|_| ()))
        },
    )
    .await?;
    signal(&gw, "TERM");
    signal(&worker, "TERM");
    assert!(wait_exit(&mut gw, Duration::from_secs(30)).await.success());
    assert!(wait_exit(&mut worker, Duration::from_secs(30))
        .await
        .success());
    let printed = std::fs::read_to_string(&log)?
        + &std::fs::read_to_string(log.with_extension("out"))?
        + &std::fs::read_to_string(&wlog)?
        + &std::fs::read_to_string(wlog.with_extension("out"))?;
    assert!(
        printed.contains("webpush.deliver"),
        "the worker's log has the push job"
    );
    assert!(
        printed.contains("/v1/jobs"),
        "the log has the requests (so the check means something)"
    );
    let sig_b64 = sig.trim_start_matches("v1,");
    for secret in [
        key,
        webhook_secret,
        &webhook_secret[6..],
        hmac,
        sig_b64,
        &req_sig,
        "wrong-key-but-still-secret-123",
        vapid_private.as_str(),
        messages_secret,
        &messages_secret[6..],
    ] {
        assert!(
            !printed.contains(secret),
            "a secret leaked into the logs: {secret}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
