//! `pgfleet controller` (the WorkerPool operator) and `pgfleet crd` (its CRD as YAML).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pgfleet_controller::observe::Observer;
use pgfleet_controller::reconcile::Context;
use pgfleet_controller::run::Settings;
use pgfleet_queue::Queue;

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
    let pool = args.db.connect().await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool).await?;
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
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
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
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Observer::new(queue.clone())),
        metrics,
        &identity,
    ));
    let settings = Settings {
        namespace: args.namespace,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        lease_ttl: Duration::from_secs(args.lease_ttl_secs.max(3)),
    };
    pgfleet_controller::run::run(ctx, settings, stop).await;
    queue.close().await;
    Ok(())
}

/// Prints the WorkerPool CRD.
///
/// # Errors
/// Serialization failure.
pub fn print_crd() -> anyhow::Result<()> {
    print!("{}", pgfleet_controller::crd::crd_yaml()?);
    Ok(())
}
