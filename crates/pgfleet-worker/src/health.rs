//! The worker's small HTTP port for Kubernetes probes (and, later, `/metrics`).
//!
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 when the worker has registered and is not shutting down and the
//!   database answers within a second; 503 with the reason otherwise (readiness);
//! - `GET /metrics`: the worker's Prometheus metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use pgfleet_telemetry::Metrics;
use serde::Serialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Shared readiness flag: set once the worker serves, cleared when shutdown starts.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the worker ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the worker is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct HealthState {
    pool: PgPool,
    ready: Readiness,
    metrics: Arc<Metrics>,
}

async fn render_metrics(State(s): State<HealthState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            pgfleet_telemetry::CONTENT_TYPE,
        )],
        s.metrics.render(),
    )
}

#[derive(Serialize)]
struct Probe {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The probe routes and `/metrics`, for embedding in another router.
pub fn routes(pool: PgPool, ready: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async {
                Json(Probe {
                    status: "ok",
                    reason: None,
                })
            }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(HealthState {
            pool,
            ready,
            metrics,
        })
}

async fn readyz(State(s): State<HealthState>) -> (StatusCode, Json<Probe>) {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some(reason),
            }),
        )
    };
    if !s.ready.get() {
        return not_ready("worker is starting or shutting down".into());
    }
    let ping = sqlx::query("SELECT 1").execute(&s.pool);
    match tokio::time::timeout(Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => (
            StatusCode::OK,
            Json(Probe {
                status: "ready",
                reason: None,
            }),
        ),
        Ok(Err(e)) => not_ready(format!("database: {e}")),
        Err(_) => not_ready("database did not answer within 1 s".into()),
    }
}

/// Serves the probes on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    ready: Readiness,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, routes(pool, ready, metrics))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
