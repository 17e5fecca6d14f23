//! Queue statistics per queue and partition: counts by state, the age of the oldest
//! runnable job (lag), and finished jobs over the last minute. These are the numbers the
//! controller scales on and the dashboards show.
//!
//! The hot table only holds unfinished jobs, so the aggregate stays cheap.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use crate::error::Result;
use crate::Queue;

/// Counts for one (queue, partition) or one queue in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// Runnable now (`available` or `retryable` with `run_at` reached).
    pub available: i64,
    /// Scheduled for later (`available` with a future `run_at`).
    pub scheduled: i64,
    /// Waiting for a retry backoff.
    pub retryable: i64,
    /// Held by workers.
    pub running: i64,
    /// Waiting for dependencies (not backlog).
    pub blocked: i64,
    /// Completed in the last 60 s.
    pub completed_last_minute: i64,
    /// Discarded in the last 60 s.
    pub discarded_last_minute: i64,
    /// Seconds since the oldest runnable job became runnable (0 when none).
    pub oldest_available_age_secs: f64,
}

impl Counts {
    /// Jobs waiting to run now plus those waiting on backoff: the backlog.
    pub fn backlog(&self) -> i64 {
        self.available + self.retryable
    }

    /// Completions per second over the last minute.
    pub fn completed_per_sec(&self) -> f64 {
        self.completed_last_minute as f64 / 60.0
    }

    fn merge(&mut self, o: &Counts) {
        self.available += o.available;
        self.scheduled += o.scheduled;
        self.retryable += o.retryable;
        self.running += o.running;
        self.blocked += o.blocked;
        self.completed_last_minute += o.completed_last_minute;
        self.discarded_last_minute += o.discarded_last_minute;
        self.oldest_available_age_secs = self
            .oldest_available_age_secs
            .max(o.oldest_available_age_secs);
    }
}

/// Statistics of one queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Totals over partitions.
    pub total: Counts,
    /// Per partition (only partitions with something to report).
    pub partitions: BTreeMap<i16, Counts>,
}

const HOT_SQL: &str = r#"
SELECT queue, partition,
       count(*) FILTER (WHERE state IN ('available', 'retryable') AND run_at <= now()) AS available,
       count(*) FILTER (WHERE state = 'available' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'retryable' AND run_at > now()) AS retryable,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'blocked') AS blocked,
       coalesce(extract(epoch FROM now() - min(run_at)
           FILTER (WHERE state IN ('available', 'retryable') AND run_at <= now())), 0)::float8 AS oldest
FROM pgfleet.jobs GROUP BY queue, partition
"#;

const FINISHED_SQL: &str = r#"
SELECT queue, partition,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'discarded') AS discarded
FROM pgfleet.jobs_finished WHERE finalized_at > now() - interval '60 seconds'
GROUP BY queue, partition
"#;

impl Queue {
    /// Mean run time (claim to completion) of the jobs of `queues` completed within the
    /// last `window`, in seconds (0 when none did).
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn mean_run_secs(
        &self,
        queues: &[String],
        window: std::time::Duration,
    ) -> Result<f64> {
        Ok(sqlx::query_scalar::<_, Option<f64>>(
            "SELECT avg(EXTRACT(EPOCH FROM finalized_at - attempted_at))::float8 \
             FROM pgfleet.jobs_finished \
             WHERE queue = ANY($1) AND state = 'completed' \
               AND finalized_at > now() - $2 * interval '1 millisecond'",
        )
        .bind(queues)
        .bind(window.as_millis() as f64)
        .fetch_one(self.pool())
        .await?
        .unwrap_or(0.0))
    }

    /// How many jobs each worker holds (running, or claimed into its buffer), by worker id.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn held_by_worker(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT attempted_by, count(*) FROM pgfleet.jobs \
             WHERE state = 'running' AND attempted_by IS NOT NULL GROUP BY attempted_by",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Statistics of every known queue, sorted by name.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn stats(&self) -> Result<Vec<QueueStats>> {
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for row in sqlx::query("SELECT name, paused FROM pgfleet.queues")
            .fetch_all(self.pool())
            .await?
        {
            let name: String = row.try_get("name")?;
            by_queue.insert(
                name.clone(),
                QueueStats {
                    queue: name,
                    paused: row.try_get("paused")?,
                    ..Default::default()
                },
            );
        }
        for row in sqlx::query(HOT_SQL).fetch_all(self.pool()).await? {
            let c = Counts {
                available: row.try_get("available")?,
                scheduled: row.try_get("scheduled")?,
                retryable: row.try_get("retryable")?,
                running: row.try_get("running")?,
                blocked: row.try_get("blocked")?,
                oldest_available_age_secs: row.try_get("oldest")?,
                ..Default::default()
            };
            entry(
                &mut by_queue,
                row.try_get("queue")?,
                row.try_get("partition")?,
            )
            .merge(&c);
        }
        for row in sqlx::query(FINISHED_SQL).fetch_all(self.pool()).await? {
            let c = Counts {
                completed_last_minute: row.try_get("completed")?,
                discarded_last_minute: row.try_get("discarded")?,
                ..Default::default()
            };
            entry(
                &mut by_queue,
                row.try_get("queue")?,
                row.try_get("partition")?,
            )
            .merge(&c);
        }
        let mut out: Vec<QueueStats> = by_queue.into_values().collect();
        for q in &mut out {
            let mut total = Counts::default();
            for c in q.partitions.values() {
                total.merge(c);
            }
            q.total = total;
        }
        Ok(out)
    }
}

fn entry(map: &mut BTreeMap<String, QueueStats>, queue: String, partition: i16) -> &mut Counts {
    map.entry(queue.clone())
        .or_insert_with(|| QueueStats {
            queue,
            ..Default::default()
        })
        .partitions
        .entry(partition)
        .or_default()
}
