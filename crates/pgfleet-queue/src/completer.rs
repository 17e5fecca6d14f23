//! The completer: batches finished attempts and writes each batch with one statement.
//!
//! Workers hand every outcome to the completer's bounded channel and move on. The completer
//! takes whatever has arrived (up to `max_batch`), waits at most `linger` for more, and
//! flushes it with [`Queue::finalize`]. A failed flush is retried with backoff; an outcome
//! that could not be written is not lost work — its job is still `running` and the rescuer
//! returns it to the queue when its lease expires (at-least-once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::finalize::Finished;
use crate::Queue;

/// Completer settings.
#[derive(Debug, Clone, Copy)]
pub struct CompleterConfig {
    /// Most outcomes per statement (default 2000).
    pub max_batch: usize,
    /// How long to wait for more outcomes before a flush (default 1 ms).
    pub linger: Duration,
    /// Channel capacity; senders (and so the job slots they hold) wait when it is full, which
    /// keeps finished-but-unrecorded jobs bounded (default 2000).
    pub capacity: usize,
    /// Give up on a batch after this many failed flushes (default 20, ~30 s).
    pub max_retries: u32,
}

impl Default for CompleterConfig {
    fn default() -> Self {
        Self {
            max_batch: 2000,
            linger: Duration::from_millis(1),
            capacity: 2000,
            max_retries: 20,
        }
    }
}

/// Counters of the completer.
#[derive(Debug, Default)]
pub struct CompleterStats {
    /// Statements sent.
    pub flushes: AtomicU64,
    /// Outcomes written.
    pub written: AtomicU64,
    /// Outcomes given up on (their jobs will be rescued).
    pub abandoned: AtomicU64,
    /// Failed flush attempts.
    pub errors: AtomicU64,
}

/// Handle for sending outcomes; close it with [`Completer::close`] to flush and stop.
pub struct Completer {
    tx: mpsc::Sender<Finished>,
    task: JoinHandle<()>,
    stats: Arc<CompleterStats>,
}

impl Completer {
    /// Starts the completer task for the worker `worker_id` (the outcomes it reports must be
    /// for jobs that worker claimed).
    pub fn spawn(queue: Queue, worker_id: impl Into<String>, config: CompleterConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let stats = Arc::new(CompleterStats::default());
        let worker_id = worker_id.into();
        let task = tokio::spawn(run(queue, worker_id, config, rx, stats.clone()));
        Self { tx, task, stats }
    }

    /// A sender for outcomes (clone it per job task).
    pub fn sender(&self) -> mpsc::Sender<Finished> {
        self.tx.clone()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<CompleterStats> {
        &self.stats
    }

    /// Flushes everything sent so far and stops. Every other sender must be dropped first.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(
    queue: Queue,
    worker_id: String,
    config: CompleterConfig,
    mut rx: mpsc::Receiver<Finished>,
    stats: Arc<CompleterStats>,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < config.max_batch {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(f)) => batch.push(f),
                        Ok(None) | Err(_) => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        flush(&queue, &worker_id, &config, &stats, &batch).await;
        batch.clear();
    }
}

async fn flush(
    queue: &Queue,
    worker_id: &str,
    config: &CompleterConfig,
    stats: &CompleterStats,
    batch: &[Finished],
) {
    let mut attempt = 0u32;
    loop {
        match queue.finalize(worker_id, batch).await {
            Ok(_) => {
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                attempt += 1;
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if attempt > config.max_retries {
                    tracing::error!(error = %e, jobs = batch.len(),
                        "completer: giving up on a batch; its jobs will be rescued");
                    stats
                        .abandoned
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                tracing::warn!(error = %e, attempt, "completer: flush failed; retrying");
                let delay = Duration::from_millis(50 * u64::from(attempt.min(40)));
                tokio::time::sleep(delay).await;
            }
        }
    }
}
