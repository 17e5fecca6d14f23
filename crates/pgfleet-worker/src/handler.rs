//! Job handlers: a registry from job kind to an async function, and the built-in kinds
//! (`noop`, `sleep`, `fail`). Typed kinds register through [`crate::kind`].
//!
//! A handler returns `Ok(())` on success or a [`JobError`] whose [`Disposition`] tells the
//! runtime what to do: retry with backoff, discard at once, or snooze without spending an
//! attempt. A panicking handler fails its job (retried like an error), never the worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use pgfleet_queue::output::{DependencyResult, Progress};
use pgfleet_queue::{Job, Queue, QueueError};
use serde_json::Value;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

/// What the runtime should do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retry after the backoff (discarded once attempts are exhausted).
    Retry,
    /// Discard now: retrying cannot help.
    Permanent,
    /// Run again after this delay without spending an attempt.
    Snooze(Duration),
    /// Retry no earlier than this delay (a service's `Retry-After`), spending an attempt
    /// (discarded once attempts are exhausted).
    RetryAfter(Duration),
}

/// A handler's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Human-readable cause, stored in the job's error history.
    pub message: String,
    /// What to do next.
    pub disposition: Disposition,
}

impl JobError {
    /// A retryable error.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            disposition: Disposition::Retry,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            disposition: Disposition::Permanent,
        }
    }

    /// A retryable error that must not run again before `after`.
    pub fn retry_after(after: Duration, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            disposition: Disposition::RetryAfter(after),
        }
    }

    /// Snooze for `after`.
    pub fn snooze(after: Duration) -> Self {
        Self {
            message: format!("snoozed for {after:?}"),
            disposition: Disposition::Snooze(after),
        }
    }
}

/// What a handler gets besides the job: its cancellation, and the ways to report
/// progress, return an output, read its dependencies' outputs and complete inside its own
/// transaction.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Cancelled when an operator cancels the job or the worker's grace period ends.
    pub cancel: CancellationToken,
    /// The worker's id.
    pub worker_id: Arc<str>,
    pub(crate) link: Arc<JobLink>,
}

/// Latest progress report per running job (id → attempt, report), drained by the worker's
/// progress flush.
pub(crate) type ProgressBoard = Arc<Mutex<HashMap<i64, (i32, Progress)>>>;

/// A running attempt's connection to its worker.
pub(crate) struct JobLink {
    pub(crate) queue: Queue,
    pub(crate) id: i64,
    pub(crate) attempt: i32,
    pub(crate) progress: ProgressBoard,
    pub(crate) output: Mutex<Option<Value>>,
    pub(crate) completed_in_tx: AtomicBool,
}

impl std::fmt::Debug for JobLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLink")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// Reports progress: a number (a percentage, a count) and a short message. Cheap to call
    /// as often as you like: the worker writes the latest report of each running job at most
    /// once a second, all jobs in one statement.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a value that is not finite or a message over 256
    /// characters.
    pub fn progress(&self, value: f64, message: Option<&str>) -> Result<(), QueueError> {
        let report = Progress::new(value, message)?;
        if let Ok(mut board) = self.link.progress.lock() {
            board.insert(self.link.id, (self.link.attempt, report));
        }
        Ok(())
    }

    /// Sets the output kept with the job when it completes (JSON, at most 64 KiB as text);
    /// the API shows it and the jobs that depend on this one read it.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming `output` when it is too large or holds NUL; nothing
    /// is kept.
    pub fn set_output(&self, output: Value) -> Result<(), QueueError> {
        pgfleet_queue::output::check_output(&output)?;
        if let Ok(mut slot) = self.link.output.lock() {
            *slot = Some(output);
        }
        Ok(())
    }

    /// The jobs this one depends on, with their states and outputs.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn dependencies(&self) -> Result<Vec<DependencyResult>, QueueError> {
        self.link.queue.dependencies(self.link.id).await
    }

    /// Completes this attempt on `conn` — the handler's own transaction — so its writes and
    /// the completion commit together (River's `JobCompleteTx`): a crash between them
    /// cannot run the effect twice. Call it last, then commit, then return `Ok(())`. The
    /// output set with [`JobContext::set_output`] (or `output`, which wins) is kept.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when this worker no longer holds the attempt (roll back:
    /// the job runs elsewhere); [`QueueError::Invalid`] for a bad output;
    /// [`QueueError::Database`].
    pub async fn complete_in(
        &self,
        conn: &mut PgConnection,
        output: Option<Value>,
    ) -> Result<(), QueueError> {
        let output = match output {
            Some(o) => Some(o),
            None => self.link.output.lock().ok().and_then(|o| o.clone()),
        };
        self.link
            .queue
            .complete_in(
                conn,
                &self.worker_id,
                self.link.id,
                self.link.attempt,
                output.as_ref(),
            )
            .await?;
        self.link.completed_in_tx.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// A handler function.
pub type HandlerFn =
    Arc<dyn Fn(Job, JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// One registered kind.
#[derive(Clone)]
pub struct Registration {
    /// The handler.
    pub handler: HandlerFn,
    /// Longest an attempt may run before it fails with a timeout.
    pub timeout: Duration,
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<String, Registration>,
}

/// The default per-kind timeout.
pub const DEFAULT_TIMEOUT: Duration = pgfleet_queue::KindDefaults::DEFAULT.timeout;

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `kind` with the default timeout.
    pub fn register<F, Fut>(&mut self, kind: &str, f: F) -> &mut Self
    where
        F: Fn(Job, JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register_with_timeout(kind, DEFAULT_TIMEOUT, f)
    }

    /// Registers `kind` with an explicit per-attempt timeout.
    pub fn register_with_timeout<F, Fut>(
        &mut self,
        kind: &str,
        timeout: Duration,
        f: F,
    ) -> &mut Self
    where
        F: Fn(Job, JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler: HandlerFn = Arc::new(move |job, ctx| Box::pin(f(job, ctx)));
        self.kinds
            .insert(kind.to_owned(), Registration { handler, timeout });
        self
    }

    /// The registration of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Registration> {
        self.kinds.get(kind)
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// The built-in kinds for benchmarks and tests:
    /// - `noop`: succeeds at once;
    /// - `sleep`: sleeps `payload.ms` milliseconds (cancellable), then succeeds;
    /// - `fail`: fails with `payload.message`; permanently when `payload.permanent` is true;
    ///   only on the first `payload.times` attempts when that is set.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.register("noop", |_job, _ctx| async { Ok(()) });
        r.register("sleep", |job, ctx| async move {
            let ms = job
                .payload
                .get("ms")
                .and_then(|v| v.as_u64())
                .unwrap_or(100);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
                _ = ctx.cancel.cancelled() => Err(JobError::retry("interrupted")),
            }
        });
        r.register("fail", |job, _ctx| async move {
            let p = &job.payload;
            let times = p.get("times").and_then(|v| v.as_i64());
            if times.is_some_and(|t| i64::from(job.attempt) > t) {
                return Ok(());
            }
            let message = p
                .get("message")
                .and_then(|v| v.as_str())
                .unwrap_or("fail: requested failure")
                .to_owned();
            if p.get("permanent").and_then(|v| v.as_bool()) == Some(true) {
                Err(JobError::permanent(message))
            } else {
                Err(JobError::retry(message))
            }
        });
        r
    }
}
