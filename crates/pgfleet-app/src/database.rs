//! Where the database comes from: an explicit URL, `DATABASE_URL`, or the URL a running
//! `pgfleet dev` left in its data directory; and pools with pgfleet's defaults.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::AppError;

/// The default data directory of `pgfleet dev`.
pub const DEFAULT_DATA_DIR: &str = ".pgfleet";

/// Where `pgfleet dev` records its database URL (`$PGFLEET_DATA_DIR/database-url`).
pub fn dev_url_file() -> PathBuf {
    let dir = std::env::var("PGFLEET_DATA_DIR").unwrap_or_else(|_| DEFAULT_DATA_DIR.into());
    PathBuf::from(dir).join("database-url")
}

/// `explicit` when given, else `DATABASE_URL`, else a running `pgfleet dev`'s database.
///
/// # Errors
/// [`AppError::Config`] when none is configured.
pub fn resolve_url(explicit: Option<&str>) -> Result<String, AppError> {
    if let Some(u) = explicit.filter(|u| !u.is_empty()) {
        return Ok(u.to_owned());
    }
    if let Ok(u) = std::env::var("DATABASE_URL") {
        if !u.is_empty() {
            return Ok(u);
        }
    }
    let dev = dev_url_file();
    std::fs::read_to_string(&dev)
        .map(|s| s.trim().to_owned())
        .map_err(|_| {
            AppError::Config(format!(
                "no database configured: pass --database-url, set DATABASE_URL, or start \
                 `pgfleet dev` (which writes {})",
                dev.display()
            ))
        })
}

/// Connection options for `url`.
///
/// # Errors
/// [`AppError::Config`] for a URL that does not parse.
pub fn options(url: &str) -> Result<PgConnectOptions, AppError> {
    url.parse()
        .map_err(|e| AppError::Config(format!("invalid database URL: {e}")))
}

/// A pool of `size` connections, giving up after 10 s without one.
///
/// # Errors
/// [`AppError::Connect`] when PostgreSQL cannot be reached.
pub async fn connect_pool(options: PgConnectOptions, size: u32) -> Result<PgPool, AppError> {
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(AppError::Connect)
}
