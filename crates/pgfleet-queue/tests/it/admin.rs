use std::time::Duration;

use pgfleet_queue::admin::{JobFilter, PageRequest, StateFilter};
use pgfleet_queue::backoff::Backoff;
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::retention::Retention;
use pgfleet_queue::{JobState, NewJob, QueueError};
use serde_json::json;

use crate::{claim, count, setup};

fn done(j: &pgfleet_queue::Job, outcome: Outcome) -> Finished {
    Finished::new(j.id, j.attempt, outcome)
}

#[tokio::test]
async fn failures_retry_with_backoff_then_discard_keeping_every_error() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let id = queue
        .enqueue(NewJob::new("q", "fail").max_attempts(2))
        .await?
        .id;
    let backoff = Backoff {
        base: Duration::from_millis(300),
        max: Duration::from_secs(1),
        jitter: 0.0,
    };
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    let out = Outcome::failure(j.attempt, j.max_attempts, "boom 1", false, &backoff);
    queue.finalize("w", &[done(&j, out)]).await?;
    let waiting = queue.get_job(id).await?;
    assert_eq!(waiting.state, JobState::Retryable);
    assert!(
        claim(&queue, &["q"], 1, "w").await?.is_empty(),
        "not before its backoff"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    assert_eq!(j.attempt, 2);
    let out = Outcome::failure(j.attempt, j.max_attempts, "boom 2", false, &backoff);
    assert!(
        matches!(out, Outcome::Discard { .. }),
        "last attempt discards"
    );
    queue.finalize("w", &[done(&j, out)]).await?;
    let dead = queue.get_job(id).await?;
    assert_eq!(dead.state, JobState::Discarded);
    let errors: Vec<&str> = dead
        .errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, vec!["boom 1", "boom 2"]);

    // An operator retries it: it runs again, history kept.
    let revived = queue.retry_job(id).await?;
    assert_eq!(revived.state, JobState::Available);
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    assert_eq!(j.attempt, 3);
    queue.finalize("w", &[done(&j, Outcome::Completed)]).await?;
    let fin = queue.get_job(id).await?;
    assert_eq!(fin.state, JobState::Completed);
    assert_eq!(fin.errors.as_array().unwrap().len(), 2);
    assert!(matches!(
        queue.retry_job(id).await,
        Err(QueueError::WrongState { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn stale_outcomes_are_fenced_by_attempt() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let id = queue.enqueue(NewJob::new("q", "noop")).await?.id;
    let j = claim(&queue, &["q"], 1, "w1").await?.remove(0);
    // Pretend w1 lost the job: it is released and claimed again by w2.
    queue.finalize("w1", &[done(&j, Outcome::Release)]).await?;
    let j2 = claim(&queue, &["q"], 1, "w2").await?.remove(0);
    assert_eq!(j2.attempt, 2);
    let counts = queue
        .finalize("w1", &[done(&j, Outcome::Completed)])
        .await?;
    assert_eq!(counts.finalized, 0, "w1's stale completion is ignored");
    let counts = queue
        .finalize(
            "w1",
            &[done(
                &j,
                Outcome::failure(1, 20, "late", false, &Backoff::default()),
            )],
        )
        .await?;
    assert_eq!(counts.requeued, 0, "w1's stale failure is ignored");
    assert_eq!(queue.get_job(id).await?.state, JobState::Running);
    // Even w2 cannot fail an attempt it does not hold.
    let counts = queue.finalize("w2", &[done(&j, Outcome::Release)]).await?;
    assert_eq!(counts.requeued, 0);
    queue
        .finalize("w2", &[done(&j2, Outcome::Completed)])
        .await?;
    assert_eq!(queue.get_job(id).await?.state, JobState::Completed);
    Ok(())
}

#[tokio::test]
async fn snooze_and_release_do_not_spend_attempts() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let id = queue
        .enqueue(NewJob::new("q", "noop").max_attempts(1))
        .await?
        .id;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    queue.finalize("w", &[done(&j, Outcome::Release)]).await?;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    queue
        .finalize("w", &[done(&j, Outcome::Snooze { at })])
        .await?;
    assert!(claim(&queue, &["q"], 1, "w").await?.is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    // Fails on its only real attempt: discarded, not before.
    let out = Outcome::failure(j.attempt, j.max_attempts, "x", false, &Backoff::default());
    assert!(matches!(out, Outcome::Discard { .. }));
    let job = queue.get_job(id).await?;
    assert_eq!(
        job.max_attempts - job.attempt,
        0,
        "two free passes, one real attempt"
    );
    Ok(())
}

#[tokio::test]
async fn cancel_waiting_and_running_jobs() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let waiting = queue
        .enqueue(NewJob::new("q", "noop").priority(9))
        .await?
        .id;
    let running = queue
        .enqueue(NewJob::new("q", "noop").priority(0))
        .await?
        .id;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    assert_eq!(j.id, running);
    assert_eq!(queue.cancel_job(waiting).await?.state, JobState::Cancelled);
    // A running job is asked to stop; its worker reports Cancelled.
    let mut control = sqlx::postgres::PgListener::connect(&db.url).await?;
    control.listen("pgfleet_control").await?;
    assert_eq!(queue.cancel_job(running).await?.state, JobState::Running);
    let n = tokio::time::timeout(Duration::from_secs(5), control.recv()).await??;
    assert_eq!(n.payload(), format!("cancel:{running}"));
    let held = queue
        .extend_leases("w", &[running], Duration::from_secs(30))
        .await?;
    assert_eq!(
        held,
        vec![(running, true)],
        "heartbeat reports the cancel request"
    );
    queue
        .finalize(
            "w",
            &[done(
                &j,
                Outcome::Cancelled {
                    reason: "stopped".into(),
                },
            )],
        )
        .await?;
    assert_eq!(queue.get_job(running).await?.state, JobState::Cancelled);
    // A cancelled job can be retried; a completed one cannot be cancelled.
    queue.retry_job(waiting).await?;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    queue.finalize("w", &[done(&j, Outcome::Completed)]).await?;
    assert!(matches!(
        queue.cancel_job(waiting).await,
        Err(QueueError::WrongState { .. })
    ));
    assert!(matches!(
        queue.get_job(999_999).await,
        Err(QueueError::NotFound(999_999))
    ));
    Ok(())
}

#[tokio::test]
async fn list_filters_and_paginates_across_both_tables() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..30)
        .map(|i| NewJob::new("q", if i % 3 == 0 { "a" } else { "b" }).payload(json!({"i": i})))
        .collect();
    queue.enqueue_many(&jobs).await?;
    let claimed = claim(&queue, &["q"], 5, "w").await?;
    let batch: Vec<Finished> = claimed
        .iter()
        .map(|j| done(j, Outcome::Completed))
        .collect();
    queue.finalize("w", &batch).await?;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = queue
            .search_jobs(
                &JobFilter::default(),
                &PageRequest {
                    cursor: after,
                    limit: 7,
                    ..Default::default()
                },
            )
            .await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|j| j.id);
        all.extend(page);
    }
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let completed = queue
        .search_jobs(
            &JobFilter {
                states: vec![StateFilter::Is(JobState::Completed)],
                ..Default::default()
            },
            &page(100),
        )
        .await?;
    assert_eq!(completed.len(), 5);
    let a = queue
        .search_jobs(
            &JobFilter {
                kind: Some("a".into()),
                ..Default::default()
            },
            &page(100),
        )
        .await?;
    assert_eq!(a.len(), 10);
    assert!(queue
        .search_jobs(&JobFilter::default(), &page(0))
        .await
        .is_err());
    Ok(())
}

