//! `pgfleet controller` (the WorkerPool operator) and `pgfleet crd` (its CRD as YAML).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pgfleet_controller::observe::Observer;
use pgfleet_controller::reconcile::Context;
use pgfleet_controller::run::Settings;
use pgfleet_queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::database::DbArgs;

/// `pgfleet controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "PGFLEET_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: the pod's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "pgfleet-controller")]
    lease_name: String,
    /// This replica's identity (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing.
    #[arg(long, default_value_t = 15)]
    lease_ttl_secs: u64,
    /// Address of `/metrics` and `/healthz` (empty to disable).
    #[arg(long, env = "PGFLEET_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    metrics_addr: String,
}

/// Runs the controller until SIGINT/SIGTERM.
///
/// # Errors
/// No Kubernetes configuration, an unreachable database, or a port in use.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    // PostgreSQL may be down when the controller starts: serve the probes (not ready),
    // reconcile pools as Degraded holding their size, and keep trying with backoff.
    let observer = Arc::new(Observer::connecting());
    let metrics = Arc::new(pgfleet_telemetry::Metrics::new("controller"));
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("pgfleet-controller-{}", std::process::id()))
    });
    let stop = crate::shutdown_on_signal();
    if !args.metrics_addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
        let m = metrics.clone();
        let o = observer.clone();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let connected = o.queue().is_some();
                    async move {
                        if connected {
                            (axum::http::StatusCode::OK, "ready")
                        } else {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                "PostgreSQL not reachable yet",
                            )
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = m.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                pgfleet_telemetry::CONTENT_TYPE,
                            )],
                            m.render(),
                        )
                    }
                }),
            );
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
        });
    }
    tokio::spawn(connect_with_backoff(
        args.db,
        observer.clone(),
        stop.clone(),
    ));
    let ctx = Arc::new(Context::new(client, observer.clone(), metrics, &identity));
    let settings = Settings {
        namespace: args.namespace,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        lease_ttl: Duration::from_secs(args.lease_ttl_secs.max(3)),
    };
    pgfleet_controller::run::run(ctx, settings, stop).await;
    if let Some(queue) = observer.queue() {
        queue.close().await;
    }
    Ok(())
}

/// Connects to PostgreSQL, applies the migrations and hands the queue to `observer`,
/// retrying with exponential backoff (1 s doubling to 30 s) until it succeeds or `stop`.
async fn connect_with_backoff(db: DbArgs, observer: Arc<Observer>, stop: CancellationToken) {
    let mut failures = 0;
    loop {
        let attempt = async {
            let pool = db.connect().await?;
            pgfleet_queue::migrate::migrate(&pool, None).await?;
            anyhow::Ok(Queue::new(pool).await?)
        };
        match attempt.await {
            Ok(queue) => {
                tracing::info!("connected to PostgreSQL");
                observer.connected(queue);
                return;
            }
            Err(e) => {
                failures += 1;
                let wait =
                    pgfleet_controller::reconcile::backoff(failures).min(Duration::from_secs(30));
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "PostgreSQL unreachable; pools are held and Degraded");
                observer.unreachable(format!("{e:#}"));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// `pgfleet pools`.
#[derive(Debug, clap::Args)]
pub struct PoolsArgs {
    #[command(subcommand)]
    action: PoolsAction,
}

#[derive(Debug, clap::Subcommand)]
enum PoolsAction {
    /// Delete the pools matching a label selector and wait until the controller has
    /// released them (Helm's pre-delete hook, so `helm uninstall` leaves nothing behind).
    Delete {
        /// Namespace of the pools.
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        /// Label selector, e.g. `app.kubernetes.io/instance=pgfleet`.
        #[arg(long)]
        selector: String,
        /// Seconds to wait for the pools to be gone.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

/// Runs `pgfleet pools ...`.
///
/// # Errors
/// No Kubernetes configuration, an API error, or pools still present after the timeout.
pub async fn pools(args: PoolsArgs) -> anyhow::Result<()> {
    let PoolsAction::Delete {
        namespace,
        selector,
        timeout_secs,
    } = args.action;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let api = kube::Api::namespaced(client, &namespace);
    let deleted = pgfleet_controller::uninstall::delete_pools(
        &api,
        &selector,
        Duration::from_secs(timeout_secs),
    )
    .await?;
    println!(
        "deleted {} pool(s) in {namespace}: {deleted:?}",
        deleted.len()
    );
    Ok(())
}

/// `pgfleet crd`.
#[derive(Debug, clap::Args)]
pub struct CrdArgs {
    /// Install or upgrade the CRD in the cluster (server-side apply) instead of printing it.
    #[arg(long)]
    apply: bool,
}

/// Prints the WorkerPool CRD, or applies it to the cluster.
///
/// # Errors
/// Serialization failure; with `--apply`, no Kubernetes configuration or an API error.
pub async fn crd(args: CrdArgs) -> anyhow::Result<()> {
    if !args.apply {
        print!("{}", pgfleet_controller::crd::crd_yaml()?);
        return Ok(());
    }
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let name = pgfleet_controller::crd::apply_crd(client).await?;
    println!("applied CustomResourceDefinition {name}");
    Ok(())
}
