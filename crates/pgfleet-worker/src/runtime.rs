//! The worker runtime: one process serving a pool.
//!
//! Tasks, all stopped by the shutdown token:
//! - **claim loop**: claims up to its free slots in one statement from the partitions it
//!   owns, spawns one task per job, and sleeps until a wake-up, the backstop poll, or a
//!   freed slot;
//! - **ownership**: heartbeats the worker row and rebalances partition leases, adjusting
//!   the listener's channels;
//! - **wake-ups**: turns NOTIFY messages into claim-loop wake-ups and control messages
//!   (cancel) into job cancellations;
//! - **heartbeat**: extends the leases of long-running jobs and learns of cancellations;
//! - **maintenance**: rescuer and cleaner (one process at a time does the work).
//!
//! Shutdown: stop claiming, let in-flight jobs finish within the grace period, release the
//! rest without spending an attempt, flush the completer, deregister.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use pgfleet_queue::claim::ClaimRequest;
use pgfleet_queue::completer::Completer;
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::listener::{Listener, ListenerConfig, Message};
use pgfleet_queue::ownership::WorkerInfo;
use pgfleet_queue::partition::{channel, partition_of_channel, CONTROL_CHANNEL};
use pgfleet_queue::{Job, Queue, QueueError};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::handler::{Disposition, JobContext, Registry};
use crate::health::Readiness;
use pgfleet_telemetry::Metrics;

/// Why the worker stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The queue failed at start (not migrated, database unreachable).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The configuration is unusable.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// Counters of a worker's work.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs claimed.
    pub claimed: AtomicU64,
    /// Claim statements sent.
    pub claims: AtomicU64,
    /// Attempts that succeeded.
    pub completed: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Attempts that failed for good.
    pub discarded: AtomicU64,
    /// Attempts stopped by cancellation.
    pub cancelled: AtomicU64,
    /// Attempts given back at shutdown.
    pub released: AtomicU64,
    /// Handlers that panicked.
    pub panicked: AtomicU64,
    /// Wake-ups received.
    pub wakeups: AtomicU64,
}

const STOP_NONE: u8 = 0;
const STOP_SHUTDOWN: u8 = 1;
const STOP_CANCEL: u8 = 2;
const STOP_LOST: u8 = 3;

struct Running {
    attempt: i32,
    started: Instant,
    cancel: CancellationToken,
    reason: Arc<AtomicU8>,
}

