//! `pgfleet worker`: serve a pool's queues with every registered kind until SIGTERM.

use std::time::Duration;

use anyhow::Context;
use pgfleet_app::{App, AppConfig, Kinds};
use pgfleet_worker::WorkerSettings;

use crate::database::DbArgs;
use crate::delivery::{DeliveryFlags, VapidFlags};

/// Worker flags (shared with `pgfleet dev`).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerFlags {
    /// Pool name (partitions are leased per pool).
    #[arg(long, env = "PGFLEET_POOL", default_value = "default")]
    pub pool: String,
    /// Queues to serve, comma separated, each with an optional weight:
    /// `high:6,default:3,low:1` shares slots 6/3/1 (weighted round robin); with `--strict`
    /// the order is a strict priority; without weights, jobs compete by priority.
    #[arg(
        long,
        env = "PGFLEET_QUEUES",
        value_delimiter = ',',
        default_value = "high:6,default:3,low:1"
    )]
    pub queues: Vec<String>,
    /// Serve the queues in strict order: a later queue only gets what earlier ones leave.
    #[arg(long, env = "PGFLEET_STRICT_QUEUES")]
    pub strict: bool,
    /// Concurrent job slots.
    #[arg(long, env = "PGFLEET_CONCURRENCY", default_value_t = 10)]
    pub concurrency: usize,
    /// Most jobs claimed ahead of free slots (default: 4 × the slots; how many are held
    /// adapts to the job rate and time, so slow jobs are not hoarded; 0 turns it off).
    #[arg(long, env = "PGFLEET_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Serve only the partitions this worker owns (no help with the rest of the backlog).
    #[arg(long, env = "PGFLEET_NO_STEAL")]
    pub no_steal: bool,
    /// Job lease in seconds; a lost worker's jobs run again within about twice this.
    #[arg(long, env = "PGFLEET_LEASE_SECS", default_value_t = 15)]
    pub lease_secs: u64,
    /// Seconds before a silent worker's partitions go to the others (with the lease, this
    /// bounds how soon a lost worker's jobs run again: about max(lease, ttl) + lease / 3).
    #[arg(long, env = "PGFLEET_OWNERSHIP_TTL_SECS", default_value_t = 10)]
    pub ownership_ttl_secs: u64,
    /// Seconds in-flight jobs may finish after SIGTERM.
    #[arg(long, env = "PGFLEET_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,
    /// Backstop poll period in milliseconds.
    #[arg(long, env = "PGFLEET_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,
}

impl WorkerFlags {
    /// The settings these flags describe (the rules that turn them into a worker
    /// configuration live in `pgfleet-worker`).
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            pool: self.pool.clone(),
            queues: self.queues.clone(),
            strict: self.strict,
            concurrency: self.concurrency,
            prefetch: self.prefetch,
            steal: !self.no_steal,
            lease: Duration::from_secs(self.lease_secs),
            ownership_ttl: Duration::from_secs(self.ownership_ttl_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            poll_interval: Duration::from_millis(self.poll_ms),
            ..WorkerSettings::default()
        }
    }
}

/// The optional kinds' clients from the flags; logs which kinds are off and why.
///
/// # Errors
/// Malformed keys, secrets or URLs.
pub fn kinds(vapid: &VapidFlags, delivery: &DeliveryFlags) -> anyhow::Result<Kinds> {
    let k = Kinds {
        push: delivery.push_client(vapid)?,
        messages: delivery.deliverer()?,
    };
    k.warn_disabled();
    Ok(k)
}

/// `pgfleet worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address of the health port (`/healthz`, `/readyz`); empty to disable.
    #[arg(long, env = "PGFLEET_HEALTH_ADDR", default_value = "127.0.0.1:9464")]
    health_addr: String,
    /// A direct PostgreSQL URL for the LISTEN connection, when the database URL goes through
    /// a transaction-pooling PgBouncer (LISTEN needs a session of its own).
    #[arg(
        long = "listen-database-url",
        env = "PGFLEET_LISTEN_DATABASE_URL",
        hide_env_values = true
    )]
    listen_url: Option<String>,
    #[command(flatten)]
    worker: WorkerFlags,
    #[command(flatten)]
    vapid: VapidFlags,
    #[command(flatten)]
    delivery: DeliveryFlags,
}

/// Runs `pgfleet worker` until SIGINT/SIGTERM.
///
/// # Errors
/// When the database is unreachable or the configuration is invalid.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let mut config = AppConfig::new(args.db.options()?, "worker");
    config.pool_size = args.db.pool_size;
    config.listen_database = match args.listen_url.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => Some(u.parse().context("invalid listen database URL")?),
        None => None,
    };
    config.workers = 1;
    config.worker = args.worker.settings();
    config.kinds = kinds(&args.vapid, &args.delivery)?;
    let app = App::build(config).await?;
    let health = match args.health_addr.as_str() {
        "" => None,
        addr => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "health port listening");
            Some(listener)
        }
    };
    app.run(health, crate::shutdown_on_signal()).await?;
    Ok(())
}
