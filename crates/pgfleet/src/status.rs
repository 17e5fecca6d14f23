//! `pgfleet status`: queue statistics, workers and partition ownership.

use pgfleet_queue::Queue;

use crate::database::DbArgs;

/// `pgfleet status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `pgfleet status`.
///
/// # Errors
/// When the database is unreachable or not migrated.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let pool = args.db.connect().await?;
    let queue = Queue::new(pool).await?;
    let stats = queue.stats().await?;
    let workers = queue.workers(None).await?;
    let leases = queue.partition_leases(None).await?;
    let pools = queue.pools().await?;
    let limits = queue.flow_status(None).await?;
    let schedules = queue.schedules().await?;
    if args.json {
        let workers: Vec<_> = workers
            .iter()
            .map(|w| {
                let owned: Vec<i16> = leases
                    .iter()
                    .filter(|l| l.worker_id == w.id)
                    .map(|l| l.partition)
                    .collect();
                serde_json::json!({"id": w.id, "pool": w.pool, "queues": w.queues,
                    "concurrency": w.concurrency, "partitions": owned,
                    "heartbeat_at": w.heartbeat_at})
            })
            .collect();
        let out = serde_json::json!({"queues": stats, "limits": limits,
            "schedules": schedules, "workers": workers, "pools": pools});
        println!("{}", serde_json::to_string_pretty(&out)?);
        queue.close().await;
        return Ok(());
    }
    println!(
        "{:<20} {:>7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "QUEUE",
        "PAUSED",
        "AVAILABLE",
        "SCHEDULED",
        "RETRYING",
        "RUNNING",
        "BLOCKED",
        "DONE/S",
        "LAG(s)"
    );
    for q in &stats {
        let t = &q.total;
        println!(
            "{:<20} {:>7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9.1} {:>10.1}",
            q.queue,
            if q.paused { "yes" } else { "no" },
            t.available,
            t.scheduled,
            t.retryable,
            t.running,
            t.blocked,
            t.completed_per_sec(),
            t.oldest_available_age_secs
        );
    }
    if !limits.is_empty() {
        println!();
        println!("LIMITS");
        for l in &limits {
            println!("  {}", crate::queues::describe(l));
        }
    }
    if !schedules.is_empty() {
        println!();
        crate::schedule::print_table(&schedules);
    }
    if !pools.is_empty() {
        println!();
        println!(
            "{:<24} {:<10} {:>7} {:>7} {:>9} {:>8}  REASON",
            "POOL", "SOURCE", "DESIRED", "ACTUAL", "BACKLOG", "LAG(s)"
        );
        for p in &pools {
            println!(
                "{:<24} {:<10} {:>7} {:>7} {:>9} {:>8.1}  {}",
                p.name, p.source, p.desired, p.actual, p.backlog, p.lag_seconds, p.reason
            );
        }
    }
    println!();
    println!("{:<40} {:<12} {:>6}  PARTITIONS", "WORKER", "POOL", "SLOTS");
    for w in &workers {
        let owned: Vec<String> = leases
            .iter()
            .filter(|l| l.worker_id == w.id)
            .map(|l| l.partition.to_string())
            .collect();
        println!(
            "{:<40} {:<12} {:>6}  {}",
            w.id,
            w.pool,
            w.concurrency,
            owned.join(",")
        );
    }
    queue.close().await;
    Ok(())
}
