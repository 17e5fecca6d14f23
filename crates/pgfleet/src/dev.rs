//! `pgfleet dev`: pgfleet on a laptop in one command.
//!
//! Uses `DATABASE_URL` when set; otherwise starts a private PostgreSQL cluster from the local
//! install under the data directory (kept between runs, stopped when this process exits),
//! applies migrations, records the database URL for the other subcommands, and runs a worker
//! with the built-in handlers until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pgfleet_app::database::DEFAULT_DATA_DIR;
use pgfleet_app::{App, AppConfig};
use pgfleet_pgembed::{EmbedConfig, Server};
use pgfleet_queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::database::DbArgs;
use crate::delivery::{DeliveryFlags, VapidFlags};
use crate::gateway::GatewayFlags;
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
    /// YAML file of schedules and queue limits to apply at start (missing: none; see
    /// `pgfleet schedule apply`).
    #[arg(
        long,
        env = "PGFLEET_DEV_SCHEDULES",
        default_value = "samples/schedules/dev.yaml"
    )]
    schedules: PathBuf,
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
        .or_else(|| std::env::var("DATABASE_URL").ok());
    let data_dir = std::path::absolute(&args.data_dir)?;
    let pg = Server::url_or_start(explicit, || {
        let dir = data_dir.join("pg");
        eprintln!("starting a private PostgreSQL in {} ...", dir.display());
        EmbedConfig {
            dir,
            temporary: false,
            fast_unsafe: false,
            port: args.pg_port,
            settings: Vec::new(),
        }
    })?;
    let url = match &pg {
        Server::External(url) => url.clone(),
        Server::Private(_) => pg.create_database("pgfleet").await?,
    };
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
    let mut config = AppConfig::new(url.parse().context("invalid database URL")?, "dev");
    config.pool_size = args.db.pool_size;
    config.partitions = args.partitions;
    config.gateway = Some(gateway.config(&vapid)?);
    config.worker = args.worker.settings();
    config.kinds = crate::worker::kinds(&vapid, &delivery)?;
    config.local_pools = if args.pools.as_os_str().is_empty() {
        Vec::new()
    } else {
        pgfleet_app::local_pools::load(&args.pools)?
    };
    config.workers = args.workers.max(1);
    let declared = pgfleet_app::declared::Declared::load(&args.schedules)?;
    let app = App::build(config).await?;
    let applied = declared.apply(app.queue(), false).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let url_file = args.data_dir.join("database-url");
    std::fs::write(&url_file, &url)?;
    print_banner(&url, addr, app.partitions().get(), &gateway);
    for p in &app.config().local_pools {
        println!(
            "  local pool:      {} ({}..{} workers, queues {})",
            p.metadata.name.as_deref().unwrap_or("?"),
            p.spec.min_replicas,
            p.spec.max_replicas,
            pgfleet_controller::deployment::queues_arg(p)
        );
    }
    if applied.schedules + applied.limits > 0 {
        println!(
            "  declared:        {} schedules, limits of {} queues ({})",
            applied.schedules,
            applied.limits,
            args.schedules.display()
        );
    }
    let stop = crate::shutdown_on_signal();
    if args.status_every > 0 {
        tokio::spawn(report(
            app.queue().clone(),
            Duration::from_secs(args.status_every),
            stop.clone(),
        ));
    }
    println!("pgfleet ready: http://{addr}");
    let result = app.run(Some(listener), stop).await;
    let _ = std::fs::remove_file(url_file);
    drop(pg);
    Ok(result?)
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
