//! The `messages.deliver` kind: its arguments, handler, failure dispositions and metrics.

use std::sync::Arc;

use pgfleet_queue::{Job, JobArgs, KindDefaults};
use pgfleet_telemetry::prometheus::{IntCounterVec, Registry};
use pgfleet_telemetry::{counter, Component, Metrics};
use pgfleet_worker::{Disposition, JobContext, JobFailure, JobHandler};
use sqlx::PgPool;

use crate::{Deliverer, MessageError, KIND};

/// `messages.deliver`'s arguments: the stored message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliverMessage {
    /// The message.
    pub message_id: i64,
}

impl JobArgs for DeliverMessage {
    const KIND: &'static str = KIND;
    /// Ten attempts (about a day of backoff) before a message is given up.
    fn defaults() -> KindDefaults {
        KindDefaults {
            max_attempts: 10,
            ..KindDefaults::DEFAULT
        }
    }
}

/// Runs `messages.deliver` ([`Deliverer::deliver`]): a signed POST; 2xx marks the message
/// sent (once); anything else retries with backoff until the job is discarded.
#[derive(Clone)]
pub struct MessageHandler {
    pool: PgPool,
    deliverer: Deliverer,
    metrics: Arc<MessageMetrics>,
}

impl MessageHandler {
    /// A handler sending with `deliverer`, reading `pool`, counting in `metrics`.
    pub fn new(pool: PgPool, deliverer: Deliverer, metrics: &Metrics) -> Self {
        Self {
            pool,
            deliverer,
            metrics: metrics.component(),
        }
    }
}

impl JobHandler for MessageHandler {
    type Args = DeliverMessage;
    type Error = MessageError;

    async fn run(
        &self,
        args: DeliverMessage,
        _job: &Job,
        _ctx: &JobContext,
    ) -> Result<(), MessageError> {
        let result = self.deliverer.deliver(&self.pool, args.message_id).await;
        self.metrics.count(match &result {
            Ok(_) => "sent",
            Err(MessageError::Retry(_)) => "retry",
            Err(MessageError::Permanent(_)) => "failed",
        });
        result.map(|_| ())
    }
}

impl JobFailure for MessageError {
    fn disposition(&self) -> Disposition {
        match self {
            MessageError::Retry(_) => Disposition::Retry,
            MessageError::Permanent(_) => Disposition::Permanent,
        }
    }
}

/// Outbound message deliveries.
#[derive(Debug)]
pub struct MessageMetrics {
    delivered: IntCounterVec,
}

impl Component for MessageMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            delivered: counter(
                r,
                "pgfleet_messages_delivered_total",
                "Outbound message deliveries by result (sent, retry, failed).",
                &["result"],
            ),
        }
    }
}

impl MessageMetrics {
    /// One delivery attempt with its result (sent, retry, failed).
    pub fn count(&self, result: &str) {
        self.delivered.with_label_values(&[result]).inc();
    }
}
