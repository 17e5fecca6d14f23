//! Scale-out: every worker adds throughput and joining or leaving opens no latency hole.
//!
//! These tests start many workers, each on its own connection pool and LISTEN connection as
//! separate processes would. They take a lock so they do not compete with each other for
//! the machine's two cores (a latency assertion must not measure the neighbour test).

use std::sync::atomic::Ordering;
use std::time::Duration;

use pgfleet_queue::NewJob;
use pgfleet_testkit::{eventually, TestDb};
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::{setup, Running};

/// Held by the tests that load the machine, so latency tests do not measure a neighbour.
pub static FLEET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The metrics of every worker these tests started (scraped by the 24-worker test).
static METRICS: std::sync::Mutex<Vec<std::sync::Arc<pgfleet_telemetry::Metrics>>> =
    std::sync::Mutex::new(Vec::new());

/// Production defaults (10 slots, 1 s poll) with quick ownership and a short handover.
fn config() -> WorkerConfig {
    let mut c = WorkerConfig::new("fleet", vec!["q".into()]);
    c.ownership_ttl = Duration::from_secs(3);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// A worker with the pool size `pgfleet worker` gives 10 slots.
async fn start(db: &TestDb, config: WorkerConfig, registry: Registry) -> anyhow::Result<Running> {
    let size = pgfleet_worker::default_pool_size(config.concurrency);
    let pool = db.new_pool(size).await?;
    let queue = pgfleet_queue::Queue::with_notifier(
        pool,
        pgfleet_queue::notify::NotifierConfig::shared_pool(),
    )
    .await?;
    let worker = Worker::new(queue, db.options.clone(), config, registry)?;
    METRICS
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(worker.metrics());
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    Ok(Running { stop, task, stats })
}

/// A handler that takes `ms` milliseconds.
fn slow(ms: u64) -> Registry {
    let mut r = Registry::new();
    r.register("work", move |_job, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    });
    r
}

async fn remaining(db: &TestDb) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?)
}

/// Waits for the backlog to drain, stops the workers; what each completed, and how many
/// jobs were stolen in all.
async fn drain_and_stop(db: &TestDb, workers: Vec<Running>) -> anyhow::Result<(Vec<u64>, u64)> {
    eventually("the backlog drains", Duration::from_secs(60), || async {
        Ok((remaining(db).await? == 0).then_some(()))
    })
    .await?;
    let ran = workers
        .iter()
        .map(|w| w.stats.completed.load(Ordering::Relaxed))
        .collect();
    let stolen = workers
        .iter()
        .map(|w| w.stats.stolen.load(Ordering::Relaxed))
        .sum();
    for w in workers {
        w.stop().await?;
    }
    Ok((ran, stolen))
}

/// Every job completed exactly once, on its first attempt.
async fn all_completed_once(db: &TestDb, n: i64) -> anyhow::Result<()> {
    let (done, retried): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE attempt > 1) FROM pgfleet.jobs_finished \
         WHERE state = 'completed'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(done, n, "every job completed once");
    assert_eq!(retried, 0, "no job needed a second attempt");
    Ok(())
}

/// 24 workers of one pool on 16 partitions: the 8 that own no partition still run jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_workers_on_sixteen_partitions_all_run_jobs() -> anyhow::Result<()> {
    let _one = FLEET.lock().await;
    METRICS
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let (db, queue) = setup().await?;
    let mut workers = Vec::new();
    // 25 ms jobs: 12,000 of them keep 240 slots busy for over a second, longer than the
    // 1 s backstop poll, so a worker that owns no partition (it hears no NOTIFY) gets its
    // turn even on a loaded machine. (With 2 ms jobs the backlog could drain before the
    // last-started workers polled once.)
    for _ in 0..24 {
        workers.push(start(&db, config(), slow(25)).await?);
    }
    eventually("24 live workers", Duration::from_secs(20), || async {
        let n = queue.live_workers("fleet").await?.len();
        Ok((n == 24).then_some(()))
    })
    .await?;
    let leases = queue.partition_leases(Some("fleet")).await?;
    let owners: std::collections::BTreeSet<&str> =
        leases.iter().map(|l| l.worker_id.as_str()).collect();
    assert!(owners.len() <= 16, "at most one owner per partition");
    let n = 12_000;
    let jobs = vec![NewJob::new("q", "work"); n];
    for chunk in jobs.chunks(4000) {
        queue.enqueue_many(chunk).await?;
    }
    let (ran, stolen) = drain_and_stop(&db, workers).await?;
    assert!(ran.iter().all(|&r| r > 0), "every worker ran jobs: {ran:?}");
    assert!(stolen > 0, "workers without partitions took others' jobs");
    // What operators see: stolen jobs counted, and nothing left claimed ahead.
    let texts: Vec<String> = METRICS
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .drain(..)
        .map(|m| m.render())
        .collect();
    let series = |name: &str| -> f64 {
        texts
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        series("pgfleet_jobs_stolen_total") as u64,
        stolen,
        "the metric"
    );
    assert_eq!(
        series("pgfleet_jobs_claimed_ahead"),
        0.0,
        "the buffer is empty"
    );
    all_completed_once(&db, n as i64).await?;
    Ok(())
}

