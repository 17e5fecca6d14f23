//! The controller process: leader election on a Lease, then the kube-runtime controller
//! watching WorkerPools and the Deployments they own.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{watcher, Controller};
use kube::Api;
use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio_util::sync::CancellationToken;

use crate::crd::WorkerPool;
use crate::deployment::MANAGER;
use crate::reconcile::{error_policy, reconcile, Context};

/// Controller settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Where the leader Lease lives.
    pub lease_namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a leader holds the Lease without renewing.
    pub lease_ttl: Duration,
}

/// The label selector of the Deployments the controller owns.
pub fn owned_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER}")
}

/// The kube-runtime controller over `ctx`, until `stop`.
pub async fn controller(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    let client = ctx.client.clone();
    let (pools, deployments): (Api<WorkerPool>, Api<Deployment>) = match namespace.as_deref() {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    Controller::new(pools, watcher::Config::default())
        .owns(
            deployments,
            watcher::Config::default().labels(&owned_selector()),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile result");
            }
        })
        .await;
}

/// What the elector does after an attempt to acquire or renew the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start reconciling: we hold the Lease now.
    Start,
    /// Go on as we are (leading or not).
    Keep,
    /// Stop reconciling: another holds the Lease, or we could not renew it within the
    /// deadline — before the Lease expires and another replica may take over.
    Stop,
}

/// The elector's decision: `held` is the attempt's outcome (`Some(true)`: we hold the Lease,
/// `Some(false)`: another does, `None`: the attempt failed or timed out); `since_renewed` is
/// the time since we last held it; `deadline` is shorter than the Lease's TTL.
pub fn step(
    leading: bool,
    held: Option<bool>,
    since_renewed: Duration,
    deadline: Duration,
) -> Step {
    match (leading, held) {
        (false, Some(true)) => Step::Start,
        (true, Some(false)) => Step::Stop,
        (true, None) if since_renewed >= deadline => Step::Stop,
        _ => Step::Keep,
    }
}

/// Runs until `stop`: reconciles only while this replica holds the Lease, so two replicas
/// are safe (the other waits and takes over within the lease TTL).
///
/// The Lease is renewed every TTL/3, each attempt bounded by TTL/3; a leader that has not
/// renewed for 2/3 of the TTL stops reconciling (client-go's renew deadline), so it has
/// stopped before the Lease expires and another replica can take it. A lost election or an
/// unreachable API server is logged and retried, never fatal.
pub async fn run(ctx: Arc<Context>, settings: Settings, stop: CancellationToken) {
    let lock = LeaseLock::new(
        ctx.client.clone(),
        &settings.lease_namespace,
        LeaseLockParams {
            lease_name: settings.lease_name.clone(),
            holder_id: settings.identity.clone(),
            lease_ttl: settings.lease_ttl,
        },
    );
    let renew = (settings.lease_ttl / 3).max(Duration::from_secs(1));
    let deadline = settings.lease_ttl * 2 / 3;
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let mut renewed = std::time::Instant::now();
    loop {
        let held = match tokio::time::timeout(renew, lock.try_acquire_or_renew()).await {
            Ok(Ok(LeaseLockResult::Acquired(_))) => Some(true),
            Ok(Ok(LeaseLockResult::NotAcquired(_))) => Some(false),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election failed");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?renew, "leader election did not answer in time");
                None
            }
        };
        if held == Some(true) {
            renewed = std::time::Instant::now();
        }
        match step(leading.is_some(), held, renewed.elapsed(), deadline) {
            Step::Start => {
                tracing::info!(identity = %settings.identity, "became leader");
                let token = stop.child_token();
                let task = tokio::spawn(controller(
                    ctx.clone(),
                    settings.namespace.clone(),
                    token.clone(),
                ));
                leading = Some((token, task));
            }
            Step::Stop => {
                tracing::warn!(identity = %settings.identity, "lost leadership; stopping");
                if let Some((token, task)) = leading.take() {
                    token.cancel();
                    let _ = task.await;
                }
                // A follower's gauges would repeat the leader's stale view.
                ctx.recorded.forget_replicas();
            }
            Step::Keep => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(renew) => {}
        }
    }
    if let Some((token, task)) = leading.take() {
        token.cancel();
        let _ = task.await;
        if let Err(e) = lock.step_down().await {
            tracing::warn!(error = %e, "could not release the leader Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{step, Step};
    use std::time::Duration;

    #[test]
    fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
        let (ttl, s) = (Duration::from_secs(15), Duration::from_secs);
        let deadline = ttl * 2 / 3;
        assert_eq!(step(false, Some(true), s(0), deadline), Step::Start);
        assert_eq!(step(true, Some(true), s(0), deadline), Step::Keep);
        assert_eq!(step(true, Some(false), s(0), deadline), Step::Stop);
        assert_eq!(
            step(true, None, s(5), deadline),
            Step::Keep,
            "one failed renewal"
        );
        assert_eq!(
            step(true, None, s(10), deadline),
            Step::Stop,
            "past the deadline"
        );
        assert!(deadline < ttl);
        assert_eq!(step(false, None, s(60), deadline), Step::Keep);
        assert_eq!(step(false, Some(false), s(0), deadline), Step::Keep);
    }
}
