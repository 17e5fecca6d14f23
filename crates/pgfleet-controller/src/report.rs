//! The last decision per pool, in `pgfleet.pools`, for `pgfleet status`.

use serde::Serialize;
use sqlx::PgPool;

use crate::scaling::Sample;

/// One pool's last decision.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
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
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Records a decision.
///
/// # Errors
/// Database failures.
pub async fn record(
    pool: &PgPool,
    name: &str,
    source: &str,
    desired: i32,
    actual: i32,
    sample: &Sample,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pgfleet.pools (name, source, desired, actual, backlog, lag_seconds, reason, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, desired = EXCLUDED.desired, \
           actual = EXCLUDED.actual, backlog = EXCLUDED.backlog, lag_seconds = EXCLUDED.lag_seconds, \
           reason = EXCLUDED.reason, updated_at = now()",
    )
    .bind(name)
    .bind(source)
    .bind(desired)
    .bind(actual)
    .bind(sample.backlog)
    .bind(sample.oldest_age_secs)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every pool's last decision, by name.
///
/// # Errors
/// Database failures.
pub async fn list(pool: &PgPool) -> Result<Vec<PoolReport>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, source, desired, actual, backlog, lag_seconds, reason, updated_at \
         FROM pgfleet.pools ORDER BY name",
    )
    .fetch_all(pool)
    .await
}

/// Forgets a pool (deleted).
///
/// # Errors
/// Database failures.
pub async fn forget(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM pgfleet.pools WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}
