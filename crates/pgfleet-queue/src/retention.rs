//! Retention: prunes finished jobs after a configurable age, in small batches.
//!
//! Finished jobs already left the hot table when they were finalized, so pruning never
//! touches the claim index. One cleaner runs at a time cluster-wide (advisory lock).

use std::time::Duration;

use crate::error::Result;
use crate::Queue;

/// Advisory lock key for the cleaner ("pgfclean").
const CLEAN_LOCK: i64 = 0x7067_6663_6c65_616e;

/// How long finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed jobs (default 24 h).
    pub completed: Duration,
    /// Discarded and cancelled jobs, kept longer for operators (default 7 days).
    pub failed: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            completed: Duration::from_secs(24 * 3600),
            failed: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

const PRUNE_SQL: &str = r#"
WITH doomed AS (
    SELECT id FROM pgfleet.jobs_finished
    WHERE finalized_at < now() - least($1, $2) * interval '1 millisecond'
      AND ((state = 'completed' AND finalized_at < now() - $1 * interval '1 millisecond')
        OR (state <> 'completed' AND finalized_at < now() - $2 * interval '1 millisecond'))
    LIMIT $3
), gone AS (
    DELETE FROM pgfleet.jobs_finished f WHERE f.id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING f.id, f.unique_key
), keys AS (
    DELETE FROM pgfleet.unique_keys u
    WHERE u.unique_key = ANY(ARRAY(SELECT unique_key FROM gone WHERE unique_key IS NOT NULL))
      AND u.job_id = ANY(ARRAY(SELECT id FROM gone))
), edges AS (
    DELETE FROM pgfleet.job_deps d WHERE d.job_id = ANY(ARRAY(SELECT id FROM gone))
)
SELECT count(*) FROM gone
"#;

impl Queue {
    /// Prunes finished jobs older than the retention, `batch` rows per statement, until none
    /// is left. Returns how many were deleted (0 when another process holds the lock).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn prune_finished(&self, retention: Retention, batch: i64) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let mut tx = self.pool().begin().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(CLEAN_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                return Ok(total);
            }
            let n: i64 = sqlx::query_scalar(PRUNE_SQL)
                .bind(retention.completed.as_millis() as f64)
                .bind(retention.failed.as_millis() as f64)
                .bind(batch)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            total += n as u64;
            if n < batch {
                // Workflows whose every job is gone.
                sqlx::query(
                    "DELETE FROM pgfleet.workflows w \
                     WHERE w.created_at < now() - least($1, $2) * interval '1 millisecond' \
                       AND NOT EXISTS (SELECT 1 FROM pgfleet.jobs j WHERE j.workflow_id = w.id) \
                       AND NOT EXISTS (SELECT 1 FROM pgfleet.jobs_finished f \
                                       WHERE f.workflow_id = w.id)",
                )
                .bind(retention.completed.as_millis() as f64)
                .bind(retention.failed.as_millis() as f64)
                .execute(self.pool())
                .await?;
                return Ok(total);
            }
        }
    }
}
