use chrono::Utc;
use pgfleet_queue::notify::notify;
use pgfleet_queue::{JobState, NewJob, QueueError};
use serde_json::json;
use sqlx::postgres::PgListener;
use std::time::Duration;

use crate::{claim, count, setup};

#[tokio::test]
async fn enqueue_one_and_many_in_one_statement() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let one = queue
        .enqueue(
            NewJob::new("default", "noop")
                .payload(json!({"a": 1}))
                .partition_key("user-1"),
        )
        .await?;
    assert_eq!(one.partition, queue.partitions().of_key("user-1"));
    let many: Vec<NewJob> = (0..5000)
        .map(|i| NewJob::new("bulk", "noop").payload(json!({"i": i})))
        .collect();
    let out = queue.enqueue_many(&many).await?;
    assert_eq!(out.len(), 5000);
    // Results are in input order: ids ascend with the input.
    assert!(out.windows(2).all(|w| w[0].id < w[1].id));
    let job = queue.get_job(out[4321].id).await?;
    assert_eq!(job.payload, json!({"i": 4321}));
    assert_eq!(job.state, JobState::Available);
    assert_eq!(count(&db, "pgfleet.jobs").await?, 5001);
    Ok(())
}

#[tokio::test]
async fn enqueue_inside_a_callers_transaction_commits_or_rolls_back_with_it() -> anyhow::Result<()>
{
    let (db, queue) = setup().await?;
    let mut tx = db.pool.begin().await?;
    let (out, _wakeups) = queue
        .enqueue_in(&mut tx, &[NewJob::new("q", "noop")])
        .await?;
    tx.rollback().await?;
    assert!(queue.get_job(out[0].id).await.is_err());
    let mut tx = db.pool.begin().await?;
    let (out, wakeups) = queue
        .enqueue_in(&mut tx, &[NewJob::new("q", "noop")])
        .await?;
    assert_eq!(
        count(&db, "pgfleet.jobs").await?,
        0,
        "invisible before commit"
    );
    tx.commit().await?;
    queue.wake(wakeups);
    assert_eq!(queue.get_job(out[0].id).await?.state, JobState::Available);
    Ok(())
}

#[tokio::test]
async fn unique_keys_make_enqueue_idempotent_even_after_completion() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let job = || NewJob::new("q", "noop").unique_key("evt_123");
    let first = queue.enqueue(job()).await?;
    assert!(!first.duplicate);
    let again = queue.enqueue(job()).await?;
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // Duplicates inside one batch share the job.
    let batch = queue
        .enqueue_many(&[job(), NewJob::new("q", "noop").unique_key("evt_9"), job()])
        .await?;
    assert_eq!(batch[0].id, first.id);
    assert_eq!(batch[2].id, first.id);
    assert!(!batch[1].duplicate);
    // Complete it: the key still resolves to the finished job.
    let claimed = claim(&queue, &["q"], 10, "w").await?;
    let done: Vec<_> = claimed
        .iter()
        .map(|j| {
            pgfleet_queue::finalize::Finished::new(
                j.id,
                j.attempt,
                pgfleet_queue::finalize::Outcome::Completed,
            )
        })
        .collect();
    queue.finalize("w", &done).await?;
    let after = queue.enqueue(job()).await?;
    assert!(after.duplicate);
    assert_eq!(after.id, first.id);
    assert_eq!(count(&db, "pgfleet.jobs").await?, 0);
    // Concurrent enqueues of one key write one job.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            q.enqueue(NewJob::new("q", "noop").unique_key("race")).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_nothing_is_written() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let field = |e: QueueError| match e {
        QueueError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other}"),
    };
    // One bad job in a batch rejects the whole batch.
    let batch = vec![
        NewJob::new("q", "noop"),
        NewJob::new("q", "noop").max_attempts(-1),
    ];
    assert_eq!(
        field(queue.enqueue_many(&batch).await.unwrap_err()),
        "max_attempts"
    );
    assert_eq!(
        field(NewJob::new("q", "noop").payload_json("{oops").unwrap_err()),
        "payload"
    );
    assert_eq!(
        field(
            queue
                .enqueue(NewJob::new("no spaces", "noop"))
                .await
                .unwrap_err()
        ),
        "queue"
    );
    assert_eq!(
        field(
            queue
                .enqueue(NewJob::new("q", "noop").priority(-1))
                .await
                .unwrap_err()
        ),
        "priority"
    );
    assert_eq!(field("stuck".parse::<JobState>().unwrap_err()), "state");
    let too_big = "x".repeat(8000);
    assert_eq!(
        field(notify(&db.pool, "c", &too_big).await.unwrap_err()),
        "payload"
    );
    assert_eq!(count(&db, "pgfleet.jobs").await?, 0);
    assert_eq!(count(&db, "pgfleet.queues").await?, 0);
    Ok(())
}

#[tokio::test]
async fn ten_thousand_jobs_over_sixteen_partitions_send_at_most_sixteen_notifications(
) -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let mut listener = PgListener::connect(&db.url).await?;
    let channels: Vec<String> = (0..16).map(pgfleet_queue::partition::channel).collect();
    listener
        .listen_all(channels.iter().map(String::as_str))
        .await?;
    let jobs: Vec<NewJob> = (0..10_000)
        .map(|i| NewJob::new("q", "noop").partition_key(format!("user-{i}")))
        .collect();
    let out = queue.enqueue_many(&jobs).await?;
    let touched: std::collections::BTreeSet<i16> = out.iter().map(|e| e.partition).collect();
    assert_eq!(touched.len(), 16);
    let mut received = 0;
    while let Ok(Ok(_n)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        received += 1;
    }
    assert!((1..=16).contains(&received), "got {received} notifications");
    assert_eq!(
        queue
            .notifier()
            .stats()
            .notifications_sent
            .load(std::sync::atomic::Ordering::Relaxed),
        received
    );
    Ok(())
}

#[tokio::test]
async fn scheduled_jobs_are_not_claimed_before_run_at() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let later = queue
        .enqueue(NewJob::new("q", "noop").run_at(Utc::now() + chrono::Duration::milliseconds(700)))
        .await?;
    assert!(claim(&queue, &["q"], 10, "w").await?.is_empty());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = claim(&queue, &["q"], 10, "w").await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, later.id);
    Ok(())
}

/// The notifier commits its NOTIFY asynchronously with a transaction-local setting; it must
/// never leak into the pooled connection, or enqueues would stop being durable.
#[tokio::test]
async fn enqueues_stay_synchronous_after_the_notifier_ran() -> anyhow::Result<()> {
    let db = pgfleet_testkit::TestDb::new().await?;
    // The test cluster runs with synchronous_commit=off server-wide; pin it on here.
    let durable = db.options.clone().options([("synchronous_commit", "on")]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(durable)
        .await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = pgfleet_queue::Queue::new(pool.clone()).await?;
    for _ in 0..5 {
        queue.enqueue(NewJob::new("q", "noop")).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    queue.close().await;
    assert!(
        queue
            .notifier()
            .stats()
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let mode: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await?;
    assert_eq!(mode, "on");
    Ok(())
}
