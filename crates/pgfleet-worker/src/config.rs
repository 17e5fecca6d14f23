//! Worker settings.

use std::time::Duration;

use pgfleet_queue::backoff::Backoff;
use pgfleet_queue::claim::QueueOrder;
use pgfleet_queue::completer::CompleterConfig;
use pgfleet_queue::retention::Retention;

use crate::runtime::WorkerError;

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
    /// How often the worker looks for due periodic jobs (with `maintenance`).
    pub schedule_interval: Duration,
    /// How often handlers' progress reports are written (one statement for all).
    pub progress_interval: Duration,
    /// How often queue counts are sampled for the console's charts (with `maintenance`;
    /// one sample per interval fleet-wide).
    pub sample_interval: Duration,
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
            schedule_interval: Duration::from_millis(500),
            progress_interval: Duration::from_secs(1),
            sample_interval: Duration::from_secs(10),
            retention: Retention::default(),
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(25),
            completer: CompleterConfig::default(),
        }
    }
}

/// The settings an operator chooses (flags, environment, a WorkerPool), before the rules
/// that turn them into a [`WorkerConfig`] ([`WorkerConfig::from_settings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Pool name (partitions are leased per pool).
    pub pool: String,
    /// Queues, each `name` or `name:weight` (see [`parse_queues`]).
    pub queues: Vec<String>,
    /// Serve the queues in strict order.
    pub strict: bool,
    /// Concurrent job slots.
    pub concurrency: usize,
    /// Most jobs claimed ahead of free slots; `None`: 4 × the slots.
    pub prefetch: Option<usize>,
    /// Help with the partitions other workers own.
    pub steal: bool,
    /// Job lease.
    pub lease: Duration,
    /// Time before a silent worker's partitions go to the others.
    pub ownership_ttl: Duration,
    /// Time in-flight jobs may finish after a stop.
    pub shutdown_grace: Duration,
    /// Backstop poll period.
    pub poll_interval: Duration,
    /// Retry delays of failed attempts.
    pub backoff: Backoff,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            pool: "default".into(),
            queues: vec!["high:6".into(), "default:3".into(), "low:1".into()],
            strict: false,
            concurrency: 10,
            prefetch: None,
            steal: true,
            lease: Duration::from_secs(15),
            ownership_ttl: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(25),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
        }
    }
}

/// Queue names and the order among them, from `name[:weight]` entries: weights share
/// slots by weighted round robin, `strict` makes the order a strict priority, and without
/// either jobs compete by priority.
///
/// # Errors
/// [`WorkerError::Config`] for a weight that is not a positive integer.
pub fn parse_queues(
    entries: &[String],
    strict: bool,
) -> Result<(Vec<String>, QueueOrder), WorkerError> {
    let mut names = Vec::new();
    let mut weights = Vec::new();
    for entry in entries {
        let (name, weight) = match entry.split_once(':') {
            Some((n, w)) => {
                let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                    WorkerError::Config(format!(
                        "invalid queues: weight of {n:?} must be a positive integer, got {w:?}"
                    ))
                })?;
                (n.to_owned(), Some(w))
            }
            None => (entry.clone(), None),
        };
        names.push(name);
        weights.push(weight);
    }
    let order = if strict {
        QueueOrder::Strict
    } else if weights.iter().any(Option::is_some) {
        QueueOrder::Weighted(weights.into_iter().map(|w| w.unwrap_or(1)).collect())
    } else {
        QueueOrder::ByPriority
    };
    Ok((names, order))
}

impl WorkerConfig {
    /// The configuration `s` describes, with the rules that tie settings together: the
    /// prefetch defaults to 4 × the slots; the lease is at least 1 s and lost jobs are
    /// rescued every lease / 3 (at least 1 s); the ownership TTL is at least 1 s; the poll
    /// period at least 10 ms.
    ///
    /// # Errors
    /// [`WorkerError::Config`] for bad queue weights.
    pub fn from_settings(s: &WorkerSettings) -> Result<Self, WorkerError> {
        let (queues, order) = parse_queues(&s.queues, s.strict)?;
        let mut c = Self::new(&s.pool, queues);
        c.queue_order = order;
        c.concurrency = s.concurrency;
        c.prefetch = s.prefetch.unwrap_or(4 * s.concurrency);
        c.steal = s.steal;
        c.lease = s.lease.max(Duration::from_secs(1));
        c.rescue_interval = (c.lease / 3).max(Duration::from_secs(1));
        c.ownership_ttl = s.ownership_ttl.max(Duration::from_secs(1));
        c.shutdown_grace = s.shutdown_grace;
        c.poll_interval = s.poll_interval.max(Duration::from_millis(10));
        c.backoff = s.backoff;
        Ok(c)
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
    use super::*;

    #[test]
    fn settings_become_a_config_by_the_rules() {
        let s = WorkerSettings {
            lease: Duration::from_secs(30),
            concurrency: 7,
            ..WorkerSettings::default()
        };
        let c = WorkerConfig::from_settings(&s).unwrap();
        assert_eq!(c.queues, ["high", "default", "low"]);
        assert_eq!(c.queue_order, QueueOrder::Weighted(vec![6, 3, 1]));
        assert_eq!((c.concurrency, c.prefetch), (7, 28));
        assert_eq!(c.rescue_interval, Duration::from_secs(10));
        let tiny = WorkerSettings {
            lease: Duration::ZERO,
            queues: vec!["a".into(), "b".into()],
            strict: true,
            ..WorkerSettings::default()
        };
        let c = WorkerConfig::from_settings(&tiny).unwrap();
        assert_eq!(
            (c.lease, c.rescue_interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!(c.queue_order, QueueOrder::Strict);
        let plain = parse_queues(&["a".into()], false).unwrap();
        assert_eq!(plain.1, QueueOrder::ByPriority);
        let bad = parse_queues(&["a:0".into()], false)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("weight of \"a\" must be a positive integer"),
            "{bad}"
        );
    }

    #[test]
    fn pool_size_follows_the_slots() {
        assert_eq!(default_pool_size(1), 3);
        assert_eq!(default_pool_size(10), 3);
        assert_eq!(default_pool_size(50), 7);
        assert_eq!(default_pool_size(1000), 20);
    }
}
