//! # pgfleet-worker
//!
//! The worker runtime: serves a pool's queues, first from the partitions it owns and then
//! from the rest of the fleet's backlog, wakes on NOTIFY (with a slow poll as a backstop),
//! claims ahead of its free slots into a small leased buffer, runs handlers concurrently
//! with per-kind timeouts, reports outcomes through the batching completer, heartbeats held
//! jobs, hands its partitions over at join and leave without a listening gap, and shuts
//! down gracefully. Each job runs in a span
//! parented from the trace context stored at enqueue; claims, outcomes and durations are
//! recorded in Prometheus metrics served with the probes on the health port ([`health`]).
//!
//! The runtime knows no product domain: a job kind is a type in the crate that owns its work
//! ([`kind`]: typed arguments, handler and error), registered with [`Registry::add`]. The
//! built-in kinds `noop`, `sleep` and `fail` serve benchmarks and tests.

pub mod config;
pub mod connect;
mod feed;
pub mod handler;
pub mod health;
pub mod kind;
mod membership;
mod metrics;
pub mod prefetch;
pub mod runtime;

pub use config::{default_pool_size, parse_queues, WorkerConfig, WorkerSettings};
pub use connect::worker_connect_options;
pub use handler::{Disposition, JobContext, JobError, Registry};
pub use health::Readiness;
pub use kind::{JobFailure, JobHandler};
pub use metrics::ClaimMetrics;
pub use runtime::{Worker, WorkerError, WorkerStats};
