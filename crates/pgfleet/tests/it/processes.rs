use std::time::Duration;

use pgfleet_testkit::{eventually, TestDb};

use crate::{pgfleet, signal, spawn, stderr, wait_exit};

async fn completed(db: &TestDb) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE state = 'completed'")
            .fetch_one(&db.pool)
            .await?,
    )
}

/// A worker process is SIGKILLed with jobs in hand; another worker process runs them within
/// the rescue promise (lease + rescue interval), and SIGTERM stops it cleanly.
#[tokio::test]
async fn a_sigkilled_workers_jobs_run_again_on_another_process() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let dir = std::env::temp_dir().join(format!("pgfleet-it-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let args = [
        "worker",
        "--concurrency",
        "5",
        "--lease-secs",
        "2",
        "--ownership-ttl-secs",
        "2",
        "--poll-ms",
        "200",
        "--health-addr",
        "",
    ];
    let mut first = spawn(Some(&db.url), &args, &dir.join("first.log"), &[]);
    let out = pgfleet(
        &db.url,
        &[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 60000}"#,
            "--count",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(
        "the first worker holds 5 jobs",
        Duration::from_secs(15),
        || async {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs WHERE state = 'running'")
                    .fetch_one(&db.pool)
                    .await?;
            Ok((n == 5).then_some(()))
        },
    )
    .await?;
    signal(&first, "KILL");
    wait_exit(&mut first, Duration::from_secs(5)).await;
    // Make the rescued jobs short so the second worker can finish them.
    sqlx::query("UPDATE pgfleet.jobs SET payload = '{\"ms\": 10}'")
        .execute(&db.pool)
        .await?;
    let killed_at = tokio::time::Instant::now();
    let mut second = spawn(Some(&db.url), &args, &dir.join("second.log"), &[]);
    eventually("rescued and completed", Duration::from_secs(20), || async {
        Ok((completed(&db).await? == 5).then_some(()))
    })
    .await?;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "rescue took {took:?}");
    signal(&second, "TERM");
    let status = wait_exit(&mut second, Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let workers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.workers WHERE expires_at > now()")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(workers, 0, "the stopped worker deregistered");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub fn rand_suffix() -> String {
    format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// SIGTERM in the middle of a burn-down: the worker stops claiming, lets its in-flight jobs
/// finish, deregisters and exits 0; nothing is left running, nothing is lost, and a second
/// worker finishes the rest with every job completed on its first attempt (none ran twice).
#[tokio::test]
async fn sigterm_during_a_burn_down_loses_nothing_and_runs_nothing_twice() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let out = pgfleet(
        &db.url,
        &[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 20}"#,
            "--count",
            "400",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = std::env::temp_dir().join(format!("pgfleet-it-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let args = ["worker", "--concurrency", "20", "--health-addr", ""];
    let mut first = spawn(Some(&db.url), &args, &dir.join("first.log"), &[]);
    eventually(
        "the burn-down is under way",
        Duration::from_secs(20),
        || async { Ok((completed(&db).await? >= 60).then_some(())) },
    )
    .await?;
    signal(&first, "TERM");
    let status = wait_exit(&mut first, Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs WHERE state = 'running'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(running, 0, "in-flight jobs finished or were released");
    let done_by_first = completed(&db).await?;
    assert!(
        done_by_first < 400,
        "stopped part-way ({done_by_first} done)"
    );
    let mut second = spawn(Some(&db.url), &args, &dir.join("second.log"), &[]);
    eventually("the rest is done", Duration::from_secs(30), || async {
        Ok((completed(&db).await? == 400).then_some(()))
    })
    .await?;
    signal(&second, "TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(30))
        .await
        .success());
    let reruns: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE attempt <> 1")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(reruns, 0, "no job ran twice");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
