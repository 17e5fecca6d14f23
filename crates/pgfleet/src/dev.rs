//! `pgfleet dev`: pgfleet on a laptop in one command.
//!
//! Uses `DATABASE_URL` when set; otherwise starts a private PostgreSQL cluster from the local
//! install under the data directory (kept between runs, stopped when this process exits),
//! applies migrations, records the database URL for the other subcommands, and runs a worker
//! with the built-in handlers until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pgfleet_pgembed::{Cluster, EmbedConfig};
use pgfleet_queue::Queue;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::database::{connect_pool, DbArgs, DEFAULT_DATA_DIR};
use crate::worker::WorkerFlags;

/// `pgfleet dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where the private cluster and local state live.
    #[arg(long, env = "PGFLEET_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Port of the private cluster (default: a free one).
    #[arg(long, env = "PGFLEET_DEV_PG_PORT")]
    pg_port: Option<u16>,
    /// Partition count on first install.
    #[arg(long, env = "PGFLEET_PARTITIONS")]
    partitions: Option<u16>,
    /// Print queue statistics every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    status_every: u64,
    #[command(flatten)]
    worker: WorkerFlags,
}

/// Runs `pgfleet dev` until SIGINT/SIGTERM.
///
/// # Errors
/// When PostgreSQL can be neither reached nor started.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let explicit = args
        .db
        .url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|u| !u.is_empty());
    let (url, _cluster) = match explicit {
        Some(url) => (url, None),
        None => {
            let dir = std::path::absolute(args.data_dir.join("pg"))?;
            eprintln!("starting a private PostgreSQL in {} ...", dir.display());
            let cluster = Cluster::start(&EmbedConfig {
                dir,
                temporary: false,
                fast_unsafe: false,
                port: args.pg_port,
            })?;
            ensure_database(&cluster.url("postgres"), "pgfleet").await?;
            (cluster.url("pgfleet"), Some(cluster))
        }
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("invalid database URL")?;
    let worker_options = pgfleet_worker::worker_connect_options(options.clone());
    let pool = connect_pool(worker_options, args.db.pool_size).await?;
    let partitions = pgfleet_queue::migrate::migrate(&pool, args.partitions).await?;
    std::fs::create_dir_all(&args.data_dir)?;
    let url_file = args.data_dir.join("database-url");
    std::fs::write(&url_file, &url)?;
    let queue = Queue::new(pool).await?;
    let worker = args.worker.build(&queue, options)?;
    println!("pgfleet dev is running ({} partitions)", partitions.get());
    println!("  database:  {url}");
    println!("  enqueue:   pgfleet enqueue sleep --payload '{{\"ms\": 50}}' --count 1000");
    println!("  status:    pgfleet status");
    println!("  stop:      Ctrl-C");
    let stop = crate::shutdown_on_signal();
    if args.status_every > 0 {
        tokio::spawn(report(
            queue.clone(),
            Duration::from_secs(args.status_every),
            stop.clone(),
        ));
    }
    worker.run(stop).await?;
    queue.close().await;
    let _ = std::fs::remove_file(url_file);
    Ok(())
}

async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

async fn report(queue: Queue, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        match queue.stats().await {
            Ok(stats) => {
                for q in stats {
                    let t = &q.total;
                    tracing::info!(queue = %q.queue, available = t.available, running = t.running,
                        retryable = t.retryable, done_per_sec = format!("{:.1}", t.completed_per_sec()),
                        lag_secs = format!("{:.1}", t.oldest_available_age_secs), "queue");
                }
            }
            Err(e) => tracing::warn!(error = %e, "stats failed"),
        }
    }
}
