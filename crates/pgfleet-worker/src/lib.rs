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
//! Built-in kinds: `payments.process` ([`Registry::with_payments`]) and `noop`, `sleep`,
//! `fail` for benchmarks and tests; product handlers register through [`Registry`].

pub mod config;
pub mod connect;
mod feed;
pub mod handler;
pub mod health;
mod membership;
pub mod prefetch;
pub mod runtime;

pub use config::{default_pool_size, WorkerConfig};
pub use connect::worker_connect_options;
pub use handler::{Disposition, JobContext, JobError, Registry};
pub use health::Readiness;
pub use runtime::{Worker, WorkerError, WorkerStats};
