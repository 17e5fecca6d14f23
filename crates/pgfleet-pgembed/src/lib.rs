//! # pgfleet-pgembed
//!
//! A private PostgreSQL cluster started from the machine's PostgreSQL install, so that
//! `pgfleet dev` and the test suite need nothing but `initdb` and `pg_ctl` on disk.
//!
//! - The binaries are found through `PGFLEET_PG_BIN`, else `pg_config --bindir`, else the
//!   newest `/usr/lib/postgresql/*/bin`.
//! - PostgreSQL refuses to run as root: when we are root, the cluster is initialised and run
//!   as the `postgres` user (through `runuser`), and its directory is handed to that user.
//! - It listens on 127.0.0.1 on a port the OS picked, plus a Unix socket in its directory.
//! - A watchdog process stops the cluster (and removes it, if it is temporary) when the
//!   owning process exits, however it exits — a SIGKILLed test run leaks nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

/// Why the cluster could not be started.
#[derive(Debug, Error)]
pub enum EmbedError {
    /// No PostgreSQL server binaries were found.
    #[error("no PostgreSQL install found (set PGFLEET_PG_BIN to the directory holding initdb and pg_ctl, or set DATABASE_URL)")]
    NoInstall,
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// What ran.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The server refused a statement, or its URL is invalid.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A URL that does not parse.
    #[error("invalid database URL: {0}")]
    Url(#[from] url::ParseError),
    /// File system or process error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbedError {
    let context = context.into();
    move |source| EmbedError::Io { context, source }
}

/// Settings for a cluster.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// Where the cluster lives (`<dir>/data` holds the data directory).
    pub dir: PathBuf,
    /// Remove `dir` when the owning process exits (tests) or keep it (dev).
    pub temporary: bool,
    /// Trade durability for speed (`fsync=off`): for tests only.
    pub fast_unsafe: bool,
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// Extra server settings, `name=value` each (e.g. `ssl=on`).
    pub settings: Vec<String>,
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl Cluster {
    /// Initialises (if needed) and starts a cluster; it is stopped when this process exits.
    ///
    /// # Errors
    /// [`EmbedError`] when PostgreSQL is missing or refuses to start.
    pub fn start(config: &EmbedConfig) -> Result<Self, EmbedError> {
        let bin = find_bin().ok_or(EmbedError::NoInstall)?;
        let data = config.dir.join("data");
        std::fs::create_dir_all(&config.dir)
            .map_err(io(format!("create {}", config.dir.display())))?;
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&config.dir))?;
        }
        if !data.join("PG_VERSION").exists() {
            let mut initdb = pg_command(&bin.join("initdb"), as_root);
            initdb.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run(&mut initdb)?;
        }
        let port = match config.port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300 \
             -c shared_buffers=256MB",
            config.dir.display()
        );
        if config.fast_unsafe {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for s in &config.settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let log = config.dir.join("postgres.log");
        let mut start = pg_command(&bin.join("pg_ctl"), as_root);
        start
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(&opts)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(&mut start)?;
        let cluster = Self {
            dir: config.dir.clone(),
            port,
            bin,
        };
        cluster.spawn_watchdog(config.temporary, as_root)?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Restarts the server (fast shutdown: sessions are terminated, committed data stays),
    /// with the options it was started with.
    ///
    /// # Errors
    /// [`EmbedError`] when `pg_ctl restart` fails.
    pub fn restart(&self) -> Result<(), EmbedError> {
        let mut c = pg_command(&self.bin.join("pg_ctl"), is_root());
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-t", "60", "restart"])
            .arg("-l")
            .arg(self.dir.join("postgres.log"));
        run(&mut c)
    }

    /// Starts a watchdog that stops the cluster when this process is gone.
    fn spawn_watchdog(&self, remove: bool, as_root: bool) -> Result<(), EmbedError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let stop = if as_root {
            format!(
                "runuser -u postgres -- {} -D {} -m fast -w stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!("{} -D {} -m fast -w stop", pg_ctl.display(), data.display())
        };
        let cleanup = if remove {
            format!("; rm -rf {}", self.dir.display())
        } else {
            String::new()
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1{cleanup}",
            pid = std::process::id()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("spawn watchdog"))?;
        Ok(())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(program: &Path, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), EmbedError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {shown}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EmbedError::Command {
            command: shown,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

fn free_port() -> Result<u16, EmbedError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    l.local_addr().map(|a| a.port()).map_err(io("read port"))
}

/// Finds the directory holding `initdb` and `pg_ctl`.
pub fn find_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PGFLEET_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// The PostgreSQL server a command or a test suite uses: one given by URL, or a private
/// cluster this process started (and stops when it exits).
#[derive(Debug)]
pub enum Server {
    /// A server given by URL (its database part is the admin database).
    External(String),
    /// A private cluster.
    Private(Cluster),
}

impl Server {
    /// The server at `url` when one is given (and not empty), else a private cluster started
    /// with `config()`.
    ///
    /// # Errors
    /// [`EmbedError`] when the cluster cannot start.
    pub fn url_or_start(
        url: Option<String>,
        config: impl FnOnce() -> EmbedConfig,
    ) -> Result<Self, EmbedError> {
        match url.filter(|u| !u.is_empty()) {
            Some(u) => Ok(Self::External(u)),
            None => Cluster::start(&config()).map(Self::Private),
        }
    }

    /// The URL of the admin database (`postgres` on a private cluster).
    pub fn admin_url(&self) -> String {
        match self {
            Self::External(u) => u.clone(),
            Self::Private(c) => c.url("postgres"),
        }
    }

    /// The private cluster, when it is one.
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Self::External(_) => None,
            Self::Private(c) => Some(c),
        }
    }

    /// Creates database `name` (unless it exists) and returns its URL.
    ///
    /// # Errors
    /// [`EmbedError::Database`] when the server refuses.
    pub async fn create_database(&self, name: &str) -> Result<String, EmbedError> {
        use sqlx::Connection;
        let admin: sqlx::postgres::PgConnectOptions = self.admin_url().parse()?;
        let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            sqlx::query(&format!("CREATE DATABASE {quoted}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        database_url(&self.admin_url(), name)
    }
}

/// `url` with its database replaced by `name` (query parameters such as `sslmode` kept).
///
/// # Errors
/// [`EmbedError::Url`] when `url` is not a URL.
pub fn database_url(url: &str, name: &str) -> Result<String, EmbedError> {
    let mut url = url::Url::parse(url)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_part_of_a_url_is_replaced_and_its_parameters_kept() {
        assert_eq!(
            database_url("postgres://u@h:5/postgres?sslmode=require", "x").unwrap(),
            "postgres://u@h:5/x?sslmode=require"
        );
        assert_eq!(
            database_url("postgres://u@h:5", "x").unwrap(),
            "postgres://u@h:5/x"
        );
    }
}
