use std::time::Duration;

use pgfleet_testkit::eventually;
use serde_json::Value;

use crate::{counts, post_webhook, spawn_gateway, start_worker};

#[tokio::test]
async fn a_signed_payment_is_stored_once_processed_and_recorded_in_the_ledger() -> anyhow::Result<()>
{
    let g = spawn_gateway().await?;
    let (stop, worker) = start_worker(&g, &["default"]).await?;
    let body = r#"{"event_id":"evt_100","type":"payment.succeeded","amount":"1999","currency":"eur","occurred_at":"2026-11-22T10:00:00Z","customer_id":"user-7"}"#;
    let r = post_webhook(&g, "payments", "msg_1", body).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await?;
    assert_eq!(v["ok"], true);
    assert_eq!(v["event_id"], "evt_100");
    eventually("event processed", Duration::from_secs(10), || async {
        let status: String = sqlx::query_scalar(
            "SELECT status FROM pgfleet.webhook_events WHERE event_id = 'evt_100'",
        )
        .fetch_one(&g.db.pool)
        .await?;
        Ok((status == "done").then_some(()))
    })
    .await?;
    let (amount, currency, user): (i64, String, Option<String>) =
        sqlx::query_as("SELECT amount_minor, currency::text, user_id FROM pgfleet.payments WHERE event_id = 'evt_100'")
            .fetch_one(&g.db.pool)
            .await?;
    assert_eq!(
        (amount, currency.as_str(), user.as_deref()),
        (1999, "EUR", Some("user-7"))
    );
    // The event is marked done inside the job's transaction; the job's completion is
    // recorded a moment later by the worker's completer.
    eventually("job finished", Duration::from_secs(10), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
            .fetch_one(&g.db.pool)
            .await?;
        Ok((left == 0).then_some(()))
    })
    .await?;
    // A redelivery: 200 with the stored event, nothing written.
    let before = counts(&g).await?;
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished")
        .fetch_one(&g.db.pool)
        .await?;
    let r = post_webhook(&g, "payments", "msg_1b", body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["event"]["status"], "done");
    assert_eq!(counts(&g).await?, before);
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(jobs_after, jobs_before, "no second job");
    stop.cancel();
    worker.await??;
    Ok(())
}

#[tokio::test]
async fn other_sources_are_stored_and_queued_the_same_way() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let r = post_webhook(&g, "github", "d1", r#"{"event_id":"gh_1","type":"push"}"#).await;
    assert_eq!(r.status(), 202);
    let kind: String = sqlx::query_scalar("SELECT kind FROM pgfleet.jobs")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(kind, "webhooks.github");
    Ok(())
}

/// Concurrent requests share commits (group commit); a duplicated event id within the same
/// batch is stored once, answered 202 once and 200 for the others.
#[tokio::test]
async fn concurrent_deliveries_share_commits_and_store_each_event_once() -> anyhow::Result<()> {
    let g = std::sync::Arc::new(spawn_gateway().await?);
    let mut tasks = Vec::new();
    for i in 0..80 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            let id = if i % 2 == 0 {
                "evt_same".to_owned()
            } else {
                format!("evt_{i}")
            };
            let body = format!(
                r#"{{"event_id":"{id}","type":"payment.succeeded","amount":100,"currency":"EUR"}}"#
            );
            post_webhook(&g, "payments", &format!("m{i}"), &body)
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await?);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 202).count(),
        41,
        "40 distinct + the first of evt_same"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 39);
    let (events, jobs, _, keys) = counts(&g).await?;
    assert_eq!((events, jobs, keys), (41, 41, 41));
    Ok(())
}
