//! The jobs API under `/v1/jobs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pgfleet_queue::admin::JobFilter;
use pgfleet_queue::workflow::Dep;
use pgfleet_queue::{DependencyFailure, Job, JobState, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authed, ADMIN, READ, WRITE};
use crate::extract::{Path, Query};
use crate::problem::{opt_integer, parse_json, ApiError, Problem};
use crate::AppState;

/// A job to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// Queue (default `default`): 1 to 128 of letters, digits, `_ . : -`.
    #[serde(default = "default_queue")]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub queue: String,
    /// Job kind: selects the handler (same alphabet as `queue`).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub kind: String,
    /// JSON payload, any JSON value (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = crate::openapi::JsonValue)]
    pub payload: Value,
    /// 0 (highest) to 9 (default 1).
    #[serde(default, deserialize_with = "opt_integer")]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<i16>,
    /// Attempts before discard (default 20).
    #[serde(default, deserialize_with = "opt_integer")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_attempts: Option<i32>,
    /// Run no earlier than this (RFC 3339).
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// Partition key (user id, order id...), 1 to 512 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512)]
    pub partition_key: Option<String>,
    /// Idempotency key: the same key returns the same job (1 to 512 characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512)]
    pub unique_key: Option<String>,
    /// Jobs this one waits for (it is `blocked` until each has finished): ids of existing
    /// jobs — and, inside a workflow, the keys of its other jobs.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub depends_on: Vec<Dep>,
    /// When a dependency is discarded or cancelled: `cancel` this job too (default), or
    /// `run` it anyway.
    #[serde(default)]
    pub on_dependency_failure: Option<DependencyFailure>,
    /// Its name inside a workflow (1 to 128 characters), which other jobs of the workflow
    /// list in `depends_on`; only inside a workflow.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub key: Option<String>,
}

fn default_queue() -> String {
    "default".into()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl CreateJob {
    /// The job, its workflow key and its dependencies (ids and keys, as given).
    pub(crate) fn into_parts(mut self) -> (Option<String>, NewJob, Vec<Dep>) {
        let key = self.key.take();
        let deps = std::mem::take(&mut self.depends_on);
        let policy = self.on_dependency_failure.unwrap_or_default();
        let job = self.into_new_job().on_dependency_failure(policy);
        (key, job, deps)
    }

    fn into_new_job(self) -> NewJob {
        let mut j = NewJob::new(self.queue, self.kind).payload(self.payload);
        if let Some(p) = self.priority {
            j.priority = p;
        }
        if let Some(m) = self.max_attempts {
            j.max_attempts = m;
        }
        j.run_at = self.run_at;
        j.partition_key = self.partition_key;
        j.unique_key = self.unique_key;
        if let Some(m) = pgfleet_telemetry::trace_metadata() {
            j.metadata = m;
        }
        j
    }
}

/// Several jobs, written in one statement (all or none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobs {
    /// The jobs (1 to 10,000).
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<CreateJob>,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    /// Id.
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Partition.
    pub partition: i16,
    /// Priority (0 highest).
    pub priority: i16,
    /// blocked, available, running, retryable, completed, discarded, cancelled.
    pub state: String,
    /// Payload.
    #[schema(value_type = crate::openapi::JsonValue)]
    pub payload: Value,
    /// Attempts started.
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Next run.
    pub run_at: DateTime<Utc>,
    /// Every failed attempt's error.
    #[schema(value_type = Vec<Object>)]
    pub errors: Value,
    /// Unique key.
    pub unique_key: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Reached its final state.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The workflow or batch it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<i64>,
    /// The last progress its handler reported: `{value, message, at}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    /// What its handler returned on completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::JsonValue>)]
    pub output: Option<Value>,
    /// True when a job with the same unique key already existed (create only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            queue: j.queue,
            kind: j.kind,
            partition: j.partition,
            priority: j.priority,
            state: j.state.to_string(),
            payload: j.payload,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            run_at: j.run_at,
            errors: j.errors,
            unique_key: j.unique_key,
            created_at: j.created_at,
            finalized_at: j.finalized_at,
            workflow_id: j.workflow_id,
            progress: j.progress,
            output: j.output,
            duplicate: false,
        }
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Jobs, by id.
    pub jobs: Vec<JobDto>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this state.
    #[param(value_type = Option<String>, pattern = "^(blocked|available|running|retryable|completed|discarded|cancelled)$")]
    pub state: Option<String>,
    /// Ids after this one (keyset pagination).
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

