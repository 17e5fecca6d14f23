//! What the console reads beyond the jobs and queues API: who the caller is (so the page
//! shows actions only to admin keys), failures grouped by kind and message, a queue's
//! counts over time, and the worker pools with the autoscaler's decisions over time.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use pgfleet_queue::failures::ErrorGroup;
use pgfleet_queue::history::QueueSample;
use pgfleet_queue::pools::{PoolPoint, PoolReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{credential_scope, Authed, READ};
use crate::extract::{Path, Query};
use crate::problem::{ApiError, Problem};
use crate::AppState;

/// The caller, as the console needs to know it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `read`, `write` or `admin`: what this key may do.
    pub scope: String,
    /// Link template for a job's trace (`{trace_id}` is replaced), when a trace UI is
    /// configured.
    pub trace_url: Option<String>,
}

/// The caller's scope and the console's settings.
#[utoipa::path(get, path = "/v1/me", tag = "console",
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    let scope = credential_scope(&state, &headers, "GET", "/v1/me", b"")?;
    Ok(Json(Me {
        scope: scope.as_str().into(),
        trace_url: state.config.trace_url.clone(),
    }))
}

/// A time window ending now.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// Minutes back from now, 1 to 1440 (default 60).
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<i64>,
}

impl Window {
    fn since(&self, default: i64) -> Result<DateTime<Utc>, ApiError> {
        let m = self.minutes.unwrap_or(default);
        if !(1..=1440).contains(&m) {
            return Err(ApiError::invalid("minutes", "must be between 1 and 1440"));
        }
        Ok(Utc::now() - Duration::minutes(m))
    }
}

/// Filters of the error groups.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorParams {
    /// Minutes back from now, 1 to 1440 (default 1440: a day).
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<i64>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Groups, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Failures (discarded jobs and jobs waiting to retry) grouped by kind and message.
#[utoipa::path(get, path = "/v1/errors", tag = "console", params(ErrorParams),
    responses((status = 200, body = Vec<ErrorGroup>), (status = 422, body = Problem)))]
pub async fn errors(
    State(state): State<AppState>,
    Query(p): Query<ErrorParams>,
    _a: Authed<READ>,
) -> Result<Json<Vec<ErrorGroup>>, ApiError> {
    let since = Window { minutes: p.minutes }.since(1440)?;
    // The queue checks the limit (422 naming `limit`).
    let limit = p.limit.unwrap_or(50);
    Ok(Json(
        state
            .queue
            .error_groups(since, p.queue.as_deref(), limit)
            .await?,
    ))
}

/// A queue's counts over time (one sample every 10 s while a worker runs).
#[utoipa::path(get, path = "/v1/queues/{name}/history", tag = "queues",
    params(("name" = String, Path), Window),
    responses((status = 200, body = Vec<QueueSample>), (status = 422, body = Problem)))]
pub async fn queue_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(w): Query<Window>,
    _a: Authed<READ>,
) -> Result<Json<Vec<QueueSample>>, ApiError> {
    let since = w.since(60)?;
    Ok(Json(state.queue.queue_history(&name, since).await?))
}

/// A worker pool: the autoscaler's last decision and its decisions over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolDto {
    /// The last decision.
    pub pool: PoolReport,
    /// Decisions over the window, oldest first.
    pub history: Vec<PoolPoint>,
}

/// Worker pools with desired and ready replicas over time and the autoscaler's reasons.
#[utoipa::path(get, path = "/v1/pools", tag = "console", params(Window),
    responses((status = 200, body = Vec<PoolDto>), (status = 422, body = Problem)))]
pub async fn pools(
    State(state): State<AppState>,
    Query(w): Query<Window>,
    _a: Authed<READ>,
) -> Result<Json<Vec<PoolDto>>, ApiError> {
    let since = w.since(60)?;
    let mut out = Vec::new();
    for pool in state.queue.pools().await? {
        let history = state.queue.pool_history(&pool.name, since).await?;
        out.push(PoolDto { pool, history });
    }
    Ok(Json(out))
}
