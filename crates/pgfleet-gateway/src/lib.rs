//! # pgfleet-gateway
//!
//! The HTTP front door: signed webhook ingest (stored once, processing enqueued in the same
//! transaction), the jobs / queues / workers / partitions API under `/v1`, the seed systems'
//! aliases, health probes, and an OpenAPI 3.1 document generated from the code (`/openapi.json`,
//! Swagger UI at `/docs`). Errors are `application/problem+json` naming the field.
//!
//! Only this crate knows HTTP; the queue library stays free of it.

pub mod auth;
pub mod config;
pub mod console;
pub mod extract;
pub mod ingest;
pub mod jobs;
pub mod json_guard;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod push;
pub mod queues;
pub mod ratelimit;
pub mod schedules;
pub mod tasks;
pub mod ui;
pub mod webhooks;
pub mod workflows;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use pgfleet_queue::Queue;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use openapi::ApiDoc;

pub use config::GatewayConfig;
/// Signature schemes (Standard Webhooks, signed API requests), shared with outbound
/// message delivery.
pub use pgfleet_messages::signature;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The queue (its pool commits durably: acknowledged means committed).
    pub queue: Queue,
    /// Settings.
    pub config: Arc<GatewayConfig>,
    /// The webhook group-commit writer.
    pub ingest: ingest::Ingest,
    /// The process's Prometheus registry (shared with in-process workers).
    pub metrics: Arc<pgfleet_telemetry::Metrics>,
    /// The gateway's families in `metrics`.
    pub recorded: Arc<metrics::GatewayMetrics>,
    /// The job lifecycle families in `metrics` (jobs enqueued here).
    pub jobs: Arc<pgfleet_telemetry::JobMetrics>,
    /// Per-credential rate limits, when configured.
    pub limiter: Option<Arc<ratelimit::RateLimiter>>,
}

impl AppState {
    /// State for `queue` and `config`; starts the ingest writers (4 writers, batches of up
    /// to 256 events). Must be called inside a Tokio runtime.
    pub fn new(queue: Queue, config: GatewayConfig) -> Self {
        Self::with_metrics(
            queue,
            config,
            Arc::new(pgfleet_telemetry::Metrics::new("gateway")),
        )
    }

    /// Like [`AppState::new`], recording into `metrics` (shared with in-process workers, so
    /// one `/metrics` shows both).
    pub fn with_metrics(
        queue: Queue,
        config: GatewayConfig,
        metrics: Arc<pgfleet_telemetry::Metrics>,
    ) -> Self {
        let ingest = ingest::Ingest::spawn(queue.clone(), config.webhook_queue.clone(), 4, 256);
        let limiter = config
            .rate_limit
            .map(|n| Arc::new(ratelimit::RateLimiter::new(n)));
        Self {
            queue,
            config: Arc::new(config),
            ingest,
            recorded: metrics.component(),
            jobs: metrics.jobs(),
            metrics,
            limiter,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Probe {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Probe)))]
async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        reason: None,
    })
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Probe), (status = 503, body = Probe)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Probe>) {
    let check = pgfleet_queue::migrate::is_up_to_date(state.queue.pool());
    match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
        Ok(Ok(true)) => (
            StatusCode::OK,
            Json(Probe {
                status: "ready",
                reason: None,
            }),
        ),
        Ok(Ok(false)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some("migrations are not applied".into()),
            }),
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some(format!("database: {e}")),
            }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some("database did not answer within 2 s".into()),
            }),
        ),
    }
}

