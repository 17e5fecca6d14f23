//! Finalize: record what happened to claimed jobs, many per statement.
//!
//! A batch of outcomes is applied in one transaction: completed / discarded / cancelled jobs
//! move to `jobs_finished`; retried, snoozed and released jobs go back to waiting in `jobs`.
//!
//! Fencing: a worker whose job was rescued and re-claimed elsewhere cannot touch the newer
//! attempt. Completions are fenced on `(id, attempted_by = worker, state = 'running')`; the
//! one case that lets through — the same worker re-claimed its own rescued job — finalizes a
//! job whose work did complete, which at-least-once allows. Retries, snoozes, releases,
//! discards and cancels are fenced on the exact attempt, since requeueing a job that is
//! running again would let it run twice at once.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::Row;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::job::insert_finished_from;
use crate::Queue;

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success: the job is completed.
    Completed,
    /// Failed; run again at `at` (the caller computed the backoff).
    Retry {
        /// Next attempt time.
        at: DateTime<Utc>,
        /// The error, recorded in the job's history.
        error: String,
    },
    /// Failed for good (permanent error or attempts exhausted).
    Discard {
        /// The error, recorded in the job's history.
        error: String,
    },
    /// Stopped because an operator cancelled it.
    Cancelled {
        /// Why, recorded in the history.
        reason: String,
    },
    /// Not an error: run again at `at` without spending an attempt.
    Snooze {
        /// Next attempt time.
        at: DateTime<Utc>,
    },
    /// Given back unstarted or interrupted by shutdown: available now, attempt not spent.
    Release,
}

impl Outcome {
    /// The outcome of failed attempt `attempt` (of `max_attempts`) under `backoff`: retry
    /// after the backoff, or discard when `permanent` or when this was the last attempt.
    pub fn failure(
        attempt: i32,
        max_attempts: i32,
        error: impl Into<String>,
        permanent: bool,
        backoff: &Backoff,
    ) -> Self {
        let error = error.into();
        if permanent || attempt >= max_attempts {
            Outcome::Discard { error }
        } else {
            let delay = chrono::Duration::from_std(backoff.delay(attempt))
                .unwrap_or(chrono::Duration::hours(1));
            Outcome::Retry {
                at: Utc::now() + delay,
                error,
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Retry { .. } => "retry",
            Outcome::Discard { .. } => "discarded",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::Snooze { .. } => "snooze",
            Outcome::Release => "release",
        }
    }
}

/// One finished attempt, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Job id.
    pub id: i64,
    /// The attempt number the worker claimed (fencing token).
    pub attempt: i32,
    /// What happened.
    pub outcome: Outcome,
    /// When the worker saw it happen (recorded in the error history).
    pub at: DateTime<Utc>,
    /// What the handler returned, kept with a completed job (see [`crate::output`]).
    pub output: Option<Value>,
}

impl Finished {
    /// An outcome observed now.
    pub fn new(id: i64, attempt: i32, outcome: Outcome) -> Self {
        Self {
            id,
            attempt,
            outcome,
            at: Utc::now(),
            output: None,
        }
    }

    /// Keeps `output` with the job when the outcome is a completion.
    pub fn with_output(mut self, output: Option<Value>) -> Self {
        self.output = output;
        self
    }
}

/// What a finalize batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinalizeCounts {
    /// Jobs moved to a final state.
    pub finalized: u64,
    /// Jobs put back to wait (retry, snooze, release).
    pub requeued: u64,
}

/// Completions: the hot path. No join: the hot table is reached only through its primary
/// key, fenced by the claiming worker (see [`Queue::finalize`]).
const COMPLETE_SQL: &str = concat!(
    r#"
WITH moved AS (
    DELETE FROM pgfleet.jobs j
    WHERE j.id = ANY($1::bigint[]) AND j.state = 'running' AND j.attempted_by = $2
    RETURNING j.*, 'completed' AS final_state, NULL::jsonb AS final_error
)
"#,
    insert_finished_from!(),
    " moved"
);

