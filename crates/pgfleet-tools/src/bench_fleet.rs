//! `pgfleet bench fleet`: throughput as worker *processes* are added, at the settings users
//! run (10 slots each), and latency while processes join and leave.
//!
//! Phases, in one fresh database:
//! 1. **ceiling**: the raw one-job-per-transaction claim rate of this PostgreSQL — a loop of
//!    `DELETE … WHERE id = (SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED)` on 20 connections (as
//!    many as 2 × 10 slots) with the workers' asynchronous commit: what a queue that claims
//!    and finishes one job per transaction can do here at best;
//! 2. **fleet**: for each K, the same backlog of no-op jobs is enqueued into a paused queue,
//!    K `pgfleet worker` processes (this binary, default settings, 10 slots) start and
//!    register, the queue is resumed and drained; jobs/s, and each process's share of the
//!    jobs (from `attempted_by`);
//! 3. **join/leave**: 4 processes serve a stream of R jobs/s while every 2 s one process
//!    starts and the oldest stops (SIGTERM); enqueue → start latency of every job, from the
//!    database's own clock (`attempted_at − created_at` of the attempt that ran it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet_queue::{NewJob, Queue};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::bench::{progress, round2, BenchArgs};
use pgfleet_app::database::connect_pool;

/// The queue the fleet phases use.
const QUEUE: &str = "fleet";

/// A worker process, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct WorkerProc {
    child: Child,
}

impl WorkerProc {
    fn spawn(url: &str, slots: usize, log: PathBuf) -> anyhow::Result<Self> {
        Self::spawn_on(url, QUEUE, slots, log)
    }

    /// A `pgfleet worker` of the `bench` pool serving `queue` with `slots` slots.
    pub(crate) fn spawn_on(
        url: &str,
        queue: &str,
        slots: usize,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let bin = crate::pgfleet_bin()?;
        let log = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .args([
                "worker",
                "--queues",
                queue,
                "--concurrency",
                &slots.to_string(),
                "--health-addr",
                "",
            ])
            .env("PGFLEET_DATABASE_URL", url)
            .env("PGFLEET_POOL", "bench")
            .env("RUST_LOG", "warn")
            .env_remove("PGFLEET_DB_POOL_SIZE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start a worker process")?;
        Ok(Self { child })
    }

    /// SIGTERM; returns at once (the process hands over and drains on its own).
    fn terminate(&self) {
        crate::chaos::sigterm(&self.child);
    }

