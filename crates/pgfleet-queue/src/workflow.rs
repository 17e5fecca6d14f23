//! Workflows and batches: jobs enqueued together with dependencies between them.
//!
//! A workflow is a named DAG of jobs written in one call. Each job has a `key` unique in
//! the workflow and may depend on other jobs of it (by key) or on existing jobs (by id);
//! [`plan`] checks the graph — unknown keys, duplicates, cycles — purely, naming the field
//! of the first problem, and orders the jobs so every dependency comes first. The writing is
//! `pgfleet.enqueue_workflow` / `pgfleet.enqueue_batch` (migration 0009), the same SQL a
//! service in another language calls, so a job's partition, its unique key, its wake-up and
//! its dependencies behave the same whoever enqueues it.
//!
//! A dependent job is `blocked` until its dependencies have finished; the statement that
//! finalizes the last one releases it (see ARCHITECTURE.md, "Dependencies"). A workflow's
//! state is derived from its jobs; cancelling it cancels what has not finished.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, Row};

use crate::error::{QueueError, Result};
use crate::job::{JobState, NewJob};
use crate::notify::notify;
use crate::partition::CONTROL_CHANNEL;
use crate::Queue;

/// The most jobs one workflow or batch call accepts.
pub const MAX_WORKFLOW_JOBS: usize = 10_000;

/// A dependency of a workflow job: another job of the same workflow, by key, or an
/// existing job, by id. In JSON a string is a key and a number an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Dep {
    /// An existing job.
    Job(i64),
    /// A job of the same workflow.
    Key(String),
}

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowJob {
    /// Its name in the workflow (1..=128 characters, unique in it).
    pub key: String,
    /// The job (its `depends_on` must be empty: dependencies go in `after`).
    pub job: NewJob,
    /// What it waits for.
    pub after: Vec<Dep>,
}

impl WorkflowJob {
    /// A job named `key` with no dependencies.
    pub fn new(key: impl Into<String>, job: NewJob) -> Self {
        Self {
            key: key.into(),
            job,
            after: Vec::new(),
        }
    }

    /// Makes it wait for the jobs of the workflow named `keys`.
    pub fn after<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after
            .extend(keys.into_iter().map(|k| Dep::Key(k.into())));
        self
    }
}

/// A workflow to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    /// Its name (1..=128 characters; not unique).
    pub name: String,
    /// Its jobs, in any order.
    pub jobs: Vec<WorkflowJob>,
}

/// A batch to enqueue: independent jobs and a callback that runs once when all of them
/// have finished, with `{"batch": {"id", "total", "completed", "discarded", "cancelled"}}`
/// merged into its payload (a payload that is not an object is kept under `"payload"`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    /// Its name.
    pub name: String,
    /// The jobs.
    pub jobs: Vec<NewJob>,
    /// The callback job.
    pub callback: NewJob,
}

/// One job of an enqueued workflow or batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueuedMember {
    /// Its key in the workflow (`callback` for a batch's callback, the index for a
    /// batch's jobs).
    pub key: String,
    /// Its id.
    pub id: i64,
    /// Its state right after enqueue (`blocked` until its dependencies finish).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: JobState,
}

/// What enqueueing a workflow or batch wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueuedWorkflow {
    /// The workflow's id.
    pub id: i64,
    /// Its jobs, in the order they were given (a batch's callback last).
    pub jobs: Vec<EnqueuedMember>,
}

/// A workflow's state, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkflowState {
    /// Some job has not finished.
    Running,
    /// Every job completed.
    Completed,
    /// Every job finished and some were discarded or cancelled.
    Failed,
    /// It was cancelled and every job has finished.
    Cancelled,
}

/// One job of a workflow as it is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowMember {
    /// Job id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its state.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: JobState,
    /// The jobs it waits for (or waited for).
    pub depends_on: Vec<i64>,
    /// Its output, once completed with one.
    pub output: Option<Value>,
}

/// A workflow with its jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workflow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// State, derived from the jobs.
    pub state: WorkflowState,
    /// Jobs by state.
    pub counts: BTreeMap<String, i64>,
    /// A batch's callback job.
    pub callback_id: Option<i64>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Its jobs by id.
    pub jobs: Vec<WorkflowMember>,
}

/// The pure decision of a workflow's state from its jobs' states.
pub fn workflow_state(states: &[JobState], cancelled: bool) -> WorkflowState {
    if states.iter().any(|s| !s.is_final()) {
        WorkflowState::Running
    } else if cancelled {
        WorkflowState::Cancelled
    } else if states.iter().all(|s| *s == JobState::Completed) {
        WorkflowState::Completed
    } else {
        WorkflowState::Failed
    }
}

