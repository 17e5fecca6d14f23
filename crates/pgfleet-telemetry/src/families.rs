//! The families several components share.

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::registry::{counter, float_gauge, gauge, histogram, Component};
use crate::{LabelBudget, LABEL_BUDGET};

/// The job lifecycle: enqueued (gateway, tools) and attempts (workers), labelled by queue and
/// kind within a [`LabelBudget`] each.
#[derive(Debug)]
pub struct JobMetrics {
    enqueued: IntCounterVec,
    finished: IntCounterVec,
    duration: HistogramVec,
    queue_labels: LabelBudget,
    kind_labels: LabelBudget,
}

impl Component for JobMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            enqueued: counter(
                r,
                "pgfleet_jobs_enqueued_total",
                "Jobs enqueued.",
                &["queue", "kind"],
            ),
            finished: counter(
                r,
                "pgfleet_jobs_finished_total",
                "Finished attempts by outcome (completed, retried, discarded, cancelled, released).",
                &["queue", "kind", "outcome"],
            ),
            duration: histogram(
                r,
                "pgfleet_job_duration_seconds",
                "Handler run time.",
                &["queue", "kind"],
                None,
            ),
            queue_labels: LabelBudget::new(LABEL_BUDGET),
            kind_labels: LabelBudget::new(LABEL_BUDGET),
        }
    }
}

impl JobMetrics {
    /// Counts `n` jobs enqueued to `queue` of `kind`.
    pub fn count_enqueued(&self, queue: &str, kind: &str, n: u64) {
        self.enqueued
            .with_label_values(&[self.queue_labels.bound(queue), self.kind_labels.bound(kind)])
            .inc_by(n);
    }

    /// Records one attempt's run time and, when it finished the attempt, its outcome.
    pub fn record_attempt(&self, queue: &str, kind: &str, secs: f64, outcome: Option<&str>) {
        let labels = [self.queue_labels.bound(queue), self.kind_labels.bound(kind)];
        self.duration.with_label_values(&labels).observe(secs);
        if let Some(o) = outcome {
            self.finished
                .with_label_values(&[labels[0], labels[1], o])
                .inc();
        }
    }
}

/// Queues and workers as the database shows them, set from a statistics snapshot at each
/// scrape (the gateway's `/metrics`).
#[derive(Debug)]
pub struct QueueGauges {
    depth: IntGaugeVec,
    lag: GaugeVec,
    paused: IntGaugeVec,
    throughput: GaugeVec,
    workers_live: IntGaugeVec,
    partitions_owned: IntGaugeVec,
    limit: GaugeVec,
    schedule_next: GaugeVec,
    schedule_last: GaugeVec,
    queue_labels: LabelBudget,
    schedule_labels: LabelBudget,
}

impl Component for QueueGauges {
    fn register(r: &Registry) -> Self {
        Self {
            depth: gauge(
                r,
                "pgfleet_queue_depth",
                "Jobs by queue, partition and state.",
                &["queue", "partition", "state"],
            ),
            lag: float_gauge(
                r,
                "pgfleet_queue_oldest_job_age_seconds",
                "Age of the oldest runnable job.",
                &["queue", "partition"],
            ),
            paused: gauge(
                r,
                "pgfleet_queue_paused",
                "1 when the queue is paused.",
                &["queue"],
            ),
            throughput: float_gauge(
                r,
                "pgfleet_queue_completed_per_second",
                "Completions per second over the last minute.",
                &["queue"],
            ),
            workers_live: gauge(r, "pgfleet_workers", "Live workers by pool.", &["pool"]),
            partitions_owned: gauge(
                r,
                "pgfleet_partitions_owned",
                "Partitions with a live lease, by pool.",
                &["pool"],
            ),
            limit: float_gauge(
                r,
                "pgfleet_queue_limit",
                "Flow-control settings by queue: concurrency, key_concurrency, rate and \
                 key_rate (jobs/s), rate_burst, fair (1).",
                &["queue", "limit"],
            ),
            schedule_next: float_gauge(
                r,
                "pgfleet_schedule_next_run_timestamp_seconds",
                "When each active schedule ticks next (Unix time).",
                &["schedule"],
            ),
            schedule_last: float_gauge(
                r,
                "pgfleet_schedule_last_run_timestamp_seconds",
                "The last tick each schedule enqueued (Unix time).",
                &["schedule"],
            ),
            queue_labels: LabelBudget::new(LABEL_BUDGET),
            schedule_labels: LabelBudget::new(LABEL_BUDGET),
        }
    }
}

