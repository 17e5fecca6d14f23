//! Seed alias `/tasks` (seed 000): `{type, payload}` in, `{id, type, payload, status}` out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pgfleet_queue::admin::{JobFilter, PageRequest};
use pgfleet_queue::NewJob;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Authed, READ, WRITE};
use crate::problem::{parse_json, ApiError, Problem};
use crate::AppState;

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The task type (the job kind): 1 to 128 of letters, digits, `_ . : -`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub kind: String,
    /// Its payload.
    #[serde(default)]
    #[schema(value_type = crate::openapi::JsonValue)]
    pub payload: Option<Value>,
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    /// Id.
    pub id: i64,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload.
    #[schema(value_type = crate::openapi::JsonValue)]
    pub payload: Value,
    /// Job state.
    pub status: String,
}

/// Creates a task on the `default` queue.
#[utoipa::path(post, path = "/tasks", tag = "aliases", request_body = NewTask,
    responses((status = 201, body = Task), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let t: NewTask = parse_json(&body)?;
    let payload = t
        .payload
        .unwrap_or_else(|| Value::Object(Default::default()));
    let e = state
        .queue
        .enqueue(NewJob::new("default", &t.kind).payload(payload.clone()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Task {
            id: e.id,
            kind: t.kind,
            payload,
            status: "available".into(),
        }),
    ))
}

/// Up to 100 tasks, oldest first.
#[utoipa::path(get, path = "/tasks", tag = "aliases", responses((status = 200, body = Vec<Task>)))]
pub async fn list(
    State(state): State<AppState>,
    _a: Authed<READ>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let jobs = state
        .queue
        .search_jobs(
            &JobFilter::default(),
            &PageRequest {
                limit: 100,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(
        jobs.into_iter()
            .map(|j| Task {
                id: j.id,
                kind: j.kind,
                payload: j.payload,
                status: j.state.to_string(),
            })
            .collect(),
    ))
}
