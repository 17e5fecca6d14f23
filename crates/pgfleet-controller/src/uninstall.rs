//! Deleting a release's pools while the controller still runs (Helm's pre-delete hook).
//!
//! `helm uninstall` removes the controller and its RBAC before custom resources, so a pool
//! deleted after it would keep its finalizer (Terminating for ever) and its worker
//! Deployment would keep running. The chart's pre-delete hook runs `pgfleet pools delete`,
//! which deletes the pools and waits until the running controller has released them.

use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;

use crate::crd::WorkerPool;

/// Deletes the pools in `namespace` matching `selector` and waits until they are gone (the
/// controller removes its finalizer, the garbage collector their Deployments). Returns the
/// names deleted.
///
/// # Errors
/// [`UninstallError::Kube`] from the API server; [`UninstallError::Timeout`] naming the pools
/// still present after `timeout`.
pub async fn delete_pools(
    api: &Api<WorkerPool>,
    selector: &str,
    timeout: Duration,
) -> Result<Vec<String>, UninstallError> {
    let lp = ListParams::default().labels(selector);
    let names = listed(api, &lp).await?;
    for name in &names {
        match api.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = listed(api, &lp).await?;
        if left.is_empty() {
            return Ok(names);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(UninstallError::Timeout(left));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listed(api: &Api<WorkerPool>, lp: &ListParams) -> Result<Vec<String>, kube::Error> {
    Ok(api
        .list(lp)
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect())
}

/// Why deleting the pools failed.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// The API server refused or failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// Pools still present when the time ran out (is the controller running?).
    #[error("pools still present after the timeout (is the controller running?): {0:?}")]
    Timeout(Vec<String>),
}
