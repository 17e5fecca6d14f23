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
use crate::delivery::{DeliveryFlags, VapidFlags};
use crate::gateway::GatewayFlags;
use crate::worker::{Handlers, WorkerFlags};
use pgfleet_gateway::AppState;

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
    /// Gateway port on 127.0.0.1 (0: any free port).
    #[arg(long, env = "PGFLEET_PORT", default_value_t = 8080)]
    port: u16,
    /// Worker processes' worth of workers to run in this process (when no local pools).
    #[arg(long, env = "PGFLEET_DEV_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Directory of WorkerPool YAML files to run as autoscaled local pools instead of the
    /// fixed `--workers` (a directory without pools, or none: fixed workers).
    #[arg(long, env = "PGFLEET_DEV_POOLS", default_value = "samples")]
    pools: PathBuf,
    #[command(flatten)]
    worker: WorkerFlags,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(flatten)]
    vapid: VapidFlags,
    #[command(flatten)]
    delivery: DeliveryFlags,
}

/// Reads a dev credential from `path`, or makes one with `make` and keeps it there.
fn dev_secret(path: &std::path::Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_owned());
        }
    }
    let s = make();
    std::fs::write(path, &s)?;
    Ok(s)
}

/// The dev VAPID key pair, kept in `data_dir/dev-vapid-private-key` between runs.
fn dev_vapid_keys(data_dir: &std::path::Path) -> anyhow::Result<pgfleet_push::VapidKeys> {
    const SUBJECT: &str = "mailto:dev@pgfleet.localhost";
    let private = dev_secret(&data_dir.join("dev-vapid-private-key"), || {
        pgfleet_push::VapidKeys::generate(SUBJECT)
            .map(|k| k.private_key())
            .unwrap_or_default()
    })?;
    Ok(pgfleet_push::VapidKeys::from_base64url(
        &private, None, SUBJECT,
    )?)
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
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
                settings: Vec::new(),
            })?;
            ensure_database(&cluster.url("postgres"), "pgfleet").await?;
            (cluster.url("pgfleet"), Some(cluster))
        }
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("invalid database URL")?;
    // Two pools: the gateway's commits durably (acknowledged means committed); the
    // workers' uses asynchronous commit (a lost write there only means a re-run).
    let pool = connect_pool(options.clone(), args.db.pool_size_or(10)).await?;
    let partitions = pgfleet_queue::migrate::migrate(&pool, args.partitions).await?;
    let worker_pool = connect_pool(
        pgfleet_worker::worker_connect_options(options.clone()),
        args.db.pool_size_or(10),
    )
    .await?;
    std::fs::create_dir_all(&args.data_dir)?;
    let mut gateway = args.gateway.clone();
    if gateway.api_keys.is_empty() {
        let key = dev_secret(&args.data_dir.join("dev-api-key"), || {
            format!("pgf_dev_{}", hex_string(&random_bytes(16)))
        })?;
        gateway.api_keys = format!("{key}:admin");
    }
    if gateway.webhook_secrets.is_empty() {
        let secret = dev_secret(&args.data_dir.join("dev-webhook-secret"), || {
            use base64::Engine;
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(random_bytes(24))
            )
        })?;
        gateway.webhook_secrets = format!("payments={secret}");
    }
    let mut vapid = args.vapid.clone();
    if vapid.vapid_private_key.is_none() {
        let keys = dev_vapid_keys(&args.data_dir)?;
        vapid.vapid_public_key = Some(keys.public_key().to_owned());
        vapid.vapid_private_key = Some(keys.private_key());
        vapid.vapid_subject = Some(keys.subject().to_owned());
    }
    let mut delivery = args.delivery.clone();
    if delivery.messages_secret.is_none() {
        delivery.messages_secret = Some(dev_secret(
            &args.data_dir.join("dev-messages-secret"),
            || {
                use base64::Engine;
                format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode(random_bytes(24))
                )
            },
        )?);
    }
    // Browsers' push services are https, but a local fake or test service may be plain http.
    gateway.push_allow_http_loopback = true;
    let config = gateway.config(&vapid)?;
    let handlers = Handlers::from_flags(&vapid, &delivery)?;
    let queue = Queue::new(pool).await?;
    let worker_queue = Queue::new(worker_pool).await?;
    let stop = crate::shutdown_on_signal();
    // One registry for the gateway and the workers: http://…/metrics shows everything.
    let metrics = std::sync::Arc::new(pgfleet_telemetry::Metrics::new("dev"));
    let mut tasks = Vec::new();
    let local = if args.pools.as_os_str().is_empty() {
        Vec::new()
    } else {
        crate::local_pools::load(&args.pools)?
    };
    let rt = crate::local_pools::Runtime {
        observer: std::sync::Arc::new(pgfleet_controller::observe::Observer::new(queue.clone())),
        worker_queue: worker_queue.clone(),
        options: options.clone(),
        handlers: handlers.clone(),
        metrics: metrics.clone(),
        flags: args.worker.clone(),
    };
    for pool in local.iter().cloned() {
        let (rt, stop) = (rt.clone(), stop.clone());
        tasks.push(tokio::spawn(crate::local_pools::run(pool, rt, stop)));
    }
    let fixed = if local.is_empty() {
        args.workers.max(1)
    } else {
        0
    };
    for _ in 0..fixed {
        let worker =
            args.worker
                .build(&worker_queue, options.clone(), &handlers, metrics.clone())?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            worker.run(stop).await.map_err(anyhow::Error::from)
        }));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let state = AppState::with_metrics(queue.clone(), config, metrics);
    let server = tokio::spawn(pgfleet_gateway::serve(listener, state, stop.clone()));
    let url_file = args.data_dir.join("database-url");
    std::fs::write(&url_file, &url)?;
    print_banner(&url, addr, partitions.get(), &gateway);
    for p in &local {
        println!(
            "  local pool:      {} ({}..{} workers, queues {})",
            p.metadata.name.as_deref().unwrap_or("?"),
            p.spec.min_replicas,
            p.spec.max_replicas,
            pgfleet_controller::deployment::queues_arg(p)
        );
    }
    if args.status_every > 0 {
        tokio::spawn(report(
            queue.clone(),
            Duration::from_secs(args.status_every),
            stop.clone(),
        ));
    }
    println!("pgfleet ready: http://{addr}");
    stop.cancelled().await;
    server.await??;
    for t in tasks {
        t.await??;
    }
    queue.close().await;
    worker_queue.close().await;
    let _ = std::fs::remove_file(url_file);
    Ok(())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_banner(url: &str, addr: std::net::SocketAddr, partitions: u16, gateway: &GatewayFlags) {
    let key = gateway
        .api_keys
        .split(',')
        .next()
        .and_then(|k| k.rsplit_once(':'))
        .map(|(k, _)| k)
        .unwrap_or("");
    let secret = gateway
        .webhook_secrets
        .split(',')
        .find_map(|e| e.strip_prefix("payments="))
        .unwrap_or("(none for payments)");
    println!("pgfleet dev ({partitions} partitions)");
    println!("  database:        {url}");
    println!("  API:             http://{addr}/v1/jobs   (Authorization: Bearer {key})");
    println!("  page:            http://{addr}/   (push, notifications, queue stats)");
    println!("  docs:            http://{addr}/docs");
    println!("  payment webhook: http://{addr}/webhooks/payments   (secret {secret})");
    println!("  enqueue:         pgfleet enqueue sleep --payload '{{\"ms\": 50}}' --count 1000");
    println!("  stop:            Ctrl-C");
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
