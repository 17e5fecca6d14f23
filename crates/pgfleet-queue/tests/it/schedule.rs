//! Periodic jobs against a real PostgreSQL: three schedulers on separate connections, each
//! tick enqueued once; missed ticks after an outage follow the policy; bad input writes
//! nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use pgfleet_queue::schedule::{Misfire, NewSchedule};
use pgfleet_queue::{NewJob, Queue, QueueError};

use crate::setup;

async fn ticks(db: &pgfleet_testkit::TestDb, name: &str) -> anyhow::Result<Vec<i64>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT unique_key FROM pgfleet.jobs WHERE metadata->>'schedule' = $1 ORDER BY run_at",
    )
    .bind(name)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(k,)| k.rsplit(':').next().unwrap().parse().unwrap())
        .collect())
}

#[tokio::test]
async fn three_schedulers_enqueue_each_tick_exactly_once() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    // Catch up everything: a stalled test machine must not hide a duplicate or a gap.
    let mut s = NewSchedule::new("every-second", "@every 1s", NewJob::new("periodic", "noop"));
    s.misfire = Misfire::CatchUp(1000);
    queue.put_schedule(&s).await?;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let q = Queue::new(db.new_pool(2).await?).await?;
        tasks.push(tokio::spawn(async move {
            let end = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < end {
                q.run_due_schedules().await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ticks = ticks(&db, "every-second").await?;
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick enqueued twice: {ticks:?}"
    );
    assert!((4..=6).contains(&ticks.len()), "{ticks:?}");
    for w in ticks.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1000,
            "consecutive ticks, none skipped: {ticks:?}"
        );
    }
    let s = &queue.schedules().await?[0];
    assert_eq!(
        s.last_run_at.map(|t| t.timestamp_millis()),
        ticks.last().copied()
    );
    assert!(s.last_job_id.is_some());
    Ok(())
}

#[tokio::test]
async fn ticks_missed_while_nothing_ran_follow_the_misfire_policy() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    for (name, misfire) in [
        ("skip", Misfire::Skip),
        ("once", Misfire::RunOnce),
        ("catch-up", Misfire::CatchUp(3)),
    ] {
        let mut s = NewSchedule::new(name, "@every 1s", NewJob::new("periodic", "noop"));
        s.misfire = misfire;
        queue.put_schedule(&s).await?;
    }
    // Every scheduler down for 8 s: ticks from 8 s ago are due.
    sqlx::query("UPDATE pgfleet.schedules SET next_run_at = now() - interval '8 seconds'")
        .execute(&db.pool)
        .await?;
    queue.run_due_schedules().await?;
    let (skip, once, catch_up) = (
        ticks(&db, "skip").await?,
        ticks(&db, "once").await?,
        ticks(&db, "catch-up").await?,
    );
    assert!(
        (1..=2).contains(&skip.len()),
        "skip runs only ticks within the 1 s grace: {skip:?}"
    );
    assert_eq!(once.len(), 1, "run once: {once:?}");
    assert_eq!(catch_up.len(), 3, "catch up at most 3: {catch_up:?}");
    assert_eq!(once.last(), catch_up.last(), "the latest tick runs");
    // Nothing more is due: the next tick is in the future for all three.
    assert_eq!(queue.run_due_schedules().await?, 0);
    for s in queue.schedules().await? {
        assert!(s.next_run_at > chrono::Utc::now() - chrono::Duration::seconds(1));
    }
    Ok(())
}

#[tokio::test]
async fn paused_schedules_do_not_fire_and_bad_schedules_write_nothing() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    queue
        .put_schedule(&NewSchedule::new(
            "p",
            "@every 1s",
            NewJob::new("q", "noop"),
        ))
        .await?;
    assert!(queue.set_schedule_paused("p", true).await?);
    sqlx::query("UPDATE pgfleet.schedules SET next_run_at = now() - interval '3 seconds'")
        .execute(&db.pool)
        .await?;
    assert_eq!(queue.run_due_schedules().await?, 0);
    assert!(queue.set_schedule_paused("p", false).await?);
    assert_eq!(queue.run_due_schedules().await?, 1, "resumed: run once");
    let bad = |cron: &str, tz: &str, misfire: Misfire, kind: &str| {
        let mut s = NewSchedule::new("bad", cron, NewJob::new("q", kind));
        s.timezone = tz.into();
        s.misfire = misfire;
        s
    };
    for (s, field) in [
        (bad("61 * * * *", "UTC", Misfire::Skip, "noop"), "cron"),
        (
            bad("@every 1s", "Mars/Olympus", Misfire::Skip, "noop"),
            "timezone",
        ),
        (
            bad("@every 1s", "UTC", Misfire::CatchUp(0), "noop"),
            "misfire",
        ),
        (bad("@every 1s", "UTC", Misfire::Skip, "bad kind!"), "kind"),
    ] {
        match queue.put_schedule(&s).await {
            Err(QueueError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(queue.schedules().await?.len(), 1, "nothing written");
    assert!(queue.delete_schedule("p").await?);
    assert!(!queue.delete_schedule("p").await?);
    Ok(())
}
