//! The jobs API under `/v1/jobs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pgfleet_queue::admin::{BulkAction, BulkOutcome, JobFilter, PageRequest, StateFilter};
use pgfleet_queue::workflow::Dep;
use pgfleet_queue::{DependencyFailure, Job, NewJob};
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
    /// Partition key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// Metadata (the trace context it was enqueued in, under `traceparent`).
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The trace id of the trace it was enqueued in (from `metadata.traceparent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// The worker that ran its latest attempt.
    pub attempted_by: Option<String>,
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
            partition_key: j.partition_key,
            trace_id: trace_id(&j.metadata),
            metadata: j.metadata,
            attempted_at: j.attempted_at,
            attempted_by: j.attempted_by,
            created_at: j.created_at,
            finalized_at: j.finalized_at,
            workflow_id: j.workflow_id,
            progress: j.progress,
            output: j.output,
            duplicate: false,
        }
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) in `metadata`.
fn trace_id(metadata: &Value) -> Option<String> {
    let tp = metadata.get("traceparent")?.as_str()?;
    let id = tp.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then(|| id.to_ascii_lowercase())
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Jobs, by id.
    pub jobs: Vec<JobDto>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// Which jobs: the filter of the list, the count and bulk actions (query parameters, or
/// the `filter` object of a bulk action).
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// States, comma separated: blocked, available, scheduled (waiting for a future time),
    /// running, retryable, completed, discarded, cancelled.
    #[param(
        pattern = "^(blocked|available|scheduled|running|retryable|completed|discarded|cancelled)(,(blocked|available|scheduled|running|retryable|completed|discarded|cancelled))*$"
    )]
    #[schema(
        pattern = "^(blocked|available|scheduled|running|retryable|completed|discarded|cancelled)(,(blocked|available|scheduled|running|retryable|completed|discarded|cancelled))*$"
    )]
    pub state: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this partition key.
    pub partition_key: Option<String>,
    /// Not before this time (RFC 3339): when finished jobs finished, when the others were
    /// created.
    pub from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339), same clock as `from`.
    pub to: Option<DateTime<Utc>>,
    /// Text in the payload or the errors, exactly as written (case-sensitive; 1 to 200
    /// characters). It reads every job the other filters leave: narrow it by state, kind or
    /// time on large histories.
    #[param(min_length = 1, max_length = 200)]
    #[schema(min_length = 1, max_length = 200)]
    pub q: Option<String>,
}

impl FilterParams {
    /// Its fields' names.
    const FIELDS: [&'static str; 7] =
        ["state", "queue", "kind", "partition_key", "from", "to", "q"];

    /// A bulk action's `filter` object: unknown fields are refused (a misspelt filter must
    /// not widen an action to every job).
    ///
    /// # Errors
    /// 422 naming `filter.<field>`.
    fn from_object(map: serde_json::Map<String, Value>) -> Result<Self, ApiError> {
        if let Some(k) = map.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                format!("filter.{k}"),
                format!("unknown field; expected one of {}", Self::FIELDS.join(", ")),
            ));
        }
        let body = serde_json::to_vec(&Value::Object(map))
            .map_err(|e| ApiError::invalid("filter", e.to_string()))?;
        parse_json(&body).map_err(|e| e.under("filter"))
    }

    /// The queue library's filter.
    ///
    /// # Errors
    /// 422 naming `state` for an unknown state.
    pub fn to_filter(&self) -> Result<JobFilter, ApiError> {
        let states = match self.state.as_deref() {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse::<StateFilter>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    ApiError::invalid(
                        "state",
                        "each state must be one of blocked, available, scheduled, running, \
                         retryable, completed, discarded, cancelled",
                    )
                })?,
        };
        let filter = JobFilter {
            states,
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            partition_key: self.partition_key.clone(),
            from: self.from,
            to: self.to,
            text: self.q.clone(),
        };
        filter.validate()?;
        Ok(filter)
    }
}

/// Paging of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `asc`: oldest first (default); `desc`: newest first.
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// The last id of the previous page (its `next_after`): the page holds the jobs after
    /// it in the list's order.
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// How many jobs a filter matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobCount {
    /// The count.
    pub count: i64,
}

/// An action on every job a filter matches.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `cancel`, `retry` or `delete`.
    pub action: BulkAction,
    /// Which jobs (the list's filter; an empty filter matches every job).
    #[serde(default)]
    #[schema(value_type = FilterParams)]
    pub filter: serde_json::Map<String, Value>,
    /// Act on at most this many (the count the operator confirmed).
    #[serde(default, deserialize_with = "opt_integer")]
    #[schema(minimum = 1)]
    pub max: Option<u64>,
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

/// Lists jobs by filter, by id (oldest or newest first), a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(FilterParams, PageParams),
    responses((status = 200, body = JobPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Query(f): Query<FilterParams>,
    Query(p): Query<PageParams>,
    _auth: Authed<READ>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = crate::problem::page_limit(p.limit, 100)?;
    let newest_first = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let page = PageRequest {
        newest_first,
        cursor: p.after,
        limit,
    };
    let jobs: Vec<JobDto> = state
        .queue
        .search_jobs(&f.to_filter()?, &page)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let next_after = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobPage { jobs, next_after }))
}

/// How many jobs a filter matches.
#[utoipa::path(get, path = "/v1/jobs/count", tag = "jobs", params(FilterParams),
    responses((status = 200, body = JobCount), (status = 422, body = Problem)))]
pub async fn count(
    State(state): State<AppState>,
    Query(f): Query<FilterParams>,
    _auth: Authed<READ>,
) -> Result<Json<JobCount>, ApiError> {
    let count = state.queue.count_jobs(&f.to_filter()?).await?;
    Ok(Json(JobCount { count }))
}

/// Cancels, retries or deletes every job a filter matches, in batches. Stops within half
/// the request timeout with `done: false`: send it again to go on (jobs already acted on
/// no longer match).
#[utoipa::path(post, path = "/v1/jobs/bulk", tag = "jobs", request_body = BulkRequest,
    responses((status = 200, body = BulkOutcome), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn bulk(
    State(state): State<AppState>,
    Authed(body): Authed<ADMIN>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let req: BulkRequest = parse_json(&body)?;
    if req.max == Some(0) {
        return Err(ApiError::invalid("max", "must be at least 1"));
    }
    let filter = FilterParams::from_object(req.filter)?
        .to_filter()
        .map_err(|e| e.under("filter"))?;
    let out = state
        .queue
        .bulk(req.action, &filter, req.max, Some(state.config.timeout / 2))
        .await?;
    Ok(Json(out))
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
    /// Its output, once completed with one (`null` until then; any JSON value, so the
    /// schema does not list `null` twice).
    #[schema(value_type = crate::openapi::JsonValue)]
    pub output: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::trace_id;
    use serde_json::json;

    #[test]
    fn trace_ids_come_from_a_valid_traceparent_only() {
        let tp = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&json!({"traceparent": tp})).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id(&json!({})), None);
        assert_eq!(trace_id(&json!({"traceparent": "00-xyz-00-01"})), None);
        let zero = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
        assert_eq!(trace_id(&json!({"traceparent": zero})), None);
    }
}
