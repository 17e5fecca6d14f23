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

/// Runs until `stop`: reconciles only while this replica holds the Lease, so two replicas
/// are safe (the other waits and takes over within the lease TTL).
///
/// A lost election or an unreachable API server is logged and retried, never fatal.
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
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let lead = match lock.try_acquire_or_renew().await {
            Ok(LeaseLockResult::Acquired(_)) => true,
            Ok(LeaseLockResult::NotAcquired(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "leader election failed; not reconciling");
                false
            }
        };
        match (lead, leading.is_some()) {
            (true, false) => {
                tracing::info!(identity = %settings.identity, "became leader");
                let token = stop.child_token();
                let task = tokio::spawn(controller(
                    ctx.clone(),
                    settings.namespace.clone(),
                    token.clone(),
                ));
                leading = Some((token, task));
            }
            (false, true) => {
                tracing::warn!(identity = %settings.identity, "lost leadership; stopping");
                if let Some((token, task)) = leading.take() {
                    token.cancel();
                    let _ = task.await;
                }
            }
            _ => {}
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