fn to_new_jobs(jobs: Vec<CreateJob>) -> Result<Vec<NewJob>, ApiError> {
    let many = jobs.len() > 1;
    let at = |i: usize, field: &str| {
        if many {
            format!("jobs[{i}].{field}")
        } else {
            field.to_owned()
        }
    };
    let mut new = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.into_iter().enumerate() {
        let (key, mut job, deps) = j.into_parts();
        if key.is_some() {
            return Err(ApiError::invalid(
                at(i, "key"),
                "names a job inside a workflow only (POST /v1/workflows)",
            ));
        }
        for (d, dep) in deps.into_iter().enumerate() {
            match dep {
                Dep::Job(id) => job.depends_on.push(id),
                Dep::Key(_) => {
                    return Err(ApiError::invalid(
                        at(i, &format!("depends_on[{d}]")),
                        "must be a job id (keys name jobs inside a workflow)",
                    ))
                }
            }
        }
        new.push(job);
    }
    for (i, j) in new.iter().enumerate() {
        j.validate().map_err(|e| match e {
            pgfleet_queue::QueueError::Invalid { field, reason } if many => {
                ApiError::invalid(format!("jobs[{i}].{field}"), reason)
            }
            other => other.into(),
        })?;
    }
    Ok(new)
}

fn count_enqueued(state: &AppState, jobs: &[NewJob], out: &[pgfleet_queue::enqueue::Enqueued]) {
    for (j, e) in jobs.iter().zip(out) {
        if !e.duplicate {
            state.jobs.count_enqueued(&j.queue, &j.kind, 1);
        }
    }
}

/// A created job's reference (batch create).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedRef {
    /// Job id.
    pub id: i64,
    /// Partition.
    pub partition: i16,
    /// True when the unique key already existed (nothing was written).
    pub duplicate: bool,
}

/// Creates a job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    responses((status = 201, body = JobDto), (status = 200, description = "unique key already used", body = JobDto),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<JobDto>), ApiError> {
    let job: CreateJob = parse_json(&body)?;
    let new = to_new_jobs(vec![job])?;
    let e = state.queue.enqueue_many(&new).await?.remove(0);
    count_enqueued(&state, &new, std::slice::from_ref(&e));
    let mut dto = JobDto::from(state.queue.get_job(e.id).await?);
    dto.duplicate = e.duplicate;
    let status = if dto.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(dto)))
}

/// Creates many jobs in one statement.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body = CreateJobs,
    responses((status = 201, body = Vec<CreatedRef>), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn create_batch(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<Vec<CreatedRef>>), ApiError> {
    let batch: CreateJobs = parse_json(&body)?;
    if batch.jobs.is_empty() || batch.jobs.len() > 10_000 {
        return Err(ApiError::invalid("jobs", "must hold 1 to 10,000 jobs"));
    }
    let new = to_new_jobs(batch.jobs)?;
    let out = state.queue.enqueue_many(&new).await?;
    count_enqueued(&state, &new, &out);
    let refs = out
        .into_iter()
        .map(|e| CreatedRef {
            id: e.id,
            partition: e.partition,
            duplicate: e.duplicate,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(refs)))
}

/// A job by id.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<READ>,
) -> Result<Json<JobDto>, ApiError> {
    Ok(Json(state.queue.get_job(id).await?.into()))
}

/// Lists jobs by filter, by id, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = JobPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
    _auth: Authed<READ>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = crate::problem::page_limit(p.limit, 100)?;
    let state_filter = p.state.as_deref().map(str::parse::<JobState>).transpose()?;
    let filter = JobFilter {
        queue: p.queue,
        kind: p.kind,
        state: state_filter,
        after_id: p.after,
        limit,
    };
    let jobs: Vec<JobDto> = state
        .queue
        .list_jobs(&filter)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let next_after = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobPage { jobs, next_after }))
}

/// Runs a discarded, cancelled, retryable or scheduled job again now.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<ADMIN>,
) -> Result<Json<JobDto>, ApiError> {
    Ok(Json(state.queue.retry_job(id).await?.into()))
}

/// Cancels a job (a running job's worker is told to stop it).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<ADMIN>,
) -> Result<Json<JobDto>, ApiError> {
    Ok(Json(state.queue.cancel_job(id).await?.into()))
}

/// Deletes a job that is not running.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<ADMIN>,
) -> Result<StatusCode, ApiError> {
    state.queue.delete_job(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The jobs a job depends on, with their states and outputs.
#[utoipa::path(get, path = "/v1/jobs/{id}/dependencies", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<DependencyDto>), (status = 404, body = Problem)))]
pub async fn dependencies(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _auth: Authed<READ>,
) -> Result<Json<Vec<DependencyDto>>, ApiError> {
    state.queue.get_job(id).await?;
    let deps = state.queue.dependencies(id).await?;
    Ok(Json(
        deps.into_iter()
            .map(|d| DependencyDto {
                id: d.id,
                kind: d.kind,
                state: d.state.to_string(),
                output: d.output,
            })
            .collect(),
    ))
}

/// A dependency of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyDto {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: String,
    /// Its output, once completed with one.
    #[schema(value_type = Option<crate::openapi::JsonValue>)]
    pub output: Option<Value>,
}