/// A backlog that lies in ONE partition (one hot partition key) is drained by all 4
/// workers of the pool, each with a real share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_partition_is_drained_by_every_worker() -> anyhow::Result<()> {
    let _one = FLEET.lock().await;
    let (db, queue) = setup().await?;
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(start(&db, config(), slow(2)).await?);
    }
    eventually(
        "4 workers own all partitions",
        Duration::from_secs(20),
        || async {
            let owners: std::collections::BTreeSet<String> = queue
                .partition_leases(Some("fleet"))
                .await?
                .into_iter()
                .map(|l| l.worker_id)
                .collect();
            let leases = queue.partition_leases(Some("fleet")).await?.len();
            Ok((owners.len() == 4 && leases == 16).then_some(()))
        },
    )
    .await?;
    let n = 16_000;
    let jobs = vec![NewJob::new("q", "work").partition_key("tenant-big"); n];
    for chunk in jobs.chunks(4000) {
        queue.enqueue_many(chunk).await?;
    }
    let partitions: i64 = sqlx::query_scalar("SELECT count(DISTINCT partition) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(partitions, 1, "the whole backlog is in one partition");
    let (ran, _) = drain_and_stop(&db, workers).await?;
    let floor = n as u64 / 10;
    assert!(
        ran.iter().all(|&r| r >= floor),
        "each of the 4 workers ran at least 10 %: {ran:?}"
    );
    all_completed_once(&db, n as i64).await?;
    Ok(())
}

/// A stream of 200 jobs/s while a worker joins and another leaves: no job waits much
/// longer than the rest. Only wake-ups can start a job quickly here: the backstop poll is
/// 30 s, stealing is off and the periodic rebalance is 2 s, so a partition left without a
/// listener during a handover would show as a wait of up to seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_and_leaving_during_a_stream_opens_no_latency_hole() -> anyhow::Result<()> {
    let _one = FLEET.lock().await;
    let (db, queue) = setup().await?;
    let cfg = || {
        let mut c = config();
        c.poll_interval = Duration::from_secs(30);
        c.steal = false;
        c.ownership_ttl = Duration::from_secs(6);
        c.rebalance_interval = Duration::from_secs(2);
        c
    };
    let a = start(&db, cfg(), slow(0)).await?;
    let b = start(&db, cfg(), slow(0)).await?;
    eventually(
        "2 workers own all partitions",
        Duration::from_secs(20),
        || async {
            let leases = queue.partition_leases(Some("fleet")).await?;
            let owners: std::collections::BTreeSet<String> =
                leases.iter().map(|l| l.worker_id.clone()).collect();
            Ok((owners.len() == 2 && leases.len() == 16).then_some(()))
        },
    )
    .await?;
    let n = 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut joined = None;
    let mut b = Some(b);
    for i in 0..n {
        tick.tick().await;
        queue.enqueue(NewJob::new("q", "work")).await?;
        if i == 300 {
            joined = Some(start(&db, cfg(), slow(0)).await?);
        }
        if i == 600 {
            if let Some(b) = b.take() {
                // Stop in the background: the stream goes on while b hands over.
                tokio::spawn(b.stop());
            }
        }
    }
    eventually("the stream is served", Duration::from_secs(30), || async {
        Ok((remaining(&db).await? == 0).then_some(()))
    })
    .await?;
    let (p50, max): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), max(ms) FROM ( \
           SELECT (extract(epoch FROM attempted_at - created_at) * 1000)::float8 AS ms \
           FROM pgfleet.jobs_finished) t",
    )
    .fetch_one(&db.pool)
    .await?;
    a.stop().await?;
    if let Some(c) = joined {
        assert!(
            c.stats.completed.load(Ordering::Relaxed) > 0,
            "the newcomer served"
        );
        c.stop().await?;
    }
    all_completed_once(&db, n).await?;
    // A hole would last until a rebalance (up to 2 s); 150 ms leaves room for a loaded
    // CI machine.
    assert!(
        max <= p50 + 150.0,
        "enqueue -> start: p50 {p50:.1} ms, max {max:.1} ms"
    );
    Ok(())
}
