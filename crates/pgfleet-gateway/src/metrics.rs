//! The gateway's metric families: requests, webhooks, notifications. Enqueued jobs go to the
//! shared [`pgfleet_telemetry::JobMetrics`], queue gauges to [`pgfleet_telemetry::QueueGauges`].

use pgfleet_telemetry::prometheus::{HistogramVec, IntCounterVec, Registry};
use pgfleet_telemetry::{counter, histogram, Component};

/// What the gateway counts.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    webhooks: IntCounterVec,
    signature_failures: IntCounterVec,
    notifications: IntCounterVec,
}

impl Component for GatewayMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            requests: counter(
                r,
                "pgfleet_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            duration: histogram(
                r,
                "pgfleet_http_request_duration_seconds",
                "HTTP request time.",
                &["route"],
                None,
            ),
            webhooks: counter(
                r,
                "pgfleet_webhooks_total",
                "Webhooks by source and result.",
                &["source", "result"],
            ),
            signature_failures: counter(
                r,
                "pgfleet_webhook_signature_failures_total",
                "Webhooks refused for their signature.",
                &["source"],
            ),
            notifications: counter(
                r,
                "pgfleet_notifications_created_total",
                "Notifications created, by priority.",
                &["priority"],
            ),
        }
    }
}

impl GatewayMetrics {
    /// One answered request (`route` is the template, never the raw path).
    pub fn record_request(&self, route: &str, method: &str, status: &str, secs: f64) {
        self.requests
            .with_label_values(&[route, method, status])
            .inc();
        self.duration.with_label_values(&[route]).observe(secs);
    }

    /// One webhook of a configured `source` with its result (accepted, duplicate, failed).
    pub fn count_webhook(&self, source: &str, result: &str) {
        self.webhooks.with_label_values(&[source, result]).inc();
    }

    /// One webhook of a configured `source` refused for its signature.
    pub fn count_signature_failure(&self, source: &str) {
        self.signature_failures.with_label_values(&[source]).inc();
    }

    /// One notification created with `priority`.
    pub fn count_notification(&self, priority: &str) {
        self.notifications.with_label_values(&[priority]).inc();
    }
}
