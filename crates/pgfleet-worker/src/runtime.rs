//! The worker runtime: one process serving a pool.
//!
//! Tasks, all stopped at shutdown:
//! - **feed** ([`crate::feed`]): claims jobs into a small leased buffer ahead of the slots
//!   — first from the partitions the worker owns, then from the others' when slots are
//!   left — and starts a job the moment a slot frees;
//! - **membership** ([`crate::membership`]): heartbeats the worker row, listens on the
//!   partitions it owns and records them as leases; hands them over at join and leave
//!   without a moment where a partition has no listener;
//! - **wake-ups**: turns NOTIFY messages into feed wake-ups and control messages (cancel,
//!   resume, rebalance) into actions;
//! - **heartbeat**: extends the leases of held jobs (running or buffered) and learns of
//!   cancellations;
//! - **maintenance**: rescuer and cleaner (one process at a time does the work), and the
//!   scheduler that enqueues due periodic jobs ([`pgfleet_queue::schedule`]).
//!
//! Shutdown: hand the partitions over (still claiming), stop claiming, let in-flight and
//! buffered jobs finish within the grace period, release the rest without spending an
//! attempt, flush the completer, deregister.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use pgfleet_queue::completer::Completer;
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::listener::{Listener, ListenerConfig, Message};
use pgfleet_queue::ownership::rebalance_payload;
use pgfleet_queue::partition::{channel, partition_of_channel, CONTROL_CHANNEL};
use pgfleet_queue::{Job, Queue, QueueError};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::handler::{Disposition, JobContext, JobLink, ProgressBoard, Registry};
use crate::health::Readiness;
use crate::membership::Membership;
use crate::metrics::ClaimMetrics;
use pgfleet_telemetry::{JobMetrics, Metrics};

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
    /// Of those, jobs claimed from partitions another worker owns.
    pub stolen: AtomicU64,
    /// Claim statements sent.
    pub claims: AtomicU64,
    /// Jobs whose handler started.
    pub started: AtomicU64,
    /// Attempts that succeeded.
    pub completed: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Attempts that failed for good.
    pub discarded: AtomicU64,
    /// Attempts stopped by cancellation.
    pub cancelled: AtomicU64,
    /// Attempts given back at shutdown (running or still buffered).
    pub released: AtomicU64,
    /// Handlers that panicked.
    pub panicked: AtomicU64,
    /// Wake-ups received.
    pub wakeups: AtomicU64,
}

pub(crate) const STOP_NONE: u8 = 0;
pub(crate) const STOP_SHUTDOWN: u8 = 1;
pub(crate) const STOP_CANCEL: u8 = 2;
pub(crate) const STOP_LOST: u8 = 3;

/// A job this worker holds: claimed, buffered or running.
pub(crate) struct Held {
    pub(crate) attempt: i32,
    pub(crate) claimed: Instant,
    pub(crate) cancel: CancellationToken,
    pub(crate) reason: Arc<AtomicU8>,
}

pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) config: WorkerConfig,
    pub(crate) registry: Registry,
    pub(crate) worker_id: Arc<str>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) slot_freed: Notify,
    pub(crate) wake: Notify,
    pub(crate) rebalance: Notify,
    /// Every job held, buffered or running (the heartbeat extends their leases).
    pub(crate) held: Mutex<HashMap<i64, Held>>,
    /// Claimed jobs waiting for a slot, in claim order.
    pub(crate) buffer: Mutex<VecDeque<Job>>,
    /// Handlers running now.
    pub(crate) in_flight: AtomicUsize,
    /// Handlers finished, and their total run time in nanoseconds (for the prefetch).
    pub(crate) ran: AtomicU64,
    pub(crate) busy_nanos: AtomicU64,
    /// Set at shutdown: buffered jobs are released, not started.
    pub(crate) closing: AtomicBool,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) ready: Readiness,
    pub(crate) metrics: Arc<Metrics>,
    /// The worker's families in `metrics`.
    pub(crate) claims: Arc<ClaimMetrics>,
    /// The job lifecycle families in `metrics`.
    pub(crate) jobs: Arc<JobMetrics>,
    /// Progress reported by running handlers, not yet written.
    pub(crate) progress: ProgressBoard,
}

