//! `pgfleet dev`'s local pools: WorkerPool YAML files scaled by the controller's own policy
//! ([`pgfleet_controller::scaling::plan`] on [`Observer`] samples, as the controller), with in-process
//! workers instead of Deployment replicas — autoscaling to watch on one machine.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgfleet_controller::observe::Observer;
use pgfleet_controller::scaling::{plan, History, Policy};
use pgfleet_controller::{ControllerMetrics, WorkerPool};
use pgfleet_telemetry::Metrics;
use pgfleet_worker::WorkerSettings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::WorkerFactory;

/// Reads every `*.yaml` / `*.yml` WorkerPool in `dir` (none when it does not exist).
///
/// # Errors
/// A file that is not a valid WorkerPool (the message names it).
pub fn load(dir: &Path) -> Result<Vec<WorkerPool>, LocalPoolError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    let mut pools = Vec::new();
    for path in paths {
        let file = |reason: String| LocalPoolError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| file(e.to_string()))?;
        let pool: WorkerPool =
            serde_yaml::from_str(&text).map_err(|e| file(format!("not a WorkerPool: {e}")))?;
        if pool.spec.min_replicas > pool.spec.max_replicas {
            return Err(file("minReplicas exceeds maxReplicas".into()));
        }
        pools.push(pool);
    }
    Ok(pools)
}

/// What a local pool's workers need.
#[derive(Clone)]
pub struct Runtime {
    /// Reads statistics and records decisions (durable pool).
    pub observer: Arc<Observer>,
    /// Builds the pool's workers.
    pub workers: WorkerFactory,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// Worker settings (pool, queues and concurrency are the pool's).
    pub settings: WorkerSettings,
}

/// Why a local pool stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalPoolError {
    /// A file that is not a valid WorkerPool.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A worker could not be built.
    #[error(transparent)]
    Worker(#[from] pgfleet_worker::WorkerError),
}

/// Runs one local pool until `stop`: every `pollSeconds`, sample its queues, decide, and
/// start or drain workers to match.
///
/// # Errors
/// A worker that cannot be built from the pool's settings.
pub async fn run(
    pool: WorkerPool,
    rt: Runtime,
    stop: CancellationToken,
) -> Result<(), LocalPoolError> {
    let name = pool.metadata.name.clone().unwrap_or_else(|| "local".into());
    let queues: Vec<String> = pool.spec.queues.iter().map(|q| q.name.clone()).collect();
    let mut settings = rt.settings.clone();
    settings.pool = name.clone();
    settings.queues = pool
        .spec
        .queues
        .iter()
        .map(|q| format!("{}:{}", q.name, q.weight))
        .collect();
    settings.concurrency = usize::try_from(pool.spec.concurrency).unwrap_or(1).max(1);
    let policy = Policy::from(&pool.spec);
    let recorded = rt.metrics.component::<ControllerMetrics>();
    let poll = Duration::from_secs(pool.spec.autoscaling.poll_seconds.clamp(1, 300) as u64);
    let mut history: Option<History> = None;
    let mut started = false;
    let mut workers: Vec<(CancellationToken, JoinHandle<()>)> = Vec::new();
    let mut draining: Vec<JoinHandle<()>> = Vec::new();
    loop {
        draining.retain(|t| !t.is_finished());
        let current = i32::try_from(workers.len()).unwrap_or(i32::MAX);
        let sample = rt.observer.sample(&name, &queues).await;
        let error = sample.as_ref().err().map(ToString::to_string);
        // The controller's decision: a paused pool holds its size, a blind one too.
        let d = plan(
            &policy,
            sample
                .as_ref()
                .map_err(|_| error.as_deref().unwrap_or_default()),
            started.then_some(current),
            &mut history,
            chrono::Utc::now(),
        );
        started = true;
        if let Some(e) = &d.degraded {
            tracing::warn!(pool = %name, error = %e, "queue statistics unavailable; holding");
        }
        if let Ok(sample) = &sample {
            while workers.len() < usize::try_from(d.desired).unwrap_or(0) {
                let worker = rt.workers.build(&settings)?;
                let token = stop.child_token();
                let t = token.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) = worker.run(t).await {
                        tracing::warn!(error = %e, "local worker stopped with an error");
                    }
                });
                workers.push((token, task));
            }
            while workers.len() > usize::try_from(d.desired).unwrap_or(0) {
                if let Some((token, task)) = workers.pop() {
                    token.cancel(); // graceful: in-flight jobs finish, the rest is released
                    draining.push(task);
                }
            }
            if d.desired != current {
                tracing::info!(pool = %name, from = current, to = d.desired, reason = %d.reason, "local pool scaled");
            }
            let actual = i32::try_from(workers.len()).unwrap_or(i32::MAX);
            recorded.set_replicas(&name, d.desired, actual);
            if let Some(queue) = rt.observer.queue() {
                let recorded = queue
                    .record_pool(&pgfleet_queue::pools::PoolReport {
                        name: name.clone(),
                        source: "local".into(),
                        desired: d.desired,
                        actual,
                        backlog: sample.backlog,
                        lag_seconds: sample.oldest_age_secs,
                        reason: d.reason.clone(),
                        updated_at: chrono::Utc::now(),
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::warn!(pool = %name, error = %e, "could not record the pool's state");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    for (token, task) in workers {
        token.cancel();
        draining.push(task);
    }
    for t in draining {
        let _ = t.await;
    }
    if let Some(queue) = rt.observer.queue() {
        let _ = queue.forget_pool(&name).await;
    }
    Ok(())
}
