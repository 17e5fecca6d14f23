//! Workflows and batches under `/v1/workflows` and `/v1/batches`: jobs enqueued together
//! with dependencies (a DAG, cycles refused), or a batch with a callback that runs once
//! when all of its jobs have finished.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pgfleet_queue::workflow::{EnqueuedWorkflow, NewBatch, NewWorkflow, Workflow, WorkflowJob};
use pgfleet_queue::QueueError;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Authed, ADMIN, READ, WRITE};
use crate::extract::Path;
use crate::jobs::CreateJob;
use crate::problem::{parse_object, ApiError, Problem};
use crate::AppState;

/// A workflow to create: jobs with keys, depending on each other by key (or on existing
/// jobs by id).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// Its name (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Its jobs (1 to 10,000), each with a `key` unique in the workflow.
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<CreateJob>,
}

/// A batch to create: jobs, and a callback job that runs once when every one of them has
/// finished, with `{"batch": {id, total, completed, discarded, cancelled}}` in its payload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// Its name (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// The jobs (1 to 10,000), without keys or dependencies.
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<CreateJob>,
    /// The callback job, without key or dependencies.
    pub callback: CreateJob,
}

fn workflow_error(e: QueueError) -> ApiError {
    match e {
        QueueError::NotFound(id) => ApiError::NotFound(format!("workflow {id} not found")),
        other => other.into(),
    }
}

/// A batch member must be a plain job: no key, no dependencies.
fn plain(at: String, job: CreateJob) -> Result<pgfleet_queue::NewJob, ApiError> {
    let (key, new, deps) = job.into_parts();
    if key.is_some() {
        return Err(ApiError::invalid(
            format!("{at}key"),
            "a batch's jobs have no keys",
        ));
    }
    if !deps.is_empty() {
        return Err(ApiError::invalid(
            format!("{at}depends_on"),
            "a batch's jobs and callback have no dependencies of their own",
        ));
    }
    Ok(new)
}

/// Creates a workflow: every job in one transaction, dependents `blocked` until their
/// dependencies finish.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = CreateWorkflow,
    responses((status = 201, body = EnqueuedWorkflow), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<EnqueuedWorkflow>), ApiError> {
    let wf: CreateWorkflow = parse_object(&body)?;
    let mut jobs = Vec::with_capacity(wf.jobs.len());
    for (i, j) in wf.jobs.into_iter().enumerate() {
        let (key, job, after) = j.into_parts();
        let key = key.ok_or_else(|| {
            ApiError::invalid(
                format!("jobs[{i}].key"),
                "every job of a workflow needs a key",
            )
        })?;
        jobs.push(WorkflowJob { key, job, after });
    }
    let new = NewWorkflow {
        name: wf.name,
        jobs,
    };
    let out = state.queue.enqueue_workflow(&new).await?;
    for j in &new.jobs {
        state.jobs.count_enqueued(&j.job.queue, &j.job.kind, 1);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// Creates a batch with its callback.
#[utoipa::path(post, path = "/v1/batches", tag = "workflows", request_body = CreateBatch,
    responses((status = 201, body = EnqueuedWorkflow), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn create_batch(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<EnqueuedWorkflow>), ApiError> {
    let b: CreateBatch = parse_object(&body)?;
    let jobs = b
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| plain(format!("jobs[{i}]."), j))
        .collect::<Result<Vec<_>, _>>()?;
    let callback = plain("callback.".into(), b.callback)?;
    let batch = NewBatch {
        name: b.name,
        jobs,
        callback,
    };
    let out = state.queue.enqueue_batch(&batch).await?;
    for j in batch.jobs.iter().chain(std::iter::once(&batch.callback)) {
        state.jobs.count_enqueued(&j.queue, &j.kind, 1);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// A workflow (or batch) with its state, its counts by state and its jobs.
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "workflows", params(("id" = i64, Path)),
    responses((status = 200, body = Workflow), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<READ>,
) -> Result<Json<Workflow>, ApiError> {
    Ok(Json(
        state.queue.workflow(id).await.map_err(workflow_error)?,
    ))
}

/// Cancels a workflow: what has not started is cancelled, running jobs are asked to stop.
#[utoipa::path(post, path = "/v1/workflows/{id}/cancel", tag = "workflows", params(("id" = i64, Path)),
    responses((status = 200, body = Workflow), (status = 404, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<ADMIN>,
) -> Result<Json<Workflow>, ApiError> {
    Ok(Json(
        state
            .queue
            .cancel_workflow(id)
            .await
            .map_err(workflow_error)?,
    ))
}
