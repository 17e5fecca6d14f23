//! Enqueue: one job or thousands in a single statement (`unnest` of column arrays), on the
//! pool or inside the caller's transaction. Unique keys make enqueue idempotent.
//!
//! Wake-ups are never sent inside the transaction: the touched partitions are handed to the
//! [`Notifier`](crate::notify::Notifier) after commit, which coalesces them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::Value;
use sqlx::{PgConnection, Row};

use crate::error::{QueueError, Result};
use crate::job::NewJob;
use crate::Queue;

/// The most jobs one enqueue call accepts.
pub const MAX_BATCH: usize = 50_000;

/// What enqueue did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job id (the existing job's id when `duplicate`).
    pub id: i64,
    /// Its partition.
    pub partition: i16,
    /// True when a job with the same unique key already existed and nothing was written.
    pub duplicate: bool,
}

/// Partitions touched by an enqueue made inside a caller's transaction. Pass it to
/// [`Queue::wake`] after the transaction commits; dropping it only costs latency (workers
/// poll), never a job.
#[must_use = "call Queue::wake after commit, or workers only find the jobs when they poll"]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wakeups(pub Vec<i16>);

const INSERT_SQL: &str = r#"
WITH input AS MATERIALIZED (
    SELECT t.*,
           CASE WHEN t.unique_key IS NULL THEN nextval('pgfleet.jobs_id_seq') END AS new_id
    FROM unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[], $5::jsonb[],
                $6::jsonb[], $7::int[], $8::timestamptz[], $9::text[], $11::text[])
         WITH ORDINALITY AS t(queue, kind, partition, priority, payload, metadata,
                              max_attempts, run_at, unique_key, partition_key, ord)
), keys AS (
    INSERT INTO pgfleet.unique_keys (unique_key, job_id)
    SELECT unique_key, nextval('pgfleet.jobs_id_seq') FROM input WHERE unique_key IS NOT NULL
    ON CONFLICT (unique_key) DO NOTHING
    RETURNING unique_key, job_id
), chosen AS MATERIALIZED (
    SELECT coalesce(i.new_id, k.job_id) AS id, i.*
    FROM input i LEFT JOIN keys k ON k.unique_key = i.unique_key
    WHERE i.unique_key IS NULL OR k.job_id IS NOT NULL
), queues AS (
    INSERT INTO pgfleet.queues (name) SELECT unnest($10::text[]) ON CONFLICT DO NOTHING
), ins AS (
    INSERT INTO pgfleet.jobs (id, queue, kind, partition, priority, payload, metadata,
                              max_attempts, run_at, unique_key, partition_key)
    SELECT id, queue, kind, partition, priority, payload, metadata, max_attempts,
           coalesce(run_at, now()), unique_key, partition_key
    FROM chosen
)
SELECT ord, id, partition FROM chosen
"#;

/// One job without a unique key: the common case of an API request, as cheap as an INSERT.
const INSERT_ONE_SQL: &str = "INSERT INTO pgfleet.jobs \
    (queue, kind, partition, priority, payload, metadata, max_attempts, run_at, partition_key) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9) RETURNING id";

const REGISTER_QUEUES_SQL: &str =
    "INSERT INTO pgfleet.queues (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING";

const EXISTING_SQL: &str = r#"
SELECT u.unique_key, u.job_id, coalesce(j.partition, f.partition) AS partition
FROM pgfleet.unique_keys u
LEFT JOIN pgfleet.jobs j ON j.id = u.job_id
LEFT JOIN pgfleet.jobs_finished f ON f.id = u.job_id
WHERE u.unique_key = ANY($1)
"#;

