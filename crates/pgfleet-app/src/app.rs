//! Building and running one process's pgfleet.

use std::sync::Arc;

use pgfleet_gateway::AppState;
use pgfleet_queue::notify::NotifierConfig;
use pgfleet_queue::{PartitionCount, Queue, QueueError};
use pgfleet_telemetry::Metrics;
use pgfleet_worker::{Readiness, Worker, WorkerConfig, WorkerError, WorkerSettings};
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::database::connect_pool;
use crate::{AppConfig, Kinds};

/// Why the app could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// PostgreSQL cannot be reached.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// The queue failed (migrations, a missing schema).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// Serving HTTP failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A local pool failed.
    #[error("local pool: {0}")]
    LocalPool(String),
}

/// Builds workers the same way for fixed workers and local pools: the workers' queue, the
/// LISTEN connection, the registered kinds and the shared registry.
#[derive(Clone)]
pub struct WorkerFactory {
    queue: Queue,
    listen: PgConnectOptions,
    kinds: Kinds,
    metrics: Arc<Metrics>,
}

impl WorkerFactory {
    /// A worker with `settings`, running every registered kind.
    ///
    /// # Errors
    /// An invalid configuration (no queue, zero slots, a bad queue name or weight).
    pub fn build(&self, settings: &WorkerSettings) -> Result<Worker, WorkerError> {
        let registry = self.kinds.registry(&self.queue, &self.metrics);
        let config = WorkerConfig::from_settings(settings)?;
        Ok(
            Worker::new(self.queue.clone(), self.listen.clone(), config, registry)?
                .with_metrics(self.metrics.clone()),
        )
    }

    /// The workers' queue handle.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

/// One process's pgfleet, built and ready to run.
pub struct App {
    config: AppConfig,
    queue: Queue,
    factory: Option<WorkerFactory>,
    metrics: Arc<Metrics>,
    partitions: PartitionCount,
    gateway: Option<AppState>,
    workers: Vec<Worker>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("component", &self.config.component)
            .field("gateway", &self.gateway.is_some())
            .field("workers", &self.workers.len())
            .field("local_pools", &self.config.local_pools.len())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects, applies migrations and builds what `config` asks for. Two pools when the
    /// process both acknowledges writes and runs workers: the gateway's commits durably
    /// (acknowledged means committed), the workers' asynchronously (a write lost in a crash
    /// there only means a job runs again).
    ///
    /// # Errors
    /// An unreachable database, failed migrations, or an invalid configuration.
    pub async fn build(config: AppConfig) -> Result<Self, AppError> {
        if let Some(g) = &config.gateway {
            if g.api_keys.is_empty() && g.hmac_secret.is_none() {
                return Err(AppError::Config(
                    "no credentials configured: set PGFLEET_API_KEYS or PGFLEET_HMAC_SECRET".into(),
                ));
            }
        }
        let durable = config.gateway.is_some() || !config.local_pools.is_empty();
        let workers = config.runs_workers();
        if !durable && !workers {
            return Err(AppError::Config(
                "nothing to run: configure the gateway, workers or local pools".into(),
            ));
        }
        let worker_default = if durable {
            10
        } else {
            pgfleet_worker::default_pool_size(config.worker.concurrency)
        };
        let durable_pool = match durable {
            true => {
                Some(connect_pool(config.database.clone(), config.pool_size.unwrap_or(10)).await?)
            }
            false => None,
        };
        let worker_pool = match workers {
            true => Some(
                connect_pool(
                    pgfleet_worker::worker_connect_options(config.database.clone()),
                    config.pool_size.unwrap_or(worker_default),
                )
                .await?,
            ),
            false => None,
        };
        let nothing = || AppError::Config("nothing to run".into());
        let first = durable_pool
            .as_ref()
            .or(worker_pool.as_ref())
            .ok_or_else(nothing)?;
        let partitions = pgfleet_queue::migrate::migrate(first, config.partitions).await?;
        let metrics = Arc::new(Metrics::new(&config.component));
        let queue_durable = match durable_pool {
            Some(p) => Some(Queue::new(p).await?),
            None => None,
        };
        let worker_queue = match worker_pool {
            // A worker-only process's pool already commits asynchronously: the notifier
            // shares it.
            Some(p) if queue_durable.is_none() => {
                Some(Queue::with_notifier(p, NotifierConfig::shared_pool()).await?)
            }
            Some(p) => Some(Queue::new(p).await?),
            None => None,
        };
        let factory = worker_queue.map(|queue| WorkerFactory {
            queue,
            listen: config
                .listen_database
                .clone()
                .unwrap_or_else(|| config.database.clone()),
            kinds: config.kinds.clone(),
            metrics: metrics.clone(),
        });
        let queue = match (&queue_durable, &factory) {
            (Some(q), _) => q.clone(),
            (None, Some(f)) => f.queue.clone(),
            (None, None) => return Err(nothing()),
        };
        let gateway = config
            .gateway
            .clone()
            .map(|g| AppState::with_metrics(queue.clone(), g, metrics.clone()));
        let mut fixed = Vec::new();
        if let Some(f) = &factory {
            if config.local_pools.is_empty() {
                for _ in 0..config.workers {
                    fixed.push(f.build(&config.worker)?);
                }
            }
        }
        Ok(Self {
            config,
            queue,
            factory,
            metrics,
            partitions,
            gateway,
            workers: fixed,
        })
    }

