//! Owner of `pgfleet.queue_samples`: each queue's counts over time, for the console's
//! charts. Every worker's maintenance pass calls [`Queue::sample_queues`]; one process at a
//! time takes the sampler's advisory lock, and a sample is written only when the last one is
//! at least the interval old, so the fleet writes one sample per interval however many
//! workers run. Samples older than [`SAMPLES_KEPT`] are deleted by the same pass.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::Queue;

/// The sampler's advisory lock ("pgfsampl" in ASCII).
const SAMPLER_LOCK: i64 = 0x7067_6673_616d_706c;

/// How long samples are kept.
pub const SAMPLES_KEPT: &str = "24 hours";

/// One queue's counts at one time.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueSample {
    /// When.
    pub at: DateTime<Utc>,
    /// Runnable.
    pub available: i64,
    /// Waiting for a future time.
    pub scheduled: i64,
    /// Waiting for a retry backoff.
    pub retryable: i64,
    /// Held by workers.
    pub running: i64,
    /// Waiting for dependencies.
    pub blocked: i64,
    /// Completed in the minute before `at`.
    pub completed_last_min: i64,
    /// Discarded in the minute before `at`.
    pub discarded_last_min: i64,
    /// Age of the oldest runnable job.
    pub lag_seconds: f64,
}

impl Queue {
    /// Writes one sample of every queue's counts unless another process wrote one within
    /// `every` (or holds the sampler's lock now); returns whether it wrote.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn sample_queues(&self, every: Duration) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SAMPLER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(false);
        }
        let recent: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgfleet.queue_samples \
             WHERE at > now() - $1 * interval '1 millisecond')",
        )
        .bind(every.as_millis() as f64 * 0.9)
        .fetch_one(&mut *tx)
        .await?;
        if recent {
            return Ok(false);
        }
        let stats = self.stats().await?;
        let col = |f: fn(&crate::stats::Counts) -> i64| -> Vec<i64> {
            stats.iter().map(|s| f(&s.total)).collect()
        };
        let names: Vec<&str> = stats.iter().map(|s| s.queue.as_str()).collect();
        let lag: Vec<f64> = stats
            .iter()
            .map(|s| s.total.oldest_available_age_secs)
            .collect();
        sqlx::query(
            "INSERT INTO pgfleet.queue_samples (queue, at, available, scheduled, retryable, \
             running, blocked, completed_last_min, discarded_last_min, lag_seconds) \
             SELECT q, now(), a, s, r, ru, b, c, d, l FROM unnest($1::text[], $2::int8[], \
             $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], \
             $9::float8[]) AS t(q, a, s, r, ru, b, c, d, l)",
        )
        .bind(&names)
        .bind(col(|c| c.available))
        .bind(col(|c| c.scheduled))
        .bind(col(|c| c.retryable))
        .bind(col(|c| c.running))
        .bind(col(|c| c.blocked))
        .bind(col(|c| c.completed_last_minute))
        .bind(col(|c| c.discarded_last_minute))
        .bind(&lag)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM pgfleet.queue_samples WHERE at < now() - interval '{SAMPLES_KEPT}'"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A queue's samples since `since`, oldest first.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn queue_history(
        &self,
        queue: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<QueueSample>> {
        Ok(sqlx::query_as(
            "SELECT at, available, scheduled, retryable, running, blocked, completed_last_min, \
             discarded_last_min, lag_seconds FROM pgfleet.queue_samples \
             WHERE queue = $1 AND at >= $2 ORDER BY at",
        )
        .bind(queue)
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }
}