/// Completions that carry an output: the same move, joined with the outputs.
const COMPLETE_OUTPUT_SQL: &str = concat!(
    r#"
WITH o AS MATERIALIZED (
    SELECT * FROM unnest($1::bigint[], $3::jsonb[]) AS o(id, output)
), moved AS (
    DELETE FROM pgfleet.jobs j USING o
    WHERE j.id = ANY($1::bigint[]) AND j.id = o.id AND j.state = 'running' AND j.attempted_by = $2
    RETURNING j.*, 'completed' AS final_state, NULL::jsonb AS final_error, o.output AS final_output
)
"#,
    insert_finished_from!(output),
    " moved"
);

/// A completion inside the handler's own transaction, fenced on the exact attempt.
const COMPLETE_IN_SQL: &str = concat!(
    r#"
WITH moved AS (
    DELETE FROM pgfleet.jobs j
    WHERE j.id = $1 AND j.attempt = $2 AND j.attempted_by = $3 AND j.state = 'running'
    RETURNING j.*, 'completed' AS final_state, NULL::jsonb AS final_error, $4::jsonb AS final_output
)
"#,
    insert_finished_from!(output),
    " moved"
);

/// Every other outcome carries per-job data (error, next run), so it joins the outcome
/// list; fenced on `(id, attempt, state = 'running')`.
const OUTCOMES_SQL: &str = concat!(
    r#"
WITH o AS MATERIALIZED (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[], $5::jsonb[])
        AS o(id, attempt, outcome, run_at, error)
), requeued AS (
    UPDATE pgfleet.jobs j
    SET state = CASE o.outcome WHEN 'retry' THEN 'retryable' ELSE 'available' END::pgfleet.job_state,
        run_at = coalesce(o.run_at, now()),
        lease_until = NULL,
        max_attempts = j.max_attempts + CASE WHEN o.outcome = 'retry' THEN 0 ELSE 1 END,
        errors = CASE WHEN o.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(
            o.error || jsonb_build_object('started_at', j.attempted_at, 'worker', j.attempted_by)) END
    FROM o
    WHERE j.id = ANY($1::bigint[]) AND j.id = o.id AND j.attempt = o.attempt
      AND j.state = 'running' AND o.outcome IN ('retry', 'snooze', 'release')
    RETURNING j.id
), moved AS (
    DELETE FROM pgfleet.jobs j
    USING o
    WHERE j.id = ANY($1::bigint[]) AND j.id = o.id AND j.attempt = o.attempt
      AND j.state = 'running' AND o.outcome IN ('discarded', 'cancelled')
    RETURNING j.*, o.outcome AS final_state,
        o.error || jsonb_build_object('started_at', j.attempted_at, 'worker', j.attempted_by) AS final_error
), fin AS ("#,
    insert_finished_from!(),
    r#" moved RETURNING 1
)
SELECT (SELECT count(*) FROM fin) AS finalized, (SELECT count(*) FROM requeued) AS requeued
"#
);

