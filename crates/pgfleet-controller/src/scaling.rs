//! The autoscaling policy: a pure function of what the queues look like, the pool's spec,
//! the recent recommendations and the time. Used by the Kubernetes reconciler and by
//! `pgfleet dev`'s local pools alike.
//!
//! ```text
//! raw     = ceil(max(backlog / targetBacklogPerReplica,
//!                    arrival rate × mean job time / concurrency))
//! lagging = oldest job age > targetLagSeconds  →  raw ≥ current + 1
//! zero    = scaleToZero and backlog ≤ activationBacklog and nothing running  →  0
//! bounds  = [minReplicas (or 1 when active, 0 when scale-to-zero), maxReplicas]
//! up      = at once;   down = the highest recommendation within the stabilisation window
//! step    = |desired − current| ≤ maxStep
//! ```

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::crd::WorkerPoolSpec;

/// What the pool's queues look like now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Runnable jobs (available + retryable whose time has come).
    pub backlog: i64,
    /// Jobs running now.
    pub running: i64,
    /// Seconds the oldest runnable job has waited.
    pub oldest_age_secs: f64,
    /// Jobs arriving per second.
    pub arrival_per_sec: f64,
    /// Jobs completed per second.
    pub completion_per_sec: f64,
    /// Mean handler time of recent jobs, seconds.
    pub mean_job_secs: f64,
}

/// The spec's scaling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Follow the queues.
    pub enabled: bool,
    /// Replicas when not enabled (`spec.replicas`).
    pub manual: Option<i32>,
    /// Bounds.
    pub min: i32,
    /// Bounds.
    pub max: i32,
    /// Slots per replica.
    pub concurrency: i32,
    /// Backlog per replica.
    pub target_backlog_per_replica: i64,
    /// Lag that forces growth.
    pub target_lag_secs: f64,
    /// Backlog needed to wake a pool at zero.
    pub activation_backlog: i64,
    /// Down-scale stabilisation window.
    pub stabilization: Duration,
    /// Most replicas changed per decision.
    pub max_step: i32,
    /// Allow zero.
    pub scale_to_zero: bool,
    /// Hold the size (`spec.paused`).
    pub paused: bool,
}

impl From<&WorkerPoolSpec> for Policy {
    fn from(s: &WorkerPoolSpec) -> Self {
        let a = &s.autoscaling;
        Self {
            enabled: a.enabled,
            manual: s.replicas,
            min: s.min_replicas,
            max: s.max_replicas,
            concurrency: s.concurrency.max(1),
            target_backlog_per_replica: a.target_backlog_per_replica.max(1),
            target_lag_secs: a.target_lag_seconds as f64,
            activation_backlog: a.activation_backlog,
            stabilization: Duration::seconds(a.scale_down_stabilization_seconds),
            max_step: a.max_step.max(1),
            scale_to_zero: a.scale_to_zero,
            paused: s.paused,
        }
    }
}

/// What a pool should run now and why — the one decision of the Kubernetes controller and
/// of `pgfleet dev`'s local pools.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Replicas to run.
    pub desired: i32,
    /// Why.
    pub reason: String,
    /// Why the queue statistics were unavailable, when they were (the pool is Degraded).
    pub degraded: Option<String>,
}

/// Plans a pool's size: paused → hold the current size (a pool that does not exist yet
/// starts at its minimum); queue statistics unavailable → hold, degraded; otherwise
/// [`decide`]. A first decision for a pool that exists starts its stabilisation window from
/// the current size ([`History::starting_at`]).
pub fn plan(
    p: &Policy,
    sample: Result<&Sample, &str>,
    current: Option<i32>,
    history: &mut Option<History>,
    now: DateTime<Utc>,
) -> Plan {
    let hold = current.unwrap_or(p.min);
    match (sample, p.paused) {
        (_, true) => Plan {
            desired: hold,
            reason: "paused".into(),
            degraded: None,
        },
        (Ok(s), false) => {
            let h = history.get_or_insert_with(|| match current {
                Some(c) => History::starting_at(now, c),
                None => History::default(),
            });
            let d = decide(p, s, current.unwrap_or(0), h, now);
            Plan {
                desired: d.desired,
                reason: d.reason,
                degraded: None,
            }
        }
        (Err(e), false) => Plan {
            desired: hold,
            reason: "queue statistics unavailable".into(),
            degraded: Some(e.to_owned()),
        },
    }
}

