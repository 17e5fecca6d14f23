//! Membership: the worker's place in its pool, handed over without a listening gap.
//!
//! A worker owns (listens on, and claims first from) the partitions rendezvous hashing
//! gives it among the live workers of its pool. Ownership moves only in an order that keeps
//! a listener on every partition at every moment:
//!
//! - **join**: the share is computed from the live workers plus the newcomer
//!   ([`planned_share`]), the listener LISTENs on it, and only then is the worker registered
//!   ([`Membership::join`]); the pool is asked to rebalance at once, and an old owner drops a
//!   partition only when it sees the newcomer — who already listens.
//! - **steady state**: every `rebalance_interval` (and at once on a `rebalance:<pool>`
//!   control message or a listener reconnect) the worker heartbeats, recomputes its share,
//!   LISTENs on what it gained before UNLISTENing what it lost, and records its leases.
//! - **leave**: the worker stops heartbeating and marks itself gone ([`hand_over`]); the
//!   survivors LISTEN on its partitions and take its leases; it keeps claiming until they
//!   have (or the handover timeout passes).
//! - **crash**: a dead worker's LISTEN backend disappears with its process, so the
//!   survivors stop counting it at their next rebalance (within a second) instead of waiting
//!   for its registration to expire; meanwhile its partitions' jobs are stolen at the
//!   backstop poll.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pgfleet_queue::listener::Listener;
use pgfleet_queue::ownership::{rendezvous_partitions, WorkerInfo};
use pgfleet_queue::partition::channel;
use pgfleet_queue::QueueError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::runtime::Shared;

/// How long a joining worker waits for its listener's first connection before registering
/// anyway (the backstop poll covers a listener that cannot connect).
const LISTENER_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The share a worker will own once it joins: rendezvous over the live workers plus itself.
///
/// # Errors
/// [`QueueError::Database`].
pub(crate) async fn planned_share(shared: &Shared) -> Result<Vec<i16>, QueueError> {
    let cfg = &shared.config;
    let mut live = shared.queue.live_workers(&cfg.pool).await?;
    if !live.contains(&cfg.id) {
        live.push(cfg.id.clone());
    }
    Ok(rendezvous_partitions(
        &cfg.id,
        &live,
        shared.queue.partitions(),
    ))
}

/// The worker's membership: its registration, its listener's channels and the partitions it
/// owns (published to the feed through a watch channel).
pub(crate) struct Membership {
    shared: Arc<Shared>,
    info: WorkerInfo,
    owned: watch::Sender<Vec<i16>>,
    listener: Option<Arc<Listener>>,
}

impl Membership {
    /// Joins the pool: waits until the listener (already LISTENing on the planned share)
    /// is connected, registers, settles the share and leases, and asks the pool to
    /// rebalance so the old owners hand over now.
    ///
    /// # Errors
    /// [`QueueError::Database`] when the registration fails.
    pub(crate) async fn join(
        shared: Arc<Shared>,
        owned: watch::Sender<Vec<i16>>,
        listener: Option<Arc<Listener>>,
    ) -> Result<Self, QueueError> {
        let cfg = &shared.config;
        let info = WorkerInfo {
            id: cfg.id.clone(),
            pool: cfg.pool.clone(),
            queues: cfg.queues.clone(),
            concurrency: cfg.concurrency as i32,
        };
        if let Some(l) = &listener {
            let deadline = tokio::time::Instant::now() + LISTENER_READY_TIMEOUT;
            while l.stats().backend_pid.load(Ordering::Relaxed) == 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let m = Self {
            shared,
            info,
            owned,
            listener,
        };
        m.step().await?;
        if let Err(e) = m.shared.queue.request_rebalance(&m.info.pool).await {
            tracing::warn!(error = %e, "could not ask the pool to rebalance");
        }
        Ok(m)
    }

    /// Heartbeats and rebalances until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let cfg = &self.shared.config;
        let period = cfg
            .rebalance_interval
            .min(cfg.ownership_ttl / 3)
            .max(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.shared.rebalance.notified() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "partition rebalance failed");
            }
        }
    }

    /// One heartbeat: register, recompute the share, LISTEN on gains before UNLISTENing
    /// losses, publish it, record the leases.
    async fn step(&self) -> Result<(), QueueError> {
        let shared = &self.shared;
        let cfg = &shared.config;
        let pid = self
            .listener
            .as_ref()
            .map(|l| l.stats().backend_pid.load(Ordering::Relaxed))
            .filter(|&p| p != 0);
        let live = shared
            .queue
            .heartbeat(&self.info, pid, cfg.ownership_ttl)
            .await?;
        let share = rendezvous_partitions(&cfg.id, &live, shared.queue.partitions());
        let before = self.owned.borrow().clone();
        if share != before {
            let gained: Vec<i16> = share
                .iter()
                .copied()
                .filter(|p| !before.contains(p))
                .collect();
            if let Some(l) = &self.listener {
                for p in &gained {
                    let _ = l.subscribe(&channel(*p)).await;
                }
            }
            let _ = self.owned.send(share.clone());
            if let Some(l) = &self.listener {
                for p in before.iter().filter(|p| !share.contains(p)) {
                    let _ = l.unsubscribe(&channel(*p)).await;
                }
            }
            tracing::info!(worker = %shared.worker_id, partitions = ?share,
                "partition ownership changed");
            if !gained.is_empty() {
                shared.wake.notify_one();
            }
        }
        shared
            .queue
            .sync_leases(&self.info, &share, &live, cfg.ownership_ttl)
            .await?;
        Ok(())
    }
}

/// The graceful leave (the membership loop has stopped): marks the worker gone, which asks
/// the pool to rebalance, then waits until the others have taken its leases — they LISTEN
/// before they take — or the handover timeout passes. The feed keeps claiming meanwhile.
pub(crate) async fn hand_over(shared: &Shared) {
    let cfg = &shared.config;
    let queue = &shared.queue;
    if let Err(e) = queue.leave(&cfg.id).await {
        tracing::warn!(error = %e, "could not announce leaving; partitions move when the registration expires");
        return;
    }
    let others = queue
        .live_workers(&cfg.pool)
        .await
        .map(|l| l.iter().any(|w| *w != cfg.id))
        .unwrap_or(false);
    if !others {
        return;
    }
    let deadline = tokio::time::Instant::now() + cfg.handover_timeout;
    while tokio::time::Instant::now() < deadline {
        match queue.leases_held(&cfg.id).await {
            Ok(0) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => {
                tracing::warn!(error = %e, "handover check failed");
                return;
            }
        }
    }
    tracing::warn!("handover timed out; the remaining partitions move at the next rebalance");
}
