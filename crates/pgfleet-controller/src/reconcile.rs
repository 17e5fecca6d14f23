//! Reconciling one pool: observe its queues, decide its size, apply its Deployment, report
//! status and Events. A finalizer releases the pool's partition leases when it is deleted
//! (the Deployment goes with its owner reference).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, Resource, ResourceExt};
use pgfleet_telemetry::Metrics;
use serde_json::json;

use crate::cadence::{self, Decided};
use crate::crd::WorkerPool;
use crate::deployment::{self, MANAGER};
use crate::metrics::ControllerMetrics;
use crate::observe::Observer;
use crate::outcome::{outcome, Seen};
use crate::scaling::{plan, History, Policy};

/// The finalizer that releases a deleted pool's partition leases.
pub const FINALIZER: &str = "pgfleet.dev/release-partitions";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The pool has no namespace (it is namespaced; should not happen).
    #[error("WorkerPool without a namespace")]
    NoNamespace,
}

impl Error {
    /// The metric label of the cause: `conflict` (someone else wrote first), `kubernetes`
    /// (any other API failure), `finalizer`, `invalid`.
    pub fn cause(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Error::Kube(_) => "kubernetes",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "invalid",
        }
    }
}

/// The wait before retrying a pool after its `failures`-th failure in a row: 1 s doubling
/// to at most 5 minutes (as controller-runtime's per-item backoff does).
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Queue statistics.
    pub observer: Arc<Observer>,
    /// Events are published as this controller.
    pub recorder: Recorder,
    /// The process's registry.
    pub metrics: Arc<Metrics>,
    /// The controller's families in `metrics`.
    pub recorded: Arc<ControllerMetrics>,
    histories: Mutex<HashMap<String, Option<History>>>,
    decided: Mutex<HashMap<String, Decided>>,
    failures: Mutex<HashMap<String, u32>>,
    clock: Clock,
}

/// Where a [`Context`] reads the time (tests drive their own).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `client`, reading queues through `observer`.
    pub fn new(
        client: Client,
        observer: Arc<Observer>,
        metrics: Arc<Metrics>,
        instance: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            observer,
            recorded: metrics.component(),
            metrics,
            histories: Mutex::new(HashMap::new()),
            decided: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            clock: Arc::new(Utc::now),
        }
    }

    /// The same context reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn last_decision(&self, key: &str) -> Option<Decided> {
        let decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        decided.get(key).cloned()
    }

    fn remember(&self, key: &str, d: Decided) {
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        decided.insert(key.to_owned(), d);
    }

    /// Drops what is remembered of a deleted pool (its last decision, window and failures).
    fn forget(&self, key: &str) {
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        decided.remove(key);
        drop(decided);
        let mut histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        histories.remove(key);
        drop(histories);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

/// Reconciles `pool` (with its finalizer).
///
/// # Errors
/// [`Error`]; the controller retries with backoff.
pub async fn reconcile(pool: Arc<WorkerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pool.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<WorkerPool> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let key = deployment::identity(&pool);
    let result = finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &ctx, &ns).await,
            Finalizer::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.recorded.record_reconcile(
        &key,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::cause),
    );
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    match &result {
        Ok(_) => {
            failures.remove(&key);
        }
        Err(_) => {
            *failures.entry(key.clone()).or_default() += 1;
        }
    }
    result
}

