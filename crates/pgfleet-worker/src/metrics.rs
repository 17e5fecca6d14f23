//! The worker's own metric families: claims, work claimed ahead, listener reconnections.
//! Attempts are recorded in the shared [`pgfleet_telemetry::JobMetrics`].

use pgfleet_telemetry::prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use pgfleet_telemetry::{counter, register, single_histogram, Component, LATENCY_BUCKETS};

/// Claims and the claim-ahead buffer of every worker in the process.
#[derive(Debug)]
pub struct ClaimMetrics {
    duration: Histogram,
    claimed: IntCounterVec,
    stolen: IntCounterVec,
    ahead: IntGauge,
    reconnects: IntCounter,
}

impl Component for ClaimMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            duration: single_histogram(
                r,
                "pgfleet_claim_duration_seconds",
                "Time of one claim statement.",
                LATENCY_BUCKETS,
            ),
            claimed: counter(r, "pgfleet_jobs_claimed_total", "Jobs claimed.", &["queue"]),
            stolen: counter(
                r,
                "pgfleet_jobs_stolen_total",
                "Jobs claimed from partitions another worker owns.",
                &["queue"],
            ),
            ahead: register(
                r,
                IntGauge::new(
                    "pgfleet_jobs_claimed_ahead",
                    "Jobs claimed ahead of free slots, waiting for one.",
                ),
            ),
            reconnects: register(
                r,
                IntCounter::new(
                    "pgfleet_listener_reconnects_total",
                    "NOTIFY listener reconnections.",
                ),
            ),
        }
    }
}

impl ClaimMetrics {
    /// One claim statement's time.
    pub fn observe_claim(&self, secs: f64) {
        self.duration.observe(secs);
    }

    /// `n` jobs claimed from `queue`.
    pub fn count_claimed(&self, queue: &str, n: u64) {
        self.claimed.with_label_values(&[queue]).inc_by(n);
    }

    /// `n` jobs of `queue` claimed from partitions another worker owns.
    pub fn count_stolen(&self, queue: &str, n: u64) {
        self.stolen.with_label_values(&[queue]).inc_by(n);
    }

    /// Jobs entering (`n` > 0) or leaving (`n` < 0) the claim-ahead buffer.
    pub fn buffered(&self, n: i64) {
        self.ahead.add(n);
    }

    /// One listener reconnection.
    pub fn count_reconnect(&self) {
        self.reconnects.inc();
    }
}