#[tokio::test]
async fn delete_and_retention() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let ids: Vec<i64> = queue
        .enqueue_many(
            &(0..10)
                .map(|i| NewJob::new("q", "noop").unique_key(format!("k{i}")))
                .collect::<Vec<_>>(),
        )
        .await?
        .iter()
        .map(|e| e.id)
        .collect();
    queue.delete_job(ids[0]).await?;
    assert!(queue.get_job(ids[0]).await.is_err());
    let claimed = claim(&queue, &["q"], 100, "w").await?;
    assert!(matches!(
        queue.delete_job(claimed[0].id).await,
        Err(QueueError::WrongState { .. })
    ));
    let batch: Vec<Finished> = claimed
        .iter()
        .map(|j| done(j, Outcome::Completed))
        .collect();
    queue.finalize("w", &batch).await?;
    assert_eq!(count(&db, "pgfleet.jobs_finished").await?, 9);
    let keep = Retention {
        completed: Duration::from_secs(3600),
        failed: Duration::from_secs(3600),
    };
    assert_eq!(queue.prune_finished(keep, 100).await?, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let none = Retention {
        completed: Duration::from_millis(1),
        failed: Duration::from_millis(1),
    };
    assert_eq!(
        queue.prune_finished(none, 4).await?,
        9,
        "pruned in batches of 4"
    );
    assert_eq!(count(&db, "pgfleet.jobs_finished").await?, 0);
    assert_eq!(
        count(&db, "pgfleet.unique_keys").await?,
        0,
        "their unique keys go too"
    );
    Ok(())
}

#[tokio::test]
async fn stats_by_queue_and_partition() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..40)
        .map(|i| NewJob::new("q", "noop").partition_key(format!("u{i}")))
        .collect();
    queue.enqueue_many(&jobs).await?;
    queue
        .enqueue(NewJob::new("q", "noop").run_at(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await?;
    let claimed = claim(&queue, &["q"], 10, "w").await?;
    queue
        .finalize(
            "w",
            &claimed[..4]
                .iter()
                .map(|j| done(j, Outcome::Completed))
                .collect::<Vec<_>>(),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = queue.stats().await?;
    let q = stats.iter().find(|s| s.queue == "q").unwrap();
    assert_eq!(q.total.available, 30);
    assert_eq!(q.total.scheduled, 1);
    assert_eq!(q.total.running, 6);
    assert_eq!(q.total.completed_last_minute, 4);
    assert!(q.total.oldest_available_age_secs > 0.0);
    let per_partition: i64 = q.partitions.values().map(|c| c.available).sum();
    assert_eq!(per_partition, 30);
    Ok(())
}

fn page(limit: i64) -> PageRequest {
    PageRequest {
        limit,
        ..Default::default()
    }
}
