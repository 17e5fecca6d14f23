//! Integration tests of the queue library against a real PostgreSQL server.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! Every test owns a fresh database (see pgfleet-testkit).

mod admin;
mod claim;
mod console;
mod enqueue;
mod flow;
mod listener;
mod migrate;
mod ownership;
mod properties;
mod rescue;
mod schedule;
mod workflow;

use std::time::Duration;

use pgfleet_queue::claim::ClaimRequest;
use pgfleet_queue::{Job, Queue};
use pgfleet_testkit::TestDb;

pub use pgfleet_testkit::migrated as setup;

/// Claims up to `n` jobs from `queues` as worker `w` with a 30 s lease.
pub async fn claim(queue: &Queue, queues: &[&str], n: usize, w: &str) -> anyhow::Result<Vec<Job>> {
    let queues: Vec<String> = queues.iter().map(|s| s.to_string()).collect();
    Ok(queue
        .claim(&ClaimRequest {
            order: &pgfleet_queue::claim::QueueOrder::ByPriority,
            queues: &queues,
            partitions: None,
            limit: n,
            worker_id: w,
            lease: Duration::from_secs(30),
        })
        .await?)
}

/// Rows in a table.
pub async fn count(db: &TestDb, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&db.pool)
        .await?)
}
