//! The process's registry and the components registered in it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Buckets for latencies, 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A group of metric families one component owns and records through its own methods.
pub trait Component: Send + Sync + 'static {
    /// Defines the families and registers them in `registry` (called once per registry).
    fn register(registry: &Registry) -> Self;
}

/// One process's registry, labelled with its component name (`gateway`, `worker`, ...).
/// Cheap to share behind an `Arc`: several workers and a gateway in one process record into
/// one registry, so one `/metrics` shows everything.
pub struct Metrics {
    registry: Registry,
    uptime: Gauge,
    started: std::time::Instant,
    components: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose series carry `component="<component>"`.
    ///
    /// # Panics
    /// Never with pgfleet's own names (a bad metric definition is a programming error).
    pub fn new(component: &str) -> Self {
        let labels = std::iter::once(("component".to_owned(), component.to_owned())).collect();
        let registry =
            Registry::new_custom(None, Some(labels)).unwrap_or_else(|e| panic!("registry: {e}"));
        let uptime = register(
            &registry,
            Gauge::new(
                "pgfleet_uptime_seconds",
                "Seconds since the process started.",
            ),
        );
        Self {
            registry,
            uptime,
            started: std::time::Instant::now(),
            components: Mutex::new(HashMap::new()),
        }
    }

    /// The component `C`'s families in this registry, registered on first use.
    pub fn component<C: Component>(&self) -> Arc<C> {
        let mut components = self
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = components
            .entry(TypeId::of::<C>())
            .or_insert_with(|| Arc::new(C::register(&self.registry)));
        match Arc::clone(entry).downcast::<C>() {
            Ok(c) => c,
            // Keyed by the type id: the entry is a `C`.
            Err(_) => unreachable!("metric component map holds another type"),
        }
    }

    /// The job lifecycle families ([`crate::JobMetrics`]).
    pub fn jobs(&self) -> Arc<crate::JobMetrics> {
        self.component()
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Registers `c` (a freshly defined collector) in `r`.
///
/// # Panics
/// On a bad definition or a name registered twice: programming errors, caught by any test
/// that builds the component.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: Result<C, prometheus::Error>,
) -> C {
    let c = c.unwrap_or_else(|e| panic!("metric definition: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    c
}

/// A counter family.
pub fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

/// An integer gauge family.
pub fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A float gauge family.
pub fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(r, GaugeVec::new(Opts::new(name, help), labels))
}

/// A histogram family with `buckets` (default [`LATENCY_BUCKETS`]).
pub fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Option<&[f64]>,
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.unwrap_or(LATENCY_BUCKETS).to_vec());
    register(r, HistogramVec::new(opts, labels))
}

/// A histogram without labels (always rendered, also before its first observation).
pub fn single_histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, Histogram::with_opts(opts))
}
