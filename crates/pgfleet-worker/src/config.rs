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
    /// Most jobs claimed ahead of free slots (a leased local buffer, so a slot that frees
    /// starts its next job without a round trip). How many are actually held ahead adapts
    /// to what the slots consume during two claim round trips, so slow jobs are not hoarded
    /// ([`crate::prefetch`]). 0 turns claiming ahead off. Default 4 × the slots: measured
    /// in docs/benchmarks.md.
    pub prefetch: usize,
    /// Claim from partitions other workers own when the own ones leave slots free (work
    /// conservation: extra replicas, hot partitions and the tail of a burst are shared).
    pub steal: bool,
    /// After a claim from other workers' partitions found nothing, wait this long before the
    /// next one (a backstop poll always looks).
    pub steal_interval: Duration,
    /// Lease of a claimed job; extended by heartbeat while it runs.
    pub lease: Duration,
    /// Backstop poll period when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// Lease partitions by rendezvous hashing (`false`: serve every partition).
    pub own_partitions: bool,
    /// Time to live of the worker's registration and partition leases.
    pub ownership_ttl: Duration,
    /// How often the worker heartbeats and rebalances (also at once when a worker of its
    /// pool joins or leaves). At most a third of `ownership_ttl`.
    pub rebalance_interval: Duration,
    /// At a graceful stop, how long to keep serving while the other workers take over the
    /// partitions (they LISTEN before the leaver stops, so no wake-up is lost).
    pub handover_timeout: Duration,
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
    /// Production defaults: 10 slots with up to 40 jobs claimed ahead (4 × the slots; how
    /// many are held adapts, see [`crate::prefetch`]), 15 s leases rescued
    /// within 30 s, 1 s backstop poll, 10 s ownership TTL, rebalanced every second.
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
            prefetch: 40,
            steal: true,
            steal_interval: Duration::from_millis(100),
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            own_partitions: true,
            ownership_ttl: Duration::from_secs(10),
            rebalance_interval: Duration::from_secs(1),
            handover_timeout: Duration::from_secs(2),
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

/// The connection pool size a worker with `concurrency` slots needs: one connection for the
/// claim loop, one for the completer, and one more per 10 slots for heartbeats, ownership,
/// maintenance and handlers that use the database. Claims and outcomes are batched, so a
/// 10-slot worker needs 3 (plus its LISTEN connection): 24 replicas fit in PostgreSQL's
/// default `max_connections` of 100.
pub fn default_pool_size(concurrency: usize) -> u32 {
    let extra = concurrency.div_ceil(10).max(1);
    (2 + extra).min(20) as u32
}

#[cfg(test)]
mod tests {
    use super::default_pool_size;

    #[test]
    fn pool_size_follows_the_slots() {
        assert_eq!(default_pool_size(1), 3);
        assert_eq!(default_pool_size(10), 3);
        assert_eq!(default_pool_size(50), 7);
        assert_eq!(default_pool_size(1000), 20);
    }
}
