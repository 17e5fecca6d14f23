//! What the console asks of the queue: search by every filter with keyset pages in both
//! orders, counts, bulk actions by filter (in batches, resumable, never touching what the
//! filter does not match), failures grouped, attempt timing, queue samples and pool history.

use std::time::Duration;

use chrono::Utc;
use pgfleet_queue::admin::{BulkAction, JobFilter, PageRequest, StateFilter, BULK_BATCH};
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::pools::PoolReport;
use pgfleet_queue::{JobState, NewJob};
use serde_json::json;

use crate::{claim, setup};

fn page(limit: i64, newest_first: bool, cursor: Option<i64>) -> PageRequest {
    PageRequest {
        newest_first,
        cursor,
        limit,
    }
}

fn states(s: &[&str]) -> Vec<StateFilter> {
    s.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test]
async fn search_filters_pages_and_counts_across_both_tables() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let later = Utc::now() + chrono::Duration::hours(1);
    let mut jobs = Vec::new();
    for i in 0..60 {
        let mut j = NewJob::new(if i % 2 == 0 { "even" } else { "odd" }, "k")
            .payload(json!({"n": i, "note": if i == 7 { "needle 50%_x" } else { "hay" }}));
        if i % 10 == 0 {
            j.partition_key = Some("tenant-a".into());
        }
        if i >= 50 {
            j.run_at = Some(later);
        }
        jobs.push(j);
    }
    queue.enqueue_many(&jobs).await?;
    // 10 finished: 6 completed, 4 discarded with an error naming them.
    let held = claim(&queue, &["even", "odd"], 10, "w").await?;
    let batch: Vec<Finished> = held
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let outcome = if i < 6 {
                Outcome::Completed
            } else {
                Outcome::Discard {
                    error: format!("upstream 503 for job {}", j.id),
                }
            };
            Finished::new(j.id, j.attempt, outcome)
        })
        .collect();
    queue.finalize("w", &batch).await?;

    let all = JobFilter::default();
    assert_eq!(queue.count_jobs(&all).await?, 60);
    // Newest first, 7 per page, across both tables: every job once, ids descending.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = queue.search_jobs(&all, &page(7, true, cursor)).await?;
        if p.is_empty() {
            break;
        }
        cursor = p.last().map(|j| j.id);
        seen.extend(p.into_iter().map(|j| j.id));
    }
    assert_eq!(seen.len(), 60);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let f = |s: &[&str]| JobFilter {
        states: states(s),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&f(&["completed"])).await?, 6);
    assert_eq!(queue.count_jobs(&f(&["discarded", "completed"])).await?, 10);
    assert_eq!(queue.count_jobs(&f(&["scheduled"])).await?, 10);
    assert_eq!(queue.count_jobs(&f(&["available"])).await?, 50 - 10 + 10);
    assert_eq!(queue.count_jobs(&f(&["running", "blocked"])).await?, 0);
    let tenant = JobFilter {
        partition_key: Some("tenant-a".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&tenant).await?, 6);
    let even = JobFilter {
        queue: Some("even".into()),
        states: states(&["scheduled"]),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&even).await?, 5);
    // Text search is literal (% and _ are not wildcards), case-sensitive, and looks in
    // errors too.
    let shouting = JobFilter {
        text: Some("NEEDLE".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&shouting).await?, 0);
    let needle = JobFilter {
        text: Some("needle 50%_".into()),
        ..Default::default()
    };
    let found = queue.search_jobs(&needle, &page(10, false, None)).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payload["n"], 7);
    let wildcard = JobFilter {
        text: Some("needle 5_".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&wildcard).await?, 0);
    let in_errors = JobFilter {
        text: Some("upstream 503".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&in_errors).await?, 4);
    // Time range: finished jobs by when they finished, the others by creation.
    let future = JobFilter {
        from: Some(Utc::now() + chrono::Duration::minutes(1)),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&future).await?, 0);
    let recent = JobFilter {
        from: Some(Utc::now() - chrono::Duration::minutes(1)),
        to: Some(Utc::now() + chrono::Duration::seconds(1)),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&recent).await?, 60);
    Ok(())
}

