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

/// Filters for [`Queue::list_jobs`]; results are ordered by id, after `after_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Keyset cursor: ids strictly greater.
    pub after_id: Option<i64>,
    /// Page size (1..=1000).
    pub limit: i64,
}

/// The most rows one list call returns.
pub const MAX_PAGE: i64 = 1000;

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

    /// Lists jobs by filter with keyset pagination.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad limit, [`QueueError::Database`].
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        if !(1..=MAX_PAGE).contains(&f.limit) {
            return Err(QueueError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        let cond = "($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2) \
                    AND ($3::pgfleet.job_state IS NULL OR state = $3) AND id > $4";
        let hot = format!("SELECT {HOT_COLUMNS} FROM pgfleet.jobs WHERE {cond}");
        let fin = format!("SELECT {FINISHED_COLUMNS} FROM pgfleet.jobs_finished WHERE {cond}");
        let sql = match f.state {
            Some(s) if s.is_final() => format!("{fin} ORDER BY id LIMIT $5"),
            Some(_) => format!("{hot} ORDER BY id LIMIT $5"),
            None => format!("({hot} ORDER BY id LIMIT $5) UNION ALL ({fin} ORDER BY id LIMIT $5) ORDER BY id LIMIT $5"),
        };
        let rows = sqlx::query(&sql)
            .bind(&f.queue)
            .bind(&f.kind)
            .bind(f.state)
            .bind(f.after_id.unwrap_or(0))
            .bind(f.limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(Job::from_row_lossy)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Cancels a job. A waiting job is cancelled at once; a running job is asked to stop
    /// (its worker is told on the control channel) and is cancelled when it does.
    /// Cancelling a cancelled job is a no-op.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a completed or discarded
    /// job; [`QueueError::Database`].
    pub async fn cancel_job(&self, id: i64) -> Result<Job> {
        let sql = concat!(
            "WITH moved AS (DELETE FROM pgfleet.jobs WHERE id = $1 AND state <> 'running' \
             RETURNING *, 'cancelled' AS final_state, \
             jsonb_build_object('attempt', attempt, 'at', now(), 'kind', 'cancelled', \
             'error', 'cancelled by operator') AS final_error) ",
            insert_finished_from!(),
            " moved"
        );
        let moved = sqlx::query(sql).bind(id).execute(self.pool()).await?;
        if moved.rows_affected() == 0 {
            let requested = sqlx::query(
                "UPDATE pgfleet.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()) \
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(id)
            .execute(self.pool())
            .await?;
            if requested.rows_affected() > 0 {
                notify(self.pool(), CONTROL_CHANNEL, &format!("cancel:{id}")).await?;
            }
        }
        let job = self.get_job(id).await?;
        match job.state {
            JobState::Completed | JobState::Discarded if moved.rows_affected() == 0 => {
                Err(QueueError::WrongState {
                    id,
                    state: job.state.to_string(),
                    action: "cancel",
                })
            }
            _ => Ok(job),
        }
    }

    /// Makes a job run again now: a discarded or cancelled job goes back to the queue (its
    /// error history kept, one more attempt allowed); a retryable or scheduled job runs now.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a completed or running
    /// job; [`QueueError::Database`].
    pub async fn retry_job(&self, id: i64) -> Result<Job> {
        let mut tx = self.pool().begin().await?;
        let revived = sqlx::query(
            "WITH f AS (DELETE FROM pgfleet.jobs_finished WHERE id = $1 \
             AND state IN ('discarded', 'cancelled') RETURNING *) \
             INSERT INTO pgfleet.jobs (id, queue, kind, partition, priority, state, payload, \
             metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, errors, \
             unique_key, created_at, partition_key, workflow_id, has_dependents, progress) \
             SELECT id, queue, kind, partition, priority, 'available', payload, metadata, attempt, \
             greatest(max_attempts, attempt + 1), now(), attempted_at, attempted_by, errors, \
             unique_key, created_at, partition_key, workflow_id, has_dependents, progress FROM f",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if revived.rows_affected() == 0 {
            sqlx::query(
                "UPDATE pgfleet.jobs SET run_at = now() WHERE id = $1 AND state <> 'running'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let job = self.get_job(id).await?;
        if matches!(job.state, JobState::Completed | JobState::Running) {
            return Err(QueueError::WrongState {
                id,
                state: job.state.to_string(),
                action: "retry",
            });
        }
        self.wake(crate::enqueue::Wakeups(vec![job.partition]));
        Ok(job)
    }

    /// Deletes a job that is not running, from either table.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::WrongState`] for a running job (cancel it
    /// first); [`QueueError::Database`].
    pub async fn delete_job(&self, id: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        // A deleted job that others wait for counts as cancelled for them.
        let hot: Option<bool> = sqlx::query_scalar(
            "DELETE FROM pgfleet.jobs WHERE id = $1 AND state <> 'running' RETURNING has_dependents",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if hot == Some(true) {
            sqlx::query("SELECT pgfleet.settle_dependents($1, 'cancelled')")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let hot = u64::from(hot.is_some());
        let fin = sqlx::query("DELETE FROM pgfleet.jobs_finished WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM pgfleet.unique_keys WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if hot + fin == 0 {
            drop(tx);
            let job = self.get_job(id).await?;
            return Err(QueueError::WrongState {
                id,
                state: job.state.to_string(),
                action: "delete",
            });
        }
        tx.commit().await?;
        Ok(())
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
