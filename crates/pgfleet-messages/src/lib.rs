//! # pgfleet-messages
//!
//! Outbound messages (seed 004): a message is stored unsent together with its
//! `messages.deliver` job (one transaction); the job POSTs it to the message's webhook URL
//! (or the configured default), signed per Standard Webhooks, sets `sent_at` on the first
//! 2xx — once, whatever retries happen — and otherwise retries with backoff until the job
//! is discarded.
//!
//! [`kind`] is the `messages.deliver` kind (typed arguments, handler, metrics);
//! [`signature`] holds the signature schemes, shared with the gateway's ingest.

pub mod deliver;
pub mod kind;
pub mod signature;
pub mod store;

pub use deliver::{Deliverer, MessageError};
pub use kind::{DeliverMessage, MessageHandler, MessageMetrics};
pub use store::{Message, NewMessage};

/// The job kind that delivers one message.
pub const KIND: &str = "messages.deliver";

/// A request field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    /// The field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}
