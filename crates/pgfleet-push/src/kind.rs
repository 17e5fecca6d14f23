//! The `webpush.deliver` kind: its arguments, handler, failure dispositions and metrics.

use std::sync::Arc;

use pgfleet_queue::{Job, JobArgs, KindDefaults};
use pgfleet_telemetry::prometheus::{Histogram, IntCounterVec, Registry};
use pgfleet_telemetry::{counter, single_histogram, Component, Metrics, LATENCY_BUCKETS};
use pgfleet_worker::{Disposition, JobContext, JobFailure, JobHandler};
use sqlx::PgPool;

use crate::deliver::{deliver, DeliverError};
use crate::{PushClient, Verdict, KIND};

/// `webpush.deliver`'s arguments: one notification to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliverPush {
    /// The notification.
    pub notification_id: i64,
    /// The subscription it goes to.
    pub subscription_id: i64,
}

impl JobArgs for DeliverPush {
    const KIND: &'static str = KIND;
    /// Eight attempts: a push service that refuses for longer will not take it later.
    fn defaults() -> KindDefaults {
        KindDefaults {
            max_attempts: 8,
            ..KindDefaults::DEFAULT
        }
    }
}

/// Runs `webpush.deliver` ([`deliver`]): 2xx completes; 404/410 deactivates the
/// subscription and completes; 429/5xx retries no earlier than `Retry-After`; other
/// refusals discard; no answer retries with backoff. Every attempt is recorded, and counted
/// in [`PushMetrics`].
#[derive(Clone)]
pub struct PushHandler {
    pool: PgPool,
    client: PushClient,
    metrics: Arc<PushMetrics>,
}

impl PushHandler {
    /// A handler sending with `client`, reading and recording in `pool`, counting in
    /// `metrics`.
    pub fn new(pool: PgPool, client: PushClient, metrics: &Metrics) -> Self {
        Self {
            pool,
            client,
            metrics: metrics.component(),
        }
    }
}

impl JobHandler for PushHandler {
    type Args = DeliverPush;
    type Error = DeliverError;

    async fn run(
        &self,
        args: DeliverPush,
        job: &Job,
        _ctx: &JobContext,
    ) -> Result<(), DeliverError> {
        let report = deliver(
            &self.pool,
            &self.client,
            args.notification_id,
            args.subscription_id,
            job.attempt,
        )
        .await;
        if let Some(d) = &report.delivery {
            self.metrics.record(
                &d.verdict,
                d.http_status,
                d.latency.as_secs_f64(),
                d.crypto.as_secs_f64(),
            );
        }
        report.result.map(|_| ())
    }
}

impl JobFailure for DeliverError {
    fn disposition(&self) -> Disposition {
        match self {
            DeliverError::Retry(_) => Disposition::Retry,
            DeliverError::RetryAfter(after, _) => Disposition::RetryAfter(*after),
            DeliverError::Permanent(_) => Disposition::Permanent,
        }
    }
}

/// Web Push requests: results, time, and time spent on encryption.
#[derive(Debug)]
pub struct PushMetrics {
    deliveries: IntCounterVec,
    duration: Histogram,
    crypto: Histogram,
}

impl Component for PushMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            deliveries: counter(
                r,
                "pgfleet_push_deliveries_total",
                "Web Push requests by result and push service status.",
                &["result", "status"],
            ),
            duration: single_histogram(
                r,
                "pgfleet_push_duration_seconds",
                "Web Push request time, encryption to answer.",
                LATENCY_BUCKETS,
            ),
            crypto: single_histogram(
                r,
                "pgfleet_push_crypto_duration_seconds",
                "Time spent encrypting and signing one push.",
                &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01],
            ),
        }
    }
}

impl PushMetrics {
    /// One push request: its verdict, the push service's status (none: no answer), its
    /// time and the part of it spent encrypting and signing.
    pub fn record(&self, verdict: &Verdict, status: Option<u16>, secs: f64, crypto_secs: f64) {
        let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        self.deliveries
            .with_label_values(&[verdict_label(verdict), &status])
            .inc();
        self.duration.observe(secs);
        self.crypto.observe(crypto_secs);
    }
}

fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Delivered => "delivered",
        Verdict::Gone => "gone",
        Verdict::RetryAfter(_) => "retry",
        Verdict::Rejected => "rejected",
        Verdict::Transport => "transport",
    }
}
