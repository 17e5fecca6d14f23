//! # pgfleet-testkit (test-only)
//!
//! Every test gets its own fresh database on a real PostgreSQL server:
//! `PGFLEET_TEST_DATABASE_URL` (or `DATABASE_URL`) when set, else a private cluster started
//! from the local PostgreSQL install, shared by every test of the test binary and stopped
//! when the binary exits. Tests therefore run in parallel without seeing each other.

pub mod otlp;
pub mod push;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use pgfleet_pgembed::{EmbedConfig, Server};

static SERVER: OnceLock<std::result::Result<Server, String>> = OnceLock::new();

fn server() -> Result<&'static Server> {
    SERVER
        .get_or_init(|| {
            let url = ["PGFLEET_TEST_DATABASE_URL", "DATABASE_URL"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
            Server::url_or_start(url, || EmbedConfig {
                dir: std::env::temp_dir().join(format!(
                    "pgfleet-test-{}-{}",
                    std::process::id(),
                    rand::thread_rng().gen::<u32>()
                )),
                temporary: true,
                fast_unsafe: true,
                port: None,
                settings: Vec::new(),
            })
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot start a test PostgreSQL: {e}"))
}

/// A fresh, empty database owned by one test. Dropped databases are not removed when the
/// server is external (they are cheap, and a failed test leaves its data to inspect); the
/// private cluster is removed whole at exit.
pub struct TestDb {
    /// Connection options of the test database.
    pub options: PgConnectOptions,
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
    /// Its name.
    pub name: String,
}

impl TestDb {
    /// Creates a new database with a unique name and a pool of up to 20 connections.
    ///
    /// # Errors
    /// When no server can be reached or started.
    pub async fn new() -> Result<Self> {
        Self::with_pool_size(20).await
    }

    /// Like [`TestDb::new`] with a chosen pool size.
    ///
    /// # Errors
    /// When no server can be reached or started.
    pub async fn with_pool_size(max: u32) -> Result<Self> {
        let name = format!("pgfleet_t_{:016x}", rand::thread_rng().gen::<u64>());
        let url = server()?
            .create_database(&name)
            .await
            .context("create test database")?;
        let options: PgConnectOptions = url.parse().context("parse database URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .context("connect to the test database")?;
        Ok(Self {
            options,
            url,
            pool,
            name,
        })
    }

    /// A new pool on the same database (to act as another process).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn new_pool(&self, max: u32) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(max)
            .connect_with(self.options.clone())
            .await?)
    }
}

/// A fresh database with the pgfleet schema installed (16 partitions) and a queue on it.
///
/// # Errors
/// When no server can be reached or the migrations fail.
pub async fn migrated() -> Result<(TestDb, pgfleet_queue::Queue)> {
    let db = TestDb::new().await?;
    pgfleet_queue::migrate::migrate(&db.pool, None).await?;
    let queue = pgfleet_queue::Queue::new(db.pool.clone()).await?;
    Ok((db, queue))
}

/// Runs `promtool check metrics` on a scrape. Returns `Ok(false)` when promtool is not
/// installed (CI installs Debian's prometheus package).
///
/// # Errors
/// When promtool rejects the text (its output is in the error).
pub fn promtool_check_metrics(text: &str) -> Result<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: skipped `promtool check metrics`");
        return Ok(false);
    };
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(true)
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout`.
///
/// # Errors
/// When the condition is not met in time (the message says which).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
