use std::time::Duration;

use pgfleet_testkit::eventually;

use crate::{processes::rand_suffix, signal, spawn, wait_exit, BIN};

/// The README's quickstart: `pgfleet dev` with no DATABASE_URL starts its own PostgreSQL
/// from the local install, migrates, works jobs enqueued by `pgfleet enqueue` (which finds
/// the dev database on its own), and stops cleanly on Ctrl-C.
#[tokio::test]
async fn pgfleet_dev_runs_everything_on_a_private_postgres() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pgfleet-dev-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let data_s = data.to_string_lossy().to_string();
    let env = [("PGFLEET_DATA_DIR", data_s.as_str())];
    let mut dev = spawn(
        None,
        &["dev", "--status-every", "1"],
        &dir.join("dev.log"),
        &env,
    );
    let url_file = data.join("database-url");
    eventually("pgfleet dev is up", Duration::from_secs(60), || async {
        Ok(url_file.exists().then_some(()))
    })
    .await?;
    let enqueue = std::process::Command::new(BIN)
        .args(["enqueue", "noop", "--count", "20"])
        .env_remove("DATABASE_URL")
        .env_remove("PGFLEET_DATABASE_URL")
        .env("PGFLEET_DATA_DIR", &data_s)
        .output()?;
    assert!(
        enqueue.status.success(),
        "{}",
        String::from_utf8_lossy(&enqueue.stderr)
    );
    let url = std::fs::read_to_string(&url_file)?;
    let pool = sqlx::PgPool::connect(url.trim()).await?;
    eventually(
        "jobs worked by the dev worker",
        Duration::from_secs(20),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pgfleet.jobs_finished WHERE state = 'completed'",
            )
            .fetch_one(&pool)
            .await?;
            Ok((n == 20).then_some(()))
        },
    )
    .await?;
    pool.close().await;
    signal(&dev, "INT");
    let status = wait_exit(&mut dev, Duration::from_secs(30)).await;
    assert!(status.success(), "Ctrl-C exits 0, got {status}");
    assert!(!url_file.exists(), "the dev URL file is removed on exit");
    let log = std::fs::read_to_string(dir.join("dev.out"))?;
    assert!(log.contains("pgfleet dev is running"), "{log}");
    // The private cluster is stopped by its watchdog once pgfleet dev is gone.
    eventually(
        "private PostgreSQL stopped",
        Duration::from_secs(20),
        || async { Ok((!data.join("pg/data/postmaster.pid").exists()).then_some(())) },
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
