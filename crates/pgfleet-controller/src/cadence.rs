//! When a pool's scaling decision is due, and what the last one was.
//!
//! Every status patch and Deployment write produces a watch event that reconciles the pool
//! again at once. Without a cadence those passes would each sample the queues and decide:
//! `pollSeconds` ignored, `maxStep` applied every few milliseconds, the arrival rate divided
//! by a tiny interval. So a pool decides at most once per `pollSeconds` — or at once when its
//! spec changed — and a pass in between reuses the last decision: it still re-applies a
//! Deployment someone else changed and reports readiness, but writes nothing that has not
//! changed.

use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};

use crate::scaling::Sample;

/// The last decision for a pool and what was applied for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// [`fingerprint`] of the spec it was decided for.
    pub spec: u64,
    /// Replicas decided.
    pub desired: i32,
    /// Why.
    pub reason: String,
    /// Why the queue statistics were unavailable, if they were.
    pub degraded: Option<String>,
    /// What the queues looked like.
    pub sample: Sample,
    /// [`fingerprint`] of the Deployment last applied, and the Deployment's
    /// `metadata.generation` right after (a change by anyone else bumps it).
    pub applied: Option<(u64, Option<i64>)>,
}

/// A stable digest of a serializable value (a spec, a Deployment).
pub fn fingerprint<T: serde::Serialize>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(value).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Whether a pass at `now` decides anew: nothing decided yet, the spec changed, `poll` has
/// passed since the last decision, or the clock went backwards.
pub fn due(last: Option<&Decided>, spec: u64, now: DateTime<Utc>, poll: chrono::Duration) -> bool {
    match last {
        None => true,
        Some(d) => d.spec != spec || now - d.at >= poll || now < d.at,
    }
}

/// How long until the next decision is due (at least 100 ms).
pub fn next_in(last: &Decided, now: DateTime<Utc>, poll: chrono::Duration) -> std::time::Duration {
    let left = (last.at + poll - now).to_std().unwrap_or_default();
    left.max(std::time::Duration::from_millis(100))
}

/// Whether the Deployment must be applied: it is missing, its replicas differ, what we
/// would apply changed, or someone else changed it since our last apply.
pub fn must_apply(
    last: Option<&Decided>,
    built: u64,
    existing: Option<(i32, Option<i64>)>,
    desired: i32,
) -> bool {
    let Some((replicas, generation)) = existing else {
        return true;
    };
    let applied = last.and_then(|d| d.applied);
    replicas != desired || applied != Some((built, generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(at: DateTime<Utc>) -> Decided {
        Decided {
            at,
            spec: 1,
            desired: 3,
            reason: "r".into(),
            degraded: None,
            sample: Sample::default(),
            applied: Some((7, Some(2))),
        }
    }

    #[test]
    fn a_decision_waits_for_its_poll_unless_the_spec_changes() {
        let t0 = Utc::now();
        let poll = chrono::Duration::seconds(5);
        let d = decided(t0);
        assert!(due(None, 1, t0, poll));
        assert!(!due(
            Some(&d),
            1,
            t0 + chrono::Duration::milliseconds(4999),
            poll
        ));
        assert!(due(Some(&d), 1, t0 + poll, poll));
        assert!(due(Some(&d), 2, t0, poll), "spec changed");
        assert!(due(Some(&d), 1, t0 - chrono::Duration::seconds(1), poll));
        assert_eq!(
            next_in(&d, t0 + chrono::Duration::seconds(2), poll),
            std::time::Duration::from_secs(3)
        );
        assert_eq!(
            next_in(&d, t0 + poll, poll),
            std::time::Duration::from_millis(100)
        );
    }

    #[test]
    fn the_deployment_is_applied_only_when_something_changed() {
        let d = decided(Utc::now());
        assert!(!must_apply(Some(&d), 7, Some((3, Some(2))), 3));
        assert!(must_apply(Some(&d), 7, None, 3), "missing");
        assert!(
            must_apply(Some(&d), 7, Some((2, Some(2))), 3),
            "replicas differ"
        );
        assert!(
            must_apply(Some(&d), 8, Some((3, Some(2))), 3),
            "our spec changed"
        );
        assert!(
            must_apply(Some(&d), 7, Some((3, Some(3))), 3),
            "changed by someone else"
        );
        assert!(
            must_apply(None, 7, Some((3, Some(2))), 3),
            "after a restart"
        );
    }
}
