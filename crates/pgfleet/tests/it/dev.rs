use std::time::Duration;

use pgfleet_gateway::signature::WebhookSecret;
use pgfleet_testkit::eventually;
use pgfleet_testkit::push::FakePushService;

use crate::{signal, wait_exit, BIN};

/// The README's run command: `pgfleet dev` with no DATABASE_URL starts its own PostgreSQL
/// from the local install, migrates, serves the gateway and runs workers; a signed payment
/// webhook ends up in the ledger; `pgfleet enqueue` finds the dev database on its own; Ctrl-C
/// stops everything, the private PostgreSQL too.
#[tokio::test]
async fn pgfleet_dev_runs_everything_on_a_private_postgres() -> anyhow::Result<()> {
    let crate::Dev {
        proc: mut dev,
        base,
        data,
        dir,
    } = crate::start_dev("1").await?;
    let data_s = data.to_string_lossy().to_string();
    let out_file = dir.join("dev.out");
    let out = std::fs::read_to_string(&out_file)?;
    assert!(out.contains("/docs"), "{out}");
    // A signed payment webhook, with the dev secret pgfleet dev printed and kept.
    let secret = std::fs::read_to_string(data.join("dev-webhook-secret"))?;
    assert!(out.contains(secret.trim()), "the dev secret is printed");
    let body = r#"{"event_id":"evt_dev","type":"payment.succeeded","amount":500,"currency":"USD"}"#;
    let ts = chrono::Utc::now().timestamp();
    let sig = WebhookSecret::parse(secret.trim())
        .map_err(anyhow::Error::msg)?
        .sign("m1", ts, body.as_bytes());
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/payments"))
        .header("webhook-id", "m1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    // The load simulator against the dev gateway: a fixed rate, some redeliveries.
    let load = std::process::Command::new(BIN)
        .args([
            "loadsim",
            "--url",
            &base,
            "--rate",
            "50",
            "--duration",
            "1",
            "--duplicates",
            "20",
            "--json",
        ])
        .env("PGFLEET_LOADSIM_SECRET", secret.trim())
        .output()?;
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&load.stdout)?;
    assert_eq!(summary["errors"], 0, "{summary}");
    let sent = summary["sent"].as_u64().unwrap_or(0);
    assert!(sent >= 40, "{summary}");
    assert_eq!(
        summary["accepted"].as_u64().unwrap_or(0) + summary["duplicates"].as_u64().unwrap_or(0),
        sent
    );
    assert!(
        String::from_utf8_lossy(&load.stderr).contains("[loadsim]"),
        "live progress on stderr"
    );
    // Web Push through the dev stack: the dev key pair, plain http to a loopback push service.
    let key = std::fs::read_to_string(data.join("dev-api-key"))?;
    let http = reqwest::Client::new();
    let vapid: serde_json::Value = http
        .get(format!("{base}/v1/vapid-public-key"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        vapid["publicKey"].as_str().map(str::len),
        Some(87),
        "{vapid}"
    );
    let fake = FakePushService::start().await?;
    let sub = fake.subscribe();
    let r = http
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(key.trim())
        .json(&sub.to_json("dev-user"))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/notifications"))
        .bearer_auth(key.trim())
        .json(&serde_json::json!({"type": "test", "user_ids": ["dev-user"], "title": "hi", "body": "from dev"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let got = eventually("the dev push", Duration::from_secs(20), || async {
        Ok(fake
            .received_by(&sub)
            .into_iter()
            .find(|r| r.plaintext.is_some()))
    })
    .await?;
    assert_eq!(got.json().unwrap()["body"], "from dev");
    assert_eq!(got.claims.unwrap()["sub"], "mailto:dev@pgfleet.localhost");
    let page = http.get(format!("{base}/")).send().await?;
    assert!(page.url().path().ends_with("/ui/"));
    assert!(page
        .text()
        .await?
        .contains("<title>pgfleet console</title>"));
    let push_view = http.get(format!("{base}/ui/push.js")).send().await?;
    assert!(push_view.text().await?.contains("Subscribe this browser"));
    let enqueue = std::process::Command::new(BIN)
        .args(["enqueue", "noop", "--count", "20"])
        .env_remove("DATABASE_URL")
        .env_remove("PGFLEET_DATABASE_URL")
        .env("PGFLEET_DATA_DIR", &data_s)
        .output()?;
    assert!(
        enqueue.status.success(),
        "{}",
        String::from_utf8_lossy(&enqueue.stderr)
    );
    let url = std::fs::read_to_string(data.join("database-url"))?;
    let pool = sqlx::PgPool::connect(url.trim()).await?;
    eventually(
        "jobs and the payment processed",
        Duration::from_secs(20),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pgfleet.jobs_finished WHERE state = 'completed' \
                 AND kind IN ('noop', 'payments.process')",
            )
            .fetch_one(&pool)
            .await?;
            let events: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.webhook_events")
                .fetch_one(&pool)
                .await?;
            let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.payments")
                .fetch_one(&pool)
                .await?;
            // 20 noop jobs + one payments.process job per stored event; one ledger row each.
            Ok((n == 20 + events && paid == events).then_some(()))
        },
    )
    .await?;
    pool.close().await;
    signal(&dev, "INT");
    let status = wait_exit(&mut dev, Duration::from_secs(40)).await;
    assert!(status.success(), "Ctrl-C exits 0, got {status}");
    assert!(
        !data.join("database-url").exists(),
        "the dev URL file is removed on exit"
    );
    eventually(
        "private PostgreSQL stopped",
        Duration::from_secs(20),
        || async { Ok((!data.join("pg/data/postmaster.pid").exists()).then_some(())) },
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
