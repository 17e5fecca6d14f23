//! Every job kind pgfleet ships, registered in one place. A kind lives in the crate that
//! owns its work (arguments, handler, error, metrics); adding one is one line here.

use pgfleet_queue::Queue;
use pgfleet_telemetry::Metrics;
use pgfleet_worker::Registry;

/// The optional kinds' clients: a kind whose client is not configured is not registered
/// (its jobs wait for a worker that has it).
#[derive(Debug, Clone, Default)]
pub struct Kinds {
    /// Web Push (`webpush.deliver`; needs VAPID keys).
    pub push: Option<pgfleet_push::PushClient>,
    /// Outbound messages (`messages.deliver`; needs a signing secret).
    pub messages: Option<pgfleet_messages::Deliverer>,
}

impl Kinds {
    /// The registry a worker on `queue` runs: the built-in kinds (`noop`, `sleep`, `fail`),
    /// `payments.process`, and the configured optional kinds, counting into `metrics`.
    pub fn registry(&self, queue: &Queue, metrics: &Metrics) -> Registry {
        let mut r = Registry::builtin();
        r.add(pgfleet_payments::PaymentHandler::new(queue.clone()));
        if let Some(client) = &self.push {
            r.add(pgfleet_push::PushHandler::new(
                queue.pool().clone(),
                client.clone(),
                metrics,
            ));
        }
        if let Some(deliverer) = &self.messages {
            r.add(pgfleet_messages::MessageHandler::new(
                queue.pool().clone(),
                deliverer.clone(),
                metrics,
            ));
        }
        r
    }

    /// Logs which optional kinds are off, and how to turn them on.
    pub fn warn_disabled(&self) {
        if self.push.is_none() {
            tracing::warn!("webpush.deliver is off: set PGFLEET_VAPID_PRIVATE_KEY and PGFLEET_VAPID_SUBJECT (pgfleet vapid generate)");
        }
        if self.messages.is_none() {
            tracing::warn!("messages.deliver is off: set PGFLEET_MESSAGES_SECRET (whsec_...)");
        }
    }
}
