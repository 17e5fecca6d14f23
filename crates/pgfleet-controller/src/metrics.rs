//! The controller's metric families (also recorded by `pgfleet dev`'s local pools).

use pgfleet_telemetry::prometheus::{Histogram, IntCounterVec, IntGaugeVec, Registry};
use pgfleet_telemetry::{counter, gauge, single_histogram, Component, LATENCY_BUCKETS};

/// Reconciles, decisions and replica counts by pool.
#[derive(Debug)]
pub struct ControllerMetrics {
    desired: IntGaugeVec,
    ready: IntGaugeVec,
    duration: Histogram,
    errors: IntCounterVec,
    scale_events: IntCounterVec,
    decisions: IntCounterVec,
}

impl Component for ControllerMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            desired: gauge(
                r,
                "pgfleet_controller_desired_replicas",
                "Replicas the controller wants, by pool.",
                &["pool"],
            ),
            ready: gauge(
                r,
                "pgfleet_controller_ready_replicas",
                "Ready replicas, by pool.",
                &["pool"],
            ),
            duration: single_histogram(
                r,
                "pgfleet_controller_reconcile_duration_seconds",
                "Reconcile time.",
                LATENCY_BUCKETS,
            ),
            errors: counter(
                r,
                "pgfleet_controller_reconcile_errors_total",
                "Failed reconciles by pool and cause (kubernetes, conflict, finalizer, invalid).",
                &["pool", "cause"],
            ),
            scale_events: counter(
                r,
                "pgfleet_controller_scale_events_total",
                "Replica changes by pool and direction.",
                &["pool", "direction"],
            ),
            decisions: counter(
                r,
                "pgfleet_controller_decisions_total",
                "Scaling decisions (queue samples) by pool.",
                &["pool"],
            ),
        }
    }
}

impl ControllerMetrics {
    /// A pool's desired and ready replicas.
    pub fn set_replicas(&self, pool: &str, desired: i32, ready: i32) {
        self.desired
            .with_label_values(&[pool])
            .set(i64::from(desired));
        self.ready.with_label_values(&[pool]).set(i64::from(ready));
    }

    /// Forgets every pool's replica gauges (this process no longer decides them).
    pub fn forget_replicas(&self) {
        self.desired.reset();
        self.ready.reset();
    }

    /// One reconcile's time, and its failure cause when it failed.
    pub fn record_reconcile(&self, pool: &str, secs: f64, failure: Option<&str>) {
        self.duration.observe(secs);
        if let Some(cause) = failure {
            self.errors.with_label_values(&[pool, cause]).inc();
        }
    }

    /// One scaling decision taken for `pool`.
    pub fn count_decision(&self, pool: &str) {
        self.decisions.with_label_values(&[pool]).inc();
    }

    /// One replica change of `pool` (`direction`: up or down).
    pub fn count_scale(&self, pool: &str, direction: &str) {
        self.scale_events
            .with_label_values(&[pool, direction])
            .inc();
    }
}