/// A checked workflow: job indices in an order where every dependency comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices into the workflow's jobs, dependencies first.
    pub order: Vec<usize>,
}

/// Checks a workflow's jobs and orders them (Kahn's algorithm), or names the first bad
/// field: `jobs[i].<field>` of an invalid job, a duplicate or bad `key`, a dependency on an
/// unknown key, on itself, or one that closes a cycle (`jobs[i].depends_on[j]`).
///
/// # Errors
/// [`QueueError::InvalidAt`].
pub fn plan(jobs: &[WorkflowJob]) -> Result<Plan> {
    if jobs.is_empty() || jobs.len() > MAX_WORKFLOW_JOBS {
        return Err(QueueError::invalid_at(
            "jobs",
            format!(
                "must hold 1 to {MAX_WORKFLOW_JOBS} jobs, got {}",
                jobs.len()
            ),
        ));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, wj) in jobs.iter().enumerate() {
        check_member(i, &wj.job)?;
        if wj.key.is_empty() || wj.key.chars().count() > 128 || wj.key.contains('\0') {
            return Err(QueueError::invalid_at(
                format!("jobs[{i}].key"),
                "must be 1 to 128 characters",
            ));
        }
        if index.insert(&wj.key, i).is_some() {
            return Err(QueueError::invalid_at(
                format!("jobs[{i}].key"),
                format!("{:?} is used by an earlier job of the workflow", wj.key),
            ));
        }
    }
    // Edges: dependency index → dependents; in-degrees count workflow dependencies.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut indegree = vec![0usize; jobs.len()];
    for (i, wj) in jobs.iter().enumerate() {
        for (j, dep) in wj.after.iter().enumerate() {
            let Dep::Key(key) = dep else { continue };
            let at = || format!("jobs[{i}].depends_on[{j}]");
            let &d = index
                .get(key.as_str())
                .ok_or_else(|| QueueError::invalid_at(at(), format!("no job with key {key:?}")))?;
            if d == i {
                return Err(QueueError::invalid_at(
                    at(),
                    "a job cannot depend on itself",
                ));
            }
            dependents[d].push(i);
            indegree[i] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..jobs.len()).filter(|&i| indegree[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(jobs.len());
    while let Some(n) = ready.pop() {
        order.push(n);
        for &m in &dependents[n] {
            indegree[m] -= 1;
            if indegree[m] == 0 {
                ready.push(m);
            }
        }
    }
    if order.len() < jobs.len() {
        // Every job left waits on another job left: walk back from one to find the cycle.
        let left = |i: usize| indegree[i] > 0;
        let mut at = (0..jobs.len()).find(|&i| left(i)).unwrap_or(0);
        let mut seen = vec![false; jobs.len()];
        while !seen[at] {
            seen[at] = true;
            at = key_deps(&jobs[at], &index)
                .find(|&(_, d)| left(d))
                .map_or(at, |(_, d)| d);
        }
        let mut cycle = vec![jobs[at].key.clone()];
        let mut cur = at;
        let edge = loop {
            let (j, next) = key_deps(&jobs[cur], &index)
                .find(|&(_, d)| left(d))
                .unwrap_or((0, at));
            if next == at {
                break (cur, j);
            }
            cycle.push(jobs[next].key.clone());
            cur = next;
        };
        cycle.push(jobs[at].key.clone());
        return Err(QueueError::invalid_at(
            format!("jobs[{}].depends_on[{}]", edge.0, edge.1),
            format!("closes a cycle: {}", cycle.join(" waits for ")),
        ));
    }
    Ok(Plan { order })
}

/// A job's workflow dependencies as (position in `after`, index of the job).
fn key_deps<'a>(
    wj: &'a WorkflowJob,
    index: &'a HashMap<&str, usize>,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    wj.after.iter().enumerate().filter_map(|(j, d)| match d {
        Dep::Key(k) => index.get(k.as_str()).map(|&i| (j, i)),
        Dep::Job(_) => None,
    })
}

fn check_member(i: usize, job: &NewJob) -> Result<()> {
    let at = |field: &str| format!("jobs[{i}].{field}");
    job.validate().map_err(|e| match e {
        QueueError::Invalid { field, reason } => QueueError::invalid_at(at(field), reason),
        other => other,
    })?;
    if job.unique_key.is_some() {
        return Err(QueueError::invalid_at(
            at("unique_key"),
            "jobs of a workflow or batch cannot have unique keys",
        ));
    }
    Ok(())
}

