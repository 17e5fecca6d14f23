//! Worker settings.

use std::time::Duration;

use pgfleet_queue::backoff::Backoff;
use pgfleet_queue::claim::QueueOrder;
use pgfleet_queue::completer::CompleterConfig;
use pgfleet_queue::retention::Retention;

/// How a worker runs. [`WorkerConfig::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique id of this worker process.
    pub id: String,
    /// The pool it belongs to (partitions are leased per pool).
    pub pool: String,
    /// Queues served.
    pub queues: Vec<String>,
    /// How claims share slots among the queues (by job priority, strict, or weighted).
    pub queue_order: QueueOrder,
    /// Concurrent job slots.
    pub concurrency: usize,
    /// Most jobs per claim statement.
    pub max_claim: usize,
    /// Lease of a claimed job; extended by heartbeat while it runs.
    pub lease: Duration,
    /// Backstop poll period when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// After a full claim, wait this long for more free slots before claiming again.
    pub fetch_cooldown: Duration,
    /// Lease partitions by rendezvous hashing (`false`: serve every partition).
    pub own_partitions: bool,
    /// Time to live of the worker's registration and partition leases.
    pub ownership_ttl: Duration,
    /// Listen for NOTIFY wake-ups (`false`: poll only).
    pub listen: bool,
    /// Run the rescuer and the cleaner (one process at a time does the work).
    pub maintenance: bool,
    /// Rescuer period.
    pub rescue_interval: Duration,
    /// Retention of finished jobs.
    pub retention: Retention,
    /// Retry backoff.
    pub backoff: Backoff,
    /// How long in-flight jobs may finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// Completer batching.
    pub completer: CompleterConfig,
}

impl WorkerConfig {
    /// Production defaults: 10 slots, 15 s leases rescued within 30 s, 1 s backstop poll,
    /// 10 s ownership TTL.
    pub fn new(pool: impl Into<String>, queues: Vec<String>) -> Self {
        let pool = pool.into();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let id = format!(
            "{pool}-{host}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        Self {
            id,
            pool,
            queues,
            queue_order: QueueOrder::ByPriority,
            concurrency: 10,
            max_claim: 1000,
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            fetch_cooldown: Duration::from_millis(1),
            own_partitions: true,
            ownership_ttl: Duration::from_secs(10),
            listen: true,
            maintenance: true,
            rescue_interval: Duration::from_secs(5),
            retention: Retention::default(),
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(25),
            completer: CompleterConfig::default(),
        }
    }
}
