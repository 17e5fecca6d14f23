//! The notifier: wakes workers after enqueues with at most one NOTIFY per partition per
//! window.
//!
//! NOTIFY takes a cluster-wide lock at commit that serialises every notifying transaction,
//! so what costs is the number of notifying *transactions*. The notifier (a) never notifies
//! inside an enqueue's transaction, (b) flushes at once when it has not flushed for a window
//! (leading edge, for latency), and (c) otherwise coalesces everything that arrives in the
//! window into one trailing flush (for throughput). A flush is one statement signalling each
//! pending partition's channel once, so each partition gets at most one NOTIFY per window
//! and the cluster sees at most one notifying transaction per window per process. A lost
//! NOTIFY only delays work: workers also poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{QueueError, Result};
use crate::partition::{channel, PartitionCount};

/// PostgreSQL's NOTIFY payload limit is 8000 bytes including the terminator.
pub const MAX_PAYLOAD_BYTES: usize = 7999;

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// At most one flush (one notifying transaction) per window (default 2 ms, so at most
    /// 500 notifying transactions per second per process, however high the enqueue rate).
    pub window: Duration,
    /// Send on a connection of the notifier's own, with asynchronous commit (the default).
    /// `false` sends through the queue's pool — for a pool that already commits
    /// asynchronously, such as a worker's, where it saves one connection per process.
    pub dedicated_connection: bool,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(2),
            dedicated_connection: true,
        }
    }
}

impl NotifierConfig {
    /// Defaults, sending through the queue's own pool (see
    /// [`NotifierConfig::dedicated_connection`]).
    pub fn shared_pool() -> Self {
        Self {
            dedicated_connection: false,
            ..Self::default()
        }
    }
}

/// Counters of what the notifier did.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// NOTIFY channels signalled (one per partition per flush).
    pub notifications_sent: AtomicU64,
    /// Statements sent (one per flush).
    pub flushes: AtomicU64,
    /// Wake requests received (one per partition per enqueue).
    pub requests: AtomicU64,
    /// Flushes that failed (their partitions are re-queued).
    pub errors: AtomicU64,
}

struct Shared {
    pending: Mutex<Vec<bool>>,
    wake: Notify,
    stats: NotifierStats,
}

/// Handle on the notifier task. Cloning shares the task.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Notifier {
    /// Starts the notifier task on the current Tokio runtime. It sends on a connection of its
    /// own, made from `pool`'s options with asynchronous commit: a wake-up lost in a crash
    /// costs latency, never a job, and a WAL flush would otherwise sit on every job's path to
    /// a worker. A connection of its own (rather than a transaction-local setting on the
    /// producer's pool) guarantees the producer's enqueues keep their durable commit.
    pub fn spawn(pool: PgPool, partitions: PartitionCount, config: NotifierConfig) -> Self {
        let pool = if config.dedicated_connection {
            let options = (*pool.connect_options())
                .clone()
                .options([("synchronous_commit", "off")])
                .application_name("pgfleet-notifier");
            PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options)
        } else {
            pool
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(vec![false; partitions.get() as usize]),
            wake: Notify::new(),
            stats: NotifierStats::default(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(pool, shared.clone(), config, cancel.clone()));
        Self {
            shared,
            cancel,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Asks for a wake-up of these partitions (after the jobs are committed).
    pub fn wake(&self, partitions: &[i16]) {
        if partitions.is_empty() {
            return;
        }
        if let Ok(mut pending) = self.shared.pending.lock() {
            for &p in partitions {
                if let Some(slot) = pending.get_mut(p as usize) {
                    *slot = true;
                }
            }
        }
        self.shared
            .stats
            .requests
            .fetch_add(partitions.len() as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// The notifier's counters.
    pub fn stats(&self) -> &NotifierStats {
        &self.shared.stats
    }

    /// Sends what is pending, then stops the task.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(pool: PgPool, shared: Arc<Shared>, config: NotifierConfig, cancel: CancellationToken) {
    let mut last_flush: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let ready_at = last_flush.map(|t| t + config.window);
        let draining = cancel.is_cancelled();
        let mut due = Vec::new();
        if draining || ready_at.is_none_or(|r| r <= now) {
            if let Ok(mut pending) = shared.pending.lock() {
                for (p, flag) in pending.iter_mut().enumerate() {
                    if std::mem::take(flag) {
                        due.push(p as i16);
                    }
                }
            }
        }
        if !due.is_empty() {
            match send(&pool, &due).await {
                Ok(()) => {
                    last_flush = Some(now);
                    let stats = &shared.stats;
                    stats.flushes.fetch_add(1, Ordering::Relaxed);
                    stats
                        .notifications_sent
                        .fetch_add(due.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    // Workers poll, so a failed wake-up costs latency only; back off a little.
                    tracing::warn!(error = %e, "notifier: NOTIFY failed");
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if draining {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        if draining {
            if config.dedicated_connection {
                pool.close().await;
            }
            return;
        }
        let has_pending = shared
            .pending
            .lock()
            .map(|p| p.iter().any(|f| *f))
            .unwrap_or(false);
        tokio::select! {
            _ = shared.wake.notified(), if !has_pending => {}
            _ = async {
                match ready_at {
                    Some(r) if has_pending => tokio::time::sleep_until(r).await,
                    _ => std::future::pending().await,
                }
            } => {}
            _ = cancel.cancelled() => {}
        }
    }
}

async fn send(pool: &PgPool, partitions: &[i16]) -> Result<()> {
    let channels: Vec<String> = partitions.iter().map(|&p| channel(p)).collect();
    sqlx::query("SELECT pg_notify(c, '') FROM unnest($1::text[]) AS c")
        .bind(&channels)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sends one NOTIFY with a payload, refusing (never truncating) a payload over
/// [`MAX_PAYLOAD_BYTES`].
///
/// # Errors
/// [`QueueError::Invalid`] naming `payload` when it is too large; [`QueueError::Database`].
pub async fn notify(pool: &PgPool, channel: &str, payload: &str) -> Result<()> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(QueueError::invalid(
            "payload",
            format!(
                "NOTIFY payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}
