//! What an [`crate::App`] is made of.

use pgfleet_controller::WorkerPool;
use pgfleet_gateway::GatewayConfig;
use pgfleet_worker::WorkerSettings;
use sqlx::postgres::PgConnectOptions;

use crate::Kinds;

/// One process's pgfleet: which components run, on which database, with which settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The database.
    pub database: PgConnectOptions,
    /// A direct connection for the workers' LISTEN, when `database` goes through a
    /// transaction-pooling PgBouncer.
    pub listen_database: Option<PgConnectOptions>,
    /// Connections per pool (default: 10, or for workers alone 2 + one per 10 slots).
    pub pool_size: Option<u32>,
    /// Partition count on a first install.
    pub partitions: Option<u16>,
    /// The gateway, when this process serves HTTP.
    pub gateway: Option<GatewayConfig>,
    /// Fixed workers to run (ignored while `local_pools` is not empty).
    pub workers: usize,
    /// The workers' settings (a local pool's name, queues and slots replace its own).
    pub worker: WorkerSettings,
    /// WorkerPools to run as autoscaled in-process pools.
    pub local_pools: Vec<WorkerPool>,
    /// The optional job kinds' clients.
    pub kinds: Kinds,
    /// The `component` label of every metric (`gateway`, `worker`, `dev`).
    pub component: String,
}

impl AppConfig {
    /// Nothing but `database`: add the gateway, workers or local pools.
    pub fn new(database: PgConnectOptions, component: &str) -> Self {
        Self {
            database,
            listen_database: None,
            pool_size: None,
            partitions: None,
            gateway: None,
            workers: 0,
            worker: WorkerSettings::default(),
            local_pools: Vec::new(),
            kinds: Kinds::default(),
            component: component.to_owned(),
        }
    }

    /// Whether workers run in this process.
    pub fn runs_workers(&self) -> bool {
        self.workers > 0 || !self.local_pools.is_empty()
    }
}
