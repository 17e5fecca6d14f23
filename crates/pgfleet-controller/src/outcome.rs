//! What a reconcile pass reports — the pool's status and the Events to publish — as a pure
//! function of the decision and of what the pass saw. The reconciler only writes them.

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::cadence::Decided;
use crate::crd::{Condition, WorkerPool, WorkerPoolStatus};
use crate::deployment;

/// What the pass saw of the pool's Deployment (before applying).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Whether the Deployment existed.
    pub exists: bool,
    /// Its `spec.replicas`.
    pub current: i32,
    /// Its ready replicas.
    pub ready: i32,
    /// Its replicas (pods that exist).
    pub running: i32,
}

/// An Event to publish about the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning (else Normal).
    pub warning: bool,
    /// CamelCase reason (`ScaledUp`, `MetricsUnavailable`, `ApplyFailed`...).
    pub reason: &'static str,
    /// For a person.
    pub note: String,
    /// What the controller was doing.
    pub action: &'static str,
}

/// The report of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The status to hold (written only if it differs from the stored one).
    pub status: WorkerPoolStatus,
    /// Events to publish.
    pub notices: Vec<Notice>,
    /// `up` or `down` when this pass changed the replica count.
    pub scaled: Option<&'static str>,
}

/// The pass's report. `fresh`: the decision was made now (not reused); `was_degraded`: the
/// previous decision had no statistics; `apply_error`: the API server refused the
/// Deployment, with its message.
pub fn outcome(
    pool: &WorkerPool,
    d: &Decided,
    fresh: bool,
    was_degraded: bool,
    seen: Seen,
    apply_error: Option<&str>,
    now: DateTime<Utc>,
) -> Outcome {
    let (desired, ready, current) = (d.desired, seen.ready, seen.current);
    let previous = pool.status.clone().unwrap_or_default();
    let generation = pool.metadata.generation;
    let mut notices = Vec::new();
    if let Some(message) = apply_error {
        notices.push(Notice {
            warning: true,
            reason: "ApplyFailed",
            note: format!(
                "cannot apply Deployment {}: {message}",
                deployment::name(&pool.name_any())
            ),
            action: "Apply",
        });
    }
    let scaled = (fresh && seen.exists && desired != current).then(|| {
        let (direction, reason) = if desired > current {
            ("up", "ScaledUp")
        } else {
            ("down", "ScaledDown")
        };
        notices.push(Notice {
            warning: false,
            reason,
            note: format!("{current} → {desired} replicas: {}", d.reason),
            action: "Scale",
        });
        direction
    });
    // Published when the statistics become unavailable, not at every poll while they stay so.
    if let (true, Some(e), false) = (fresh, &d.degraded, was_degraded) {
        notices.push(Notice {
            warning: true,
            reason: "MetricsUnavailable",
            note: format!("queue statistics unavailable: {e}"),
            action: "Observe",
        });
    }
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(
            type_,
            ok,
            reason,
            message,
            &previous.conditions,
            now,
            generation,
        )
    };
    let apply_message = apply_error.map(|m| format!("cannot apply the Deployment: {m}"));
    let conditions = vec![
        cond(
            "Ready",
            ready >= desired,
            if ready >= desired {
                "ReplicasReady"
            } else {
                "ReplicasStarting"
            },
            format!("{ready}/{desired} replicas ready"),
        ),
        cond(
            "Scaling",
            desired != ready,
            if desired != ready {
                "Scaling"
            } else {
                "Stable"
            },
            d.reason.clone(),
        ),
        cond(
            "Degraded",
            d.degraded.is_some() || apply_message.is_some(),
            match (&apply_message, &d.degraded) {
                (Some(_), _) => "ApplyFailed",
                (None, Some(_)) => "MetricsUnavailable",
                (None, None) => "MetricsAvailable",
            },
            apply_message
                .or_else(|| d.degraded.clone())
                .unwrap_or_else(|| "queue statistics are fresh".into()),
        ),
    ];
    let s = d.sample;
    let status = WorkerPoolStatus {
        observed_generation: generation,
        replicas: if seen.exists { seen.running } else { 0 },
        ready_replicas: ready,
        desired_replicas: desired,
        backlog: s.backlog,
        oldest_job_age_seconds: (s.oldest_age_secs * 10.0).round() / 10.0,
        throughput: (s.completion_per_sec * 100.0).round() / 100.0,
        selector: Some(deployment::selector(&pool.name_any())),
        last_scale_time: if scaled.is_some() {
            Some(now.to_rfc3339())
        } else {
            previous.last_scale_time.clone()
        },
        conditions,
    };
    Outcome {
        status,
        notices,
        scaled,
    }
}