#[tokio::test]
async fn bulk_actions_act_on_the_filter_only_in_resumable_batches() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let later = Utc::now() + chrono::Duration::hours(1);
    let n = BULK_BATCH as usize * 2 + 37;
    let mut jobs: Vec<NewJob> = (0..n)
        .map(|i| {
            let mut j = NewJob::new("mail", "email.send").payload(json!({"i": i}));
            j.run_at = Some(later);
            j
        })
        .collect();
    // Same queue, other kind, also scheduled: must be left alone.
    for _ in 0..20 {
        let mut j = NewJob::new("mail", "email.digest");
        j.run_at = Some(later);
        jobs.push(j);
    }
    queue.enqueue_many(&jobs).await?;
    let scheduled_emails = JobFilter {
        states: states(&["scheduled"]),
        kind: Some("email.send".into()),
        ..Default::default()
    };
    // At most 100, then the rest.
    let first = queue
        .bulk(BulkAction::Cancel, &scheduled_emails, Some(100), None)
        .await?;
    assert_eq!((first.affected, first.done), (100, false));
    let rest = queue
        .bulk(BulkAction::Cancel, &scheduled_emails, None, None)
        .await?;
    assert_eq!((rest.affected, rest.done), (n as u64 - 100, true));
    let cancelled = JobFilter {
        states: states(&["cancelled"]),
        kind: Some("email.send".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&cancelled).await?, n as i64);
    assert_eq!(queue.count_jobs(&scheduled_emails).await?, 0);
    let digests = JobFilter {
        kind: Some("email.digest".into()),
        states: states(&["scheduled"]),
        ..Default::default()
    };
    assert_eq!(
        queue.count_jobs(&digests).await?,
        20,
        "other kinds untouched"
    );
    // Retry brings the cancelled ones back to run now; again is a no-op.
    let retried = queue
        .bulk(BulkAction::Retry, &cancelled, None, None)
        .await?;
    assert_eq!(retried.affected, n as u64);
    assert_eq!(
        queue
            .bulk(BulkAction::Retry, &cancelled, None, None)
            .await?
            .affected,
        0
    );
    let runnable = JobFilter {
        states: states(&["available"]),
        kind: Some("email.send".into()),
        ..Default::default()
    };
    assert_eq!(queue.count_jobs(&runnable).await?, n as i64);
    // A running job is asked to stop once (a second pass does not count it again), and
    // delete leaves it alone, unique key included.
    let mut keyed = NewJob::new("mail", "email.send").payload(json!({"i": -1}));
    keyed.unique_key = Some("welcome:42".into());
    keyed.priority = 0;
    queue.enqueue(keyed).await?;
    let held = claim(&queue, &["mail"], 1, "w").await?.remove(0);
    assert_eq!(held.unique_key.as_deref(), Some("welcome:42"));
    let one = JobFilter {
        text: Some(format!("\"i\": {}}}", held.payload["i"])),
        kind: Some("email.send".into()),
        ..Default::default()
    };
    assert_eq!(
        queue
            .bulk(BulkAction::Cancel, &one, None, None)
            .await?
            .affected,
        1
    );
    assert_eq!(
        queue
            .bulk(BulkAction::Cancel, &one, None, None)
            .await?
            .affected,
        0
    );
    assert_eq!(queue.get_job(held.id).await?.state, JobState::Running);
    let emails = JobFilter {
        kind: Some("email.send".into()),
        ..Default::default()
    };
    let deleted = queue.bulk(BulkAction::Delete, &emails, None, None).await?;
    assert_eq!(deleted.affected, n as u64);
    assert_eq!(queue.count_jobs(&emails).await?, 1);
    let again = queue
        .enqueue(NewJob::new("mail", "email.send").unique_key("welcome:42"))
        .await?;
    assert!(again.duplicate, "the running job keeps its unique key");
    assert_eq!(again.id, held.id);
    // A zero budget stops before the first batch.
    let out = queue
        .bulk(BulkAction::Delete, &digests, None, Some(Duration::ZERO))
        .await?;
    assert_eq!((out.affected, out.done), (0, false));
    Ok(())
}

