//! `pgfleet bench workflow`: what dependencies cost, at the settings users run (worker
//! processes of 10 slots), each number beside independent jobs drained in the same run.
//!
//! Phases, in one fresh database, on one queue served by `--flow-processes` processes; each
//! shape is enqueued into the paused queue, resumed and drained (jobs/s from resume to the
//! last completion), `--workflow-runs` times, medians compared:
//! 1. **independent**: N no-op jobs;
//! 2. **chains**: N/5 workflows of 5 no-op jobs, each waiting for the one before;
//! 3. **fan-out**: N/101 workflows of one no-op root and 100 no-op jobs waiting for it;
//! 4. **blocked backlog**: N independent jobs again, now beside `--blocked` jobs in the same
//!    queue that wait for a job of a paused queue: the ready jobs' burn-down as a ratio of
//!    phase 1's (target ≥ 0.9: blocked jobs are not in the claim index).

use std::time::Instant;

use pgfleet_queue::workflow::{NewWorkflow, WorkflowJob};
use pgfleet_queue::{NewJob, Queue};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::bench::{median, progress, ratio, rounded, BenchArgs};
use crate::bench_fleet::{wait_until_drained, QueueWorkers};
use pgfleet_app::database::connect_pool;

/// The queue every phase uses.
const QUEUE: &str = "wf";

/// Runs the workflow suite against the fresh database at `url` (`options` is the same).
///
/// # Errors
/// When the database or the worker processes fail.
pub async fn bench_workflow(
    args: &BenchArgs,
    options: PgConnectOptions,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options, 8).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    let k = args.flow_processes.max(1);
    queue.pause_queue(QUEUE).await?;
    let workers = QueueWorkers::start(&pool, url, QUEUE, k, args.slots, "workflow").await?;
    let result = phases(args, &queue, k).await;
    workers.stop().await?;
    queue.close().await;
    pool.close().await;
    result
}

#[derive(Clone, Copy)]
enum Shape {
    Independent,
    Chains,
    FanOut,
}

async fn phases(args: &BenchArgs, queue: &Queue, k: usize) -> anyhow::Result<serde_json::Value> {
    let n = args.jobs;
    let runs = args.workflow_runs.max(1);
    let (mut solo, mut chains, mut fan) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let s = drain(queue, n, Shape::Independent).await?;
        let c = drain(queue, n, Shape::Chains).await?;
        let f = drain(queue, n, Shape::FanOut).await?;
        progress(&format!(
            "run {run} ({k} processes x {} slots): independent {s:.0} jobs/s, chains of 5 {c:.0} ({:.3}), fan-out of 100 {f:.0} ({:.3})",
            args.slots,
            c / s,
            f / s
        ));
        solo.push(s);
        chains.push(c);
        fan.push(f);
    }
    progress(&format!("adding {} blocked jobs", args.blocked));
    add_blocked(queue, args.blocked).await?;
    let mut beside = Vec::new();
    for run in 1..=runs {
        let b = drain(queue, n, Shape::Independent).await?;
        progress(&format!(
            "run {run}: independent beside the blocked backlog {b:.0} jobs/s"
        ));
        beside.push(b);
    }
    Ok(json!({
        "suite": "workflow",
        "jobs": n,
        "runs": runs,
        "processes": k,
        "slots": args.slots,
        "blocked": args.blocked,
        "independent_jobs_per_sec": rounded(&solo),
        "chains_of_5_jobs_per_sec": rounded(&chains),
        "fan_out_100_jobs_per_sec": rounded(&fan),
        "beside_blocked_jobs_per_sec": rounded(&beside),
        "chains_vs_independent": ratio(median(&chains), median(&solo)),
        "fan_out_vs_independent": ratio(median(&fan), median(&solo)),
        "beside_blocked_vs_independent": ratio(median(&beside), median(&solo)),
    }))
}

