//! # pgfleet-queue
//!
//! The PostgreSQL job queue at the heart of pgfleet, usable as a library on its own:
//! enqueue (one, many, or inside your transaction), claim with `FOR UPDATE SKIP LOCKED`,
//! finalize in batches, retry with backoff, rescue jobs of lost workers, lease partitions to
//! workers, wake workers with coalesced per-partition NOTIFY, and report statistics.
//!
//! Invariants (see ARCHITECTURE.md):
//! - a job is held by at most one worker at a time (row locks + `state = 'running'` +
//!   attempt fencing on every write a worker makes);
//! - nothing acknowledged is lost: every enqueue commits before it returns, and a running
//!   job whose worker disappears is rescued when its lease expires;
//! - at most one NOTIFY per partition per notifier window, sent after commit;
//! - this crate knows neither HTTP nor Kubernetes.

pub mod admin;
pub mod args;
pub mod backoff;
pub mod claim;
pub mod completer;
pub mod enqueue;
pub mod error;
pub mod failures;
pub mod finalize;
pub mod flow;
pub mod history;
pub mod job;
pub mod listener;
pub mod migrate;
pub mod notify;
pub mod output;
pub mod ownership;
pub mod partition;
pub mod pools;
pub mod rescue;
pub mod retention;
pub mod schedule;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod search;
pub mod serde_int;
pub mod stats;
pub mod workflow;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;

pub use args::{ArgsError, JobArgs, KindDefaults};
pub use error::{QueueError, Result};
pub use job::{DependencyFailure, Job, JobState, NewJob};
pub use partition::PartitionCount;

use notify::Notifier;

/// A handle on the queue: a connection pool, the installed partition count and the
/// notifier that wakes workers after enqueues. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    partitions: PartitionCount,
    notifier: Notifier,
    /// Queue names this process has already registered in `pgfleet.queues`.
    known_queues: Mutex<HashSet<String>>,
    /// Which queues are flow-controlled, as last read.
    flow: Mutex<flow::FlowCache>,
}

impl Queue {
    /// Connects to an installed schema (run [`migrate::migrate`] first) and starts the
    /// notifier task with default settings. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`QueueError::NotMigrated`] when the schema is missing.
    pub async fn new(pool: PgPool) -> Result<Self> {
        Self::with_notifier(pool, notify::NotifierConfig::default()).await
    }

    /// Like [`Queue::new`] with explicit notifier settings.
    ///
    /// # Errors
    /// [`QueueError::NotMigrated`] when the schema is missing.
    pub async fn with_notifier(pool: PgPool, config: notify::NotifierConfig) -> Result<Self> {
        let partitions = migrate::installed_partitions(&pool).await?;
        let notifier = Notifier::spawn(pool.clone(), partitions, config);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                partitions,
                notifier,
                known_queues: Mutex::new(HashSet::new()),
                flow: Mutex::default(),
            }),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The installed partition count.
    pub fn partitions(&self) -> PartitionCount {
        self.inner.partitions
    }

    /// The notifier (for its counters and to wake partitions by hand).
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// Stops the notifier after it has sent what is pending.
    pub async fn close(&self) {
        self.inner.notifier.shutdown().await;
    }
}
