//! Operator actions on jobs and queues: get, list, cancel, retry, delete, pause, resume.
//!
//! Pause and resume are announced on the control channel and take effect at the next claim
//! of every worker (the claim statement skips paused queues). Cancelling a running job sets
//! `cancel_requested_at` and announces `cancel:<id>`; its worker stops it, and the rescuer
//! cancels it if the worker is gone.

use serde::Serialize;

use crate::error::{QueueError, Result};
use crate::job::{
    insert_finished_from, validate_queue_name, Job, JobState, FINISHED_COLUMNS, HOT_COLUMNS,
};
use crate::notify::notify;
use crate::partition::CONTROL_CHANNEL;
use crate::Queue;

pub use crate::search::{JobFilter, PageRequest, StateFilter, MAX_PAGE};

/// A bulk action on every job a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BulkAction {
    /// Cancel what waits; ask running jobs to stop.
    Cancel,
    /// Run discarded, cancelled, retryable and scheduled jobs again now.
    Retry,
    /// Delete every match that is not running.
    Delete,
}

/// What a bulk action did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkOutcome {
    /// Jobs the action applied to (running jobs asked to stop count as cancelled).
    pub affected: u64,
    /// False when it stopped (at its `max` or its time budget) with matches left.
    pub done: bool,
}

/// Jobs acted on per transaction in a bulk action.
pub const BULK_BATCH: i64 = 500;

