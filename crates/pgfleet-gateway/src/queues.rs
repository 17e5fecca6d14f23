//! Queues (stats, pause, resume), workers and partition ownership, and the seed's
//! `POST /start` / `POST /stop` aliases (resume / pause every queue).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use pgfleet_queue::flow::{FlowStatus, Limits};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authed, ADMIN, READ};
use crate::extract::{Path, Query};
use crate::problem::{parse_object, ApiError, Problem};
use crate::AppState;

/// One queue's numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDto {
    /// Name.
    pub name: String,
    /// Paused?
    pub paused: bool,
    /// Its counts over every partition.
    #[serde(flatten)]
    pub counts: pgfleet_queue::stats::Counts,
    /// Its flow-control settings (`null`: none).
    pub limits: Option<Limits>,
}

async fn all_queues(state: &AppState) -> Result<Vec<QueueDto>, ApiError> {
    let mut limits: std::collections::HashMap<String, Limits> = state
        .queue
        .flow_status(None)
        .await?
        .into_iter()
        .map(|f| (f.queue, f.limits))
        .collect();
    Ok(state
        .queue
        .stats()
        .await?
        .into_iter()
        .map(|q| QueueDto {
            limits: limits.remove(&q.queue),
            name: q.queue,
            paused: q.paused,
            counts: q.total,
        })
        .collect())
}

/// Every queue's statistics.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, body = Vec<QueueDto>)))]
pub async fn list(
    State(state): State<AppState>,
    _a: Authed<READ>,
) -> Result<Json<Vec<QueueDto>>, ApiError> {
    Ok(Json(all_queues(&state).await?))
}

async fn one(state: &AppState, name: &str) -> Result<QueueDto, ApiError> {
    all_queues(state)
        .await?
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("queue {name:?} not found")))
}

/// Options of `POST /v1/queues/{name}/pause`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PauseParams {
    /// Pause a queue that nothing knows yet (no jobs, no worker serving it), so that it
    /// starts paused. Without it, an unknown name is 404: a typo does not pause nothing.
    #[serde(default)]
    pub create: bool,
}

/// Whether a queue is known: it has jobs or a record (paused before), or a live worker
/// serves it.
async fn known(state: &AppState, name: &str) -> Result<bool, ApiError> {
    if all_queues(state).await?.iter().any(|q| q.name == name) {
        return Ok(true);
    }
    let workers = state.queue.workers(None).await?;
    Ok(workers.iter().any(|w| w.queues.iter().any(|q| q == name)))
}

fn unknown(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "queue {name:?} not found (no jobs, no worker serving it); pass create=true to pause it before its first job"
    ))
}

/// Pauses a queue: every worker stops claiming from it at its next claim.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "queue name", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), PauseParams),
    responses((status = 200, body = QueueDto), (status = 404, description = "unknown queue (see `create`)", body = Problem)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<PauseParams>,
    _a: Authed<ADMIN>,
) -> Result<Json<QueueDto>, ApiError> {
    pgfleet_queue::job::validate_queue_name(&name)?;
    if !p.create && !known(&state, &name).await? {
        return Err(unknown(&name));
    }
    state.queue.pause_queue(&name).await?;
    Ok(Json(one(&state, &name).await?))
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "queue name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = QueueDto), (status = 404, description = "unknown queue", body = Problem)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<ADMIN>,
) -> Result<Json<QueueDto>, ApiError> {
    pgfleet_queue::job::validate_queue_name(&name)?;
    if !known(&state, &name).await? {
        return Err(unknown(&name));
    }
    state.queue.resume_queue(&name).await?;
    Ok(Json(one(&state, &name).await?))
}

/// What `/start` and `/stop` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Switched {
    /// Always true.
    pub ok: bool,
    /// `running` or `stopped`.
    pub status: &'static str,
    /// The queues switched.
    pub queues: Vec<String>,
}

async fn switch_all(state: &AppState, run: bool) -> Result<Json<Switched>, ApiError> {
    let names: Vec<String> = all_queues(state)
        .await?
        .into_iter()
        .map(|q| q.name)
        .collect();
    for n in &names {
        if run {
            state.queue.resume_queue(n).await?;
        } else {
            state.queue.pause_queue(n).await?;
        }
    }
    Ok(Json(Switched {
        ok: true,
        status: if run { "running" } else { "stopped" },
        queues: names,
    }))
}

