//! Partition ownership: workers register with a heartbeat, compute the partitions of their
//! pool by rendezvous hashing over the live workers, listen on those, and record them as
//! leases.
//!
//! Ownership steers who is woken and who looks first; it never guards correctness
//! (`FOR UPDATE SKIP LOCKED` does) and never caps throughput (workers with free slots also
//! claim from partitions they do not own). What it must guarantee is that every partition
//! has a listening owner at every moment, so a wake-up always reaches someone:
//!
//! - **join**: a new worker computes its share from the live workers plus itself, LISTENs
//!   on it, and only then registers ([`Queue::heartbeat`]); the others see it and drop the
//!   partitions it took only after it listens (take before release). It then asks the pool
//!   to rebalance at once ([`Queue::request_rebalance`]).
//! - **leave**: a stopping worker marks itself gone ([`Queue::leave`]), which asks the pool
//!   to rebalance; the survivors LISTEN on its partitions and then take its leases, and the
//!   leaver keeps serving until they have ([`Queue::leases_held`]).
//! - **crash**: a worker records the backend pid of its LISTEN connection; when that backend
//!   is gone (the process died), the worker is no longer live, whatever its expiry says.

use std::time::Duration;

use crate::error::Result;
use crate::partition::{fnv1a64, PartitionCount, CONTROL_CHANNEL};
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

/// The live workers of a pool: registered, unexpired, and — when they recorded their
/// LISTEN connection's backend — with that backend still connected.
const LIVE_SQL: &str = "SELECT id FROM pgfleet.workers w \
     WHERE pool = $1 AND expires_at > now() \
       AND (listener_pid IS NULL \
            OR EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.listener_pid)) \
     ORDER BY id";

/// The control-channel payload asking the workers of `pool` to rebalance now.
pub fn rebalance_payload(pool: &str) -> String {
    format!("rebalance:{pool}")
}

impl Queue {
    /// The ids of the live workers of `pool`, sorted.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn live_workers(&self, pool: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(LIVE_SQL)
            .bind(pool)
            .fetch_all(self.pool())
            .await?)
    }

    /// Registers or heartbeats a worker (live for `ttl`), recording the backend pid of its
    /// LISTEN connection when it has one. Returns the live workers of its pool, itself
    /// included, sorted.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn heartbeat(
        &self,
        me: &WorkerInfo,
        listener_pid: Option<i32>,
        ttl: Duration,
    ) -> Result<Vec<String>> {
        let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        sqlx::query(
            "INSERT INTO pgfleet.workers \
               (id, pool, hostname, pid, queues, concurrency, expires_at, listener_pid) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond', $8) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at, \
             queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, \
             listener_pid = EXCLUDED.listener_pid",
        )
        .bind(&me.id)
        .bind(&me.pool)
        .bind(hostname)
        .bind(std::process::id() as i32)
        .bind(&me.queues)
        .bind(me.concurrency)
        .bind(ttl.as_millis() as f64)
        .bind(listener_pid)
        .execute(self.pool())
        .await?;
        let mut live = self.live_workers(&me.pool).await?;
        if !live.contains(&me.id) {
            // Our own listener backend may be reconnecting: we are alive all the same.
            live.push(me.id.clone());
            live.sort_unstable();
        }
        Ok(live)
    }

    /// Makes `me`'s partition leases match `desired`: releases the ones it holds outside it,
    /// renews the ones it keeps, and takes those that are free, expired, or held by a worker
    /// not in `live`. Call it after listening on `desired`. Returns the partitions `me`
    /// holds now (sorted); a partition still held by another live worker is taken at a later
    /// call, once that worker has released it.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn sync_leases(
        &self,
        me: &WorkerInfo,
        desired: &[i16],
        live: &[String],
        ttl: Duration,
    ) -> Result<Vec<i16>> {
        let mut held: Vec<i16> = sqlx::query_scalar(
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
WHERE l.worker_id = EXCLUDED.worker_id OR l.expires_at < now() OR l.worker_id <> ALL($5::text[])
RETURNING partition
"#,
        )
        .bind(&me.pool)
        .bind(&me.id)
        .bind(desired)
        .bind(ttl.as_millis() as f64)
        .bind(live)
        .fetch_all(self.pool())
        .await?;
        held.sort_unstable();
        Ok(held)
    }

    /// Registers or heartbeats a worker, then rebalances its partition leases by rendezvous
    /// hashing ([`Queue::heartbeat`] + [`rendezvous_partitions`] + [`Queue::sync_leases`]),
    /// without a listener. Returns the partitions it holds now (sorted).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn rebalance(&self, me: &WorkerInfo, ttl: Duration) -> Result<Vec<i16>> {
        let live = self.heartbeat(me, None, ttl).await?;
        let desired = rendezvous_partitions(&me.id, &live, self.partitions());
        self.sync_leases(me, &desired, &live, ttl).await
    }

    /// Asks every worker of `pool` to rebalance now (a NOTIFY on the control channel).
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn request_rebalance(&self, pool: &str) -> Result<()> {
        crate::notify::notify(self.pool(), CONTROL_CHANNEL, &rebalance_payload(pool)).await
    }

    /// Starts a graceful leave: `worker_id` is no longer live for the others (its leases can
    /// be taken at once), and its pool is asked to rebalance. The worker keeps serving until
    /// [`Queue::leases_held`] says the others took over, then calls [`Queue::deregister`].
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn leave(&self, worker_id: &str) -> Result<()> {
        let pool: Option<String> = sqlx::query_scalar(
            "UPDATE pgfleet.workers SET expires_at = now() WHERE id = $1 RETURNING pool",
        )
        .bind(worker_id)
        .fetch_optional(self.pool())
        .await?;
        if let Some(pool) = pool {
            self.request_rebalance(&pool).await?;
        }
        Ok(())
    }

    /// How many partition leases `worker_id` holds.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn leases_held(&self, worker_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar(
                "SELECT count(*) FROM pgfleet.partition_leases WHERE worker_id = $1",
            )
            .bind(worker_id)
            .fetch_one(self.pool())
            .await?,
        )
    }

    /// Removes a worker and releases its partition leases (the end of a graceful stop).
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