impl Queue {
    /// Applies a batch of outcomes reported by worker `worker_id` with at most two
    /// statements (completions; everything else), each atomic on its own and sent without a
    /// surrounding transaction: one round trip each, which matters at many small batches.
    /// Outcomes whose job this worker no longer holds are ignored: a completion must come
    /// from the worker that holds the job; any other outcome must also match the attempt it
    /// claimed. So re-applying a batch whose first statement committed is harmless: what
    /// was applied no longer matches.
    ///
    /// Both statements are sent unprepared so PostgreSQL plans them with the real array
    /// sizes instead of a generic plan that guesses ten rows.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`]; the failed statement applied nothing (an earlier one
    /// may have), and the whole batch may be retried.
    pub async fn finalize(&self, worker_id: &str, batch: &[Finished]) -> Result<FinalizeCounts> {
        if batch.is_empty() {
            return Ok(FinalizeCounts::default());
        }
        let completed: Vec<i64> = batch
            .iter()
            .filter(|f| f.outcome == Outcome::Completed && f.output.is_none())
            .map(|f| f.id)
            .collect();
        let (with_output, outputs): (Vec<i64>, Vec<&Value>) = batch
            .iter()
            .filter(|f| f.outcome == Outcome::Completed)
            .filter_map(|f| f.output.as_ref().map(|o| (f.id, o)))
            .unzip();
        let others: Vec<&Finished> = batch
            .iter()
            .filter(|f| f.outcome != Outcome::Completed)
            .collect();
        let mut counts = FinalizeCounts::default();
        if !completed.is_empty() {
            let done = sqlx::query(COMPLETE_SQL)
                .persistent(false)
                .bind(&completed)
                .bind(worker_id)
                .execute(self.pool())
                .await?;
            counts.finalized += done.rows_affected();
        }
        if !with_output.is_empty() {
            let done = sqlx::query(COMPLETE_OUTPUT_SQL)
                .persistent(false)
                .bind(&with_output)
                .bind(worker_id)
                .bind(&outputs)
                .execute(self.pool())
                .await?;
            counts.finalized += done.rows_affected();
        }
        if !others.is_empty() {
            let mut ids = Vec::with_capacity(others.len());
            let mut attempts = Vec::with_capacity(others.len());
            let mut codes = Vec::with_capacity(others.len());
            let mut run_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(others.len());
            let mut errors: Vec<Option<Value>> = Vec::with_capacity(others.len());
            for f in others {
                ids.push(f.id);
                attempts.push(f.attempt);
                codes.push(f.outcome.code());
                let (at, err) = match &f.outcome {
                    Outcome::Completed | Outcome::Release => (None, None),
                    Outcome::Retry { at, error } => (Some(*at), Some(("error", error.as_str()))),
                    Outcome::Discard { error } => (None, Some(("error", error.as_str()))),
                    Outcome::Cancelled { reason } => (None, Some(("cancelled", reason.as_str()))),
                    Outcome::Snooze { at } => (Some(*at), None),
                };
                run_at.push(at);
                errors.push(err.map(|(kind, message)| {
                    json!({"attempt": f.attempt, "at": f.at, "kind": kind, "error": message})
                }));
            }
            let row = sqlx::query(OUTCOMES_SQL)
                .persistent(false)
                .bind(&ids)
                .bind(&attempts)
                .bind(&codes)
                .bind(&run_at)
                .bind(&errors)
                .fetch_one(self.pool())
                .await?;
            counts.finalized += row.try_get::<i64, _>("finalized")? as u64;
            counts.requeued += row.try_get::<i64, _>("requeued")? as u64;
        }
        Ok(counts)
    }

    /// Completes attempt `attempt` of job `id`, held by `worker_id`, on `conn` — inside the
    /// handler's own transaction, so the handler's writes and the completion commit
    /// together (or neither does): a crash between them cannot run the effect twice.
    /// `output` is kept with the job (checked by [`crate::output::check_output`]).
    /// Dependents it releases are woken when the transaction commits.
    ///
    /// Call it last, just before committing: the job's row stays locked until then, which
    /// holds back this worker's lease heartbeat.
    ///
    /// # Errors
    /// [`crate::QueueError::LeaseLost`] when this worker no longer holds that attempt (it
    /// was rescued or cancelled): roll back, the job runs elsewhere. [`crate::QueueError::Invalid`]
    /// for a bad output. [`crate::QueueError::Database`].
    pub async fn complete_in(
        &self,
        conn: &mut sqlx::PgConnection,
        worker_id: &str,
        id: i64,
        attempt: i32,
        output: Option<&Value>,
    ) -> Result<()> {
        if let Some(o) = output {
            crate::output::check_output(o)?;
        }
        let done = sqlx::query(COMPLETE_IN_SQL)
            .bind(id)
            .bind(attempt)
            .bind(worker_id)
            .bind(output)
            .execute(conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::QueueError::LeaseLost(id));
        }
        Ok(())
    }
}