/// A condition of `type_`, keeping its `lastTransitionTime` while its status is unchanged.
fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    previous: &[Condition],
    now: DateTime<Utc>,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_owned();
    let now = now.to_rfc3339();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(now, |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkerPoolSpec;
    use crate::scaling::Sample;

    fn pool() -> WorkerPool {
        let mut p = WorkerPool::new("emails", WorkerPoolSpec::default());
        p.metadata.generation = Some(4);
        p
    }

    fn decided(desired: i32, degraded: Option<&str>) -> Decided {
        Decided {
            at: Utc::now(),
            spec: 1,
            desired,
            reason: "backlog 500".into(),
            degraded: degraded.map(str::to_owned),
            sample: Sample {
                backlog: 500,
                ..Sample::default()
            },
            applied: None,
        }
    }

    fn seen(current: i32, ready: i32) -> Seen {
        Seen {
            exists: true,
            current,
            ready,
            running: ready,
        }
    }

    fn reasons(o: &Outcome) -> Vec<&'static str> {
        o.notices.iter().map(|n| n.reason).collect()
    }

    fn condition_of<'a>(o: &'a Outcome, t: &str) -> &'a Condition {
        o.status.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_fresh_decision_that_changes_the_size_is_an_event_and_a_scale_time() {
        let now = Utc::now();
        let o = outcome(
            &pool(),
            &decided(5, None),
            true,
            false,
            seen(2, 2),
            None,
            now,
        );
        assert_eq!(o.scaled, Some("up"));
        assert_eq!(reasons(&o), ["ScaledUp"]);
        assert_eq!(o.notices[0].note, "2 → 5 replicas: backlog 500");
        assert_eq!(o.status.last_scale_time, Some(now.to_rfc3339()));
        assert_eq!((o.status.replicas, o.status.desired_replicas), (2, 5));
        assert_eq!(condition_of(&o, "Scaling").status, "True");
        assert_eq!(condition_of(&o, "Ready").observed_generation, Some(4));
        // A reused decision re-applies but is not a new scale event.
        let o = outcome(
            &pool(),
            &decided(5, None),
            false,
            false,
            seen(2, 2),
            None,
            now,
        );
        assert_eq!((o.scaled, o.notices.len()), (None, 0));
        // A new pool (no Deployment yet) is created, not scaled.
        let none = Seen::default();
        let o = outcome(&pool(), &decided(1, None), true, false, none, None, now);
        assert_eq!((o.scaled, o.status.replicas), (None, 0));
    }

    #[test]
    fn unavailable_statistics_warn_once_and_degrade() {
        let now = Utc::now();
        let d = decided(3, Some("connection refused"));
        let o = outcome(&pool(), &d, true, false, seen(3, 3), None, now);
        assert_eq!(reasons(&o), ["MetricsUnavailable"]);
        let c = condition_of(&o, "Degraded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "MetricsUnavailable")
        );
        assert_eq!(c.message, "connection refused");
        let again = outcome(&pool(), &d, true, true, seen(3, 3), None, now);
        assert!(again.notices.is_empty(), "not at every poll");
    }

    #[test]
    fn a_refused_deployment_warns_and_degrades_with_the_api_message() {
        let o = outcome(
            &pool(),
            &decided(3, None),
            true,
            false,
            seen(3, 3),
            Some("spec.template: Invalid value"),
            Utc::now(),
        );
        assert_eq!(reasons(&o), ["ApplyFailed"]);
        assert!(o.notices[0].warning && o.notices[0].note.contains("emails-workers"));
        let c = condition_of(&o, "Degraded");
        assert_eq!(c.reason, "ApplyFailed");
        assert!(c.message.contains("Invalid value"), "{c:?}");
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let t0 = Utc::now();
        let mut p = pool();
        let first = outcome(&p, &decided(3, None), true, false, seen(3, 3), None, t0);
        p.status = Some(first.status.clone());
        let later = t0 + chrono::Duration::seconds(30);
        let second = outcome(&p, &decided(3, None), false, false, seen(3, 3), None, later);
        assert_eq!(second.status, first.status, "nothing to write");
        let third = outcome(&p, &decided(3, None), false, false, seen(3, 1), None, later);
        assert_eq!(condition_of(&third, "Ready").status, "False");
        assert_eq!(
            condition_of(&third, "Ready").last_transition_time,
            later.to_rfc3339()
        );
        assert_eq!(
            condition_of(&third, "Degraded").last_transition_time,
            t0.to_rfc3339()
        );
    }
}
