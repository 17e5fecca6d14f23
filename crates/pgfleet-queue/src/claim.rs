//! Claim: up to N jobs in one statement with `FOR UPDATE SKIP LOCKED`.
//!
//! One ordered index scan of `jobs_claim_idx` per queue (a LATERAL subquery), then the
//! candidates of all queues are ordered by priority, run_at, id and cut to N. Paused
//! queues are skipped inside the same statement, so a pause takes effect at the next claim.
//! The claimed rows get `state = 'running'`, `attempt + 1`, the worker id and a lease.

use std::time::Duration;

use crate::error::{QueueError, Result};
use crate::job::Job;
use crate::Queue;

/// The most jobs one claim may ask for.
pub const MAX_CLAIM: usize = 10_000;

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// Queues to serve.
    pub queues: &'a [String],
    /// Partitions to serve; `None` means all.
    pub partitions: Option<&'a [i16]>,
    /// At most this many jobs.
    pub limit: usize,
    /// The claiming worker's id (recorded in `attempted_by`, checked on heartbeat).
    pub worker_id: &'a str,
    /// Lease length: the job is rescued if not finalized or extended by then.
    pub lease: Duration,
}

/// The claim statement (kept public so tests and docs can EXPLAIN it).
pub const CLAIM_SQL: &str = r#"
WITH active AS MATERIALIZED (
    SELECT q.name FROM unnest($1::text[]) AS q(name)
    WHERE NOT EXISTS (SELECT 1 FROM pgfleet.queues p WHERE p.name = q.name AND p.paused)
), picked AS (
    SELECT c.id
    FROM active AS q
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at
        FROM pgfleet.jobs j
        WHERE j.queue = q.name
          AND j.state IN ('available', 'retryable')
          AND j.run_at <= now()
          AND ($2::smallint[] IS NULL OR j.partition = ANY($2::smallint[]))
        ORDER BY j.priority, j.run_at, j.id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT $3
)
UPDATE pgfleet.jobs j
SET state = 'running',
    attempt = j.attempt + 1,
    attempted_at = now(),
    attempted_by = $4,
    lease_until = now() + $5 * interval '1 millisecond'
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.queue, j.kind, j.partition, j.priority, j.state, j.payload, j.metadata,
          j.attempt, j.max_attempts, j.run_at, j.attempted_at, j.attempted_by, j.lease_until,
          j.errors, j.unique_key, j.created_at, NULL::timestamptz AS finalized_at
"#;

impl Queue {
    /// Claims up to `req.limit` runnable jobs, highest priority first.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for an empty queue list or a limit over [`MAX_CLAIM`];
    /// [`QueueError::Database`].
    pub async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Vec<Job>> {
        if req.queues.is_empty() {
            return Err(QueueError::invalid("queues", "at least one queue"));
        }
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        if req.limit > MAX_CLAIM {
            return Err(QueueError::invalid(
                "limit",
                format!("at most {MAX_CLAIM} jobs per claim"),
            ));
        }
        if let Some(p) = req.partitions {
            if p.is_empty() {
                return Ok(Vec::new());
            }
        }
        let mut jobs = sqlx::query_as::<_, Job>(CLAIM_SQL)
            .bind(req.queues)
            .bind(req.partitions)
            .bind(req.limit as i64)
            .bind(req.worker_id)
            .bind(req.lease.as_millis() as f64)
            .fetch_all(self.pool())
            .await?;
        // RETURNING follows the primary-key probe; hand jobs out in claim order.
        jobs.sort_unstable_by_key(|j| (j.priority, j.run_at, j.id));
        Ok(jobs)
    }

    /// Extends the leases of running jobs held by `worker_id` (heartbeat). Returns, for
    /// each job still held, whether an operator asked to cancel it; jobs not returned are
    /// no longer held by this worker (rescued, cancelled or deleted).
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn extend_leases(
        &self,
        worker_id: &str,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<(i64, bool)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "UPDATE pgfleet.jobs SET lease_until = now() + $3 * interval '1 millisecond' \
             WHERE id = ANY($1) AND state = 'running' AND attempted_by = $2 \
             RETURNING id, cancel_requested_at IS NOT NULL",
        )
        .bind(ids)
        .bind(worker_id)
        .bind(lease.as_millis() as f64)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }
}