/// Seed alias: resume every queue.
#[utoipa::path(post, path = "/start", tag = "aliases", responses((status = 200, body = Switched)))]
pub async fn start(
    State(state): State<AppState>,
    _a: Authed<ADMIN>,
) -> Result<Json<Switched>, ApiError> {
    switch_all(&state, true).await
}

/// Seed alias: pause every queue.
#[utoipa::path(post, path = "/stop", tag = "aliases", responses((status = 200, body = Switched)))]
pub async fn stop(
    State(state): State<AppState>,
    _a: Authed<ADMIN>,
) -> Result<Json<Switched>, ApiError> {
    switch_all(&state, false).await
}

/// A live worker and the partitions it owns.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerDto {
    /// Id.
    pub id: String,
    /// Pool.
    pub pool: String,
    /// Host.
    pub hostname: String,
    /// Queues served.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Partitions leased now.
    pub partitions: Vec<i16>,
    /// Last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Jobs it holds now: running, or claimed into its buffer ahead of a free slot.
    pub held: i64,
}

/// Live workers.
#[utoipa::path(get, path = "/v1/workers", tag = "fleet", responses((status = 200, body = Vec<WorkerDto>)))]
pub async fn workers(
    State(state): State<AppState>,
    _a: Authed<READ>,
) -> Result<Json<Vec<WorkerDto>>, ApiError> {
    let leases = state.queue.partition_leases(None).await?;
    let held = state.queue.held_by_worker().await?;
    let out = state
        .queue
        .workers(None)
        .await?
        .into_iter()
        .map(|w| WorkerDto {
            held: held.get(&w.id).copied().unwrap_or(0),
            partitions: leases
                .iter()
                .filter(|l| l.worker_id == w.id)
                .map(|l| l.partition)
                .collect(),
            id: w.id,
            pool: w.pool,
            hostname: w.hostname,
            queues: w.queues,
            concurrency: w.concurrency,
            heartbeat_at: w.heartbeat_at,
        })
        .collect();
    Ok(Json(out))
}

/// A partition lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDto {
    /// Pool.
    pub pool: String,
    /// Partition.
    pub partition: i16,
    /// Owner.
    pub worker_id: String,
    /// Lease expiry.
    pub expires_at: DateTime<Utc>,
}

/// Who owns which partition.
#[utoipa::path(get, path = "/v1/partitions", tag = "fleet", responses((status = 200, body = Vec<PartitionDto>)))]
pub async fn partitions(
    State(state): State<AppState>,
    _a: Authed<READ>,
) -> Result<Json<Vec<PartitionDto>>, ApiError> {
    let out = state
        .queue
        .partition_leases(None)
        .await?
        .into_iter()
        .map(|l| PartitionDto {
            pool: l.pool,
            partition: l.partition,
            worker_id: l.worker_id,
            expires_at: l.expires_at,
        })
        .collect();
    Ok(Json(out))
}

/// A queue's flow-control settings with what they hold now (its running count).
#[utoipa::path(get, path = "/v1/queues/{name}/limits", tag = "queues",
    params(("name" = String, Path, description = "queue name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = FlowStatus)))]
pub async fn limits(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _a: Authed<READ>,
) -> Result<Json<FlowStatus>, ApiError> {
    pgfleet_queue::job::validate_queue_name(&name)?;
    Ok(Json(state.queue.limits(&name).await?))
}

/// Sets a queue's limits, all at once (a field left out is removed; `{}` lifts every
/// limit). Workers apply them at their next claim, across the fleet. A negative or zero
/// limit is 422 naming the field, and nothing is written.
#[utoipa::path(put, path = "/v1/queues/{name}/limits", tag = "queues", request_body = Limits,
    params(("name" = String, Path, description = "queue name", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = FlowStatus), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn set_limits(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Authed(body): Authed<ADMIN>,
) -> Result<Json<FlowStatus>, ApiError> {
    pgfleet_queue::job::validate_queue_name(&name)?;
    let limits: Limits = parse_object(&body)?;
    Ok(Json(state.queue.set_limits(&name, &limits).await?))
}
