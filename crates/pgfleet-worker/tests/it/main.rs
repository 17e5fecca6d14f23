//! Integration tests of the worker runtime against a real PostgreSQL server.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod burn_down;
mod fleet;
mod flow;
mod lifecycle;
mod typed;
mod workflow;

use std::time::Duration;

use pgfleet_queue::backoff::Backoff;
use pgfleet_queue::Queue;
use pgfleet_testkit::TestDb;
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use pgfleet_testkit::migrated as setup;

/// Test-speed settings: short leases, fast backoff, quick ownership.
pub fn fast_config(queues: &[&str]) -> WorkerConfig {
    let mut c = WorkerConfig::new("pool", queues.iter().map(|s| s.to_string()).collect());
    c.concurrency = 20;
    c.lease = Duration::from_secs(2);
    c.rescue_interval = Duration::from_millis(200);
    c.ownership_ttl = Duration::from_millis(1500);
    c.backoff = Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(1),
        jitter: 0.1,
    };
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// A running worker on its own connection pool (as a separate process would have).
pub struct Running {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), pgfleet_worker::WorkerError>>,
    pub stats: std::sync::Arc<pgfleet_worker::WorkerStats>,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

pub async fn start(
    db: &TestDb,
    config: WorkerConfig,
    registry: Registry,
) -> anyhow::Result<Running> {
    let pool = db.new_pool(5).await?;
    let queue = Queue::new(pool).await?;
    let worker = Worker::new(queue, db.options.clone(), config, registry)?;
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    Ok(Running { stop, task, stats })
}

/// Finished jobs by state.
pub async fn finished(db: &TestDb, state: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE state::text = $1")
            .bind(state)
            .fetch_one(&db.pool)
            .await?,
    )
}
