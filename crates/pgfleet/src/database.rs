//! `--database-url` and `--pool-size`, resolved by [`pgfleet_app::database`].

use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

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
    /// Connection options for the configured database.
    ///
    /// # Errors
    /// When no database is configured or the URL is invalid.
    pub fn options(&self) -> anyhow::Result<PgConnectOptions> {
        let url = pgfleet_app::database::resolve_url(self.url.as_deref())?;
        Ok(pgfleet_app::database::options(&url)?)
    }

    /// A pool on the database.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        let size = self.pool_size.unwrap_or(10);
        Ok(pgfleet_app::database::connect_pool(self.options()?, size).await?)
    }
}
