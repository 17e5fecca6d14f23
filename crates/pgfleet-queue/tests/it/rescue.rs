use std::time::Duration;

use pgfleet_queue::claim::ClaimRequest;
use pgfleet_queue::{JobState, NewJob};

use crate::setup;

#[tokio::test]
async fn expired_leases_are_rescued_once_and_in_the_right_state() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let a = queue.enqueue(NewJob::new("q", "noop")).await?.id;
    let last = queue
        .enqueue(NewJob::new("q", "noop").max_attempts(1))
        .await?
        .id;
    let cancelled = queue.enqueue(NewJob::new("q", "noop")).await?.id;
    let queues = vec!["q".to_string()];
    let claimed = queue
        .claim(&ClaimRequest {
            order: &pgfleet_queue::claim::QueueOrder::ByPriority,
            queues: &queues,
            partitions: None,
            limit: 10,
            worker_id: "ghost",
            lease: Duration::from_millis(300),
        })
        .await?;
    assert_eq!(claimed.len(), 3);
    queue.cancel_job(cancelled).await?;
    // Not expired yet.
    assert_eq!(queue.rescue_expired(100).await?.requeued, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = queue.rescue_expired(100).await?;
    assert!(report.ran);
    assert_eq!((report.requeued, report.finalized), (1, 2));
    let job = queue.get_job(a).await?;
    assert_eq!(job.state, JobState::Retryable);
    assert_eq!(job.errors[0]["kind"], "rescued");
    assert_eq!(queue.get_job(last).await?.state, JobState::Discarded);
    assert_eq!(queue.get_job(cancelled).await?.state, JobState::Cancelled);
    // Runnable at once, and a second pass finds nothing.
    assert_eq!(queue.rescue_expired(100).await?.requeued, 0);
    let again = queue
        .claim(&ClaimRequest {
            order: &pgfleet_queue::claim::QueueOrder::ByPriority,
            queues: &queues,
            partitions: None,
            limit: 10,
            worker_id: "w2",
            lease: Duration::from_secs(30),
        })
        .await?;
    assert_eq!(
        again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(),
        vec![(a, 2)]
    );
    Ok(())
}

#[tokio::test]
async fn only_one_rescuer_runs_at_a_time() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    // Hold the rescuer's lock from another session.
    let mut tx = db.pool.begin().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(0x7067_6672_6573_6331_i64)
        .fetch_one(&mut *tx)
        .await?;
    assert!(got);
    let report = queue.rescue_expired(100).await?;
    assert!(!report.ran, "skipped while another rescuer holds the lock");
    tx.rollback().await?;
    assert!(queue.rescue_expired(100).await?.ran);
    Ok(())
}