/// The JSON object `pgfleet.enqueue_many` reads for one job.
pub(crate) fn job_json(job: &NewJob, key: Option<&str>, after: &[Value]) -> Value {
    let mut o = Map::new();
    if let Some(k) = key {
        o.insert("ref".into(), json!(k));
    }
    o.insert("queue".into(), json!(job.queue));
    o.insert("kind".into(), json!(job.kind));
    o.insert("payload".into(), job.payload.clone());
    o.insert("priority".into(), json!(job.priority));
    if let Some(at) = job.run_at {
        o.insert("run_at".into(), json!(at.to_rfc3339()));
    }
    o.insert("max_attempts".into(), json!(job.max_attempts));
    if let Some(k) = &job.partition_key {
        o.insert("partition_key".into(), json!(k));
    }
    if let Some(k) = &job.unique_key {
        o.insert("unique_key".into(), json!(k));
    }
    o.insert("metadata".into(), job.metadata.clone());
    let mut deps: Vec<Value> = job.depends_on.iter().map(|id| json!(id)).collect();
    deps.extend_from_slice(after);
    if !deps.is_empty() {
        o.insert("depends_on".into(), Value::Array(deps));
        o.insert(
            "on_dependency_failure".into(),
            json!(job.on_dependency_failure.as_str()),
        );
    }
    Value::Object(o)
}

impl Queue {
    /// Enqueues a workflow in one transaction and returns its id and jobs.
    ///
    /// # Errors
    /// [`QueueError::InvalidAt`] naming the field (nothing written), or
    /// [`QueueError::Database`].
    pub async fn enqueue_workflow(&self, wf: &NewWorkflow) -> Result<EnqueuedWorkflow> {
        let mut tx = self.pool().begin().await?;
        let out = self.enqueue_workflow_in(&mut tx, wf).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Enqueues a workflow inside the caller's transaction (its jobs' wake-ups are sent by
    /// PostgreSQL when it commits).
    ///
    /// # Errors
    /// As [`Queue::enqueue_workflow`]; after an error the caller must roll back.
    pub async fn enqueue_workflow_in(
        &self,
        conn: &mut PgConnection,
        wf: &NewWorkflow,
    ) -> Result<EnqueuedWorkflow> {
        if wf.name.is_empty() || wf.name.chars().count() > 128 {
            return Err(QueueError::invalid_at(
                "name",
                "must be 1 to 128 characters",
            ));
        }
        let plan = plan(&wf.jobs)?;
        for (i, wj) in wf.jobs.iter().enumerate() {
            if !wj.job.depends_on.is_empty() {
                return Err(QueueError::invalid_at(
                    format!("jobs[{i}].depends_on"),
                    "a workflow job lists its dependencies in `after`",
                ));
            }
        }
        let body: Vec<Value> = plan
            .order
            .iter()
            .map(|&i| {
                let wj = &wf.jobs[i];
                let after: Vec<Value> = wj
                    .after
                    .iter()
                    .map(|d| match d {
                        Dep::Job(id) => json!(id),
                        Dep::Key(k) => json!(k),
                    })
                    .collect();
                let mut job = wj.job.clone();
                job.depends_on.clear();
                job_json(&job, Some(&wj.key), &after)
            })
            .collect();
        let rows = sqlx::query("SELECT * FROM pgfleet.enqueue_workflow($1, $2)")
            .bind(&wf.name)
            .bind(Value::Array(body))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| remap_paths(QueueError::from_sql(e), &plan.order))?;
        let mut members: Vec<Option<EnqueuedMember>> = vec![None; wf.jobs.len()];
        let mut id = 0;
        for row in rows {
            id = row.try_get("workflow_id")?;
            let ord: i64 = row.try_get("ord")?;
            let i = plan.order[(ord - 1) as usize];
            members[i] = Some(EnqueuedMember {
                key: wf.jobs[i].key.clone(),
                id: row.try_get("id")?,
                state: row.try_get("state")?,
            });
        }
        Ok(EnqueuedWorkflow {
            id,
            jobs: members.into_iter().flatten().collect(),
        })
    }