/// Enqueues about `n` jobs of `shape` into the paused queue, resumes it and returns the
/// jobs/s of the drain.
async fn drain(queue: &Queue, n: usize, shape: Shape) -> anyhow::Result<f64> {
    queue.pause_queue(QUEUE).await?;
    let noop = || NewJob::new(QUEUE, "noop");
    let total = match shape {
        Shape::Independent => {
            for chunk in (0..n).map(|_| noop()).collect::<Vec<_>>().chunks(10_000) {
                queue.enqueue_many(chunk).await?;
            }
            n
        }
        Shape::Chains => {
            let mut jobs = Vec::new();
            for _ in 0..n / 5 {
                let steps = (0..5).map(|i| {
                    let j = WorkflowJob::new(i.to_string(), noop());
                    if i == 0 {
                        j
                    } else {
                        j.after([(i - 1).to_string()])
                    }
                });
                jobs.push(NewWorkflow {
                    name: "chain".into(),
                    jobs: steps.collect(),
                });
            }
            enqueue_all(queue, &jobs).await?;
            n / 5 * 5
        }
        Shape::FanOut => {
            let mut jobs = Vec::new();
            for _ in 0..(n / 101).max(1) {
                let mut members = vec![WorkflowJob::new("root", noop())];
                members.extend(
                    (0..100).map(|i| WorkflowJob::new(i.to_string(), noop()).after(["root"])),
                );
                jobs.push(NewWorkflow {
                    name: "fan".into(),
                    jobs: members,
                });
            }
            enqueue_all(queue, &jobs).await?;
            (n / 101).max(1) * 101
        }
    };
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(queue.pool())
        .await?;
    let start = Instant::now();
    queue.resume_queue(QUEUE).await?;
    wait_drained(queue).await?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Enqueues workflows from 8 connections at once (the enqueue is not what is measured).
async fn enqueue_all(queue: &Queue, wfs: &[NewWorkflow]) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for part in wfs.chunks(wfs.len().div_ceil(8).max(1)) {
        let (queue, part) = (queue.clone(), part.to_vec());
        tasks.spawn(async move {
            for wf in &part {
                queue.enqueue_workflow(wf).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Adds `n` jobs to the queue that wait for one job of a paused queue (they stay blocked).
async fn add_blocked(queue: &Queue, n: usize) -> anyhow::Result<()> {
    queue.pause_queue("hold").await?;
    let root = queue.enqueue(NewJob::new("hold", "noop")).await?.id;
    let mut left = n;
    while left > 0 {
        let m = left.min(5_000);
        let jobs: Vec<NewJob> = (0..m)
            .map(|_| NewJob::new(QUEUE, "noop").depends_on([root]))
            .collect();
        queue.enqueue_many(&jobs).await?;
        left -= m;
    }
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(queue.pool())
        .await?;
    Ok(())
}

/// Waits until the queue has no job left but blocked ones outside workflows. Index-backed
/// questions only (claim index, lease index, workflow index): a poll that scanned the
/// blocked backlog would slow the very burn-down it measures.
async fn wait_drained(queue: &Queue) -> anyhow::Result<()> {
    wait_until_drained(|| async {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgfleet.jobs WHERE queue = $1 \
                            AND state IN ('available', 'retryable')) \
                 OR EXISTS (SELECT 1 FROM pgfleet.jobs WHERE lease_until IS NOT NULL) \
                 OR EXISTS (SELECT 1 FROM pgfleet.jobs WHERE workflow_id IS NOT NULL)",
        )
        .bind(QUEUE)
        .fetch_one(queue.pool())
        .await?)
    })
    .await
}

/// The workflow suite as text.
pub fn print_workflow(r: &serde_json::Value) {
    println!(
        "pgfleet bench workflow ({} jobs, {} processes x {} slots, {} runs, PostgreSQL {} via {})",
        r["jobs"],
        r["processes"],
        r["slots"],
        r["runs"],
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  independent:        {} jobs/s",
        r["independent_jobs_per_sec"]
    );
    println!(
        "  chains of 5:        {} jobs/s   ratio of medians {}",
        r["chains_of_5_jobs_per_sec"], r["chains_vs_independent"]
    );
    println!(
        "  fan-out of 100:     {} jobs/s   ratio of medians {}",
        r["fan_out_100_jobs_per_sec"], r["fan_out_vs_independent"]
    );
    println!(
        "  beside {} blocked: {} jobs/s   ratio of medians {} (target >= 0.9)",
        r["blocked"], r["beside_blocked_jobs_per_sec"], r["beside_blocked_vs_independent"]
    );
}
