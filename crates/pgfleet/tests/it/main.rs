//! End-to-end tests of the `pgfleet` binary: real processes, real signals, real PostgreSQL.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod autoscale;
mod commands;
mod dashboards;
mod dev;
mod processes;
mod schedules;
mod tls;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_pgfleet");

/// Runs `pgfleet <args>` to completion.
pub fn pgfleet(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("PGFLEET_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pgfleet")
}

/// A child process that is killed and reaped when dropped, so a failing test never leaves a
/// pgfleet process behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts `pgfleet <args>` in the background (stderr to `log`).
pub fn spawn(url: Option<&str>, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGFLEET_DATABASE_URL")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    if let Some(u) = url {
        c.env("PGFLEET_DATABASE_URL", u);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().expect("spawn pgfleet"))
}

/// Sends a signal with kill(1).
pub fn signal(child: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// Waits for a child to exit, failing after `timeout`.
pub async fn wait_exit(child: &mut Proc, timeout: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("process did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `pgfleet dev` on a private PostgreSQL in a temporary directory.
pub struct Dev {
    pub proc: Proc,
    pub base: String,
    pub data: std::path::PathBuf,
    pub dir: std::path::PathBuf,
}

/// Starts `pgfleet dev --port 0` and waits for its `pgfleet ready:` line.
pub async fn start_dev(status_every: &str) -> anyhow::Result<Dev> {
    start_dev_with(status_every, |_| Vec::new()).await
}

/// `pgfleet dev` with extra arguments, made from the run's own directory.
pub async fn start_dev_with(
    status_every: &str,
    extra: impl FnOnce(&std::path::Path) -> Vec<String>,
) -> anyhow::Result<Dev> {
    let dir = std::env::temp_dir().join(format!("pgfleet-dev-{}", processes::rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let data_s = data.to_string_lossy().to_string();
    let extra = extra(&dir);
    let mut args = vec!["dev", "--port", "0", "--status-every", status_every];
    args.extend(extra.iter().map(String::as_str));
    let proc = spawn(
        None,
        &args,
        &dir.join("dev.log"),
        &[("PGFLEET_DATA_DIR", data_s.as_str())],
    );
    let out_file = dir.join("dev.out");
    let base = pgfleet_testkit::eventually("pgfleet ready", Duration::from_secs(60), || async {
        let out = std::fs::read_to_string(&out_file).unwrap_or_default();
        Ok(out
            .lines()
            .find_map(|l| l.strip_prefix("pgfleet ready: "))
            .map(str::to_owned))
    })
    .await?;
    Ok(Dev {
        proc,
        base,
        data,
        dir,
    })
}