impl QueueGauges {
    /// Replaces the queue gauges with `stats` (queues past the label budget are summed
    /// under `other`).
    pub fn set_queue_stats(&self, stats: &[pgfleet_queue::stats::QueueStats]) {
        self.depth.reset();
        self.lag.reset();
        self.paused.reset();
        self.throughput.reset();
        for q in stats {
            let queue = self.queue_labels.bound(&q.queue);
            let paused = self.paused.with_label_values(&[queue]);
            paused.set(paused.get().max(i64::from(q.paused)));
            self.throughput
                .with_label_values(&[queue])
                .add(q.total.completed_per_sec());
            for (p, c) in &q.partitions {
                let p = p.to_string();
                for (state, n) in [
                    ("available", c.available),
                    ("scheduled", c.scheduled),
                    ("retryable", c.retryable),
                    ("running", c.running),
                    ("blocked", c.blocked),
                ] {
                    self.depth.with_label_values(&[queue, &p, state]).add(n);
                }
                let lag = self.lag.with_label_values(&[queue, &p]);
                lag.set(lag.get().max(c.oldest_available_age_secs));
            }
        }
    }

    /// Replaces the flow-control gauges with the limits of every flow-controlled queue.
    pub fn set_limits(&self, flows: &[pgfleet_queue::flow::FlowStatus]) {
        self.limit.reset();
        for f in flows {
            let queue = self.queue_labels.bound(&f.queue);
            let l = &f.limits;
            let set = |name: &str, v: Option<f64>| {
                if let Some(v) = v {
                    self.limit.with_label_values(&[queue, name]).set(v);
                }
            };
            set("concurrency", l.concurrency.map(f64::from));
            set("key_concurrency", l.key_concurrency.map(f64::from));
            set("rate", l.rate.map(|r| r.per_second));
            set("rate_burst", l.rate.map(|r| f64::from(r.burst())));
            set("key_rate", l.key_rate.map(|r| r.per_second));
            set("fair", l.fair.then_some(1.0));
        }
    }

    /// Replaces the schedule gauges (paused schedules have no next run).
    pub fn set_schedules(&self, schedules: &[pgfleet_queue::schedule::Schedule]) {
        self.schedule_next.reset();
        self.schedule_last.reset();
        for s in schedules {
            let name = self.schedule_labels.bound(&s.name);
            if !s.paused {
                self.schedule_next
                    .with_label_values(&[name])
                    .set(s.next_run_at.timestamp_millis() as f64 / 1000.0);
            }
            if let Some(t) = s.last_run_at {
                self.schedule_last
                    .with_label_values(&[name])
                    .set(t.timestamp_millis() as f64 / 1000.0);
            }
        }
    }

    /// Replaces the worker and partition gauges.
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
}

#[cfg(test)]
mod tests {
    use crate::{Metrics, LABEL_BUDGET};

    #[test]
    fn client_chosen_labels_are_bounded() {
        let m = Metrics::new("test");
        let jobs = m.jobs();
        for i in 0..(LABEL_BUDGET + 50) {
            jobs.count_enqueued(&format!("q{i}"), &format!("k{i}"), 1);
        }
        jobs.count_enqueued("q0", "k0", 1);
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
    fn a_component_is_registered_once_and_rendered_with_consistent_names() {
        let m = Metrics::new("test");
        m.jobs().count_enqueued("default", "noop", 1);
        // Asked again (a second worker in the process): the same families, no re-registration.
        m.jobs()
            .record_attempt("default", "noop", 0.01, Some("completed"));
        let text = m.render();
        assert!(
            text.contains(
                r#"pgfleet_jobs_enqueued_total{kind="noop",queue="default",component="test"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("pgfleet_job_duration_seconds_bucket"));
        assert!(text.contains("pgfleet_uptime_seconds"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or("");
            assert!(name.starts_with("pgfleet_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
}
