//! The `payments.process` kind: its arguments, handler and failure dispositions.

use pgfleet_queue::{Job, JobArgs, Queue};
use pgfleet_worker::{Disposition, JobContext, JobFailure, JobHandler};

use crate::events::EventRef;
use crate::{process, ProcessError, KIND};

/// `payments.process`'s arguments: the stored event to process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ProcessPayment(pub EventRef);

impl JobArgs for ProcessPayment {
    const KIND: &'static str = KIND;
}

/// Runs `payments.process`: validates the stored event, upserts the ledger idempotently and
/// marks the event done ([`process`]).
#[derive(Clone)]
pub struct PaymentHandler {
    queue: Queue,
}

impl PaymentHandler {
    /// A handler writing through `queue`'s pool (and enqueuing notifications on it).
    pub fn new(queue: Queue) -> Self {
        Self { queue }
    }
}

impl JobHandler for PaymentHandler {
    type Args = ProcessPayment;
    type Error = ProcessError;

    async fn run(
        &self,
        args: ProcessPayment,
        _job: &Job,
        _ctx: &JobContext,
    ) -> Result<(), ProcessError> {
        process(&self.queue, args.0.webhook_event_id)
            .await
            .map(|_| ())
    }
}

impl JobFailure for ProcessError {
    /// A database or notification failure rolled everything back: retry. An invalid or
    /// missing event cannot get better: discard.
    fn disposition(&self) -> Disposition {
        match self {
            ProcessError::Database(_) | ProcessError::Notify(_) => Disposition::Retry,
            ProcessError::Invalid(_) | ProcessError::Missing(_) => Disposition::Permanent,
        }
    }
}
