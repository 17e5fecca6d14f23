//! Schema migrations, embedded from the workspace's `migrations/` folder.
//!
//! Safe when many processes start at once: a session advisory lock serialises them, the
//! schema is created under that lock, and sqlx's migrator (which takes its own lock) records
//! its bookkeeping table inside the `pgfleet` schema so it never collides with the
//! application's own sqlx migrations in `public`.

use sqlx::{Connection, PgConnection, PgPool};

use crate::error::{QueueError, Result};
use crate::partition::{PartitionCount, DEFAULT_PARTITIONS};

/// Advisory lock key guarding schema creation and migration ("pgfleet1" in ASCII).
const MIGRATE_LOCK: i64 = 0x7067_666c_6565_7431;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies pending migrations and fixes the partition count on first install.
///
/// `partitions` is the count to install with (default 16). On an existing install, passing
/// a different count is an error: partitions are fixed at install. Returns the installed
/// count.
///
/// # Errors
/// [`QueueError::PartitionCountMismatch`], [`QueueError::Migrate`], [`QueueError::Database`].
pub async fn migrate(pool: &PgPool, partitions: Option<u16>) -> Result<PartitionCount> {
    let requested = partitions.map(PartitionCount::new).transpose()?;
    let mut conn = pool.acquire().await?;
    let conn: &mut PgConnection = &mut conn;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = migrate_locked(conn, requested).await;
    // Restore the pooled connection whatever happened.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await;
    let _ = sqlx::query("RESET search_path").execute(&mut *conn).await;
    result
}

async fn migrate_locked(
    conn: &mut PgConnection,
    requested: Option<PartitionCount>,
) -> Result<PartitionCount> {
    sqlx::query("CREATE SCHEMA IF NOT EXISTS pgfleet")
        .execute(&mut *conn)
        .await?;
    // sqlx's `_sqlx_migrations` table goes into the first schema of the search path.
    sqlx::query("SET search_path TO pgfleet")
        .execute(&mut *conn)
        .await?;
    MIGRATOR.run_direct(&mut *conn).await?;
    let want = requested.unwrap_or_default().get();
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO pgfleet.settings (partition_count) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(i32::from(want))
    .execute(&mut *tx)
    .await?;
    let installed: i32 = sqlx::query_scalar("SELECT partition_count FROM pgfleet.settings")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let installed = PartitionCount::new(u16::try_from(installed).unwrap_or(DEFAULT_PARTITIONS))?;
    match requested {
        Some(r) if r != installed => Err(QueueError::PartitionCountMismatch {
            installed: installed.get(),
            requested: r.get(),
        }),
        _ => Ok(installed),
    }
}

/// Reads the installed partition count.
///
/// # Errors
/// [`QueueError::NotMigrated`] when the schema is missing.
pub async fn installed_partitions(pool: &PgPool) -> Result<PartitionCount> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('pgfleet.settings') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(QueueError::NotMigrated);
    }
    let n: Option<i32> = sqlx::query_scalar("SELECT partition_count FROM pgfleet.settings")
        .fetch_optional(pool)
        .await?;
    let n = n.ok_or(QueueError::NotMigrated)?;
    PartitionCount::new(u16::try_from(n).map_err(|_| QueueError::NotMigrated)?)
}

/// True when every embedded migration has been applied (for readiness probes).
///
/// # Errors
/// [`QueueError::Database`] when the database cannot be asked.
pub async fn is_up_to_date(pool: &PgPool) -> Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('pgfleet._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(false);
    }
    let applied: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM pgfleet._sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version)))
}