struct Shared {
    queue: Queue,
    config: WorkerConfig,
    registry: Registry,
    worker_id: Arc<str>,
    slots: Arc<Semaphore>,
    slot_freed: Notify,
    wake: Notify,
    running: Mutex<HashMap<i64, Running>>,
    stats: Arc<WorkerStats>,
    ready: Readiness,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn stop_job(&self, id: i64, reason: u8) -> bool {
        let running = self.running.lock().ok();
        match running.as_ref().and_then(|r| r.get(&id)) {
            Some(job) => {
                job.reason.store(reason, Ordering::Relaxed);
                job.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// A worker serving one pool.
pub struct Worker {
    shared: Arc<Shared>,
    connect: PgConnectOptions,
}

impl Worker {
    /// A worker for `queue` with `registry`'s handlers; `connect` is used for the listener's
    /// dedicated connection.
    ///
    /// # Errors
    /// [`WorkerError::Config`] for an empty queue list or zero concurrency.
    pub fn new(
        queue: Queue,
        connect: PgConnectOptions,
        config: WorkerConfig,
        registry: Registry,
    ) -> Result<Self, WorkerError> {
        if config.queues.is_empty() {
            return Err(WorkerError::Config("at least one queue".into()));
        }
        if config.concurrency == 0 {
            return Err(WorkerError::Config("concurrency must be at least 1".into()));
        }
        for q in &config.queues {
            pgfleet_queue::job::validate_queue_name(q)?;
        }
        let shared = Arc::new(Shared {
            worker_id: Arc::from(config.id.as_str()),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            slot_freed: Notify::new(),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            stats: Arc::new(WorkerStats::default()),
            ready: Readiness::default(),
            metrics: Arc::new(Metrics::new("worker")),
            queue,
            config,
            registry,
        });
        Ok(Self { shared, connect })
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.shared.stats.clone()
    }

    /// Records into `metrics` instead of the worker's own registry (several workers in one
    /// process share one `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.metrics = metrics;
        }
        self
    }

    /// The worker's Prometheus metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The readiness flag (for the health port): set while the worker serves.
    pub fn readiness(&self) -> Readiness {
        self.shared.ready.clone()
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully.
    ///
    /// # Errors
    /// [`WorkerError::Queue`] when the first registration fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let shared = self.shared;
        let background = Background::start(&shared, self.connect).await?;
        let cfg = &shared.config;
        tracing::info!(worker = %shared.worker_id, pool = %cfg.pool, queues = ?cfg.queues,
            concurrency = cfg.concurrency, partitions = ?*background.owned.borrow(),
            "worker started");
        let completer = Completer::spawn(shared.queue.clone(), cfg.id.clone(), cfg.completer);
        shared.ready.set(true);
        claim_loop(
            &shared,
            background.owned.clone(),
            completer.sender(),
            &shutdown,
        )
        .await;
        shared.ready.set(false);
        drain(&shared).await;
        completer.close().await;
        background.stop(&shared).await;
        tracing::info!(worker = %shared.worker_id, "worker stopped");
        Ok(())
    }
}

/// The worker's tasks besides the claim loop, and the partitions it owns.
struct Background {
    owned: watch::Receiver<Vec<i16>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
    listener: Option<Arc<Listener>>,
}

impl Background {
    /// Registers the worker, takes its first partitions and starts the listener, the
    /// wake-up dispatcher, the ownership loop, the heartbeat and maintenance.
    async fn start(shared: &Arc<Shared>, connect: PgConnectOptions) -> Result<Self, WorkerError> {
        let cfg = &shared.config;
        let info = WorkerInfo {
            id: cfg.id.clone(),
            pool: cfg.pool.clone(),
            queues: cfg.queues.clone(),
            concurrency: cfg.concurrency as i32,
        };
        let initial = if cfg.own_partitions {
            shared.queue.rebalance(&info, cfg.ownership_ttl).await?
        } else {
            shared.queue.partitions().all()
        };
        let (owned_tx, owned) = watch::channel(initial.clone());
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let listener = cfg.listen.then(|| {
            let mut lc = ListenerConfig::new(connect);
            lc.channels = initial.iter().map(|&p| channel(p)).collect();
            lc.channels.push(CONTROL_CHANNEL.to_owned());
            let metrics = shared.metrics.clone();
            let hook: pgfleet_queue::listener::Hook = Arc::new(move |e| {
                if *e == pgfleet_queue::listener::ListenerEvent::Reconnected {
                    metrics.listener_reconnects.inc();
                }
            });
            let (listener, messages) = Listener::spawn(lc, Some(hook));
            tasks.push(tokio::spawn(dispatch(
                shared.clone(),
                messages,
                owned.clone(),
            )));
            Arc::new(listener)
        });
        if cfg.own_partitions {
            let l = listener.clone();
            let task = ownership_loop(shared.clone(), info, owned_tx, l, stop.clone());
            tasks.push(tokio::spawn(task));
        }
        tasks.push(tokio::spawn(heartbeat_loop(shared.clone(), stop.clone())));
        if cfg.maintenance {
            tasks.push(tokio::spawn(maintenance_loop(shared.clone(), stop.clone())));
        }
        Ok(Self {
            owned,
            tasks,
            stop,
            listener,
        })
    }

    /// Stops every task, closes the listener and deregisters (releasing partitions at once).
    async fn stop(mut self, shared: &Shared) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(listener) = self.listener.take().and_then(|l| Arc::try_unwrap(l).ok()) {
            listener.shutdown().await;
        }
        if shared.config.own_partitions {
            if let Err(e) = shared.queue.deregister(&shared.config.id).await {
                tracing::warn!(error = %e, "could not deregister; leases will expire");
            }
        }
    }
}

/// Lets in-flight jobs finish within the grace period, then stops the rest, which report
/// `Release` (the attempt is not spent).
async fn drain(shared: &Shared) {
    let slots = shared.slots.clone();
    let all_slots = shared.config.concurrency as u32;
    let grace = shared.config.shutdown_grace;
    if tokio::time::timeout(grace, slots.acquire_many(all_slots))
        .await
        .is_ok()
    {
        return;
    }
    let ids: Vec<i64> = shared
        .running
        .lock()
        .map(|r| r.keys().copied().collect())
        .unwrap_or_default();
    tracing::warn!(
        jobs = ids.len(),
        "grace period over: releasing unfinished jobs"
    );
    for id in ids {
        shared.stop_job(id, STOP_SHUTDOWN);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all_slots)).await;
}

