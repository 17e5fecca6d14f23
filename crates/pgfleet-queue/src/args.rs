//! Typed job arguments: a job kind as a Rust type.
//!
//! A kind's arguments are a serde struct implementing [`JobArgs`]: its [`JobArgs::KIND`] and
//! its defaults ([`KindDefaults`]: queue, priority, attempts, per-attempt timeout). Enqueue
//! them with [`NewJob::from_args`] (or [`crate::Queue::enqueue_args`]); a worker decodes
//! them back with [`Job::args`]. The untyped path ([`NewJob::new`] with a JSON payload) stays
//! for the HTTP API and other languages: both write the same rows.
//!
//! ```
//! use pgfleet_queue::{JobArgs, KindDefaults, NewJob};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice {
//!     invoice_id: i64,
//! }
//!
//! impl JobArgs for SendInvoice {
//!     const KIND: &'static str = "billing.send_invoice";
//!     fn defaults() -> KindDefaults {
//!         KindDefaults { queue: "billing", max_attempts: 5, ..KindDefaults::DEFAULT }
//!     }
//! }
//!
//! let job = NewJob::from_args(&SendInvoice { invoice_id: 7 }).unwrap();
//! assert_eq!((job.queue.as_str(), job.kind.as_str()), ("billing", "billing.send_invoice"));
//! assert_eq!(job.payload["invoice_id"], 7);
//! assert_eq!(job.max_attempts, 5);
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{QueueError, Result};
use crate::job::{Job, NewJob, DEFAULT_MAX_ATTEMPTS, PRIORITY_DEFAULT};

/// The arguments of one job kind: what is stored as the job's payload.
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name (selects the handler): 1..=128 of `[A-Za-z0-9_.:-]`.
    const KIND: &'static str;

    /// Where and how jobs of this kind run unless the enqueuer says otherwise.
    fn defaults() -> KindDefaults {
        KindDefaults::DEFAULT
    }
}

/// A kind's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDefaults {
    /// The queue jobs go to.
    pub queue: &'static str,
    /// 0 (highest) ..= 9 (lowest).
    pub priority: i16,
    /// Attempts before a job is discarded.
    pub max_attempts: i32,
    /// Longest one attempt may run before it fails with a timeout.
    pub timeout: Duration,
}

impl KindDefaults {
    /// The defaults of every kind that states none: queue `default`, priority 1, 20
    /// attempts, 5 minutes per attempt.
    pub const DEFAULT: Self = Self {
        queue: "default",
        priority: PRIORITY_DEFAULT,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        timeout: Duration::from_secs(300),
    };
}

impl Default for KindDefaults {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl NewJob {
    /// A job of kind `A::KIND` carrying `args`, with the kind's default queue, priority and
    /// attempts (the builder methods still override them).
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming `payload` when `args` do not serialize to JSON.
    pub fn from_args<A: JobArgs>(args: &A) -> Result<Self> {
        let d = A::defaults();
        let payload = serde_json::to_value(args).map_err(|e| {
            QueueError::invalid("payload", format!("{} args do not serialize: {e}", A::KIND))
        })?;
        Ok(Self::new(d.queue, A::KIND)
            .payload(payload)
            .priority(d.priority)
            .max_attempts(d.max_attempts))
    }

    /// Sends the job to `queue` instead of its kind's default.
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
}

/// A payload that is not its kind's arguments, naming where it differs.
#[derive(Debug, thiserror::Error)]
#[error("{kind} arguments: {path}: {reason}")]
pub struct ArgsError {
    /// The kind.
    pub kind: &'static str,
    /// Where in the payload (`account`, `items[2].sku`, `.` for the whole).
    pub path: String,
    /// What serde expected.
    pub reason: String,
}

impl Job {
    /// The job's payload decoded as `A`.
    ///
    /// # Errors
    /// [`ArgsError`] naming the field when the payload is not an `A` (written by another
    /// version, by hand or by SQL).
    pub fn args<A: JobArgs>(&self) -> std::result::Result<A, ArgsError> {
        serde_path_to_error::deserialize(&self.payload).map_err(|e| ArgsError {
            kind: A::KIND,
            path: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ping {
        n: i64,
    }

    impl JobArgs for Ping {
        const KIND: &'static str = "ping";
    }

    #[test]
    fn typed_args_take_the_kind_defaults_and_round_trip() {
        let job = NewJob::from_args(&Ping { n: 3 }).unwrap();
        assert_eq!(job.kind, "ping");
        assert_eq!(job.queue, "default");
        assert_eq!(job.priority, PRIORITY_DEFAULT);
        assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(job.clone().on_queue("other").queue, "other");
        assert_eq!(stored(job.payload).args::<Ping>().unwrap(), Ping { n: 3 });
        let wrong = stored(serde_json::json!({"n": "three"}));
        let e = wrong.args::<Ping>().unwrap_err();
        assert_eq!((e.kind, e.path.as_str()), ("ping", "n"));
        assert!(
            e.to_string().starts_with("ping arguments: n: invalid type"),
            "{e}"
        );
    }

    fn stored(payload: serde_json::Value) -> Job {
        let now = chrono::Utc::now();
        Job {
            id: 1,
            queue: "default".into(),
            kind: "ping".into(),
            partition: 0,
            priority: PRIORITY_DEFAULT,
            state: crate::JobState::Running,
            payload,
            metadata: serde_json::json!({}),
            attempt: 1,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: now,
            attempted_at: Some(now),
            attempted_by: None,
            lease_until: None,
            errors: serde_json::json!([]),
            unique_key: None,
            created_at: now,
            finalized_at: None,
            partition_key: None,
            workflow_id: None,
            progress: None,
            output: None,
        }
    }
}
