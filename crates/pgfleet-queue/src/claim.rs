//! Claim: up to N jobs in one statement with `FOR UPDATE SKIP LOCKED`.
//!
//! One ordered index scan of `jobs_claim_idx` per queue (a LATERAL subquery), then the
//! candidates of all queues are ordered by priority, run_at, id and cut to N. Paused
//! queues are skipped inside the same statement, so a pause takes effect at the next claim.
//! The claimed rows get `state = 'running'`, `attempt + 1`, the worker id and a lease.

use std::time::Duration;

use sqlx::{FromRow, Row};

use crate::error::{QueueError, Result};
use crate::finalize::{Finished, Outcome};
pub use crate::flow::Claimed;
use crate::job::Job;
use crate::Queue;

/// The most jobs one claim may ask for.
pub const MAX_CLAIM: usize = 10_000;

/// How a claim shares its slots among several queues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueueOrder {
    /// All queues compete; jobs are taken by priority, then age (the default).
    #[default]
    ByPriority,
    /// Queues in the given order: a later queue only gets slots the earlier ones leave.
    Strict,
    /// Weighted shares (asynq's high 6 / default 3 / low 1): each queue may fill up to its
    /// share of the slots in one claim; an idle queue's share is used by the next claim.
    Weighted(Vec<u32>),
}

impl QueueOrder {
    /// The per-queue limits for a claim of `limit` over `n` queues.
    pub fn limits(&self, n: usize, limit: usize) -> Vec<i32> {
        let limit = limit as i32;
        match self {
            QueueOrder::ByPriority | QueueOrder::Strict => vec![limit; n],
            QueueOrder::Weighted(w) => {
                let total: u64 = w.iter().take(n).map(|&x| u64::from(x.max(1))).sum();
                (0..n)
                    .map(|i| {
                        let wi = u64::from(w.get(i).copied().unwrap_or(1).max(1));
                        let share = (limit as u64 * wi).div_ceil(total.max(1));
                        share.max(1) as i32
                    })
                    .collect()
            }
        }
    }
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// Queues to serve.
    pub queues: &'a [String],
    /// How slots are shared among the queues.
    pub order: &'a QueueOrder,
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
    SELECT q.name, q.lim, q.ord FROM unnest($1::text[], $6::int[]) WITH ORDINALITY AS q(name, lim, ord)
    WHERE NOT EXISTS (SELECT 1 FROM pgfleet.queues p WHERE p.name = q.name AND (p.paused OR p.flow))
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
        LIMIT q.lim
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY CASE WHEN $7 THEN q.ord ELSE 0 END, c.priority, c.run_at, c.id
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
          j.errors, j.unique_key, j.created_at, NULL::timestamptz AS finalized_at, j.partition_key
"#;

/// The discard of a claimed row that cannot be decoded (a payload with a number beyond the
/// float range written by SQL, say): it can never run, and failing the whole claim would
/// strand the rest of the batch until their leases expire.
fn undecodable(row: &sqlx::postgres::PgRow, e: &sqlx::Error) -> Result<Finished> {
    let id: i64 = row.try_get("id")?;
    let attempt: i32 = row.try_get("attempt")?;
    tracing::warn!(job_id = id, error = %e, "claimed job cannot be decoded; discarding it");
    Ok(Finished::new(
        id,
        attempt,
        Outcome::Discard {
            error: format!("the job's row cannot be decoded, so it cannot run: {e}"),
        },
    ))
}

impl Queue {
    /// Claims up to `req.limit` runnable jobs, highest priority first. A claimed row that
    /// cannot be decoded is discarded with the decoding error and not returned; the others
    /// are unaffected.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for an empty queue list or a limit over [`MAX_CLAIM`];
    /// [`QueueError::Database`].
    pub async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Vec<Job>> {
        Ok(self.claim_detailed(req).await?.jobs)
    }

    /// Like [`Queue::claim`], and says whether a flow limit ([`crate::flow`]) held back
    /// waiting work, so a worker knows to look again soon rather than wait for a wake-up.
    /// Queues without limits are claimed by one statement ([`CLAIM_SQL`]); flow-controlled
    /// ones then share what is left of `req.limit` through `pgfleet.claim_flow`.
    ///
    /// # Errors
    /// As [`Queue::claim`].
    pub async fn claim_detailed(&self, req: &ClaimRequest<'_>) -> Result<Claimed> {
        if req.queues.is_empty() {
            return Err(QueueError::invalid("queues", "at least one queue"));
        }
        if req.limit > MAX_CLAIM {
            return Err(QueueError::invalid(
                "limit",
                format!("at most {MAX_CLAIM} jobs per claim"),
            ));
        }
        if req.limit == 0 || req.partitions.is_some_and(<[i16]>::is_empty) {
            return Ok(Claimed::default());
        }
        let flow = self.flow_queues(req.queues).await?;
        let mut rows = Vec::new();
        if flow.len() < req.queues.len() {
            let limits = req.order.limits(req.queues.len(), req.limit);
            rows = sqlx::query(CLAIM_SQL)
                .bind(req.queues)
                .bind(req.partitions)
                .bind(req.limit as i64)
                .bind(req.worker_id)
                .bind(req.lease.as_millis() as f64)
                .bind(&limits)
                .bind(*req.order == QueueOrder::Strict)
                .fetch_all(self.pool())
                .await?;
        }
        let mut held_back = None;
        if !flow.is_empty() && rows.len() < req.limit {
            let (more, held) = self.claim_flow(&flow, req, req.limit - rows.len()).await?;
            rows.extend(more);
            held_back = held;
        }
        let mut jobs = Vec::with_capacity(rows.len());
        let mut poison = Vec::new();
        for row in &rows {
            match Job::from_row(row) {
                Ok(job) => jobs.push(job),
                Err(e) => poison.push(undecodable(row, &e)?),
            }
        }
        if !poison.is_empty() {
            self.finalize(req.worker_id, &poison).await?;
        }
        // RETURNING follows the primary-key probe; hand jobs out in claim order.
        match req.order {
            QueueOrder::Strict => {
                let rank = |q: &str| req.queues.iter().position(|x| x == q).unwrap_or(usize::MAX);
                jobs.sort_by_key(|j| (rank(&j.queue), j.priority, j.run_at, j.id));
            }
            _ if !flow.is_empty() => {}
            _ => jobs.sort_unstable_by_key(|j| (j.priority, j.run_at, j.id)),
        }
        Ok(Claimed { jobs, held_back })
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

#[cfg(test)]
mod tests {
    use super::QueueOrder;

    #[test]
    fn weighted_limits_follow_the_weights() {
        let w = QueueOrder::Weighted(vec![6, 3, 1]);
        assert_eq!(w.limits(3, 100), vec![60, 30, 10]);
        assert_eq!(w.limits(3, 1), vec![1, 1, 1]);
        assert_eq!(QueueOrder::Strict.limits(2, 7), vec![7, 7]);
    }
}
