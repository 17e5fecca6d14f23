//! `pgfleet bench flow`: what flow control costs, at the settings users run (worker
//! processes of 10 slots), each number beside its unlimited baseline from the same run.
//!
//! Phases, in one fresh database, on one queue served by `--flow-processes` processes:
//! 1. **keys** (R runs, each unlimited then limited, medians compared): N no-op jobs spread
//!    over 1,000 partition keys, enqueued into the paused queue, resumed and drained —
//!    without limits, then with `key_concurrency = 1` and fair claiming: jobs/s, and the
//!    ratio of the medians (target ≥ 0.7);
//! 2. **tenants** (R runs, each alone then fair): tenant A enqueues T jobs to the running
//!    workers, its jobs/s from the first enqueue to the last completion without limits;
//!    then, on the fair queue, tenant A enqueues T jobs and tenant B one: B's enqueue →
//!    start latency (the database's clock: `attempted_at − created_at`) and A's drain rate
//!    as a ratio of the unlimited one (targets: median latency < 100 ms, ratio ≥ 0.8).

use std::time::{Duration, Instant};

use pgfleet_queue::flow::Limits;
use pgfleet_queue::{NewJob, Queue};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::bench::{median, progress, ratio, round2, rounded, BenchArgs};
use crate::bench_fleet::{wait_until_drained, QueueWorkers};
use pgfleet_app::database::connect_pool;

/// The queue every phase uses.
const QUEUE: &str = "flow";

/// Partition keys of the keyed phases.
const KEYS: usize = 1_000;

/// Runs the flow suite against the fresh database at `url` (`options` is the same).
///
/// # Errors
/// When the database or the worker processes fail.
pub async fn bench_flow(
    args: &BenchArgs,
    options: PgConnectOptions,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options, 8).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    let k = args.flow_processes.max(1);
    queue.pause_queue(QUEUE).await?;
    let workers = QueueWorkers::start(&pool, url, QUEUE, k, args.slots, "flow").await?;
    let result = phases(args, &queue, k).await;
    workers.stop().await?;
    queue.close().await;
    pool.close().await;
    result
}

async fn phases(args: &BenchArgs, queue: &Queue, k: usize) -> anyhow::Result<serde_json::Value> {
    let n = args.jobs;
    let runs = args.fair_runs.max(1);
    let limited_limits = Limits {
        key_concurrency: Some(1),
        fair: true,
        ..Limits::default()
    };
    let mut unlimited = Vec::new();
    let mut limited = Vec::new();
    for run in 1..=runs {
        progress(&format!(
            "keys run {run}: {n} jobs over {KEYS} keys, {k} processes x {} slots",
            args.slots
        ));
        let u = drain_keyed(queue, n, &Limits::default()).await?;
        let l = drain_keyed(queue, n, &limited_limits).await?;
        progress(&format!(
            "  unlimited {u:.0} jobs/s, per-key limit 1 + fair {l:.0} jobs/s ({:.3})",
            l / u
        ));
        unlimited.push(u);
        limited.push(l);
    }
    let t = args.tenant_jobs;
    queue.resume_queue(QUEUE).await?;
    let fair = Limits {
        fair: true,
        ..Limits::default()
    };
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    let mut latencies = Vec::new();
    for run in 1..=runs {
        set_limits(queue, &Limits::default()).await?;
        let (solo, _) = tenant_burst(queue, t, false).await?;
        set_limits(queue, &fair).await?;
        let (rate, b_ms) = tenant_burst(queue, t, true).await?;
        let b_ms = b_ms.unwrap_or(f64::NAN);
        progress(&format!(
            "tenants run {run}: A alone {solo:.0} jobs/s; fair beside B {rate:.0} jobs/s ({:.3}); B's job started {b_ms:.1} ms after its enqueue",
            rate / solo
        ));
        alone.push(solo);
        beside.push(rate);
        latencies.push(b_ms);
    }
    Ok(json!({
        "suite": "flow",
        "jobs": n,
        "keys": KEYS,
        "tenant_jobs": t,
        "runs": runs,
        "processes": k,
        "slots": args.slots,
        "unlimited_jobs_per_sec": rounded(&unlimited),
        "key_limit_fair_jobs_per_sec": rounded(&limited),
        "key_limit_fair_vs_unlimited": ratio(median(&limited), median(&unlimited)),
        "tenant_alone_jobs_per_sec": rounded(&alone),
        "fair_tenant_a_jobs_per_sec": rounded(&beside),
        "fair_tenant_a_vs_alone": ratio(median(&beside), median(&alone)),
        "tenant_b_start_ms": latencies.iter().map(|l| round2(*l)).collect::<Vec<_>>(),
        "tenant_b_start_ms_median": round2(median(&latencies)),
    }))
}

