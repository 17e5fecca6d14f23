//! # pgfleet-telemetry
//!
//! One Prometheus registry per component with pgfleet's metric families: consistent names
//! (`pgfleet_` prefix, `_total` counters, `_seconds` base units) and bounded labels only
//! (queue, kind, partition, state, outcome, route, method, status, source — never a job id or
//! a user id). Components record into [`Metrics`]; `/metrics` renders it as Prometheus text.

mod tracing_init;

pub use tracing_init::{
    init, init_with, install_crypto_provider, parent_from_headers, parent_from_metadata,
    set_parent, trace_metadata, TelemetryGuard,
};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every pgfleet metric family, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Jobs enqueued through this component, by queue and kind.
    pub jobs_enqueued: IntCounterVec,
    /// Finished attempts by queue, kind and outcome (completed, retried, discarded,
    /// cancelled, released).
    pub jobs_finished: IntCounterVec,
    /// Handler run time by queue and kind.
    pub job_duration: HistogramVec,
    /// Claim statement time.
    pub claim_duration: Histogram,
    /// Jobs claimed by queue.
    pub jobs_claimed: IntCounterVec,
    /// Of the jobs claimed, those taken from partitions another worker owns (work
    /// conservation: replicas past the partition count, hot partitions, a burst's tail).
    pub jobs_stolen: IntCounterVec,
    /// Jobs claimed ahead of free slots and waiting for one (the leased local buffer).
    pub jobs_claimed_ahead: IntGauge,
    /// NOTIFY listener reconnections.
    pub listener_reconnects: IntCounter,
    /// Jobs by queue, partition and state (available, scheduled, retryable, running).
    pub queue_depth: IntGaugeVec,
    /// Age of the oldest runnable job by queue and partition (lag), seconds.
    pub queue_lag: GaugeVec,
    /// Whether a queue is paused (1) or not (0).
    pub queue_paused: IntGaugeVec,
    /// Completions per second over the last minute, by queue.
    pub queue_throughput: GaugeVec,
    /// Live workers by pool.
    pub workers_live: IntGaugeVec,
    /// Partitions with a live lease, by pool.
    pub partitions_owned: IntGaugeVec,
    /// HTTP requests by route, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP request time by route.
    pub http_duration: HistogramVec,
    /// Webhooks received by source and result (accepted, duplicate, rejected).
    pub webhooks: IntCounterVec,
    /// Webhook signature failures by source.
    pub webhook_signature_failures: IntCounterVec,
    /// Web Push requests by result (`delivered`, `gone`, `retry`, `rejected`, `transport`)
    /// and push service status (`201`, `410`, `none`...).
    pub push_deliveries: IntCounterVec,
    /// Web Push request time (encryption to answer).
    pub push_duration: Histogram,
    /// Time spent encrypting and signing one push.
    pub push_crypto_duration: Histogram,
    /// Notifications created, by priority (high, normal, low).
    pub notifications_created: IntCounterVec,
    /// Outbound message deliveries by result (`sent`, `retry`, `failed`).
    pub messages_delivered: IntCounterVec,
    /// Replicas the controller wants, by pool (namespace/name).
    pub controller_desired_replicas: IntGaugeVec,
    /// Replicas that are ready, by pool.
    pub controller_ready_replicas: IntGaugeVec,
    /// Reconcile time.
    pub controller_reconcile_duration: Histogram,
    /// Failed reconciles by pool and cause.
    pub controller_reconcile_errors: IntCounterVec,
    /// Scale changes by pool and direction (up, down).
    pub controller_scale_events: IntCounterVec,
    /// Scaling decisions made (queues sampled), by pool: at most one per `pollSeconds`
    /// plus one per spec change.
    pub controller_decisions: IntCounterVec,
    /// Seconds since the process started (a liveness signal for dashboards).
    pub uptime: Gauge,
    /// The queue names used as label values (client-chosen: bounded).
    pub queue_labels: LabelBudget,
    /// The job kinds used as label values (client-chosen: bounded).
    pub kind_labels: LabelBudget,
    started: std::time::Instant,
}

/// The label value that stands for every value past a [`LabelBudget`].
pub const OTHER: &str = "other";

/// How many distinct queue names, and kinds, get their own series.
pub const LABEL_BUDGET: usize = 64;

/// A bound on the distinct values of a client-chosen label (queue, kind): the first `max`
/// values seen keep their own series, every later one is counted as [`OTHER`], so a client
/// cannot grow `/metrics` without limit.
#[derive(Debug)]
pub struct LabelBudget {
    max: usize,
    seen: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl LabelBudget {
    /// A budget of `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Default::default(),
        }
    }

    /// `value` while it fits the budget (or was seen before), [`OTHER`] after. Every finished
    /// job asks, from every slot: a value seen before is answered under the shared lock.
    pub fn bound<'a>(&self, value: &'a str) -> &'a str {
        match self.seen.read() {
            Ok(seen) if seen.contains(value) => return value,
            Ok(_) => {}
            Err(_) => return OTHER,
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER;
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            value
        } else {
            OTHER
        }
    }
}