/// Prometheus metrics; the queue gauges are refreshed at each scrape.
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let gauges = state.metrics.component::<pgfleet_telemetry::QueueGauges>();
    match state.queue.stats().await {
        Ok(stats) => gauges.set_queue_stats(&stats),
        Err(e) => tracing::warn!(error = %e, "queue statistics unavailable for /metrics"),
    }
    if let (Ok(w), Ok(l)) = (
        state.queue.workers(None).await,
        state.queue.partition_leases(None).await,
    ) {
        gauges.set_fleet(&w, &l);
    }
    match state.queue.flow_status(None).await {
        Ok(f) => gauges.set_limits(&f),
        Err(e) => tracing::warn!(error = %e, "queue limits unavailable for /metrics"),
    }
    match state.queue.schedules().await {
        Ok(s) => gauges.set_schedules(&s),
        Err(e) => tracing::warn!(error = %e, "schedules unavailable for /metrics"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            pgfleet_telemetry::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Records every request by route template (never the raw path), method and status.
async fn track(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    state.recorded.record_request(
        &route,
        &method,
        res.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// The request's span, continuing the caller's trace (`traceparent`) when it sent one.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let span = tracing::info_span!("http.request", otel.name = %format!("{} {route}", req.method()),
        http.method = %req.method(), http.route = %route);
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    pgfleet_telemetry::set_parent(&span, pgfleet_telemetry::parent_from_headers(headers));
    span
}

/// Answers 408 problem+json when a request (body reading included) outlasts `limit`.
async fn request_timeout(
    limit: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => problem::ApiError::Timeout(limit.as_secs().max(1)).into_response(),
    }
}

async fn not_found() -> problem::ApiError {
    problem::ApiError::NotFound("no such route".into())
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.config.timeout;
    let api = Router::new()
        .route("/webhooks/{source}", post(webhooks::receive))
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/jobs/batch", post(jobs::create_batch))
        .route("/v1/jobs/count", get(jobs::count))
        .route("/v1/jobs/bulk", post(jobs::bulk))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/dependencies", get(jobs::dependencies))
        .route("/v1/workflows", post(workflows::create))
        .route("/v1/workflows/{id}", get(workflows::get))
        .route("/v1/workflows/{id}/cancel", post(workflows::cancel))
        .route("/v1/batches", post(workflows::create_batch))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/history", get(console::queue_history))
        .route("/v1/errors", get(console::errors))
        .route("/v1/pools", get(console::pools))
        .route("/v1/me", get(console::me))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route(
            "/v1/queues/{name}/limits",
            get(queues::limits).put(queues::set_limits),
        )
        .route("/v1/schedules", get(schedules::list))
        .route(
            "/v1/schedules/{name}",
            get(schedules::get)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route("/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/v1/workers", get(queues::workers))
        .route("/v1/partitions", get(queues::partitions))
        .route(
            "/v1/subscriptions",
            post(push::subscribe).get(push::list_subscriptions),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(push::get_subscription).delete(push::delete_subscription),
        )
        .route(
            "/subscriptions",
            post(push::subscribe).get(push::list_subscriptions),
        )
        .route(
            "/v1/notifications",
            post(push::notify).get(push::list_notifications),
        )
        .route("/v1/notifications/{id}", get(push::get_notification))
        .route("/v1/notifications/{id}/attempts", get(push::attempts))
        .route(
            "/notifications",
            post(push::seed_notify).get(push::list_notifications_alias),
        )
        .route("/v1/vapid-public-key", get(push::vapid_public_key))
        .route(
            "/v1/messages",
            post(messages::create).get(messages::list_sent),
        )
        .route("/v1/messages/{id}", get(messages::get))
        .route("/messages", post(messages::create).get(messages::list_sent))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/start", post(queues::start))
        .route("/stop", post(queues::stop))
        .route("/", get(ui::to_index))
        .route("/ui", get(ui::to_index))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state);
    Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .merge(api)
        .layer(axum::middleware::from_fn(move |req, next| {
            request_timeout(timeout, req, next)
        }))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serves the gateway on `listener` until `shutdown` is cancelled; in-flight requests get
/// up to 30 s to finish. HTTP/1 and HTTP/2; a client that does not finish sending its request
/// headers within `header_read_timeout` is disconnected (slowloris), and the request timeout
/// bounds the rest of the request, body included.
///
/// # Errors
/// Never for a failed `accept` (logged and retried); the signature keeps room for setup
/// errors.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let header_timeout = state.config.header_read_timeout;
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("connections still open after 30 s; closing");
        }
    }
    Ok(())
}
