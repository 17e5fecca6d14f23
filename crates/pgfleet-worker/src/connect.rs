//! Connection settings for a worker's own pool.
//!
//! A worker's writes — claims, outcomes, lease heartbeats, partition leases — may use
//! asynchronous commit: if the database crashes before they reach disk, the jobs concerned
//! simply run again (a lost claim leaves the job available; a lost outcome leaves it
//! running until its lease expires and the rescuer returns it). That is at-least-once
//! delivery, never a lost job, and it takes a WAL flush off every job's path. Enqueues stay
//! synchronous: an acknowledged job is durable. Do not enqueue through a pool built with
//! these options.

use sqlx::postgres::PgConnectOptions;

/// `options` with `synchronous_commit = off`, for the pool a [`crate::Worker`]'s queue uses.
pub fn worker_connect_options(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("synchronous_commit", "off")])
}