/// Sets the queue's limits and waits until every worker has re-read which queues are
/// flow-controlled.
async fn set_limits(queue: &Queue, limits: &Limits) -> anyhow::Result<()> {
    queue.set_limits(QUEUE, limits).await?;
    tokio::time::sleep(pgfleet_queue::flow::FLOW_REFRESH + Duration::from_millis(200)).await;
    Ok(())
}

/// Jobs/s of draining `n` jobs over [`KEYS`] keys under `limits` (enqueued paused).
async fn drain_keyed(queue: &Queue, n: usize, limits: &Limits) -> anyhow::Result<f64> {
    queue.pause_queue(QUEUE).await?;
    set_limits(queue, limits).await?;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new(QUEUE, "noop").partition_key(format!("key-{}", i % KEYS)))
        .collect();
    for chunk in jobs.chunks(10_000) {
        queue.enqueue_many(chunk).await?;
    }
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(queue.pool())
        .await?;
    let start = Instant::now();
    queue.resume_queue(QUEUE).await?;
    wait_empty(queue, None).await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Tenant A enqueues `t` jobs to the running workers (then, with `with_b`, tenant B one):
/// A's jobs/s from its first enqueue to its last completion, and B's start latency in ms.
async fn tenant_burst(queue: &Queue, t: usize, with_b: bool) -> anyhow::Result<(f64, Option<f64>)> {
    let jobs: Vec<NewJob> = (0..t)
        .map(|_| NewJob::new(QUEUE, "noop").partition_key("tenant-a"))
        .collect();
    let start = Instant::now();
    for chunk in jobs.chunks(10_000) {
        queue.enqueue_many(chunk).await?;
    }
    let b = if with_b {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some(
            queue
                .enqueue(NewJob::new(QUEUE, "noop").partition_key("tenant-b"))
                .await?
                .id,
        )
    } else {
        None
    };
    wait_empty(queue, Some("tenant-a")).await?;
    let rate = t as f64 / start.elapsed().as_secs_f64();
    let latency = match b {
        Some(id) => {
            wait_empty(queue, Some("tenant-b")).await?;
            let ms: f64 = sqlx::query_scalar(
                "SELECT extract(epoch FROM attempted_at - created_at)::float8 * 1000 \
                 FROM pgfleet.jobs_finished WHERE id = $1",
            )
            .bind(id)
            .fetch_one(queue.pool())
            .await?;
            Some(ms)
        }
        None => None,
    };
    Ok((rate, latency))
}

/// Waits until the queue (or one key of it) has no unfinished job.
async fn wait_empty(queue: &Queue, key: Option<&str>) -> anyhow::Result<()> {
    wait_until_drained(|| async {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgfleet.jobs WHERE queue = $1 \
             AND ($2::text IS NULL OR partition_key = $2))",
        )
        .bind(QUEUE)
        .bind(key)
        .fetch_one(queue.pool())
        .await?)
    })
    .await
}

/// The flow suite as text.
pub fn print_flow(r: &serde_json::Value) {
    println!(
        "pgfleet bench flow ({} jobs over {} keys, {} processes x {} slots, PostgreSQL {} via {})",
        r["jobs"],
        r["keys"],
        r["processes"],
        r["slots"],
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  unlimited: {} jobs/s   per-key limit 1 + fair: {} jobs/s   ratio of medians {} (target >= 0.7)",
        r["unlimited_jobs_per_sec"],
        r["key_limit_fair_jobs_per_sec"],
        r["key_limit_fair_vs_unlimited"]
    );
    println!(
        "  tenant A alone ({} jobs): {} jobs/s   beside tenant B, fair: {} jobs/s   ratio of medians {} (target >= 0.8)",
        r["tenant_jobs"], r["tenant_alone_jobs_per_sec"], r["fair_tenant_a_jobs_per_sec"],
        r["fair_tenant_a_vs_alone"]
    );
    println!(
        "  tenant B's one job started after {} ms, median {} ms (target < 100)",
        r["tenant_b_start_ms"], r["tenant_b_start_ms_median"]
    );
}