    /// SIGTERM and wait for the exit (at most 30 s, then SIGKILL).
    pub(crate) fn stop(mut self) {
        crate::chaos::sigterm_and_wait(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One fleet size's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetRun {
    /// Worker processes.
    pub processes: usize,
    /// Burn-down rate.
    pub jobs_per_sec: f64,
    /// Jobs/s divided by processes.
    pub jobs_per_sec_per_process: f64,
    /// The smallest share of all jobs one process ran.
    pub min_share: f64,
    /// The largest share.
    pub max_share: f64,
}

/// Runs the fleet suite against the fresh database at `url` (`options` is the same).
///
/// # Errors
/// When the database or the worker processes fail.
pub async fn bench_fleet(
    args: &BenchArgs,
    options: PgConnectOptions,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options.clone(), 24).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    let logs = std::env::temp_dir().join(format!("pgfleet-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;

    progress(&format!(
        "ceiling: raw one-job-per-transaction claims of {} jobs on 20 connections",
        args.jobs
    ));
    let ceiling = single_job_ceiling(&queue, &options, args.jobs).await?;
    progress(&format!("  {ceiling:.0} jobs/s"));

    let mut runs = Vec::new();
    for &k in &args.processes {
        progress(&format!(
            "fleet: {} jobs, {k} processes x {} slots",
            args.jobs, args.slots
        ));
        let run = drain_with_processes(&queue, url, k, args.slots, args.jobs, &logs).await?;
        progress(&format!(
            "  {:.0} jobs/s ({:.0} per process), shares {:.3}..{:.3}",
            run.jobs_per_sec, run.jobs_per_sec_per_process, run.min_share, run.max_share
        ));
        runs.push(run);
    }

    progress(&format!(
        "join/leave: {} jobs/s for {} s on 4 processes, one joins and one leaves every 2 s",
        args.latency_rate, args.join_leave_secs
    ));
    let jl = join_leave(&queue, url, args, &logs).await?;
    progress(&format!(
        "  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} jobs)",
        jl[0], jl[1], jl[2], jl[3]
    ));
    queue.close().await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&logs);
    let rate = |k: usize| {
        runs.iter()
            .find(|r| r.processes == k)
            .map(|r| r.jobs_per_sec)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => serde_json::Value::Null,
    };
    Ok(json!({
        "suite": "fleet",
        "jobs": args.jobs,
        "slots": args.slots,
        "ceiling_jobs_per_sec": ceiling.round(),
        "fleet": runs,
        "k2_vs_k1": ratio(rate(2), rate(1)),
        "k24_vs_k8": ratio(rate(24), rate(8)),
        "k2_vs_ceiling": ratio(rate(2), Some(ceiling)),
        "join_leave": {"rate": args.latency_rate, "secs": args.join_leave_secs,
                       "p50_ms": round2(jl[0]), "p99_ms": round2(jl[1]), "max_ms": round2(jl[2]),
                       "jobs": jl[3] as u64},
    }))
}

/// The raw one-job-per-transaction claim rate (see the module docs).
async fn single_job_ceiling(
    queue: &Queue,
    options: &PgConnectOptions,
    jobs: usize,
) -> anyhow::Result<f64> {
    crate::bench::fill(queue, "ceiling1", jobs).await?;
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(queue.pool())
        .await?;
    let raw = connect_pool(pgfleet_worker::worker_connect_options(options.clone()), 20).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let raw = raw.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let got: Option<i64> = sqlx::query_scalar(
                    "DELETE FROM pgfleet.jobs WHERE id = (SELECT id FROM pgfleet.jobs \
                     WHERE queue = 'ceiling1' AND state = 'available' \
                     ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
                )
                .fetch_optional(&raw)
                .await?;
                if got.is_none() {
                    return anyhow::Ok(());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = jobs as f64 / start.elapsed().as_secs_f64();
    raw.close().await;
    Ok(rate)
}

/// `k` worker processes of the bench pool serving one queue, with their logs in a temporary
/// directory: what the flow and workflow suites run against.
pub(crate) struct QueueWorkers {
    procs: Vec<WorkerProc>,
    logs: PathBuf,
}

impl QueueWorkers {
    /// Starts them (named `tag` in their log directory) and waits until all are registered.
    pub(crate) async fn start(
        pool: &PgPool,
        url: &str,
        queue: &str,
        k: usize,
        slots: usize,
        tag: &str,
    ) -> anyhow::Result<Self> {
        let logs = std::env::temp_dir().join(format!("pgfleet-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&logs)?;
        let mut procs = Vec::new();
        for i in 0..k {
            procs.push(WorkerProc::spawn_on(
                url,
                queue,
                slots,
                logs.join(format!("w{i}.log")),
            )?);
        }
        wait_registered(pool, k).await?;
        Ok(Self { procs, logs })
    }

    /// Stops them (SIGTERM, waiting) and removes the logs.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let procs = self.procs;
        tokio::task::spawn_blocking(move || procs.into_iter().for_each(WorkerProc::stop)).await?;
        let _ = std::fs::remove_dir_all(&self.logs);
        Ok(())
    }
}

/// Polls `left` every 5 ms until it answers false (nothing left to run), for at most 10
/// minutes.
pub(crate) async fn wait_until_drained<F, Fut>(mut left: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    while left().await? {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the queue did not drain within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until `n` workers of the bench pool are registered and live.
pub(crate) async fn wait_registered(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgfleet.workers WHERE pool = 'bench' AND expires_at > now()",
        )
        .fetch_one(pool)
        .await?;
        if live as usize >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {live} of {n} workers registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn clear_finished(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE pgfleet.jobs_finished")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(pool)
        .await?;
    Ok(())
}

/// Drains `jobs` no-op jobs with `k` worker processes of `slots` slots (see the module docs).
///
/// # Errors
/// When the database or the worker processes fail.
pub async fn drain_with_processes(
    queue: &Queue,
    url: &str,
    k: usize,
    slots: usize,
    jobs: usize,
    logs: &std::path::Path,
) -> anyhow::Result<FleetRun> {
    let pool = queue.pool();
    clear_finished(pool).await?;
    queue.pause_queue(QUEUE).await?;
    crate::bench::fill(queue, QUEUE, jobs).await?;
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(pool)
        .await?;
    let mut procs = Vec::new();
    for i in 0..k {
        procs.push(WorkerProc::spawn(
            url,
            slots,
            logs.join(format!("k{k}-{i}.log")),
        )?);
    }
    wait_registered(pool, k).await?;
    // Let the partitions settle so every process starts from its final share.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    queue.resume_queue(QUEUE).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let left: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pgfleet.jobs WHERE queue = $1)")
                .bind(QUEUE)
                .fetch_one(pool)
                .await?;
        if !left {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the fleet did not drain within 10 minutes"
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let counts: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM pgfleet.jobs_finished WHERE queue = $1 AND state = 'completed' \
         GROUP BY attempted_by",
    )
    .bind(QUEUE)
    .fetch_all(pool)
    .await?;
    let stop = tokio::task::spawn_blocking(move || procs.into_iter().for_each(WorkerProc::stop));
    stop.await?;
    let total: i64 = counts.iter().sum();
    anyhow::ensure!(
        total as usize == jobs,
        "{total} of {jobs} jobs completed (a job ran twice, or was lost)"
    );
    // A process that ran nothing has no row: its share is 0.
    let mut shares: Vec<f64> = counts.iter().map(|&c| c as f64 / total as f64).collect();
    shares.resize(k.max(shares.len()), 0.0);
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let max = shares.iter().copied().fold(0.0, f64::max);
    let rate = jobs as f64 / elapsed;
    Ok(FleetRun {
        processes: k,
        jobs_per_sec: rate.round(),
        jobs_per_sec_per_process: (rate / k as f64).round(),
        min_share: (min * 1000.0).round() / 1000.0,
        max_share: (max * 1000.0).round() / 1000.0,
    })
}

/// Returns [p50, p99, max, jobs] of enqueue → start, in ms.
async fn join_leave(
    queue: &Queue,
    url: &str,
    args: &BenchArgs,
    logs: &std::path::Path,
) -> anyhow::Result<[f64; 4]> {
    let pool = queue.pool().clone();
    clear_finished(&pool).await?;
    let mut procs = std::collections::VecDeque::new();
    let mut spawned = 0;
    let mut join = |procs: &mut std::collections::VecDeque<WorkerProc>| -> anyhow::Result<()> {
        let log = logs.join(format!("jl-{spawned}.log"));
        spawned += 1;
        procs.push_back(WorkerProc::spawn(url, args.slots, log)?);
        Ok(())
    };
    for _ in 0..4 {
        join(&mut procs)?;
    }
    wait_registered(&pool, 4).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = u64::from(args.latency_rate) * args.join_leave_secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.latency_rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut last_churn = Instant::now();
    let mut stopping = Vec::new();
    for _ in 0..total {
        tick.tick().await;
        queue.enqueue(NewJob::new(QUEUE, "noop")).await?;
        if last_churn.elapsed() >= Duration::from_secs(2) {
            last_churn = Instant::now();
            join(&mut procs)?;
            if let Some(old) = procs.pop_front() {
                old.terminate();
                stopping.push(old);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgfleet.jobs_finished WHERE queue = $1 AND state = 'completed'",
        )
        .bind(QUEUE)
        .fetch_one(&pool)
        .await?;
        if done as u64 >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM attempted_at - created_at) * 1000)::float8 \
         FROM pgfleet.jobs_finished WHERE queue = $1 AND state = 'completed'",
    )
    .bind(QUEUE)
    .fetch_all(&pool)
    .await?;
    let all: Vec<WorkerProc> = procs.into_iter().chain(stopping).collect();
    tokio::task::spawn_blocking(move || all.into_iter().for_each(WorkerProc::stop)).await?;
    anyhow::ensure!(
        ms.len() as u64 == total,
        "{} of {total} jobs completed in the join/leave phase",
        ms.len()
    );
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| crate::bench::percentile(&ms, p);
    Ok([pct(0.50), pct(0.99), pct(1.0), ms.len() as f64])
}

/// Prints the fleet table.
pub fn print_fleet(r: &serde_json::Value) {
    println!(
        "pgfleet bench fleet ({} jobs, {} slots per process, PostgreSQL {} via {})",
        r["jobs"],
        r["slots"],
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  raw one-job-per-transaction claim ceiling: {} jobs/s",
        r["ceiling_jobs_per_sec"]
    );
    println!("  processes   jobs/s   per process   min share   max share");
    for run in r["fleet"].as_array().into_iter().flatten() {
        println!(
            "  {:>9} {:>8} {:>13} {:>11} {:>11}",
            run["processes"],
            run["jobs_per_sec"],
            run["jobs_per_sec_per_process"],
            run["min_share"],
            run["max_share"]
        );
    }
    println!(
        "  K=2 / K=1: {}   K=24 / K=8: {}   K=2 / ceiling: {}",
        r["k2_vs_k1"], r["k24_vs_k8"], r["k2_vs_ceiling"]
    );
    let j = &r["join_leave"];
    println!(
        "  join/leave @{}/s: p50 {} ms, p99 {} ms, max {} ms ({} jobs)",
        j["rate"], j["p50_ms"], j["p99_ms"], j["max_ms"], j["jobs"]
    );
}
