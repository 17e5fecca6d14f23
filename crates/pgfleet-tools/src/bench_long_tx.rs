//! `pgfleet bench long-tx`: a steady load while a long transaction holds back the xmin
//! horizon (so vacuum can remove nothing), then after it ends.
//!
//! A producer enqueues at a fixed rate; one worker keeps up. Each phase reports completed jobs
//! per second and the dead tuples in `pgfleet.jobs`: before, during (an idle-in-transaction
//! session that took a snapshot), and after it commits. The ratio during / before is the degradation; after /
//! before the recovery.

use std::time::{Duration, Instant};

use pgfleet_queue::{NewJob, Queue};
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::bench::{progress, round2, BenchArgs};
use pgfleet_app::database::connect_pool;

async fn dead_tuples(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables \
         WHERE schemaname = 'pgfleet' AND relname = 'jobs'",
    )
    .fetch_one(pool)
    .await?)
}

async fn completed(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE queue = 'longtx'")
            .fetch_one(pool)
            .await?,
    )
}

/// Measures one phase of `secs`: completions per second and dead tuples at its end.
async fn phase(pool: &PgPool, secs: u64) -> anyhow::Result<(f64, i64)> {
    let c0 = completed(pool).await?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = completed(pool).await?;
    Ok((
        (c1 - c0) as f64 / t.elapsed().as_secs_f64(),
        dead_tuples(pool).await?,
    ))
}

/// Runs the suite on a fresh database at `options`.
///
/// # Errors
/// Database or worker failures.
pub async fn bench_long_tx(
    args: &BenchArgs,
    options: PgConnectOptions,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options.clone(), 10).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&pool)
        .await?;
    if autovacuum != "on" {
        progress("note: this server runs with autovacuum off; dead tuples can only grow");
    }
    let queue = Queue::new(pool.clone()).await?;
    let rate = args.long_tx_rate.max(10);
    let stop = CancellationToken::new();
    // The producer: `rate` jobs per second in batches every 50 ms.
    let producer = {
        let (queue, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move {
            let per_tick = (rate / 20).max(1) as usize;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.is_cancelled() {
                tick.tick().await;
                let jobs: Vec<NewJob> = (0..per_tick)
                    .map(|_| NewJob::new("longtx", "noop"))
                    .collect();
                queue.enqueue_many(&jobs).await?;
            }
            anyhow::Ok(())
        })
    };
    let worker_pool =
        connect_pool(pgfleet_worker::worker_connect_options(options.clone()), 10).await?;
    let worker_queue = Queue::new(worker_pool).await?;
    let mut config = WorkerConfig::new("bench", vec!["longtx".into()]);
    config.concurrency = 200;
    let worker = Worker::new(
        worker_queue.clone(),
        options.clone(),
        config,
        Registry::builtin(),
    )?;
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    let secs = args.long_tx_secs.max(1);
    let steady = (secs / 3).max(2);

    progress(&format!("long-tx: {rate} jobs/s; {steady} s before"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, dead_before) = phase(&pool, steady).await?;
    progress(&format!("  {before:.0} jobs/s, {dead_before} dead tuples"));

    progress(&format!("  a transaction holds a snapshot for {secs} s"));
    let mut holder = sqlx::PgConnection::connect_with(&options).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut holder)
        .await?;
    sqlx::query("SELECT txid_current(), count(*) FROM pgfleet.jobs")
        .execute(&mut holder)
        .await?;
    let (during, dead_during) = phase(&pool, secs).await?;
    progress(&format!("  {during:.0} jobs/s, {dead_during} dead tuples"));
    sqlx::query("COMMIT").execute(&mut holder).await?;
    holder.close().await?;

    // As long after as during: autovacuum visits a database once per naptime (1 min by
    // default), so a shorter window would not show it catching up.
    progress(&format!("  released; {secs} s after (vacuum catches up)"));
    let (after, dead_after) = phase(&pool, secs).await?;
    progress(&format!("  {after:.0} jobs/s, {dead_after} dead tuples"));

    stop.cancel();
    producer.await??;
    worker_task.await??;
    let backlog: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs WHERE queue = 'longtx'")
            .fetch_one(&pool)
            .await?;
    worker_queue.close().await;
    queue.close().await;
    Ok(json!({
        "suite": "long-tx",
        "rate": rate,
        "hold_seconds": secs,
        "jobs_per_sec": {"before": before.round(), "during": during.round(), "after": after.round()},
        "during_vs_before": round2(during / before.max(1.0)),
        "after_vs_before": round2(after / before.max(1.0)),
        "dead_tuples": {"before": dead_before, "during": dead_during, "after": dead_after},
        "backlog_at_end": backlog,
        "autovacuum": autovacuum,
    }))
}

/// Prints the suite's report.
pub fn print_long_tx(r: &serde_json::Value) {
    println!(
        "pgfleet bench long-tx (PostgreSQL {} via {}), {} jobs/s offered, snapshot held {} s",
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?"),
        r["rate"],
        r["hold_seconds"]
    );
    let j = &r["jobs_per_sec"];
    let d = &r["dead_tuples"];
    println!("  {:<8} {:>10} {:>12}", "phase", "jobs/s", "dead tuples");
    for p in ["before", "during", "after"] {
        println!("  {p:<8} {:>10} {:>12}", j[p], d[p]);
    }
    println!(
        "  during / before {:.2}, after / before {:.2}, backlog at end {}, autovacuum {}",
        r["during_vs_before"].as_f64().unwrap_or(0.0),
        r["after_vs_before"].as_f64().unwrap_or(0.0),
        r["backlog_at_end"],
        r["autovacuum"].as_str().unwrap_or("?")
    );
}