/// Recent raw recommendations (for the stabilisation window).
#[derive(Debug, Clone, Default)]
pub struct History {
    recommendations: VecDeque<(DateTime<Utc>, i32)>,
}

impl History {
    /// The history of a pool first seen at `now` running `current` replicas (after a
    /// restart or a leader change): the window starts from the current count, as the HPA's
    /// does, so the first decisions cannot shrink the pool before a window has passed.
    pub fn starting_at(now: DateTime<Utc>, current: i32) -> Self {
        Self {
            recommendations: VecDeque::from([(now, current)]),
        }
    }
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run.
    pub desired: i32,
    /// What the metrics alone asked for (after bounds).
    pub recommended: i32,
    /// Why, for Events and logs.
    pub reason: String,
}

/// Decides how many replicas to run now.
pub fn decide(
    p: &Policy,
    s: &Sample,
    current: i32,
    history: &mut History,
    now: DateTime<Utc>,
) -> Decision {
    if !p.enabled {
        let desired = p.manual.unwrap_or(p.min).clamp(0, 1000);
        return Decision {
            desired,
            recommended: desired,
            reason: "autoscaling is off: spec.replicas".into(),
        };
    }
    let by_backlog = s.backlog as f64 / p.target_backlog_per_replica as f64;
    let by_rate = s.arrival_per_sec * s.mean_job_secs / f64::from(p.concurrency);
    let mut raw = by_backlog.max(by_rate).ceil().min(1e6) as i32;
    let mut reason = format!(
        "backlog {} ({by_backlog:.2} replicas), arrivals {:.1}/s × {:.3} s ({by_rate:.2} replicas)",
        s.backlog, s.arrival_per_sec, s.mean_job_secs
    );
    if s.oldest_age_secs > p.target_lag_secs && raw <= current {
        raw = current + 1;
        reason = format!(
            "lag {:.0} s over the {:.0} s target",
            s.oldest_age_secs, p.target_lag_secs
        );
    }
    let idle = s.backlog <= p.activation_backlog && s.running == 0;
    let lower = if p.scale_to_zero && idle {
        if raw == 0 || s.backlog <= p.activation_backlog {
            raw = 0;
            reason = format!(
                "idle: backlog {} ≤ activation {}, nothing running",
                s.backlog, p.activation_backlog
            );
        }
        0
    } else if p.scale_to_zero {
        p.min.max(1)
    } else {
        p.min
    };
    let recommended = raw.clamp(lower, p.max.max(lower));
    history.recommendations.push_back((now, recommended));
    while history
        .recommendations
        .front()
        .is_some_and(|(t, _)| *t < now - p.stabilization)
    {
        history.recommendations.pop_front();
    }
    let mut desired = if recommended >= current {
        recommended
    } else {
        // Shrink only to the highest recommendation of the window.
        let peak = history
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommended);
        if peak >= current {
            reason = format!("holding {current}: stabilisation window");
        }
        peak.min(current)
    };
    if (desired - current).abs() > p.max_step {
        desired = current + p.max_step * (desired - current).signum();
        reason = format!("{reason}; limited to {} per step", p.max_step);
    }
    Decision {
        desired,
        recommended,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_restart_the_window_starts_from_the_current_size() {
        let mut p = policy();
        p.stabilization = Duration::seconds(300);
        p.max_step = 100;
        let idle = Sample::default();
        let t0 = Utc::now();
        // A fresh history would shrink at once; one started from the current size holds.
        let d = decide(&p, &idle, 8, &mut History::default(), t0);
        assert!(d.desired < 8, "{d:?}");
        let mut h = History::starting_at(t0, 8);
        let d = decide(&p, &idle, 8, &mut h, t0 + Duration::seconds(10));
        assert_eq!(d.desired, 8, "{d:?}");
        let d = decide(&p, &idle, 8, &mut h, t0 + Duration::seconds(301));
        assert!(d.desired < 8, "after the window: {d:?}");
    }

    fn policy() -> Policy {
        Policy {
            enabled: true,
            manual: None,
            min: 1,
            max: 10,
            concurrency: 10,
            target_backlog_per_replica: 100,
            target_lag_secs: 30.0,
            activation_backlog: 0,
            stabilization: Duration::seconds(60),
            max_step: 4,
            scale_to_zero: false,
            paused: false,
        }
    }

    #[test]
    fn a_plan_holds_a_paused_or_blind_pool_and_otherwise_decides() {
        let now = Utc::now();
        let mut p = policy();
        let busy = backlog(900);
        let mut h = None;
        assert_eq!(
            plan(&p, Ok(&busy), Some(2), &mut h, now).desired,
            6,
            "2 + maxStep 4"
        );
        p.paused = true;
        let paused = plan(&p, Ok(&busy), Some(2), &mut None, now);
        assert_eq!((paused.desired, paused.reason.as_str()), (2, "paused"));
        assert_eq!(
            plan(&p, Ok(&busy), None, &mut None, now).desired,
            1,
            "new: at min"
        );
        p.paused = false;
        let blind = plan(&p, Err("db down"), Some(3), &mut None, now);
        assert_eq!(
            (blind.desired, blind.degraded.as_deref()),
            (3, Some("db down"))
        );
    }

    fn backlog(n: i64) -> Sample {
        Sample {
            backlog: n,
            ..Sample::default()
        }
    }

    /// Runs a sequence of (seconds since start, sample) and returns each decision, starting
    /// from `start` replicas and applying each decision.
    fn run(p: &Policy, start: i32, steps: &[(i64, Sample)]) -> Vec<i32> {
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = History::default();
        let mut current = start;
        steps
            .iter()
            .map(|(t, s)| {
                current = decide(p, s, current, &mut h, t0 + Duration::seconds(*t)).desired;
                current
            })
            .collect()
    }

    #[test]
    fn backlog_and_arrival_rate_set_the_size_within_the_bounds() {
        let p = policy();
        let cases = [
            (backlog(0), 1, "min bound"),
            (backlog(250), 3, "ceil(250/100)"),
            (backlog(100_000), 5, "max step of 4 from 1"),
            (
                Sample {
                    arrival_per_sec: 200.0,
                    mean_job_secs: 0.1,
                    ..Sample::default()
                },
                2,
                "200/s × 0.1 s / 10 slots",
            ),
        ];
        for (s, want, why) in cases {
            let d = decide(&p, &s, 1, &mut History::default(), Utc::now());
            assert_eq!(d.desired, want, "{why}: {d:?}");
        }
        // The max bound, reached in steps.
        assert_eq!(
            run(
                &p,
                1,
                &[(0, backlog(5000)), (5, backlog(5000)), (10, backlog(5000))]
            ),
            [5, 9, 10]
        );
    }

    #[test]
    fn lag_grows_the_pool_by_at_least_one() {
        let p = policy();
        let s = Sample {
            backlog: 10,
            oldest_age_secs: 45.0,
            ..Sample::default()
        };
        let d = decide(&p, &s, 2, &mut History::default(), Utc::now());
        assert_eq!(d.desired, 3);
        assert!(d.reason.contains("lag"), "{}", d.reason);
    }

    #[test]
    fn scale_up_is_immediate_scale_down_waits_for_the_window() {
        let p = policy();
        let seq = [
            (0, backlog(800)),
            (5, backlog(0)),
            (30, backlog(0)),
            (59, backlog(0)),
            (61, backlog(0)),
            (70, backlog(0)),
        ];
        assert_eq!(
            run(&p, 4, &seq),
            [8, 8, 8, 8, 4, 1],
            "down in steps once the window passed"
        );
    }

    #[test]
    fn flapping_load_does_not_flap_the_pool() {
        let p = policy();
        let seq: Vec<(i64, Sample)> = (0..24)
            .map(|i| (i * 5, backlog(if i % 2 == 0 { 600 } else { 0 })))
            .collect();
        let sizes = run(&p, 1, &seq);
        assert_eq!(sizes[0], 5);
        assert!(sizes[1..].iter().all(|n| *n == 6 || *n == 5), "{sizes:?}");
        // Once high, it never dips while the load keeps coming back within the window.
        assert!(sizes.windows(2).skip(1).all(|w| w[1] >= w[0]), "{sizes:?}");
    }

    #[test]
    fn scale_to_zero_and_back_with_an_activation_threshold() {
        let p = Policy {
            min: 0,
            scale_to_zero: true,
            activation_backlog: 5,
            stabilization: Duration::seconds(10),
            ..policy()
        };
        let running = Sample {
            running: 3,
            ..Sample::default()
        };
        let seq = [
            (0, backlog(0)),    // idle: zero
            (5, backlog(5)),    // at the threshold: still zero
            (10, backlog(6)),   // above: wakes to one
            (15, backlog(350)), // grows
            (20, running),      // nothing queued but jobs still running: hold
            (35, running),
            (50, backlog(0)), // idle after the window: down (in steps) to zero
            (55, backlog(0)),
        ];
        assert_eq!(run(&p, 0, &seq), [0, 0, 1, 4, 4, 1, 0, 0]);
    }

    #[test]
    fn max_step_limits_both_directions() {
        let p = Policy {
            max_step: 2,
            stabilization: Duration::zero(),
            max: 20,
            ..policy()
        };
        assert_eq!(
            run(
                &p,
                1,
                &[
                    (0, backlog(2000)),
                    (1, backlog(2000)),
                    (2, backlog(0)),
                    (3, backlog(0))
                ]
            ),
            [3, 5, 3, 1]
        );
    }

    proptest::proptest! {
        /// Whatever the queues look like: the size stays within the bounds (or moves toward
        /// them by at most a step), never changes by more than `max_step`, and never shrinks
        /// while the metrics ask for at least the current size.
        #[test]
        fn decisions_respect_bounds_steps_and_direction(
            min in 0i32..5, span in 0i32..20, step in 1i32..6, current in 0i32..30,
            zero in proptest::bool::ANY, queued in 0i64..100_000, running in 0i64..50,
            lag in 0.0f64..600.0, arrivals in 0.0f64..5000.0, job in 0.0f64..5.0,
            window in 0i64..120, history in proptest::collection::vec((0i64..200, 0i64..100_000), 0..12),
        ) {
            let p = Policy {
                min: if zero { 0 } else { min.max(1) },
                max: min.max(1) + span,
                max_step: step,
                scale_to_zero: zero,
                stabilization: Duration::seconds(window),
                ..policy()
            };
            let t0 = Utc::now();
            let mut h = History::default();
            // Earlier decisions, so the stabilisation window has something in it.
            for (ago, b) in &history {
                let _ = decide(&p, &backlog(*b), current, &mut h, t0 - Duration::seconds(*ago));
            }
            let s = Sample { backlog: queued, running, oldest_age_secs: lag, arrival_per_sec: arrivals, mean_job_secs: job, completion_per_sec: 0.0 };
            let d = decide(&p, &s, current, &mut h, t0);
            proptest::prop_assert!((d.desired - current).abs() <= p.max_step, "{d:?}");
            let lower = if p.scale_to_zero { 0 } else { p.min };
            if (lower..=p.max).contains(&current) {
                proptest::prop_assert!((lower..=p.max).contains(&d.desired), "{d:?} outside {lower}..={}", p.max);
            } else {
                // Outside the bounds (spec changed): it moves toward them.
                let toward = if current > p.max { d.desired <= current } else { d.desired >= current };
                proptest::prop_assert!(toward, "{d:?} from {current}");
            }
            if d.recommended >= current {
                proptest::prop_assert!(d.desired >= current, "{d:?} shrank although {} ≥ {current} was recommended", d.recommended);
            }
        }
    }

    #[test]
    fn manual_mode_uses_spec_replicas() {
        let p = Policy {
            enabled: false,
            manual: Some(7),
            ..policy()
        };
        assert_eq!(
            decide(
                &p,
                &backlog(100_000),
                1,
                &mut History::default(),
                Utc::now()
            )
            .desired,
            7
        );
        let p = Policy {
            enabled: false,
            manual: None,
            ..policy()
        };
        assert_eq!(
            decide(&p, &backlog(0), 3, &mut History::default(), Utc::now()).desired,
            1
        );
    }
}
