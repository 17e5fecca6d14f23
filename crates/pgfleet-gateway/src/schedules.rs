//! Periodic jobs: `/v1/schedules` — list, read, create or replace, pause, resume, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pgfleet_queue::schedule::{Schedule, ScheduleDoc};

use crate::auth::{Authed, ADMIN, READ};
use crate::extract::Path;
use crate::problem::{parse_object, ApiError, Problem};
use crate::AppState;

fn missing(name: &str) -> ApiError {
    ApiError::NotFound(format!("schedule {name:?} not found"))
}

/// Every schedule with its next and last run and its last job's state.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, body = Vec<Schedule>), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    _a: Authed<READ>,
) -> Result<Json<Vec<Schedule>>, ApiError> {
    Ok(Json(state.queue.schedules().await?))
}

/// One schedule.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "schedule name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<READ>,
) -> Result<Json<Schedule>, ApiError> {
    let s = state.queue.schedule(&name).await?;
    Ok(Json(s.ok_or_else(|| missing(&name))?))
}

/// Creates or replaces a schedule; its next tick is computed from now. A bad cron
/// expression, time zone or misfire policy is 422 naming the field, and nothing is written.
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules", request_body = ScheduleDoc,
    params(("name" = String, Path, description = "schedule name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = Schedule), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Authed(body): Authed<ADMIN>,
) -> Result<Json<Schedule>, ApiError> {
    let doc: ScheduleDoc = parse_object(&body)?;
    if doc.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid(
            "name",
            "differs from the name in the URL",
        ));
    }
    let s = doc.into_schedule(Some(&name))?;
    state.queue.put_schedule(&s).await?;
    let s = state.queue.schedule(&name).await?;
    Ok(Json(s.ok_or_else(|| missing(&name))?))
}

async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Json<Schedule>, ApiError> {
    if !state.queue.set_schedule_paused(name, paused).await? {
        return Err(missing(name));
    }
    let s = state.queue.schedule(name).await?;
    Ok(Json(s.ok_or_else(|| missing(name))?))
}

/// Pauses a schedule: no ticks until it is resumed (missed ticks then follow its policy).
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "schedule name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<ADMIN>,
) -> Result<Json<Schedule>, ApiError> {
    set_paused(&state, &name, true).await
}

/// Resumes a paused schedule.
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "schedule name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = Schedule), (status = 404, body = Problem)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<ADMIN>,
) -> Result<Json<Schedule>, ApiError> {
    set_paused(&state, &name, false).await
}

/// Deletes a schedule (the jobs it enqueued stay).
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "schedule name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<ADMIN>,
) -> Result<StatusCode, ApiError> {
    if state.queue.delete_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing(&name))
    }
}