/// What the claim loop should do next.
enum Next {
    /// The claim filled every free slot: more is probably waiting.
    Again,
    /// Nothing more for now: sleep until a wake-up or the backstop poll.
    Sleep,
    /// The claim failed: back off this long.
    Backoff(Duration),
}

async fn claim_loop(
    shared: &Arc<Shared>,
    owned: watch::Receiver<Vec<i16>>,
    completer: mpsc::Sender<Finished>,
    shutdown: &CancellationToken,
) {
    let cfg = &shared.config;
    let mut poll = tokio::time::interval(cfg.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = 0u32;
    while !shutdown.is_cancelled() {
        let free = shared.slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = shared.slot_freed.notified() => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        let partitions = owned.borrow().clone();
        let next = claim_batch(shared, &partitions, free, &completer, &mut errors).await;
        let pause = match next {
            Next::Again => Some(cfg.fetch_cooldown),
            Next::Backoff(d) => Some(d),
            Next::Sleep => None,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
            _ = shared.wake.notified(), if pause.is_none() => {}
            _ = poll.tick(), if pause.is_none() => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// One claim statement for up to `free` jobs; starts a task per claimed job.
async fn claim_batch(
    shared: &Arc<Shared>,
    partitions: &[i16],
    free: usize,
    completer: &mpsc::Sender<Finished>,
    errors: &mut u32,
) -> Next {
    let cfg = &shared.config;
    let limit = free.min(cfg.max_claim);
    let request = ClaimRequest {
        queues: &cfg.queues,
        order: &cfg.queue_order,
        partitions: cfg.own_partitions.then_some(partitions),
        limit,
        worker_id: &shared.worker_id,
        lease: cfg.lease,
    };
    let began = std::time::Instant::now();
    let claimed = shared.queue.claim(&request).await;
    shared
        .metrics
        .claim_duration
        .observe(began.elapsed().as_secs_f64());
    let jobs = match claimed {
        Ok(jobs) => jobs,
        Err(e) => {
            *errors += 1;
            tracing::warn!(error = %e, "claim failed");
            return Next::Backoff(Duration::from_millis(100 * u64::from((*errors).min(50))));
        }
    };
    *errors = 0;
    let stats = &shared.stats;
    stats.claims.fetch_add(1, Ordering::Relaxed);
    stats
        .claimed
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    let got = jobs.len();
    let mut per_queue: HashMap<&str, usize> = HashMap::new();
    for job in &jobs {
        if let Some(q) = cfg.queues.iter().find(|q| **q == job.queue) {
            *per_queue.entry(q.as_str()).or_default() += 1;
        }
    }
    for (q, n) in &per_queue {
        shared
            .metrics
            .jobs_claimed
            .with_label_values(&[q])
            .inc_by(*n as u64);
    }
    for job in jobs {
        match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => start_job(shared, job, permit, completer.clone()),
            Err(_) => {
                // Cannot happen (only the claim loop takes slots); give the job back.
                let release = Finished::new(job.id, job.attempt, Outcome::Release);
                let _ = completer.send(release).await;
            }
        }
    }
    // More is probably waiting when the claim filled its slots, or when a queue filled its
    // weighted share (another queue's unused share goes to the next claim).
    let shares = cfg.queue_order.limits(cfg.queues.len(), limit);
    let share_full = cfg.queues.iter().zip(&shares).any(|(q, &share)| {
        share > 0 && per_queue.get(q.as_str()).copied().unwrap_or(0) >= share as usize
    });
    if got > 0 && (got == limit || share_full) {
        Next::Again
    } else {
        Next::Sleep
    }
}

fn start_job(
    shared: &Arc<Shared>,
    job: Job,
    permit: OwnedSemaphorePermit,
    completer: mpsc::Sender<Finished>,
) {
    let cancel = CancellationToken::new();
    let reason = Arc::new(AtomicU8::new(STOP_NONE));
    if let Ok(mut running) = shared.running.lock() {
        running.insert(
            job.id,
            Running {
                attempt: job.attempt,
                started: Instant::now(),
                cancel: cancel.clone(),
                reason: reason.clone(),
            },
        );
    }
    let shared = shared.clone();
    let span = tracing::info_span!("job", otel.name = %format!("job {}", job.kind),
        job.id = job.id, job.queue = %job.queue, job.kind = %job.kind,
        job.partition = job.partition, job.attempt = job.attempt);
    if let Some(parent) = pgfleet_telemetry::parent_from_metadata(&job.metadata) {
        pgfleet_telemetry::set_parent(&span, parent);
    }
    let run = async move {
        let (id, attempt) = (job.id, job.attempt);
        let (queue, kind) = (job.queue.clone(), job.kind.clone());
        let began = std::time::Instant::now();
        let outcome = execute(&shared, job, cancel, &reason).await;
        let m = &shared.metrics;
        m.job_duration
            .with_label_values(&[&queue, &kind])
            .observe(began.elapsed().as_secs_f64());
        if let Some(o) = &outcome {
            m.jobs_finished
                .with_label_values(&[&queue, &kind, outcome_label(o)])
                .inc();
        }
        if let Ok(mut running) = shared.running.lock() {
            running.remove(&id);
        }
        if let Some(outcome) = outcome {
            count(&shared.stats, &outcome);
            let _ = completer.send(Finished::new(id, attempt, outcome)).await;
        }
        drop(permit);
        shared.slot_freed.notify_one();
    };
    tokio::spawn(tracing::Instrument::instrument(run, span));
}

async fn execute(
    shared: &Shared,
    job: Job,
    cancel: CancellationToken,
    reason: &AtomicU8,
) -> Option<Outcome> {
    let (attempt, max_attempts) = (job.attempt, job.max_attempts);
    let backoff = &shared.config.backoff;
    let failure = |msg: String, permanent: bool| {
        Outcome::failure(attempt, max_attempts, msg, permanent, backoff)
    };
    let Some(reg) = shared.registry.get(&job.kind) else {
        return Some(failure(
            format!(
                "no handler registered for kind {:?} on this worker",
                job.kind
            ),
            false,
        ));
    };
    let ctx = JobContext {
        cancel: cancel.clone(),
        worker_id: shared.worker_id.clone(),
    };
    let timeout = reg.timeout;
    let run = AssertUnwindSafe((reg.handler)(job, ctx)).catch_unwind();
    // Cancellation wins over a handler that returns because it saw the cancellation.
    tokio::select! {
        biased;
        _ = cancel.cancelled() => match reason.load(Ordering::Relaxed) {
            STOP_SHUTDOWN => Some(Outcome::Release),
            STOP_CANCEL => Some(Outcome::Cancelled { reason: "cancelled by operator".into() }),
            _ => None, // the lease was lost: the job is someone else's now
        },
        result = tokio::time::timeout(timeout, run) => Some(match result {
            Ok(Ok(Ok(()))) => Outcome::Completed,
            Ok(Ok(Err(e))) => match e.disposition {
                Disposition::Retry => failure(e.message, false),
                Disposition::Permanent => failure(e.message, true),
                Disposition::Snooze(after) => Outcome::Snooze {
                    at: chrono_now_plus(after),
                },
                Disposition::RetryAfter(_) if attempt >= max_attempts => failure(e.message, true),
                Disposition::RetryAfter(after) => Outcome::Retry {
                    at: chrono_now_plus(after),
                    error: e.message,
                },
            },
            Ok(Err(panic)) => {
                shared.stats.panicked.fetch_add(1, Ordering::Relaxed);
                failure(format!("handler panicked: {}", panic_message(&panic)), false)
            }
            Err(_) => failure(format!("timed out after {timeout:?}"), false),
        }),
    }
}

fn chrono_now_plus(d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Retry { .. } => "retried",
        Outcome::Snooze { .. } => "snoozed",
        Outcome::Discard { .. } => "discarded",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::Release => "released",
    }
}

fn count(stats: &WorkerStats, outcome: &Outcome) {
    let c = match outcome {
        Outcome::Completed => &stats.completed,
        Outcome::Retry { .. } | Outcome::Snooze { .. } => &stats.retried,
        Outcome::Discard { .. } => &stats.discarded,
        Outcome::Cancelled { .. } => &stats.cancelled,
        Outcome::Release => &stats.released,
    };
    c.fetch_add(1, Ordering::Relaxed);
}

async fn dispatch(
    shared: Arc<Shared>,
    mut messages: mpsc::Receiver<Message>,
    owned: watch::Receiver<Vec<i16>>,
) {
    while let Some(msg) = messages.recv().await {
        let wake = match &msg {
            Message::Resync => true,
            Message::Notification { channel, payload } => {
                if channel == CONTROL_CHANNEL {
                    if let Some(id) = payload.strip_prefix("cancel:").and_then(|s| s.parse().ok()) {
                        shared.stop_job(id, STOP_CANCEL);
                    }
                    payload.starts_with("resume:")
                } else {
                    partition_of_channel(channel).is_some_and(|p| owned.borrow().contains(&p))
                }
            }
        };
        if wake {
            shared.stats.wakeups.fetch_add(1, Ordering::Relaxed);
            shared.wake.notify_one();
        }
    }
}

async fn ownership_loop(
    shared: Arc<Shared>,
    info: WorkerInfo,
    owned_tx: watch::Sender<Vec<i16>>,
    listener: Option<Arc<Listener>>,
    stop: CancellationToken,
) {
    let period = shared.config.ownership_ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let now = match shared
            .queue
            .rebalance(&info, shared.config.ownership_ttl)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "partition rebalance failed");
                continue;
            }
        };
        let before = owned_tx.borrow().clone();
        if now == before {
            continue;
        }
        tracing::info!(worker = %shared.worker_id, partitions = ?now, "partition ownership changed");
        if let Some(l) = &listener {
            for p in now.iter().filter(|p| !before.contains(p)) {
                let _ = l.subscribe(&channel(*p)).await;
            }
            for p in before.iter().filter(|p| !now.contains(p)) {
                let _ = l.unsubscribe(&channel(*p)).await;
            }
        }
        let gained = now.iter().any(|p| !before.contains(p));
        let _ = owned_tx.send(now);
        if gained {
            shared.wake.notify_one();
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let lease = shared.config.lease;
    let period = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let due: Vec<(i64, i32)> = shared
            .running
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, j)| j.started.elapsed() >= period)
                    .map(|(id, j)| (*id, j.attempt))
                    .collect()
            })
            .unwrap_or_default();
        if due.is_empty() {
            continue;
        }
        let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
        match shared
            .queue
            .extend_leases(&shared.worker_id, &ids, lease)
            .await
        {
            Ok(held) => {
                let held: HashMap<i64, bool> = held.into_iter().collect();
                for id in ids {
                    match held.get(&id) {
                        Some(true) => {
                            shared.stop_job(id, STOP_CANCEL);
                        }
                        Some(false) => {}
                        None => {
                            tracing::warn!(job = id, "lease lost; abandoning the attempt");
                            shared.stop_job(id, STOP_LOST);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
        }
    }
}

async fn maintenance_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rescue_interval) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = shared.queue.rescue_expired(1000).await {
            tracing::warn!(error = %e, "rescue pass failed");
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_prune = Some(Instant::now());
            if let Err(e) = shared
                .queue
                .prune_finished(shared.config.retention, 5000)
                .await
            {
                tracing::warn!(error = %e, "retention pass failed");
            }
            let _ = shared.queue.reap_workers(Duration::from_secs(3600)).await;
        }
    }
}
