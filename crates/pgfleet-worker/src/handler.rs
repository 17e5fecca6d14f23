//! Job handlers: a registry from job kind to an async function, and the built-in kinds.
//!
//! A handler returns `Ok(())` on success or a [`JobError`] whose [`Disposition`] tells the
//! runtime what to do: retry with backoff, discard at once, or snooze without spending an
//! attempt. A panicking handler fails its job (retried like an error), never the worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use pgfleet_queue::Job;
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

/// What a handler gets besides the job.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Cancelled when an operator cancels the job or the worker's grace period ends.
    pub cancel: CancellationToken,
    /// The worker's id.
    pub worker_id: Arc<str>,
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
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

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

    /// Registers `payments.process`: validates the stored payment event, upserts the ledger
    /// idempotently and marks the event done (see `pgfleet-payments`). An invalid or missing
    /// event is a permanent failure; a database error retries.
    pub fn with_payments(&mut self, queue: pgfleet_queue::Queue) -> &mut Self {
        self.register(pgfleet_payments::KIND, move |job, _ctx| {
            let queue = queue.clone();
            async move {
                let row = job
                    .payload
                    .get("webhook_event_id")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| JobError::permanent("payload has no webhook_event_id"))?;
                match pgfleet_payments::process(&queue, row).await {
                    Ok(_) => Ok(()),
                    // A database or notification failure rolled everything back: retry.
                    Err(
                        e @ (pgfleet_payments::ProcessError::Database(_)
                        | pgfleet_payments::ProcessError::Notify(_)),
                    ) => Err(JobError::retry(e.to_string())),
                    Err(e) => Err(JobError::permanent(e.to_string())),
                }
            }
        });
        self
    }

    /// Registers `webpush.deliver` (see `pgfleet-push`): 2xx completes; 404/410 deactivates
    /// the subscription and completes; 429/5xx retries no earlier than `Retry-After`; other
    /// refusals discard; no answer retries with backoff. Every attempt is recorded, and
    /// counted in `metrics`.
    pub fn with_push(
        &mut self,
        pool: sqlx::PgPool,
        client: pgfleet_push::PushClient,
        metrics: Arc<pgfleet_telemetry::Metrics>,
    ) -> &mut Self {
        use pgfleet_push::deliver::DeliverError;
        self.register(pgfleet_push::KIND, move |job, _ctx| {
            let (pool, client, metrics) = (pool.clone(), client.clone(), metrics.clone());
            async move {
                let id = |f: &str| job.payload.get(f).and_then(serde_json::Value::as_i64);
                let (Some(n), Some(s)) = (id("notification_id"), id("subscription_id")) else {
                    return Err(JobError::permanent(
                        "payload needs notification_id and subscription_id",
                    ));
                };
                let report =
                    pgfleet_push::deliver::deliver(&pool, &client, n, s, job.attempt).await;
                if let Some(d) = &report.delivery {
                    let status = d
                        .http_status
                        .map_or_else(|| "none".to_owned(), |s| s.to_string());
                    metrics
                        .push_deliveries
                        .with_label_values(&[verdict_label(&d.verdict), &status])
                        .inc();
                    metrics.push_duration.observe(d.latency.as_secs_f64());
                    metrics.push_crypto_duration.observe(d.crypto.as_secs_f64());
                }
                match report.result {
                    Ok(_) => Ok(()),
                    Err(DeliverError::Retry(m)) => Err(JobError::retry(m)),
                    Err(DeliverError::RetryAfter(after, m)) => Err(JobError::retry_after(after, m)),
                    Err(DeliverError::Permanent(m)) => Err(JobError::permanent(m)),
                }
            }
        });
        self
    }

    /// Registers `messages.deliver` (see `pgfleet-messages`): a signed POST; 2xx marks the
    /// message sent (once); anything else retries with backoff until the job is discarded.
    pub fn with_messages(
        &mut self,
        pool: sqlx::PgPool,
        deliverer: pgfleet_messages::Deliverer,
        metrics: Arc<pgfleet_telemetry::Metrics>,
    ) -> &mut Self {
        use pgfleet_messages::MessageError;
        self.register(pgfleet_messages::KIND, move |job, _ctx| {
            let (pool, deliverer, metrics) = (pool.clone(), deliverer.clone(), metrics.clone());
            async move {
                let Some(id) = job
                    .payload
                    .get("message_id")
                    .and_then(serde_json::Value::as_i64)
                else {
                    return Err(JobError::permanent("payload needs message_id"));
                };
                let result = deliverer.deliver(&pool, id).await;
                let label = match &result {
                    Ok(_) => "sent",
                    Err(MessageError::Retry(_)) => "retry",
                    Err(MessageError::Permanent(_)) => "failed",
                };
                metrics.messages_delivered.with_label_values(&[label]).inc();
                match result {
                    Ok(_) => Ok(()),
                    Err(MessageError::Retry(m)) => Err(JobError::retry(m)),
                    Err(MessageError::Permanent(m)) => Err(JobError::permanent(m)),
                }
            }
        });
        self
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

fn verdict_label(v: &pgfleet_push::Verdict) -> &'static str {
    use pgfleet_push::Verdict;
    match v {
        Verdict::Delivered => "delivered",
        Verdict::Gone => "gone",
        Verdict::RetryAfter(_) => "retry",
        Verdict::Rejected => "rejected",
        Verdict::Transport => "transport",
    }
}