    /// Enqueues a batch and its callback in one transaction.
    ///
    /// # Errors
    /// [`QueueError::InvalidAt`] naming the field (nothing written), or
    /// [`QueueError::Database`].
    pub async fn enqueue_batch(&self, batch: &NewBatch) -> Result<EnqueuedWorkflow> {
        if batch.name.is_empty() || batch.name.chars().count() > 128 {
            return Err(QueueError::invalid_at(
                "name",
                "must be 1 to 128 characters",
            ));
        }
        if batch.jobs.is_empty() || batch.jobs.len() > MAX_WORKFLOW_JOBS {
            return Err(QueueError::invalid_at(
                "jobs",
                format!(
                    "must hold 1 to {MAX_WORKFLOW_JOBS} jobs, got {}",
                    batch.jobs.len()
                ),
            ));
        }
        for (i, job) in batch.jobs.iter().enumerate() {
            check_member(i, job)?;
        }
        batch.callback.validate().map_err(|e| match e {
            QueueError::Invalid { field, reason } => {
                QueueError::invalid_at(format!("callback.{field}"), reason)
            }
            other => other,
        })?;
        if batch.callback.unique_key.is_some() {
            return Err(QueueError::invalid_at(
                "callback.unique_key",
                "a batch's callback cannot have a unique key (it belongs to its batch)",
            ));
        }
        if !batch.callback.depends_on.is_empty() {
            return Err(QueueError::invalid_at(
                "callback.depends_on",
                "a batch's callback depends on the batch's jobs only",
            ));
        }
        let body: Vec<Value> = batch.jobs.iter().map(|j| job_json(j, None, &[])).collect();
        let rows = sqlx::query("SELECT * FROM pgfleet.enqueue_batch($1, $2, $3)")
            .bind(&batch.name)
            .bind(Value::Array(body))
            .bind(job_json(&batch.callback, None, &[]))
            .fetch_all(self.pool())
            .await
            .map_err(QueueError::from_sql)?;
        let mut out = EnqueuedWorkflow {
            id: 0,
            jobs: Vec::with_capacity(rows.len()),
        };
        let n = batch.jobs.len();
        for row in rows {
            out.id = row.try_get("workflow_id")?;
            let ord: i64 = row.try_get("ord")?;
            let key = if ord as usize > n {
                "callback".to_owned()
            } else {
                (ord - 1).to_string()
            };
            out.jobs.push(EnqueuedMember {
                key,
                id: row.try_get("id")?,
                state: row.try_get("state")?,
            });
        }
        Ok(out)
    }

