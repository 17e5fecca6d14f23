//! Reconciling one pool: observe its queues, decide its size, apply its Deployment, report
//! status and Events. A finalizer releases the pool's partition leases when it is deleted
//! (the Deployment goes with its owner reference).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, Resource, ResourceExt};
use pgfleet_telemetry::Metrics;
use serde_json::json;

use crate::crd::{Condition, WorkerPool, WorkerPoolStatus};
use crate::deployment::{self, MANAGER};
use crate::observe::Observer;
use crate::scaling::{decide, History, Policy};

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

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Queue statistics.
    pub observer: Arc<Observer>,
    /// Events are published as this controller.
    pub recorder: Recorder,
    /// Controller metrics.
    pub metrics: Arc<Metrics>,
    histories: Mutex<HashMap<String, History>>,
}

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
            metrics,
            histories: Mutex::new(HashMap::new()),
        }
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    previous: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_owned();
    let now = Utc::now().to_rfc3339();
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
    ctx.metrics
        .controller_reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics
            .controller_reconcile_errors
            .with_label_values(&[&key])
            .inc();
    }
    result
}

/// What the controller does after a failed reconcile: log, then retry in 10 s.
pub fn error_policy(pool: Arc<WorkerPool>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(pool = %pool.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

async fn cleanup(pool: &WorkerPool, ctx: &Context) -> Result<Action, Error> {
    let key = deployment::identity(pool);
    match ctx.observer.queue().release_pool(&key).await {
        Ok(n) => {
            tracing::info!(pool = %key, released = n, "pool deleted: partition leases released")
        }
        // The leases expire on their own within the ownership TTL; do not block deletion.
        Err(e) => tracing::warn!(pool = %key, error = %e, "could not release partition leases"),
    }
    let _ = crate::report::forget(ctx.observer.queue().pool(), &key).await;
    Ok(Action::await_change())
}

async fn apply(pool: &WorkerPool, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let name = pool.name_any();
    let key = deployment::identity(pool);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let existing = deployments.get_opt(&deployment::name(&name)).await?;
    let current = existing
        .as_ref()
        .and_then(|d| d.spec.as_ref()?.replicas)
        .unwrap_or(0);
    let ready = existing
        .as_ref()
        .and_then(|d| d.status.as_ref()?.ready_replicas)
        .unwrap_or(0);
    let previous = pool.status.clone().unwrap_or_default();
    let queues: Vec<String> = pool.spec.queues.iter().map(|q| q.name.clone()).collect();
    let sample = ctx.observer.sample(&key, &queues).await;
    let policy = Policy::from(&pool.spec);
    let (desired, reason, degraded) = match (&sample, pool.spec.paused) {
        // Paused: keep the current size (a new pool starts at its minimum).
        (_, true) => (
            if existing.is_some() {
                current
            } else {
                policy.min
            },
            "paused".to_owned(),
            None,
        ),
        (Ok(s), false) => {
            let mut histories = ctx.histories.lock().unwrap_or_else(|p| p.into_inner());
            let h = histories.entry(key.clone()).or_default();
            let d = decide(&policy, s, current, h, Utc::now());
            (d.desired, d.reason, None)
        }
        (Err(e), false) => {
            // Without metrics, hold the current size (or start at the minimum).
            let hold = if existing.is_some() {
                current
            } else {
                policy.min
            };
            (
                hold,
                "queue statistics unavailable".to_owned(),
                Some(e.to_string()),
            )
        }
    };
    let dep = deployment::build(pool, desired);
    deployments
        .patch(
            &deployment::name(&name),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&dep),
        )
        .await?;
    let scaled = existing.is_some() && desired != current;
    let now = Utc::now().to_rfc3339();
    if scaled {
        let direction = if desired > current { "up" } else { "down" };
        ctx.metrics
            .controller_scale_events
            .with_label_values(&[&key, direction])
            .inc();
        let event = Event {
            type_: EventType::Normal,
            reason: if desired > current {
                "ScaledUp"
            } else {
                "ScaledDown"
            }
            .into(),
            note: Some(format!("{current} → {desired} replicas: {reason}")),
            action: "Scale".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &pool.object_ref(&())).await {
            tracing::warn!(pool = %name, error = %e, "could not publish the scale Event");
        }
        tracing::info!(pool = %key, from = current, to = desired, %reason, "scaled");
    }
    if let Some(e) = &degraded {
        let event = Event {
            type_: EventType::Warning,
            reason: "MetricsUnavailable".into(),
            note: Some(format!("queue statistics unavailable: {e}")),
            action: "Observe".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &pool.object_ref(&())).await;
    }
    let s = sample.as_ref().ok().copied().unwrap_or_default();
    let conditions = vec![
        condition(
            "Ready",
            ready >= desired,
            if ready >= desired {
                "ReplicasReady"
            } else {
                "ReplicasStarting"
            },
            format!("{ready}/{desired} replicas ready"),
            &previous.conditions,
        ),
        condition(
            "Scaling",
            desired != ready,
            if desired != ready {
                "Scaling"
            } else {
                "Stable"
            },
            reason.clone(),
            &previous.conditions,
        ),
        condition(
            "Degraded",
            degraded.is_some(),
            if degraded.is_some() {
                "MetricsUnavailable"
            } else {
                "MetricsAvailable"
            },
            degraded
                .clone()
                .unwrap_or_else(|| "queue statistics are fresh".into()),
            &previous.conditions,
        ),
    ];
    let status = WorkerPoolStatus {
        observed_generation: pool.meta().generation,
        replicas: desired,
        ready_replicas: ready,
        desired_replicas: desired,
        backlog: s.backlog,
        oldest_job_age_seconds: (s.oldest_age_secs * 10.0).round() / 10.0,
        throughput: (s.completion_per_sec * 100.0).round() / 100.0,
        selector: Some(deployment::selector(&name)),
        last_scale_time: if scaled {
            Some(now)
        } else {
            previous.last_scale_time.clone()
        },
        conditions,
    };
    let pools: Api<WorkerPool> = Api::namespaced(ctx.client.clone(), ns);
    pools
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    if let Err(e) = crate::report::record(
        ctx.observer.queue().pool(),
        &key,
        "kubernetes",
        desired,
        ready,
        &s,
        &reason,
    )
    .await
    {
        tracing::warn!(pool = %key, error = %e, "could not record the decision for pgfleet status");
    }
    ctx.metrics
        .controller_desired_replicas
        .with_label_values(&[&key])
        .set(i64::from(desired));
    ctx.metrics
        .controller_ready_replicas
        .with_label_values(&[&key])
        .set(i64::from(ready));
    Ok(Action::requeue(Duration::from_secs(
        pool.spec.autoscaling.poll_seconds.clamp(1, 300) as u64,
    )))
}