    /// The durable queue handle (the workers' when this process runs only workers).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The process's metric registry.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The installed partition count.
    pub fn partitions(&self) -> PartitionCount {
        self.partitions
    }

    /// The configuration the app was built from.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Builds workers like the app's own (for callers that start more).
    pub fn worker_factory(&self) -> Option<&WorkerFactory> {
        self.factory.as_ref()
    }

    /// The fixed workers' readiness flags, in order (a worker process has one, and its
    /// health port reports it).
    pub fn readiness(&self) -> Vec<Readiness> {
        self.workers.iter().map(Worker::readiness).collect()
    }

    /// Serves until `shutdown`: the gateway on `listener` when configured, else the worker
    /// probes and `/metrics` on it; the fixed workers; the local pools. Returns when every
    /// part has stopped (in-flight jobs finished or released).
    ///
    /// # Errors
    /// The first part that failed.
    pub async fn run(
        self,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        let mut tasks: JoinSet<Result<(), AppError>> = JoinSet::new();
        let ready = self.readiness();
        match (listener, &self.gateway) {
            (Some(l), Some(state)) => {
                let (state, stop) = (state.clone(), shutdown.clone());
                tasks.spawn(async move { Ok(pgfleet_gateway::serve(l, state, stop).await?) });
            }
            (Some(l), None) => {
                let pool = self.queue.pool().clone();
                let (metrics, stop) = (self.metrics.clone(), shutdown.clone());
                let ready = ready.first().cloned().unwrap_or_default();
                tasks.spawn(async move {
                    Ok(pgfleet_worker::health::serve(l, pool, ready, metrics, stop).await?)
                });
            }
            (None, Some(_)) => {
                return Err(AppError::Config("the gateway needs a listener".into()));
            }
            (None, None) => {}
        }
        for worker in self.workers {
            let stop = shutdown.clone();
            tasks.spawn(async move { Ok(worker.run(stop).await?) });
        }
        if let (Some(factory), false) = (&self.factory, self.config.local_pools.is_empty()) {
            let observer = Arc::new(pgfleet_controller::observe::Observer::new(
                self.queue.clone(),
            ));
            for pool in self.config.local_pools.iter().cloned() {
                let rt = crate::local_pools::Runtime {
                    observer: observer.clone(),
                    workers: factory.clone(),
                    metrics: self.metrics.clone(),
                    settings: self.config.worker.clone(),
                };
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    crate::local_pools::run(pool, rt, stop)
                        .await
                        .map_err(|e| AppError::LocalPool(e.to_string()))
                });
            }
        }
        // The first part to fail stops the others.
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result =
                joined.unwrap_or_else(|e| Err(AppError::LocalPool(format!("task failed: {e}"))));
            if let Err(e) = result {
                shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        self.queue.close().await;
        if let Some(f) = &self.factory {
            f.queue.close().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}
