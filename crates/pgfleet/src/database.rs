//! Where the database comes from: `--database-url`, `PGFLEET_DATABASE_URL`,
//! `DATABASE_URL`, or the URL a running `pgfleet dev` left in its data directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The default data directory of `pgfleet dev`.
pub const DEFAULT_DATA_DIR: &str = ".pgfleet";

/// Database flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// PostgreSQL URL (falls back to DATABASE_URL, then to a running `pgfleet dev`).
    #[arg(
        long = "database-url",
        env = "PGFLEET_DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Connection pool size (default: 10; for `pgfleet worker`, 2 + one per 10 slots).
    #[arg(long, env = "PGFLEET_DB_POOL_SIZE")]
    pub pool_size: Option<u32>,
}

impl DbArgs {
    /// The URL to use.
    ///
    /// # Errors
    /// When none is configured and no `pgfleet dev` is running here.
    pub fn resolve_url(&self) -> anyhow::Result<String> {
        if let Some(u) = self.url.clone().filter(|u| !u.is_empty()) {
            return Ok(u);
        }
        if let Ok(u) = std::env::var("DATABASE_URL") {
            if !u.is_empty() {
                return Ok(u);
            }
        }
        let dev = dev_url_file();
        std::fs::read_to_string(&dev)
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "no database configured: pass --database-url, set DATABASE_URL, or start \
                     `pgfleet dev` (which writes {})",
                    dev.display()
                )
            })
    }

    /// Connection options for the URL.
    ///
    /// # Errors
    /// When the URL is missing or invalid.
    pub fn options(&self) -> anyhow::Result<PgConnectOptions> {
        let url = self.resolve_url()?;
        url.parse().context("invalid database URL")
    }

    /// The configured pool size, or `default`.
    pub fn pool_size_or(&self, default: u32) -> u32 {
        self.pool_size.unwrap_or(default).max(1)
    }

    /// A pool on the database.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        connect_pool(self.options()?, self.pool_size_or(10)).await
    }
}

/// Connects a pool with pgfleet's defaults.
///
/// # Errors
/// When the database cannot be reached within 10 s.
pub async fn connect_pool(options: PgConnectOptions, size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")
}

/// Where `pgfleet dev` records its database URL.
pub fn dev_url_file() -> PathBuf {
    let dir = std::env::var("PGFLEET_DATA_DIR").unwrap_or_else(|_| DEFAULT_DATA_DIR.into());
    PathBuf::from(dir).join("database-url")
}