impl Shared {
    fn stop_job(&self, id: i64, reason: u8) -> bool {
        let held = self.held.lock().ok();
        match held.as_ref().and_then(|r| r.get(&id)) {
            Some(job) => {
                job.reason.store(reason, Ordering::Relaxed);
                job.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Jobs claimed and waiting for a slot.
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.lock().map(|b| b.len()).unwrap_or(0)
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
        let metrics = Arc::new(Metrics::new("worker"));
        let shared = Arc::new(Shared {
            worker_id: Arc::from(config.id.as_str()),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            slot_freed: Notify::new(),
            wake: Notify::new(),
            rebalance: Notify::new(),
            held: Mutex::new(HashMap::new()),
            buffer: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            ran: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            stats: Arc::new(WorkerStats::default()),
            ready: Readiness::default(),
            claims: metrics.component(),
            jobs: metrics.jobs(),
            progress: Default::default(),
            metrics,
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
            shared.claims = metrics.component();
            shared.jobs = metrics.jobs();
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
        let mut background = Background::start(&shared, self.connect).await?;
        let cfg = &shared.config;
        tracing::info!(worker = %shared.worker_id, pool = %cfg.pool, queues = ?cfg.queues,
            concurrency = cfg.concurrency, partitions = ?*background.owned.borrow(),
            "worker started");
        let completer = Completer::spawn(shared.queue.clone(), cfg.id.clone(), cfg.completer);
        shared.ready.set(true);
        let claims = CancellationToken::new();
        let feed = tokio::spawn(crate::feed::claim_loop(
            shared.clone(),
            background.owned.clone(),
            completer.sender(),
            claims.clone(),
        ));
        shutdown.cancelled().await;
        // Hand the partitions over while still claiming, so no wake-up falls between us.
        background.leave(&shared).await;
        claims.cancel();
        let _ = feed.await;
        shared.ready.set(false);
        drain(&shared, &completer.sender()).await;
        completer.close().await;
        background.stop(&shared).await;
        tracing::info!(worker = %shared.worker_id, "worker stopped");
        Ok(())
    }
}

/// The worker's tasks besides the feed, and the partitions it owns.
struct Background {
    owned: watch::Receiver<Vec<i16>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    membership: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    stop: CancellationToken,
    listener: Option<Arc<Listener>>,
}

impl Background {
    /// Joins the pool (listening before registering), then starts the wake-up dispatcher,
    /// the membership loop, the heartbeat and maintenance.
    async fn start(shared: &Arc<Shared>, connect: PgConnectOptions) -> Result<Self, WorkerError> {
        let cfg = &shared.config;
        let initial = if cfg.own_partitions {
            crate::membership::planned_share(shared).await?
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
            let claims = shared.claims.clone();
            let hook: pgfleet_queue::listener::Hook = Arc::new(move |e| {
                if *e == pgfleet_queue::listener::ListenerEvent::Reconnected {
                    claims.count_reconnect();
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
        let membership = if cfg.own_partitions {
            match Membership::join(shared.clone(), owned_tx, listener.clone()).await {
                Ok(m) => {
                    let stop = CancellationToken::new();
                    Some((tokio::spawn(m.run(stop.clone())), stop))
                }
                Err(e) => {
                    // Leave nothing running behind a failed start: close the listener now
                    // rather than when its last handle happens to drop.
                    for t in tasks {
                        t.abort();
                    }
                    if let Some(l) = listener.and_then(|l| Arc::try_unwrap(l).ok()) {
                        l.shutdown().await;
                    }
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        tasks.push(tokio::spawn(heartbeat_loop(shared.clone(), stop.clone())));
        tasks.push(tokio::spawn(progress_loop(shared.clone(), stop.clone())));
        if cfg.maintenance {
            tasks.push(tokio::spawn(maintenance_loop(shared.clone(), stop.clone())));
            tasks.push(tokio::spawn(schedule_loop(shared.clone(), stop.clone())));
        }
        Ok(Self {
            owned,
            tasks,
            membership,
            stop,
            listener,
        })
    }

    /// Leaves the pool: stops heartbeating, tells the others, and waits (within the handover
    /// timeout) until they listen on our partitions. The caller is still claiming.
    async fn leave(&mut self, shared: &Shared) {
        let Some((task, stop)) = self.membership.take() else {
            return;
        };
        stop.cancel();
        let _ = task.await;
        crate::membership::hand_over(shared).await;
    }

    /// Stops every task, closes the listener and deregisters.
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

/// Lets in-flight and buffered jobs finish within the grace period (the buffer is small by
/// design: a few claim round trips of work), then releases what is still buffered and
/// stops the rest, which report `Release` (the attempt is not spent).
async fn drain(shared: &Arc<Shared>, completer: &mpsc::Sender<Finished>) {
    let deadline = Instant::now() + shared.config.shutdown_grace;
    while shared.buffered() > 0 || shared.in_flight.load(Ordering::Relaxed) > 0 {
        if Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = shared.slot_freed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    crate::feed::release_buffer(shared, completer).await;
    let slots = shared.slots.clone();
    let all_slots = shared.config.concurrency as u32;
    if slots.available_permits() == all_slots as usize {
        return;
    }
    let ids: Vec<i64> = shared
        .held
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

/// Starts a held job's handler on a slot; when it ends, the outcome goes to the completer
/// and the slot takes the next buffered job.
pub(crate) fn start_job(
    shared: &Arc<Shared>,
    job: Job,
    permit: OwnedSemaphorePermit,
    completer: mpsc::Sender<Finished>,
) {
    let (cancel, reason) = shared
        .held
        .lock()
        .ok()
        .and_then(|h| h.get(&job.id).map(|j| (j.cancel.clone(), j.reason.clone())))
        .unwrap_or_else(|| (CancellationToken::new(), Arc::new(AtomicU8::new(STOP_NONE))));
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    shared.stats.started.fetch_add(1, Ordering::Relaxed);
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
        let link = Arc::new(JobLink {
            queue: shared.queue.clone(),
            id,
            attempt,
            progress: shared.progress.clone(),
            output: std::sync::Mutex::new(None),
            completed_in_tx: AtomicBool::new(false),
        });
        let outcome = execute(&shared, job, cancel, &reason, link.clone()).await;
        if let Ok(mut board) = shared.progress.lock() {
            board.remove(&id);
        }
        shared
            .busy_nanos
            .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        shared.ran.fetch_add(1, Ordering::Relaxed);
        shared.jobs.record_attempt(
            &queue,
            &kind,
            began.elapsed().as_secs_f64(),
            outcome.as_ref().map(outcome_label),
        );
        if let Ok(mut held) = shared.held.lock() {
            held.remove(&id);
        }
        if let Some(outcome) = outcome {
            count(&shared.stats, &outcome);
            // A completion the handler committed in its own transaction is already written.
            let done_in_tx =
                outcome == Outcome::Completed && link.completed_in_tx.load(Ordering::Relaxed);
            if !done_in_tx {
                let output = match outcome {
                    Outcome::Completed => link.output.lock().ok().and_then(|mut o| o.take()),
                    _ => None,
                };
                let finished = Finished::new(id, attempt, outcome).with_output(output);
                let _ = completer.send(finished).await;
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        crate::feed::fill_slots(&shared, &completer);
        shared.slot_freed.notify_one();
    };
    tokio::spawn(tracing::Instrument::instrument(run, span));
}

async fn execute(
    shared: &Shared,
    job: Job,
    cancel: CancellationToken,
    reason: &AtomicU8,
    link: Arc<JobLink>,
) -> Option<Outcome> {
    let (attempt, max_attempts) = (job.attempt, job.max_attempts);
    let backoff = &shared.config.backoff;
    let failure = |msg: String, permanent: bool| {
        Outcome::failure(attempt, max_attempts, msg, permanent, backoff)
    };
    let Some(reg) = shared.registry.get(&job.kind) else {
        // Retried, not discarded: a newer worker of a rolling deploy may run this kind.
        return Some(failure(
            format!(
                "no handler registered for kind {:?} on this worker (it runs: {})",
                job.kind,
                shared.registry.kinds().join(", ")
            ),
            false,
        ));
    };
    let ctx = JobContext {
        cancel: cancel.clone(),
        worker_id: shared.worker_id.clone(),
        link,
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
            Message::Resync => {
                // A new listener backend: record its pid at once.
                shared.rebalance.notify_one();
                true
            }
            Message::Notification { channel, payload } => {
                if channel == CONTROL_CHANNEL {
                    if let Some(id) = payload.strip_prefix("cancel:").and_then(|s| s.parse().ok()) {
                        shared.stop_job(id, STOP_CANCEL);
                    }
                    if *payload == rebalance_payload(&shared.config.pool) {
                        shared.rebalance.notify_one();
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

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let lease = shared.config.lease;
    let period = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let due: Vec<(i64, i32)> = shared
            .held
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, j)| j.claimed.elapsed() >= period)
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

/// Writes the handlers' latest progress reports, all jobs in one statement, at most once
/// per `progress_interval`.
async fn progress_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.progress_interval) => {}
            _ = stop.cancelled() => return,
        }
        let reports: Vec<_> = match shared.progress.lock() {
            Ok(mut board) => board.drain().map(|(id, (a, p))| (id, a, p)).collect(),
            Err(_) => continue,
        };
        if let Err(e) = shared
            .queue
            .record_progress(&shared.worker_id, &reports)
            .await
        {
            tracing::warn!(error = %e, "progress write failed");
        }
    }
}

/// Enqueues due periodic jobs (every worker looks; a due schedule is locked by one).
async fn schedule_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.schedule_interval) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = shared.queue.run_due_schedules().await {
            tracing::warn!(error = %e, "schedule pass failed");
        }
    }
}

async fn maintenance_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut last_prune: Option<Instant> = None;
    let mut last_sample: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rescue_interval) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = shared.queue.rescue_expired(1000).await {
            tracing::warn!(error = %e, "rescue pass failed");
        }
        // At most one try per interval here; the queue keeps it to one sample fleet-wide.
        if last_sample.is_none_or(|t| t.elapsed() >= shared.config.sample_interval) {
            last_sample = Some(Instant::now());
            if let Err(e) = shared
                .queue
                .sample_queues(shared.config.sample_interval)
                .await
            {
                tracing::warn!(error = %e, "queue sampling failed");
            }
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
            if let Err(e) = shared.queue.sweep_key_tokens().await {
                tracing::warn!(error = %e, "token sweep failed");
            }
        }
    }
}