/// Registers a collector and returns it. Metric definitions are static, so a failure here
/// is a programming error caught by the unit test below, never a runtime condition.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: Result<C, prometheus::Error>,
) -> C {
    let c = c.unwrap_or_else(|e| panic!("metric definition: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(r, GaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, labels))
}

impl Metrics {
    /// A registry for `component` (gateway, worker, controller): the label `component` is
    /// attached to every series.
    pub fn new(component: &str) -> Self {
        let labels = std::iter::once(("component".to_owned(), component.to_owned())).collect();
        let r =
            Registry::new_custom(None, Some(labels)).unwrap_or_else(|e| panic!("registry: {e}"));
        let claim_opts = HistogramOpts::new(
            "pgfleet_claim_duration_seconds",
            "Time of one claim statement.",
        )
        .buckets(LATENCY_BUCKETS.to_vec());
        Self {
            jobs_enqueued: counter(&r, "pgfleet_jobs_enqueued_total", "Jobs enqueued.", &["queue", "kind"]),
            jobs_finished: counter(
                &r,
                "pgfleet_jobs_finished_total",
                "Finished attempts by outcome (completed, retried, discarded, cancelled, released).",
                &["queue", "kind", "outcome"],
            ),
            job_duration: histogram(&r, "pgfleet_job_duration_seconds", "Handler run time.", &["queue", "kind"]),
            claim_duration: register(&r, Histogram::with_opts(claim_opts)),
            jobs_claimed: counter(&r, "pgfleet_jobs_claimed_total", "Jobs claimed.", &["queue"]),
            jobs_stolen: counter(
                &r,
                "pgfleet_jobs_stolen_total",
                "Jobs claimed from partitions another worker owns.",
                &["queue"],
            ),
            jobs_claimed_ahead: register(
                &r,
                IntGauge::new(
                    "pgfleet_jobs_claimed_ahead",
                    "Jobs claimed ahead of free slots, waiting for one.",
                ),
            ),
            listener_reconnects: register(
                &r,
                IntCounter::new("pgfleet_listener_reconnects_total", "NOTIFY listener reconnections."),
            ),
            queue_depth: gauge(&r, "pgfleet_queue_depth", "Jobs by queue, partition and state.", &["queue", "partition", "state"]),
            queue_lag: float_gauge(
                &r,
                "pgfleet_queue_oldest_job_age_seconds",
                "Age of the oldest runnable job.",
                &["queue", "partition"],
            ),
            queue_paused: gauge(&r, "pgfleet_queue_paused", "1 when the queue is paused.", &["queue"]),
            queue_throughput: float_gauge(
                &r,
                "pgfleet_queue_completed_per_second",
                "Completions per second over the last minute.",
                &["queue"],
            ),
            workers_live: gauge(&r, "pgfleet_workers", "Live workers by pool.", &["pool"]),
            partitions_owned: gauge(&r, "pgfleet_partitions_owned", "Partitions with a live lease, by pool.", &["pool"]),
            http_requests: counter(
                &r,
                "pgfleet_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(&r, "pgfleet_http_request_duration_seconds", "HTTP request time.", &["route"]),
            webhooks: counter(&r, "pgfleet_webhooks_total", "Webhooks by source and result.", &["source", "result"]),
            webhook_signature_failures: counter(
                &r,
                "pgfleet_webhook_signature_failures_total",
                "Webhooks refused for their signature.",
                &["source"],
            ),
            push_deliveries: counter(
                &r,
                "pgfleet_push_deliveries_total",
                "Web Push requests by result and push service status.",
                &["result", "status"],
            ),
            push_duration: register(&r, Histogram::with_opts(
                HistogramOpts::new("pgfleet_push_duration_seconds", "Web Push request time, encryption to answer.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            push_crypto_duration: register(&r, Histogram::with_opts(
                HistogramOpts::new("pgfleet_push_crypto_duration_seconds", "Time spent encrypting and signing one push.")
                    .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01]),
            )),
            notifications_created: counter(&r, "pgfleet_notifications_created_total", "Notifications created, by priority.", &["priority"]),
            messages_delivered: counter(
                &r,
                "pgfleet_messages_delivered_total",
                "Outbound message deliveries by result (sent, retry, failed).",
                &["result"],
            ),
            controller_desired_replicas: gauge(&r, "pgfleet_controller_desired_replicas", "Replicas the controller wants, by pool.", &["pool"]),
            controller_ready_replicas: gauge(&r, "pgfleet_controller_ready_replicas", "Ready replicas, by pool.", &["pool"]),
            controller_reconcile_duration: register(&r, Histogram::with_opts(
                HistogramOpts::new("pgfleet_controller_reconcile_duration_seconds", "Reconcile time.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            controller_reconcile_errors: counter(&r, "pgfleet_controller_reconcile_errors_total", "Failed reconciles by pool and cause (kubernetes, conflict, finalizer, invalid).", &["pool", "cause"]),
            controller_scale_events: counter(&r, "pgfleet_controller_scale_events_total", "Replica changes by pool and direction.", &["pool", "direction"]),
            controller_decisions: counter(&r, "pgfleet_controller_decisions_total", "Scaling decisions (queue samples) by pool.", &["pool"]),
            uptime: register(&r, Gauge::new("pgfleet_uptime_seconds", "Seconds since the process started.")),
            queue_labels: LabelBudget::new(LABEL_BUDGET),
            kind_labels: LabelBudget::new(LABEL_BUDGET),
            started: std::time::Instant::now(),
            registry: r,
        }
    }

    /// Counts jobs enqueued into `queue` of `kind` (labels bounded).
    pub fn count_enqueued(&self, queue: &str, kind: &str, n: u64) {
        self.jobs_enqueued
            .with_label_values(&[self.queue_labels.bound(queue), self.kind_labels.bound(kind)])
            .inc_by(n);
    }

    /// Records a finished attempt: its run time and, when it reached one, its outcome
    /// (labels bounded).
    pub fn record_attempt(&self, queue: &str, kind: &str, secs: f64, outcome: Option<&str>) {
        let labels = [self.queue_labels.bound(queue), self.kind_labels.bound(kind)];
        self.job_duration.with_label_values(&labels).observe(secs);
        if let Some(o) = outcome {
            self.jobs_finished
                .with_label_values(&[labels[0], labels[1], o])
                .inc();
        }
    }

    /// Sets the queue gauges from fresh statistics (series of vanished queues or
    /// partitions are dropped; queues past the label budget are summed as `other`, with
    /// the largest lag).
    pub fn set_queue_stats(&self, stats: &[pgfleet_queue::stats::QueueStats]) {
        self.queue_depth.reset();
        self.queue_lag.reset();
        self.queue_paused.reset();
        self.queue_throughput.reset();
        for q in stats {
            let queue = self.queue_labels.bound(&q.queue);
            let paused = self.queue_paused.with_label_values(&[queue]);
            paused.set(paused.get().max(i64::from(q.paused)));
            self.queue_throughput
                .with_label_values(&[queue])
                .add(q.total.completed_per_sec());
            for (p, c) in &q.partitions {
                let p = p.to_string();
                for (state, n) in [
                    ("available", c.available),
                    ("scheduled", c.scheduled),
                    ("retryable", c.retryable),
                    ("running", c.running),
                ] {
                    self.queue_depth
                        .with_label_values(&[queue, &p, state])
                        .add(n);
                }
                let lag = self.queue_lag.with_label_values(&[queue, &p]);
                lag.set(lag.get().max(c.oldest_available_age_secs));
            }
        }
    }

    /// Sets the fleet gauges: live workers and leased partitions per pool.
    pub fn set_fleet(
        &self,
        workers: &[pgfleet_queue::ownership::WorkerRow],
        leases: &[pgfleet_queue::ownership::PartitionLease],
    ) {
        self.workers_live.reset();
        self.partitions_owned.reset();
        for w in workers {
            self.workers_live.with_label_values(&[&w.pool]).inc();
        }
        for l in leases {
            self.partitions_owned.with_label_values(&[&l.pool]).inc();
        }
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

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_labels_are_bounded() {
        let m = Metrics::new("test");
        for i in 0..(LABEL_BUDGET + 50) {
            m.count_enqueued(&format!("q{i}"), &format!("k{i}"), 1);
        }
        m.count_enqueued("q0", "k0", 1);
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("pgfleet_jobs_enqueued_total{"))
            .count();
        assert_eq!(series, LABEL_BUDGET + 1, "{text}");
        assert!(text.contains(
            r#"pgfleet_jobs_enqueued_total{kind="other",queue="other",component="test"} 50"#
        ));
        assert!(text
            .contains(r#"pgfleet_jobs_enqueued_total{kind="k0",queue="q0",component="test"} 2"#));
    }

    #[test]
    fn renders_every_family_with_consistent_names() {
        let m = Metrics::new("test");
        m.jobs_enqueued
            .with_label_values(&["default", "noop"])
            .inc();
        m.jobs_finished
            .with_label_values(&["default", "noop", "completed"])
            .inc();
        m.job_duration
            .with_label_values(&["default", "noop"])
            .observe(0.01);
        m.claim_duration.observe(0.001);
        m.http_requests
            .with_label_values(&["/v1/jobs", "POST", "201"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"pgfleet_jobs_enqueued_total{kind="noop",queue="default",component="test"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("pgfleet_job_duration_seconds_bucket"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or("");
            assert!(name.starts_with("pgfleet_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
}
