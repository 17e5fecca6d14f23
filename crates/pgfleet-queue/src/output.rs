//! Progress and output: what a running job reports and what a completed one returns.
//!
//! Owner of `pgfleet.jobs.progress` and `pgfleet.jobs_finished.output` (migration 0009).
//! Progress is `{"value", "message", "at"}`, written by the worker for all its running jobs
//! in one statement at most once a second — a handler may report as often as it likes.
//! An output is JSON of at most [`MAX_OUTPUT_BYTES`], kept with the finished job, readable
//! through the API and by the jobs that depend on it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::error::{QueueError, Result};
use crate::job::{nul_in, JobState, NUL_REASON};
use crate::Queue;

/// The largest output, as JSON text.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The longest progress message, in characters.
pub const MAX_PROGRESS_MESSAGE: usize = 256;

/// Checks an output: at most [`MAX_OUTPUT_BYTES`] as JSON text, no NUL character.
///
/// # Errors
/// [`QueueError::Invalid`] naming `output`.
pub fn check_output(output: &Value) -> Result<()> {
    let size = serde_json::to_vec(output)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OUTPUT_BYTES {
        return Err(QueueError::invalid(
            "output",
            format!("is {size} bytes as JSON; the limit is {MAX_OUTPUT_BYTES}"),
        ));
    }
    if let Some(at) = nul_in(output) {
        return Err(QueueError::invalid("output", format!("{at} {NUL_REASON}")));
    }
    Ok(())
}

/// A progress report: a number (a percentage, a count: the handler's choice) and a short
/// message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// The number.
    pub value: f64,
    /// What is happening (at most [`MAX_PROGRESS_MESSAGE`] characters).
    pub message: Option<String>,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

impl Progress {
    /// A report made now.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming `progress` (a value that is not finite) or
    /// `progress.message` (too long, or holding NUL).
    pub fn new(value: f64, message: Option<&str>) -> Result<Self> {
        if !value.is_finite() {
            return Err(QueueError::invalid("progress", "must be a finite number"));
        }
        if let Some(m) = message {
            if m.chars().count() > MAX_PROGRESS_MESSAGE || m.contains('\0') {
                return Err(QueueError::invalid(
                    "progress.message",
                    format!("must be at most {MAX_PROGRESS_MESSAGE} characters without NUL"),
                ));
            }
        }
        Ok(Self {
            value,
            message: message.map(str::to_owned),
            at: Utc::now(),
        })
    }

    fn to_json(&self) -> Value {
        json!({"value": self.value, "message": self.message, "at": self.at})
    }
}

/// A dependency of a job as it stands: its state and, once completed, its output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependencyResult {
    /// The dependency's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// Its output (completed jobs that returned one).
    pub output: Option<Value>,
}

impl Queue {
    /// Writes the latest progress of running jobs held by `worker_id`, one statement for all
    /// (`(id, attempt, progress)`); reports for attempts it no longer holds are ignored.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn record_progress(
        &self,
        worker_id: &str,
        reports: &[(i64, i32, Progress)],
    ) -> Result<u64> {
        if reports.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = reports.iter().map(|r| r.0).collect();
        let attempts: Vec<i32> = reports.iter().map(|r| r.1).collect();
        let values: Vec<Value> = reports.iter().map(|r| r.2.to_json()).collect();
        let done = sqlx::query(
            "UPDATE pgfleet.jobs j SET progress = p.progress \
             FROM unnest($1::bigint[], $2::int[], $3::jsonb[]) AS p(id, attempt, progress) \
             WHERE j.id = ANY($1::bigint[]) AND j.id = p.id AND j.attempt = p.attempt \
               AND j.attempted_by = $4 AND j.state = 'running'",
        )
        .persistent(false)
        .bind(&ids)
        .bind(&attempts)
        .bind(&values)
        .bind(worker_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The dependencies of job `id`, by id, with their outputs: what a dependent job reads
    /// of the jobs it waited for.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn dependencies(&self, id: i64) -> Result<Vec<DependencyResult>> {
        let rows = sqlx::query(
            "SELECT d.depends_on AS id, coalesce(f.kind, j.kind) AS kind, \
             coalesce(f.state, j.state) AS state, f.output \
             FROM pgfleet.job_deps d \
             LEFT JOIN pgfleet.jobs_finished f ON f.id = d.depends_on \
             LEFT JOIN pgfleet.jobs j ON j.id = d.depends_on \
             WHERE d.job_id = $1 AND coalesce(f.id, j.id) IS NOT NULL ORDER BY d.depends_on",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DependencyResult {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    output: r.try_get("output")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_progress_are_bounded() {
        assert!(check_output(&json!({"rows": 3})).is_ok());
        let big = json!("x".repeat(MAX_OUTPUT_BYTES));
        assert!(matches!(
            check_output(&big),
            Err(QueueError::Invalid {
                field: "output",
                ..
            })
        ));
        assert!(check_output(&json!({"a": "\u{0}"})).is_err());
        assert!(Progress::new(f64::NAN, None).is_err());
        assert!(Progress::new(50.0, Some(&"m".repeat(257))).is_err());
        assert_eq!(Progress::new(50.0, Some("half")).unwrap().value, 50.0);
    }
}