impl Queue {
    /// The job that holds unique key `key`, if any (either table, until retention prunes it).
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn job_for_unique_key(&self, key: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT job_id FROM pgfleet.unique_keys WHERE unique_key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Enqueues one job and wakes its partition after commit.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] (nothing written) or [`QueueError::Database`].
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut out = self.enqueue_many(std::slice::from_ref(&job)).await?;
        out.pop()
            .ok_or_else(|| QueueError::invalid("jobs", "nothing was enqueued"))
    }

    /// Enqueues one job of a typed kind with its defaults (see [`crate::args`]).
    ///
    /// # Errors
    /// As [`Queue::enqueue`].
    pub async fn enqueue_args<A: crate::JobArgs>(&self, args: &A) -> Result<Enqueued> {
        self.enqueue(NewJob::from_args(args)?).await
    }

    /// Enqueues many jobs in one statement (one transaction) and wakes their partitions.
    /// Results are in input order. Either every job is written or none is.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the first bad field (nothing written), or
    /// [`QueueError::Database`].
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        let mut conn = self.pool().acquire().await?;
        let (out, wakeups) = self.enqueue_in(&mut conn, jobs).await?;
        self.wake(wakeups);
        Ok(out)
    }

    /// Enqueues inside the caller's transaction (or on any connection). The jobs become
    /// visible when the caller commits; call [`Queue::wake`] with the returned
    /// [`Wakeups`] after that.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] (nothing written) or [`QueueError::Database`].
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<(Vec<Enqueued>, Wakeups)> {
        if jobs.is_empty() {
            return Ok((Vec::new(), Wakeups::default()));
        }
        if jobs.len() > MAX_BATCH {
            return Err(QueueError::invalid(
                "jobs",
                format!("at most {MAX_BATCH} jobs per call, got {}", jobs.len()),
            ));
        }
        for job in jobs {
            job.validate()?;
        }
        if jobs.iter().any(|j| !j.depends_on.is_empty()) {
            return self.enqueue_dependent_in(conn, jobs).await;
        }
        let cols = self.columns(jobs);
        if cols.queue.len() == 1 && cols.unique_key[0].is_none() {
            return self.insert_one(conn, cols).await;
        }
        // Batches are planned with their real sizes (see ARCHITECTURE.md, "plans").
        let rows = sqlx::query(INSERT_SQL)
            .persistent(cols.queue.len() == 1)
            .bind(&cols.queue)
            .bind(&cols.kind)
            .bind(&cols.partition)
            .bind(&cols.priority)
            .bind(&cols.payload)
            .bind(&cols.metadata)
            .bind(&cols.max_attempts)
            .bind(&cols.run_at)
            .bind(&cols.unique_key)
            .bind(&cols.new_queues)
            .bind(&cols.partition_key)
            .fetch_all(&mut *conn)
            .await?;
        self.remember_queues(cols.new_queues);
        let mut out: Vec<Option<Enqueued>> = vec![None; cols.queue.len()];
        for row in rows {
            let ord: i64 = row.try_get("ord")?;
            out[(ord - 1) as usize] = Some(Enqueued {
                id: row.try_get("id")?,
                partition: row.try_get("partition")?,
                duplicate: false,
            });
        }
        let mut wake: Vec<i16> = out.iter().flatten().map(|e| e.partition).collect();
        wake.sort_unstable();
        wake.dedup();
        let out = self.fill_duplicates(conn, &cols.unique_key, out).await?;
        // Expand back to the caller's order, including in-batch duplicates of a unique key.
        let mut first_seen = vec![false; out.len()];
        let result = cols
            .slot_of
            .iter()
            .map(|&slot| {
                let mut e = out[slot];
                e.duplicate |= std::mem::replace(&mut first_seen[slot], true);
                e
            })
            .collect();
        Ok((result, Wakeups(wake)))
    }

    /// Jobs with dependencies go through `pgfleet.enqueue_many` (migration 0009): the SQL
    /// that checks and locks their dependencies is the one other languages call. Their
    /// wake-ups are sent by PostgreSQL at commit, so the returned [`Wakeups`] is empty.
    async fn enqueue_dependent_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<(Vec<Enqueued>, Wakeups)> {
        let body: Vec<Value> = jobs
            .iter()
            .map(|j| crate::workflow::job_json(j, None, &[]))
            .collect();
        let single = jobs.len() == 1;
        let rows = sqlx::query("SELECT * FROM pgfleet.enqueue_many($1)")
            .bind(Value::Array(body))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| match QueueError::from_sql(e) {
                QueueError::InvalidAt { path, reason } if single => QueueError::InvalidAt {
                    path: path.strip_prefix("jobs[0].").unwrap_or(&path).to_owned(),
                    reason,
                },
                other => other,
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Enqueued {
                id: row.try_get("id")?,
                partition: row.try_get("partition")?,
                duplicate: row.try_get("duplicate")?,
            });
        }
        Ok((out, Wakeups::default()))
    }

    async fn insert_one(
        &self,
        conn: &mut PgConnection,
        cols: Columns,
    ) -> Result<(Vec<Enqueued>, Wakeups)> {
        if !cols.new_queues.is_empty() {
            sqlx::query(REGISTER_QUEUES_SQL)
                .bind(&cols.new_queues)
                .execute(&mut *conn)
                .await?;
        }
        let partition = cols.partition[0];
        let id: i64 = sqlx::query_scalar(INSERT_ONE_SQL)
            .bind(&cols.queue[0])
            .bind(&cols.kind[0])
            .bind(partition)
            .bind(cols.priority[0])
            .bind(&cols.payload[0])
            .bind(&cols.metadata[0])
            .bind(cols.max_attempts[0])
            .bind(cols.run_at[0])
            .bind(&cols.partition_key[0])
            .fetch_one(&mut *conn)
            .await?;
        self.remember_queues(cols.new_queues);
        let e = Enqueued {
            id,
            partition,
            duplicate: false,
        };
        Ok((vec![e], Wakeups(vec![partition])))
    }

    /// Hands partitions touched by a committed enqueue to the notifier.
    pub fn wake(&self, wakeups: Wakeups) {
        self.notifier().wake(&wakeups.0);
    }

    /// Commits `tx`, then wakes the partitions its enqueues touched (`None`: it enqueued
    /// nothing). The one way to finish a transaction that enqueued: workers woken before the
    /// commit would find nothing, and a wake-up that is never sent costs a poll period.
    ///
    /// # Errors
    /// The commit failed: nothing was written, nobody is woken.
    pub async fn commit_and_wake(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        wakeups: impl Into<Option<Wakeups>>,
    ) -> std::result::Result<(), sqlx::Error> {
        tx.commit().await?;
        if let Some(w) = wakeups.into() {
            self.wake(w);
        }
        Ok(())
    }

    async fn fill_duplicates(
        &self,
        conn: &mut PgConnection,
        unique_keys: &[Option<String>],
        out: Vec<Option<Enqueued>>,
    ) -> Result<Vec<Enqueued>> {
        let missing: Vec<String> = out
            .iter()
            .zip(unique_keys)
            .filter(|(e, _)| e.is_none())
            .filter_map(|(_, k)| k.clone())
            .collect();
        let mut existing = HashMap::new();
        if !missing.is_empty() {
            for row in sqlx::query(EXISTING_SQL)
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await?
            {
                let key: String = row.try_get("unique_key")?;
                let id: i64 = row.try_get("job_id")?;
                let partition: Option<i16> = row.try_get("partition")?;
                existing.insert(key, (id, partition.unwrap_or(0)));
            }
        }
        out.into_iter()
            .zip(unique_keys)
            .map(|(e, key)| match (e, key) {
                (Some(e), _) => Ok(e),
                (None, Some(key)) => existing
                    .get(key)
                    .map(|&(id, partition)| Enqueued {
                        id,
                        partition,
                        duplicate: true,
                    })
                    .ok_or_else(|| {
                        QueueError::invalid("unique_key", "its job was pruned concurrently")
                    }),
                (None, None) => Err(QueueError::invalid("jobs", "a job was not written")),
            })
            .collect()
    }

    fn columns(&self, jobs: &[NewJob]) -> Columns {
        let p = self.partitions();
        let mut cols = Columns::default();
        let mut seen_keys: HashMap<&str, usize> = HashMap::new();
        let mut rng = rand::thread_rng();
        // Checked under the lock (no await below), not cloned: this runs on every enqueue.
        let known = self.inner.known_queues.lock().ok();
        let is_known = |q: &str| known.as_ref().is_some_and(|k| k.contains(q));
        for job in jobs {
            if let Some(key) = job.unique_key.as_deref() {
                if let Some(&slot) = seen_keys.get(key) {
                    cols.slot_of.push(slot);
                    continue;
                }
                seen_keys.insert(key, cols.queue.len());
            }
            cols.slot_of.push(cols.queue.len());
            let partition = match job.partition_key.as_deref() {
                Some(key) => p.of_key(key),
                None => rng.gen_range(0..p.get()) as i16,
            };
            if !is_known(&job.queue) && !cols.new_queues.contains(&job.queue) {
                cols.new_queues.push(job.queue.clone());
            }
            cols.queue.push(job.queue.clone());
            cols.kind.push(job.kind.clone());
            cols.partition.push(partition);
            cols.priority.push(job.priority);
            cols.payload.push(job.payload.clone());
            cols.metadata.push(job.metadata.clone());
            cols.max_attempts.push(job.max_attempts);
            cols.run_at.push(job.run_at);
            cols.unique_key.push(job.unique_key.clone());
            cols.partition_key.push(job.partition_key.clone());
        }
        cols
    }

    fn remember_queues(&self, names: Vec<String>) {
        if let Ok(mut known) = self.inner.known_queues.lock() {
            known.extend(names);
        }
    }
}

/// Column arrays bound to [`INSERT_SQL`].
#[derive(Default)]
struct Columns {
    queue: Vec<String>,
    kind: Vec<String>,
    partition: Vec<i16>,
    priority: Vec<i16>,
    payload: Vec<Value>,
    metadata: Vec<Value>,
    max_attempts: Vec<i32>,
    run_at: Vec<Option<DateTime<Utc>>>,
    unique_key: Vec<Option<String>>,
    partition_key: Vec<Option<String>>,
    new_queues: Vec<String>,
    /// For each input job, the row it was written as (in-batch unique duplicates share one).
    slot_of: Vec<usize>,
}
