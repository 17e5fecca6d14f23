//! `pgfleet worker`: serve a pool's queues with the built-in handlers until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgfleet_queue::claim::QueueOrder;
use pgfleet_queue::notify::NotifierConfig;
use pgfleet_queue::Queue;
use pgfleet_telemetry::Metrics;
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use sqlx::postgres::PgConnectOptions;

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
    /// Queue names and the order among them, from `name[:weight]` entries.
    ///
    /// # Errors
    /// A weight that is not a positive integer.
    pub fn queue_order(&self) -> anyhow::Result<(Vec<String>, QueueOrder)> {
        let mut names = Vec::new();
        let mut weights = Vec::new();
        for entry in &self.queues {
            let (name, weight) = match entry.split_once(':') {
                Some((n, w)) => {
                    let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                        anyhow::anyhow!(
                            "invalid queues: weight of {n:?} must be a positive integer, got {w:?}"
                        )
                    })?;
                    (n.to_owned(), Some(w))
                }
                None => (entry.clone(), None),
            };
            names.push(name);
            weights.push(weight);
        }
        let order = if self.strict {
            QueueOrder::Strict
        } else if weights.iter().any(Option::is_some) {
            QueueOrder::Weighted(weights.into_iter().map(|w| w.unwrap_or(1)).collect())
        } else {
            QueueOrder::ByPriority
        };
        Ok((names, order))
    }

    /// The worker configuration these flags describe.
    ///
    /// # Errors
    /// Invalid queue weights.
    pub fn config(&self) -> anyhow::Result<WorkerConfig> {
        let (queues, order) = self.queue_order()?;
        let mut c = WorkerConfig::new(&self.pool, queues);
        c.queue_order = order;
        c.concurrency = self.concurrency;
        c.prefetch = self.prefetch.unwrap_or(4 * self.concurrency);
        c.steal = !self.no_steal;
        c.lease = Duration::from_secs(self.lease_secs.max(1));
        c.rescue_interval = (c.lease / 3).max(Duration::from_secs(1));
        c.ownership_ttl = Duration::from_secs(self.ownership_ttl_secs.max(1));
        c.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        c.poll_interval = Duration::from_millis(self.poll_ms.max(10));
        Ok(c)
    }

    /// A worker on `queue` with the built-in handlers, `payments.process`, and — when
    /// configured — `webpush.deliver` and `messages.deliver`, recording into `metrics`;
    /// `options` is used for its listener.
    ///
    /// # Errors
    /// When the configuration is invalid (no queue, zero concurrency, a bad queue name).
    pub fn build(
        &self,
        queue: &Queue,
        options: PgConnectOptions,
        handlers: &Handlers,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Worker> {
        let mut registry = Registry::builtin();
        registry.with_payments(queue.clone());
        if let Some(push) = &handlers.push {
            registry.with_push(queue.pool().clone(), push.clone(), metrics.clone());
        }
        if let Some(d) = &handlers.messages {
            registry.with_messages(queue.pool().clone(), d.clone(), metrics.clone());
        }
        Ok(Worker::new(queue.clone(), options, self.config()?, registry)?.with_metrics(metrics))
    }
}

/// The configured delivery handlers a worker registers.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    /// Web Push (needs VAPID keys).
    pub push: Option<pgfleet_push::PushClient>,
    /// Outbound messages (needs a signing secret).
    pub messages: Option<pgfleet_messages::Deliverer>,
}

impl Handlers {
    /// Handlers from the flags; logs which kinds are off and why.
    ///
    /// # Errors
    /// Malformed keys, secrets or URLs.
    pub fn from_flags(vapid: &VapidFlags, delivery: &DeliveryFlags) -> anyhow::Result<Self> {
        let h = Self {
            push: delivery.push_client(vapid)?,
            messages: delivery.deliverer()?,
        };
        if h.push.is_none() {
            tracing::warn!("webpush.deliver is off: set PGFLEET_VAPID_PRIVATE_KEY and PGFLEET_VAPID_SUBJECT (pgfleet vapid generate)");
        }
        if h.messages.is_none() {
            tracing::warn!("messages.deliver is off: set PGFLEET_MESSAGES_SECRET (whsec_...)");
        }
        Ok(h)
    }
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
    let options = args.db.options()?;
    let worker_options = pgfleet_worker::worker_connect_options(options.clone());
    let size = args
        .db
        .pool_size_or(pgfleet_worker::default_pool_size(args.worker.concurrency));
    let pool = crate::database::connect_pool(worker_options, size).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    // The worker's pool already commits asynchronously: the notifier shares it.
    let queue = Queue::with_notifier(pool, NotifierConfig::shared_pool()).await?;
    let handlers = Handlers::from_flags(&args.vapid, &args.delivery)?;
    let metrics = Arc::new(Metrics::new("worker"));
    let listen_options = match args.listen_url.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => u.parse().context("invalid listen database URL")?,
        None => options,
    };
    let worker = args
        .worker
        .build(&queue, listen_options, &handlers, metrics)?;
    let stop = crate::shutdown_on_signal();
    if !args.health_addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(&args.health_addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.health_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "health port listening");
        let health = pgfleet_worker::health::serve(
            listener,
            queue.pool().clone(),
            worker.readiness(),
            worker.metrics(),
            stop.clone(),
        );
        tokio::spawn(health);
    }
    worker.run(stop).await?;
    queue.close().await;
    Ok(())
}