/// What the controller does after a failed reconcile: log, then retry with exponential
/// backoff per pool ([`backoff`]); a success resets it.
pub fn error_policy(pool: Arc<WorkerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = deployment::identity(&pool);
    let n = ctx
        .failures
        .lock()
        .map(|f| f.get(&key).copied().unwrap_or(1))
        .unwrap_or(1);
    let wait = backoff(n);
    tracing::warn!(pool = %key, %error, failures = n, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn cleanup(pool: &WorkerPool, ctx: &Context) -> Result<Action, Error> {
    let key = deployment::identity(pool);
    ctx.forget(&key);
    // The leases expire on their own within the ownership TTL; never block deletion.
    let Some(queue) = ctx.observer.queue() else {
        tracing::warn!(pool = %key, "PostgreSQL unreachable: partition leases left to expire");
        return Ok(Action::await_change());
    };
    match queue.release_pool(&key).await {
        Ok(n) => {
            tracing::info!(pool = %key, released = n, "pool deleted: partition leases released")
        }
        Err(e) => tracing::warn!(pool = %key, error = %e, "could not release partition leases"),
    }
    let _ = queue.forget_pool(&key).await;
    Ok(Action::await_change())
}

async fn apply(pool: &WorkerPool, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let name = pool.name_any();
    let key = deployment::identity(pool);
    let now = (ctx.clock)();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let existing = deployments.get_opt(&deployment::name(&name)).await?;
    let status = existing.as_ref().and_then(|d| d.status.as_ref());
    let seen = Seen {
        exists: existing.is_some(),
        current: existing
            .as_ref()
            .and_then(|d| d.spec.as_ref()?.replicas)
            .unwrap_or(0),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        running: status.and_then(|s| s.replicas).unwrap_or(0),
    };

    // Decide (at most once per pollSeconds, or when the spec changed).
    let spec = cadence::fingerprint(&pool.spec);
    let poll = chrono::Duration::seconds(pool.spec.autoscaling.poll_seconds.clamp(1, 300));
    let last = ctx.last_decision(&key);
    let fresh = cadence::due(last.as_ref(), spec, now, poll);
    let decision = match (&last, fresh) {
        (Some(d), false) => d.clone(),
        _ => {
            ctx.recorded.count_decision(&key);
            let current = seen.exists.then_some(seen.current);
            decide_now(pool, ctx, &key, current, now, spec).await
        }
    };

    // Actuate: the Deployment, only when something changed.
    let dep = deployment::build(pool, decision.desired);
    let built = cadence::fingerprint(&dep);
    let generation = existing
        .as_ref()
        .map(|d| (seen.current, d.metadata.generation));
    let mut applied = last.as_ref().and_then(|d| d.applied);
    let mut apply_failed: Option<kube::Error> = None;
    if cadence::must_apply(last.as_ref(), built, generation, decision.desired) {
        let patched = deployments
            .patch(
                &deployment::name(&name),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&dep),
            )
            .await;
        match patched {
            Ok(after) => applied = Some((built, after.metadata.generation)),
            Err(e) => {
                applied = None;
                apply_failed = Some(e);
            }
        }
    }
    let apply_error = apply_failed.as_ref().map(|e| match e {
        kube::Error::Api(ae) => ae.message.clone(),
        other => other.to_string(),
    });

    // Report: Events and the status (written only if it changed).
    let was_degraded = last.as_ref().is_some_and(|d| d.degraded.is_some());
    let report = outcome(
        pool,
        &decision,
        fresh,
        was_degraded,
        seen,
        apply_error.as_deref(),
        now,
    );
    if let Some(direction) = report.scaled {
        ctx.recorded.count_scale(&key, direction);
        tracing::info!(pool = %key, from = seen.current, to = decision.desired, reason = %decision.reason, "scaled");
    }
    for n in &report.notices {
        let event = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.into(),
            note: Some(n.note.clone()),
            action: n.action.into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &pool.object_ref(&())).await {
            tracing::warn!(pool = %key, error = %e, reason = n.reason, "could not publish an Event");
        }
    }
    // Every status write is a watch event that reconciles the pool again.
    if pool.status.as_ref() != Some(&report.status) {
        let pools: Api<WorkerPool> = Api::namespaced(ctx.client.clone(), ns);
        pools
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": report.status})),
            )
            .await?;
    }
    if let (true, Some(queue)) = (fresh, ctx.observer.queue()) {
        let recorded = queue
            .record_pool(&pgfleet_queue::pools::PoolReport {
                name: key.clone(),
                source: "kubernetes".into(),
                desired: decision.desired,
                actual: seen.ready,
                backlog: decision.sample.backlog,
                lag_seconds: decision.sample.oldest_age_secs,
                reason: decision.reason.clone(),
                updated_at: chrono::Utc::now(),
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(pool = %key, error = %e, "could not record the decision for pgfleet status");
        }
    }
    ctx.recorded
        .set_replicas(&key, decision.desired, seen.ready);
    let decision = Decided {
        applied,
        ..decision
    };
    let wait = cadence::next_in(&decision, now, poll);
    ctx.remember(&key, decision);
    match apply_failed {
        Some(e) => Err(Error::Kube(e)),
        None => Ok(Action::requeue(wait)),
    }
}

/// Samples the pool's queues and plans its size ([`plan`]: the same decision as local pools).
async fn decide_now(
    pool: &WorkerPool,
    ctx: &Context,
    key: &str,
    current: Option<i32>,
    now: DateTime<Utc>,
    spec: u64,
) -> Decided {
    let queues: Vec<String> = pool.spec.queues.iter().map(|q| q.name.clone()).collect();
    let sample = ctx.observer.sample(key, &queues).await;
    let error = sample.as_ref().err().map(ToString::to_string);
    let p = {
        let mut histories = ctx.histories.lock().unwrap_or_else(|p| p.into_inner());
        let h = histories.entry(key.to_owned()).or_default();
        plan(
            &Policy::from(&pool.spec),
            sample
                .as_ref()
                .map_err(|_| error.as_deref().unwrap_or_default()),
            current,
            h,
            now,
        )
    };
    Decided {
        at: now,
        spec,
        desired: p.desired,
        reason: p.reason,
        degraded: p.degraded,
        sample: sample.unwrap_or_default(),
        applied: None,
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn failures_back_off_exponentially_to_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