impl Queue {
    /// A job by id, from either table.
    ///
    /// # Errors
    /// [`QueueError::NotFound`], [`QueueError::Database`].
    pub async fn get_job(&self, id: i64) -> Result<Job> {
        let sql = format!(
            "SELECT {HOT_COLUMNS} FROM pgfleet.jobs WHERE id = $1 UNION ALL \
             SELECT {FINISHED_COLUMNS} FROM pgfleet.jobs_finished WHERE id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(QueueError::NotFound(id))?;
        Ok(Job::from_row_lossy(&row)?)
    }

    /// Cancels a job. A waiting job is cancelled at once; a running job is asked to stop
    /// (its worker is told on the control channel) and is cancelled when it does.
    /// Cancelling a cancelled job is a no-op.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a completed or discarded
    /// job; [`QueueError::Database`].
    pub async fn cancel_job(&self, id: i64) -> Result<Job> {
        let acted = self.cancel_ids(&[id]).await?;
        let job = self.get_job(id).await?;
        match job.state {
            JobState::Completed | JobState::Discarded if acted == 0 => {
                Err(QueueError::WrongState {
                    id,
                    state: job.state.to_string(),
                    action: "cancel",
                })
            }
            _ => Ok(job),
        }
    }

    /// Cancels the waiting jobs of `ids` and asks the running ones to stop; returns how
    /// many it did either to. Finished ids are left alone.
    async fn cancel_ids(&self, ids: &[i64]) -> Result<u64> {
        let sql = concat!(
            "WITH moved AS (DELETE FROM pgfleet.jobs WHERE id = ANY($1) AND state <> 'running' \
             RETURNING *, 'cancelled' AS final_state, \
             jsonb_build_object('attempt', attempt, 'at', now(), 'kind', 'cancelled', \
             'error', 'cancelled by operator') AS final_error) ",
            insert_finished_from!(),
            " moved"
        );
        let moved = sqlx::query(sql).bind(ids).execute(self.pool()).await?;
        // Running jobs: flagged and their workers told, in one statement however many.
        let requested: i64 = sqlx::query_scalar(
            "WITH r AS (UPDATE pgfleet.jobs \
               SET cancel_requested_at = coalesce(cancel_requested_at, now()) \
               WHERE id = ANY($1) AND state = 'running' RETURNING id) \
             SELECT count(*) FROM (SELECT pg_notify($2, 'cancel:' || id) FROM r) told",
        )
        .bind(ids)
        .bind(CONTROL_CHANNEL)
        .fetch_one(self.pool())
        .await?;
        Ok(moved.rows_affected() + requested as u64)
    }

    /// Makes a job run again now: a discarded or cancelled job goes back to the queue (its
    /// error history kept, one more attempt allowed); a retryable or scheduled job runs now.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a completed or running
    /// job; [`QueueError::Database`].
    pub async fn retry_job(&self, id: i64) -> Result<Job> {
        self.retry_ids(&[id]).await?;
        let job = self.get_job(id).await?;
        if matches!(job.state, JobState::Completed | JobState::Running) {
            return Err(QueueError::WrongState {
                id,
                state: job.state.to_string(),
                action: "retry",
            });
        }
        Ok(job)
    }

    /// Revives the discarded and cancelled jobs of `ids` and makes the waiting ones run
    /// now, in one transaction; wakes their partitions; returns how many.
    async fn retry_ids(&self, ids: &[i64]) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut partitions: Vec<i16> = sqlx::query_scalar(
            "WITH f AS (DELETE FROM pgfleet.jobs_finished WHERE id = ANY($1) \
             AND state IN ('discarded', 'cancelled') RETURNING *) \
             INSERT INTO pgfleet.jobs (id, queue, kind, partition, priority, state, payload, \
             metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, errors, \
             unique_key, created_at, partition_key, workflow_id, has_dependents, progress) \
             SELECT id, queue, kind, partition, priority, 'available', payload, metadata, attempt, \
             greatest(max_attempts, attempt + 1), now(), attempted_at, attempted_by, errors, \
             unique_key, created_at, partition_key, workflow_id, has_dependents, progress FROM f \
             RETURNING partition",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        let now: Vec<i16> = sqlx::query_scalar(
            "UPDATE pgfleet.jobs SET run_at = now() WHERE id = ANY($1) \
             AND state IN ('available', 'retryable') AND run_at > now() RETURNING partition",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        partitions.extend(now);
        let n = partitions.len() as u64;
        partitions.sort_unstable();
        partitions.dedup();
        self.wake(crate::enqueue::Wakeups(partitions));
        Ok(n)
    }

    /// Deletes a job that is not running, from either table.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a running job (cancel it
    /// first); [`QueueError::Database`].
    pub async fn delete_job(&self, id: i64) -> Result<()> {
        if self.delete_ids(&[id]).await? == 0 {
            let job = self.get_job(id).await?;
            return Err(QueueError::WrongState {
                id,
                state: job.state.to_string(),
                action: "delete",
            });
        }
        Ok(())
    }

    /// Deletes the jobs of `ids` that are not running, in one transaction; returns how many.
    async fn delete_ids(&self, ids: &[i64]) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let hot: Vec<(i64, bool)> = sqlx::query_as(
            "DELETE FROM pgfleet.jobs WHERE id = ANY($1) AND state <> 'running' \
             RETURNING id, has_dependents",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        // A deleted job that others wait for counts as cancelled for them (one statement
        // for the batch).
        let waited_for: Vec<i64> = hot.iter().filter(|(_, d)| *d).map(|(id, _)| *id).collect();
        if !waited_for.is_empty() {
            sqlx::query(
                "SELECT pgfleet.settle_dependents(id, 'cancelled') FROM unnest($1::bigint[]) AS id",
            )
            .bind(&waited_for)
            .execute(&mut *tx)
            .await?;
        }
        let mut deleted: Vec<i64> =
            sqlx::query_scalar("DELETE FROM pgfleet.jobs_finished WHERE id = ANY($1) RETURNING id")
                .bind(ids)
                .fetch_all(&mut *tx)
                .await?;
        deleted.extend(hot.iter().map(|(id, _)| *id));
        // Only the deleted jobs' keys: a running job keeps its own.
        sqlx::query("DELETE FROM pgfleet.unique_keys WHERE job_id = ANY($1)")
            .bind(&deleted)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.len() as u64)
    }

    /// Applies `action` to every job `filter` matches, [`BULK_BATCH`] jobs per transaction
    /// in id order, stopping after `max` jobs or once `budget` has passed (then `done` is
    /// false if matches are left: call again to go on; jobs already acted on no longer
    /// match). Jobs the action
    /// cannot apply to (a completed job cannot be cancelled, a running one deleted) are
    /// neither acted on nor counted.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad filter, [`QueueError::Database`] (the batches
    /// already committed stay done).
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        max: Option<u64>,
        budget: Option<std::time::Duration>,
    ) -> Result<BulkOutcome> {
        use crate::search::Table;
        filter.validate()?;
        let started = std::time::Instant::now();
        // What the action can still change (so a repeated call does not count a job twice).
        let (hot, finished) = match action {
            BulkAction::Cancel => (
                Some("state <> 'running' OR cancel_requested_at IS NULL"),
                None,
            ),
            BulkAction::Retry => (
                Some("state IN ('available', 'retryable') AND run_at > now()"),
                Some("state IN ('discarded', 'cancelled')"),
            ),
            BulkAction::Delete => (Some("state <> 'running'"), Some("true")),
        };
        let tables: Vec<(Table, &str)> = [(Table::Hot, hot), (Table::Finished, finished)]
            .into_iter()
            .filter_map(|(t, extra)| extra.filter(|_| filter.touches(t)).map(|e| (t, e)))
            .collect();
        let mut out = BulkOutcome::default();
        for (i, &(table, extra)) in tables.iter().enumerate() {
            let mut after = 0;
            loop {
                let room = max.map_or(BULK_BATCH, |m| {
                    (m - out.affected).min(BULK_BATCH as u64) as i64
                });
                if room == 0 || budget.is_some_and(|b| started.elapsed() >= b) {
                    // Stopped early: done only if nothing is left to act on.
                    let mut left = !self
                        .matching_ids(filter, table, extra, after, 1)
                        .await?
                        .is_empty();
                    for &(t, e) in &tables[i + 1..] {
                        left = left || !self.matching_ids(filter, t, e, 0, 1).await?.is_empty();
                    }
                    out.done = !left;
                    return Ok(out);
                }
                let ids = self.matching_ids(filter, table, extra, after, room).await?;
                let Some(&last) = ids.last() else { break };
                after = last;
                out.affected += match action {
                    BulkAction::Cancel => self.cancel_ids(&ids).await?,
                    BulkAction::Retry => self.retry_ids(&ids).await?,
                    BulkAction::Delete => self.delete_ids(&ids).await?,
                };
            }
        }
        out.done = true;
        Ok(out)
    }

    /// Pauses a queue: no worker claims from it until it is resumed.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad name, [`QueueError::Database`].
    pub async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, true).await
    }

    /// Resumes a paused queue and wakes every partition.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad name, [`QueueError::Database`].
    pub async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, false).await?;
        self.wake(crate::enqueue::Wakeups(self.partitions().all()));
        Ok(())
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(
            "INSERT INTO pgfleet.queues (name, paused) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()",
        )
        .bind(queue)
        .bind(paused)
        .execute(self.pool())
        .await?;
        let verb = if paused { "pause" } else { "resume" };
        notify(self.pool(), CONTROL_CHANNEL, &format!("{verb}:{queue}")).await
    }

    /// Names of all paused queues.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn paused_queues(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM pgfleet.queues WHERE paused ORDER BY name")
                .fetch_all(self.pool())
                .await?,
        )
    }
}