#[tokio::test]
async fn failures_group_by_kind_and_message_with_attempt_timing() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..5)
        .map(|_| NewJob::new("q", "charge").max_attempts(1))
        .chain((0..2).map(|_| NewJob::new("q", "refund").max_attempts(3)))
        .collect();
    queue.enqueue_many(&jobs).await?;
    let held = claim(&queue, &["q"], 7, "worker-7").await?;
    let backoff = pgfleet_queue::backoff::Backoff::default();
    let batch: Vec<Finished> = held
        .iter()
        .map(|j| {
            let msg = format!("card declined after {} ms", 100 + j.id);
            let outcome = Outcome::failure(j.attempt, j.max_attempts, &msg, false, &backoff);
            Finished::new(j.id, j.attempt, outcome)
        })
        .collect();
    queue.finalize("worker-7", &batch).await?;
    let groups = queue
        .error_groups(Utc::now() - chrono::Duration::hours(1), None, 50)
        .await?;
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0].kind, "charge");
    assert_eq!(groups[0].pattern, "card declined after # ms");
    assert_eq!((groups[0].count, groups[0].discarded), (5, 5));
    assert_eq!(
        (
            groups[1].kind.as_str(),
            groups[1].count,
            groups[1].discarded
        ),
        ("refund", 2, 0)
    );
    let latest = queue.get_job(groups[0].latest_id).await?;
    assert_eq!(latest.kind, "charge");
    assert!(groups[0]
        .latest_message
        .starts_with("card declined after 1"));
    // Each recorded attempt says which worker ran it and when it started.
    let e = &latest.errors[0];
    assert_eq!(e["worker"], "worker-7");
    assert_eq!(e["attempt"], 1);
    let started: chrono::DateTime<Utc> = serde_json::from_value(e["started_at"].clone())?;
    let ended: chrono::DateTime<Utc> = serde_json::from_value(e["at"].clone())?;
    assert!(started <= ended, "{e}");
    assert!(queue
        .error_groups(Utc::now(), Some("other"), 50)
        .await?
        .is_empty());
    assert!(queue.error_groups(Utc::now(), None, 0).await.is_err());
    Ok(())
}

#[tokio::test]
async fn samples_are_written_once_per_interval_and_pool_history_on_change() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    queue
        .enqueue_many(&[
            NewJob::new("a", "k"),
            NewJob::new("a", "k"),
            NewJob::new("b", "k"),
        ])
        .await?;
    let every = Duration::from_secs(60);
    assert!(queue.sample_queues(every).await?);
    assert!(
        !queue.sample_queues(every).await?,
        "one sample per interval"
    );
    let since = Utc::now() - chrono::Duration::minutes(5);
    let a = queue.queue_history("a", since).await?;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].available, 2);
    assert_eq!(queue.queue_history("b", since).await?[0].available, 1);
    assert!(queue.sample_queues(Duration::ZERO).await?);
    assert_eq!(queue.queue_history("a", since).await?.len(), 2);

    let mut report = PoolReport {
        name: "default/pool".into(),
        source: "kubernetes".into(),
        desired: 2,
        actual: 1,
        backlog: 500,
        lag_seconds: 3.0,
        reason: "backlog 500 over target 100 per replica".into(),
        updated_at: Utc::now(),
    };
    queue.record_pool(&report).await?;
    queue.record_pool(&report).await?;
    report.actual = 2;
    queue.record_pool(&report).await?;
    let history = queue.pool_history("default/pool", since).await?;
    assert_eq!(
        history
            .iter()
            .map(|p| (p.desired, p.actual))
            .collect::<Vec<_>>(),
        vec![(2, 1), (2, 2)],
        "unchanged decisions within 10 s are one point"
    );
    assert_eq!(queue.pools().await?[0].actual, 2);
    queue.forget_pool("default/pool").await?;
    assert!(queue.pools().await?.is_empty());
    assert!(queue.pool_history("default/pool", since).await?.is_empty());
    Ok(())
}