    /// A workflow (or batch) with its jobs.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::Database`].
    pub async fn workflow(&self, id: i64) -> Result<Workflow> {
        let head = sqlx::query(
            "SELECT name, callback_id, created_at, cancelled_at FROM pgfleet.workflows \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(QueueError::NotFound(id))?;
        let rows = sqlx::query(
            "WITH m AS (SELECT id, kind, state, NULL::jsonb AS output FROM pgfleet.jobs \
             WHERE workflow_id = $1 UNION ALL SELECT id, kind, state, output \
             FROM pgfleet.jobs_finished WHERE workflow_id = $1) \
             SELECT m.*, ARRAY(SELECT d.depends_on FROM pgfleet.job_deps d \
             WHERE d.job_id = m.id ORDER BY 1) AS depends_on FROM m ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut counts = BTreeMap::new();
        for row in rows {
            let state: JobState = row.try_get("state")?;
            *counts.entry(state.to_string()).or_insert(0) += 1;
            jobs.push(WorkflowMember {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                state,
                depends_on: row.try_get("depends_on")?,
                output: row.try_get("output")?,
            });
        }
        let cancelled_at: Option<DateTime<Utc>> = head.try_get("cancelled_at")?;
        let states: Vec<JobState> = jobs.iter().map(|j| j.state).collect();
        Ok(Workflow {
            id,
            name: head.try_get("name")?,
            state: workflow_state(&states, cancelled_at.is_some()),
            counts,
            callback_id: head.try_get("callback_id")?,
            created_at: head.try_get("created_at")?,
            cancelled_at,
            jobs,
        })
    }

    /// Cancels a workflow: every job not yet running is cancelled at once (with its
    /// dependents outside the workflow that cancel), running ones are asked to stop.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::Database`].
    pub async fn cancel_workflow(&self, id: i64) -> Result<Workflow> {
        let mut tx = self.pool().begin().await?;
        let found = sqlx::query(
            "UPDATE pgfleet.workflows SET cancelled_at = coalesce(cancelled_at, now()) \
             WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(QueueError::NotFound(id));
        }
        // Blocked jobs first (cancel_blocked carries it to their dependents), then the
        // waiting ones, whose finished rows settle their own dependents by trigger.
        sqlx::query(
            "SELECT pgfleet.cancel_blocked(ARRAY(SELECT id FROM pgfleet.jobs \
             WHERE workflow_id = $1 AND state = 'blocked'), 'workflow cancelled')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(concat!(
            "WITH moved AS (DELETE FROM pgfleet.jobs WHERE workflow_id = $1 \
             AND state IN ('available', 'retryable') RETURNING *, 'cancelled' AS final_state, \
             jsonb_build_object('attempt', attempt, 'at', now(), 'kind', 'cancelled', \
             'error', 'workflow cancelled') AS final_error) ",
            crate::job::insert_finished_from!(),
            " moved"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let running: Vec<i64> = sqlx::query_scalar(
            "UPDATE pgfleet.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()) \
             WHERE workflow_id = $1 AND state = 'running' RETURNING id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for job in running {
            notify(self.pool(), CONTROL_CHANNEL, &format!("cancel:{job}")).await?;
        }
        self.workflow(id).await
    }
}

/// Maps `jobs[k]` in an error from SQL (which saw the jobs in plan order) back to the
/// caller's index.
fn remap_paths(e: QueueError, order: &[usize]) -> QueueError {
    match e {
        QueueError::InvalidAt { path, reason } => {
            let remapped = path
                .strip_prefix("jobs[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(k, tail)| {
                    let k: usize = k.parse().ok()?;
                    Some(format!("jobs[{}]{tail}", order.get(k)?))
                })
                .unwrap_or(path);
            QueueError::InvalidAt {
                path: remapped,
                reason,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, after: &[&str]) -> WorkflowJob {
        WorkflowJob::new(key, NewJob::new("q", "k")).after(after.iter().copied())
    }

    fn path(r: Result<Plan>) -> String {
        match r {
            Err(QueueError::InvalidAt { path, .. }) => path,
            other => panic!("expected InvalidAt, got {other:?}"),
        }
    }

    #[test]
    fn orders_dependencies_first() {
        let jobs = vec![
            job("d", &["b", "c"]),
            job("b", &["a"]),
            job("c", &["a"]),
            job("a", &[]),
        ];
        let order = plan(&jobs).unwrap().order;
        let pos = |k: &str| order.iter().position(|&i| jobs[i].key == k).unwrap();
        assert!(pos("a") < pos("b") && pos("a") < pos("c"));
        assert!(pos("b") < pos("d") && pos("c") < pos("d"));
    }

    #[test]
    fn names_the_field_of_bad_graphs() {
        assert_eq!(path(plan(&[job("a", &["x"])])), "jobs[0].depends_on[0]");
        assert_eq!(path(plan(&[job("a", &["a"])])), "jobs[0].depends_on[0]");
        assert_eq!(path(plan(&[job("a", &[]), job("a", &[])])), "jobs[1].key");
        assert_eq!(path(plan(&[])), "jobs");
        let cycle = plan(&[
            job("a", &["c"]),
            job("b", &["a"]),
            job("c", &["b"]),
            job("z", &[]),
        ]);
        match cycle {
            Err(QueueError::InvalidAt { path, reason }) => {
                assert!(
                    path.starts_with("jobs[") && path.contains("].depends_on[0]"),
                    "{path}"
                );
                assert!(reason.contains("closes a cycle"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let bad = WorkflowJob::new("a", NewJob::new("q w", "k"));
        assert_eq!(path(plan(&[job("x", &[]), bad])), "jobs[1].queue");
        let uk = WorkflowJob::new("a", NewJob::new("q", "k").unique_key("u"));
        assert_eq!(path(plan(&[uk])), "jobs[0].unique_key");
    }

    #[test]
    fn state_is_derived_from_jobs() {
        use JobState::*;
        assert_eq!(
            workflow_state(&[Completed, Blocked], false),
            WorkflowState::Running
        );
        assert_eq!(
            workflow_state(&[Completed, Completed], false),
            WorkflowState::Completed
        );
        assert_eq!(
            workflow_state(&[Completed, Discarded], false),
            WorkflowState::Failed
        );
        assert_eq!(
            workflow_state(&[Completed, Cancelled], true),
            WorkflowState::Cancelled
        );
    }

    #[test]
    fn sql_paths_map_back_to_the_callers_order() {
        let e = remap_paths(
            QueueError::invalid_at("jobs[0].depends_on", "no job 9"),
            &[2, 0, 1],
        );
        assert!(matches!(e, QueueError::InvalidAt { path, .. } if path == "jobs[2].depends_on"));
    }
}
