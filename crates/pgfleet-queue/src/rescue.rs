//! The rescuer: returns the jobs of lost workers to the queue.
//!
//! A running job carries `lease_until`; its worker extends it by heartbeat. When a lease
//! expires the worker is presumed dead and the job is made retryable at once (an attempt
//! spent, the reason recorded), or discarded when attempts are exhausted, or cancelled when
//! an operator had asked for that. One rescuer runs at a time cluster-wide: each pass holds
//! a transaction-scoped advisory lock, and a process that cannot take it skips the pass.

use sqlx::Row;

use crate::error::Result;
use crate::job::insert_finished_from;
use crate::Queue;

/// Advisory lock key for the rescuer ("pgfresc1").
const RESCUE_LOCK: i64 = 0x7067_6672_6573_6331;

const RESCUE_SQL: &str = concat!(
    r#"
WITH expired AS MATERIALIZED (
    SELECT id FROM pgfleet.jobs
    WHERE lease_until < now() AND state = 'running'
    ORDER BY lease_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE pgfleet.jobs j
    SET state = 'retryable', run_at = now(), lease_until = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'kind', 'rescued',
            'started_at', j.attempted_at, 'worker', j.attempted_by,
            'error', 'lease expired: worker ' || coalesce(j.attempted_by, '?') || ' stopped heartbeating'))
    WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
      AND j.attempt < j.max_attempts AND j.cancel_requested_at IS NULL
    RETURNING j.partition
), moved AS (
    DELETE FROM pgfleet.jobs j
    WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
      AND (j.attempt >= j.max_attempts OR j.cancel_requested_at IS NOT NULL)
    RETURNING j.*,
        CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'discarded' END AS final_state,
        jsonb_build_object('attempt', j.attempt, 'at', now(), 'kind', 'rescued',
            'started_at', j.attempted_at, 'worker', j.attempted_by,
            'error', 'lease expired: worker ' || coalesce(j.attempted_by, '?') || ' stopped heartbeating')
            AS final_error
), fin AS ("#,
    insert_finished_from!(),
    r#" moved RETURNING 1
)
SELECT coalesce(array_agg(DISTINCT partition), '{}') AS partitions,
       (SELECT count(*) FROM requeued) AS requeued,
       (SELECT count(*) FROM fin) AS finalized
FROM requeued
"#
);

/// What one rescue pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// False when another process held the rescuer lock (nothing was done).
    pub ran: bool,
    /// Jobs made retryable.
    pub requeued: u64,
    /// Jobs discarded or cancelled.
    pub finalized: u64,
}

impl Queue {
    /// One rescue pass over at most `limit` expired jobs; wakes the partitions of requeued
    /// jobs so they run again at once.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn rescue_expired(&self, limit: i64) -> Result<RescueReport> {
        let mut tx = self.pool().begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RESCUE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(RescueReport::default());
        }
        let row = sqlx::query(RESCUE_SQL)
            .bind(limit)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let partitions: Vec<i16> = row.try_get("partitions")?;
        let report = RescueReport {
            ran: true,
            requeued: row.try_get::<i64, _>("requeued")? as u64,
            finalized: row.try_get::<i64, _>("finalized")? as u64,
        };
        if report.requeued + report.finalized > 0 {
            tracing::info!(
                requeued = report.requeued,
                finalized = report.finalized,
                "rescued jobs of lost workers"
            );
        }
        self.wake(crate::enqueue::Wakeups(partitions));
        Ok(report)
    }
}
