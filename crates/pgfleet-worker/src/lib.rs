//! # pgfleet-worker
//!
//! The worker runtime: serves a pool's queues from the partitions it leases, wakes on
//! NOTIFY (with a slow poll as a backstop), claims up to its free slots in one statement,
//! runs handlers concurrently with per-kind timeouts, reports outcomes through the batching
//! completer, heartbeats long jobs, and shuts down gracefully. Each job runs in a span
//! parented from the trace context stored at enqueue; claims, outcomes and durations are
//! recorded in Prometheus metrics served with the probes on the health port ([`health`]).
//!
//! Built-in kinds: `payments.process` ([`Registry::with_payments`]) and `noop`, `sleep`,
//! `fail` for benchmarks and tests; product handlers register through [`Registry`].

pub mod config;
pub mod connect;
pub mod handler;
pub mod health;
pub mod runtime;

pub use config::WorkerConfig;
pub use connect::worker_connect_options;
pub use handler::{Disposition, JobContext, JobError, Registry};
pub use health::Readiness;
pub use runtime::{Worker, WorkerError, WorkerStats};
