//! Typed job kinds: a handler for one [`JobArgs`] type, with a typed error.
//!
//! A kind is a Rust type in the crate that owns its work: its arguments implement
//! [`JobArgs`] (name, defaults), its handler implements [`JobHandler`], and its error
//! implements [`JobFailure`] to say what the runtime does with a failed attempt. The
//! runtime knows none of them: the assembly registers each with [`Registry::add`].
//!
//! ```
//! use pgfleet_queue::{Job, JobArgs, KindDefaults, NewJob};
//! use pgfleet_worker::{Disposition, JobContext, JobFailure, JobHandler, Registry};
//!
//! /// The arguments: what the enqueuer writes and the handler reads.
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct Greet {
//!     pub name: String,
//! }
//!
//! impl JobArgs for Greet {
//!     const KIND: &'static str = "example.greet";
//!     fn defaults() -> KindDefaults {
//!         KindDefaults { max_attempts: 3, ..KindDefaults::DEFAULT }
//!     }
//! }
//!
//! /// The failures, each with what the runtime does next.
//! #[derive(Debug, thiserror::Error)]
//! pub enum GreetError {
//!     #[error("nobody to greet")]
//!     Nobody,
//! }
//!
//! impl JobFailure for GreetError {
//!     fn disposition(&self) -> Disposition {
//!         Disposition::Permanent
//!     }
//! }
//!
//! /// The handler, holding what it needs (pools, clients).
//! pub struct Greeter;
//!
//! impl JobHandler for Greeter {
//!     type Args = Greet;
//!     type Error = GreetError;
//!     async fn run(&self, args: Greet, _job: &Job, _ctx: &JobContext) -> Result<(), GreetError> {
//!         if args.name.is_empty() {
//!             return Err(GreetError::Nobody);
//!         }
//!         println!("hello, {}", args.name);
//!         Ok(())
//!     }
//! }
//!
//! // The registration line (in the assembly), and a typed enqueue anywhere.
//! let mut registry = Registry::builtin();
//! registry.add(Greeter);
//! assert!(registry.kinds().contains(&"example.greet"));
//! let job = NewJob::from_args(&Greet { name: "Ada".into() }).unwrap();
//! assert_eq!((job.kind.as_str(), job.max_attempts), ("example.greet", 3));
//! ```

use std::future::Future;
use std::sync::Arc;

use pgfleet_queue::{Job, JobArgs};

use crate::handler::{Disposition, JobContext, JobError, Registry};

/// A handler's typed failure: its message goes to the job's error history, its
/// disposition tells the runtime what to do (retry, retry after, discard, snooze).
pub trait JobFailure: std::fmt::Display + Send + 'static {
    /// What to do with the failed attempt.
    fn disposition(&self) -> Disposition;
}

impl JobFailure for JobError {
    fn disposition(&self) -> Disposition {
        self.disposition
    }
}

/// The handler of one typed kind.
pub trait JobHandler: Send + Sync + 'static {
    /// The kind's arguments (and so its name and defaults).
    type Args: JobArgs;
    /// The kind's failures.
    type Error: JobFailure;

    /// Runs one attempt. `job` is the row (attempt, metadata...); `ctx` carries the
    /// cancellation token an operator's cancel or the shutdown grace fires.
    fn run(
        &self,
        args: Self::Args,
        job: &Job,
        ctx: &JobContext,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl Registry {
    /// Registers a typed kind under `H::Args::KIND` with its default timeout. A job whose
    /// payload does not decode as `H::Args` is discarded at once with the decoding error,
    /// naming the field (retrying cannot change its payload).
    pub fn add<H: JobHandler>(&mut self, handler: H) -> &mut Self {
        let handler = Arc::new(handler);
        let timeout = <H::Args as JobArgs>::defaults().timeout;
        self.register_with_timeout(H::Args::KIND, timeout, move |job, ctx| {
            let handler = handler.clone();
            async move {
                let args = job
                    .args::<H::Args>()
                    .map_err(|e| JobError::permanent(format!("the payload is not valid {e}")))?;
                handler.run(args, &job, &ctx).await.map_err(|e| JobError {
                    message: e.to_string(),
                    disposition: e.disposition(),
                })
            }
        })
    }
}
