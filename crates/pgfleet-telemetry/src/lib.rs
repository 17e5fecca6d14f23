//! # pgfleet-telemetry
//!
//! One Prometheus registry per process ([`Metrics`]) with pgfleet's metric families:
//! consistent names (`pgfleet_` prefix, `_total` counters, `_seconds` base units) and bounded
//! labels only (queue, kind, partition, state, outcome, route, method, status, source — never
//! a job id or a user id). Each component owns its families as a [`Component`] with
//! methods (the gateway's HTTP metrics in the gateway, Web Push's in `pgfleet-push`, ...),
//! registered once per registry by [`Metrics::component`]; this crate holds the families
//! several components share: the job lifecycle ([`JobMetrics`]) and the database's view of
//! queues and workers ([`QueueGauges`]). `/metrics` renders the registry as Prometheus text.

mod families;
mod labels;
mod registry;
mod tracing_init;

pub use families::{JobMetrics, QueueGauges};
pub use labels::{LabelBudget, LABEL_BUDGET, OTHER};
pub use registry::{
    counter, float_gauge, gauge, histogram, register, single_histogram, Component, Metrics,
    CONTENT_TYPE, LATENCY_BUCKETS,
};
pub use tracing_init::{
    init, init_with, install_crypto_provider, parent_from_headers, parent_from_metadata,
    set_parent, trace_metadata, TelemetryGuard,
};

/// The Prometheus client, for components that define their own families.
pub use prometheus;
