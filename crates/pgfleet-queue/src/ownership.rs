//! Partition ownership: workers register with a heartbeat and lease the partitions of their
//! pool by rendezvous hashing over the live workers.
//!
//! Every worker computes the same assignment from the same list of live workers, releases
//! the partitions it no longer should own, and takes (or renews) the ones it should. A
//! lease another worker still holds is left alone until it expires or is released, so a
//! partition never has two leaseholders. Ownership only steers who listens and claims
//! where: `FOR UPDATE SKIP LOCKED` keeps a job from running twice while ownership moves.

use std::time::Duration;

use crate::error::Result;
use crate::partition::{fnv1a64, PartitionCount};
use crate::Queue;

/// A worker as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Unique id of this worker process (e.g. `host-pid-random`).
    pub id: String,
    /// The pool it belongs to; partitions are leased per pool.
    pub pool: String,
    /// Queues it serves.
    pub queues: Vec<String>,
    /// Concurrent job slots.
    pub concurrency: i32,
}

/// A row of `pgfleet.partition_leases`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartitionLease {
    /// Pool.
    pub pool: String,
    /// Partition.
    pub partition: i16,
    /// Leaseholder.
    pub worker_id: String,
    /// Lease expiry.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkerRow {
    /// Worker id.
    pub id: String,
    /// Pool.
    pub pool: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: i32,
    /// Queues served.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Last heartbeat.
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// Presumed dead after this.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The rendezvous score of `worker` for `partition`: FNV-1a of the pair, then a SplitMix64
/// finaliser so similar worker ids do not produce correlated scores.
pub fn rendezvous_score(worker: &str, partition: i16) -> u64 {
    let mut bytes = Vec::with_capacity(worker.len() + 8);
    bytes.extend_from_slice(worker.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&partition.to_le_bytes());
    let mut z = fnv1a64(&bytes).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The partitions `me` should own among `workers` (pure; every worker computes the same
/// disjoint, covering assignment from the same list).
pub fn rendezvous_partitions(me: &str, workers: &[String], partitions: PartitionCount) -> Vec<i16> {
    partitions
        .all()
        .into_iter()
        .filter(|&p| {
            workers
                .iter()
                .max_by_key(|w| (rendezvous_score(w, p), w.as_str()))
                .is_some_and(|w| w == me)
        })
        .collect()
}

impl Queue {
    /// Registers or heartbeats a worker, then rebalances its partition leases. Returns the
    /// partitions it holds now (sorted).
    ///
    /// `ttl` is both the worker's and the leases' time to live; call this well within it
    /// (a third of it is a good period).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn rebalance(&self, me: &WorkerInfo, ttl: Duration) -> Result<Vec<i16>> {
        let ttl_ms = ttl.as_millis() as f64;
        let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        sqlx::query(
            "INSERT INTO pgfleet.workers (id, pool, hostname, pid, queues, concurrency, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond') \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at, \
             queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency",
        )
        .bind(&me.id)
        .bind(&me.pool)
        .bind(hostname)
        .bind(std::process::id() as i32)
        .bind(&me.queues)
        .bind(me.concurrency)
        .bind(ttl_ms)
        .execute(self.pool())
        .await?;
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM pgfleet.workers WHERE pool = $1 AND expires_at > now() ORDER BY id",
        )
        .bind(&me.pool)
        .fetch_all(self.pool())
        .await?;
        let mine = rendezvous_partitions(&me.id, &live, self.partitions());
        let mut owned: Vec<i16> = sqlx::query_scalar(
            r#"
WITH released AS (
    DELETE FROM pgfleet.partition_leases
    WHERE pool = $1 AND worker_id = $2 AND partition <> ALL($3::smallint[])
)
INSERT INTO pgfleet.partition_leases AS l (pool, partition, worker_id, expires_at)
SELECT $1, p, $2, now() + $4 * interval '1 millisecond' FROM unnest($3::smallint[]) AS p
ON CONFLICT (pool, partition) DO UPDATE
SET worker_id = EXCLUDED.worker_id,
    expires_at = EXCLUDED.expires_at,
    acquired_at = CASE WHEN l.worker_id = EXCLUDED.worker_id THEN l.acquired_at ELSE now() END
WHERE l.worker_id = EXCLUDED.worker_id OR l.expires_at < now()
RETURNING partition
"#,
        )
        .bind(&me.pool)
        .bind(&me.id)
        .bind(&mine)
        .bind(ttl_ms)
        .fetch_all(self.pool())
        .await?;
        owned.sort_unstable();
        Ok(owned)
    }

    /// Removes a worker and releases its partition leases (graceful shutdown), so others
    /// take its partitions at their next rebalance instead of waiting for expiry.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn deregister(&self, worker_id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM pgfleet.partition_leases WHERE worker_id = $1")
            .bind(worker_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pgfleet.workers WHERE id = $1")
            .bind(worker_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Releases every partition lease of a pool (a pool being deleted).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn release_pool(&self, pool: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM pgfleet.partition_leases WHERE pool = $1")
            .bind(pool)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Current, unexpired partition leases (all pools, or one).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn partition_leases(&self, pool: Option<&str>) -> Result<Vec<PartitionLease>> {
        Ok(sqlx::query_as(
            "SELECT pool, partition, worker_id, expires_at FROM pgfleet.partition_leases \
             WHERE ($1::text IS NULL OR pool = $1) AND expires_at > now() ORDER BY pool, partition",
        )
        .bind(pool)
        .fetch_all(self.pool())
        .await?)
    }

    /// Live workers (all pools, or one).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn workers(&self, pool: Option<&str>) -> Result<Vec<WorkerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, pool, hostname, pid, queues, concurrency, heartbeat_at, expires_at \
             FROM pgfleet.workers WHERE ($1::text IS NULL OR pool = $1) AND expires_at > now() \
             ORDER BY pool, id",
        )
        .bind(pool)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes worker rows dead for longer than `grace`.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn reap_workers(&self, grace: Duration) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM pgfleet.workers WHERE expires_at < now() - $1 * interval '1 millisecond'",
        )
        .bind(grace.as_millis() as f64)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i}")).collect()
    }

    #[test]
    fn assignment_is_disjoint_and_covering() {
        let p = PartitionCount::new(16).unwrap();
        for n in 1..=8 {
            let workers = ids(n);
            let mut all: Vec<i16> = workers
                .iter()
                .flat_map(|w| rendezvous_partitions(w, &workers, p))
                .collect();
            all.sort_unstable();
            assert_eq!(all, p.all(), "{n} workers");
        }
    }

    #[test]
    fn a_leaving_worker_only_moves_its_own_partitions() {
        let p = PartitionCount::new(64).unwrap();
        let before = ids(4);
        let after: Vec<String> = before[..3].to_vec();
        for w in &after {
            let old = rendezvous_partitions(w, &before, p);
            let new = rendezvous_partitions(w, &after, p);
            assert!(old.iter().all(|x| new.contains(x)), "{w} lost a partition");
        }
    }

    #[test]
    fn load_is_roughly_even() {
        let p = PartitionCount::new(1024).unwrap();
        let workers = ids(4);
        for w in &workers {
            let n = rendezvous_partitions(w, &workers, p).len();
            assert!((180..=330).contains(&n), "{w} got {n}");
        }
    }
}
