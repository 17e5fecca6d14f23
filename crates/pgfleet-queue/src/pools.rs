//! Owner of `pgfleet.pools` (each worker pool's last autoscaling decision, for `pgfleet
//! status`) and `pgfleet.pool_history` (the decisions over time, for the console's chart).
//! Written by the Kubernetes controller and by `pgfleet dev`'s local pools.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::Queue;

/// How long decisions are kept in `pgfleet.pool_history`.
pub const HISTORY_KEPT: &str = "24 hours";

/// One autoscaling decision for a pool.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolReport {
    /// Pool name (namespace/name for Kubernetes pools).
    pub name: String,
    /// `kubernetes` or `local`.
    pub source: String,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running (ready, for Kubernetes).
    pub actual: i32,
    /// Runnable jobs.
    pub backlog: i64,
    /// Oldest runnable job's age.
    pub lag_seconds: f64,
    /// Why.
    pub reason: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// One point of a pool's history.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolPoint {
    /// When.
    pub at: DateTime<Utc>,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running (ready).
    pub actual: i32,
    /// Runnable jobs.
    pub backlog: i64,
    /// Oldest runnable job's age.
    pub lag_seconds: f64,
    /// Why.
    pub reason: String,
}

impl Queue {
    /// Records a decision (`updated_at` is ignored: now), and a history point when desired,
    /// actual or the reason changed or the last point is 10 s old; forgets points older
    /// than [`HISTORY_KEPT`].
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn record_pool(&self, d: &PoolReport) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO pgfleet.pools (name, source, desired, actual, backlog, lag_seconds, reason, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
             ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, desired = EXCLUDED.desired, \
               actual = EXCLUDED.actual, backlog = EXCLUDED.backlog, lag_seconds = EXCLUDED.lag_seconds, \
               reason = EXCLUDED.reason, updated_at = now()",
        )
        .bind(&d.name)
        .bind(&d.source)
        .bind(d.desired)
        .bind(d.actual)
        .bind(d.backlog)
        .bind(d.lag_seconds)
        .bind(&d.reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO pgfleet.pool_history (pool, at, desired, actual, backlog, lag_seconds, reason) \
             SELECT $1, clock_timestamp(), $2, $3, $4, $5, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM pgfleet.pool_history WHERE pool = $1 \
                 ORDER BY at DESC LIMIT 1) last \
               WHERE last.desired = $2 AND last.actual = $3 AND last.reason = $6 \
                 AND last.at > now() - interval '10 seconds')",
        )
        .bind(&d.name)
        .bind(d.desired)
        .bind(d.actual)
        .bind(d.backlog)
        .bind(d.lag_seconds)
        .bind(&d.reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM pgfleet.pool_history WHERE pool = $1 AND at < now() - interval '{HISTORY_KEPT}'"
        ))
        .bind(&d.name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every pool's last decision, by name.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn pools(&self) -> Result<Vec<PoolReport>> {
        Ok(sqlx::query_as(
            "SELECT name, source, desired, actual, backlog, lag_seconds, reason, updated_at \
             FROM pgfleet.pools ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// A pool's decisions since `since`, oldest first.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn pool_history(&self, pool: &str, since: DateTime<Utc>) -> Result<Vec<PoolPoint>> {
        Ok(sqlx::query_as(
            "SELECT at, desired, actual, backlog, lag_seconds, reason FROM pgfleet.pool_history \
             WHERE pool = $1 AND at >= $2 ORDER BY at",
        )
        .bind(pool)
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }

    /// Forgets a pool (deleted), its history included.
    ///
    /// # Errors
    /// [`crate::QueueError::Database`].
    pub async fn forget_pool(&self, name: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for table in [
            "pgfleet.pools WHERE name",
            "pgfleet.pool_history WHERE pool",
        ] {
            sqlx::query(&format!("DELETE FROM {table} = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
