//! Periodic jobs across real `pgfleet worker` processes: a schedule every second with three
//! workers, one SIGKILLed midway, enqueues each tick exactly once and on time; after every
//! worker was down for 5 s, missed ticks follow each schedule's misfire policy. Schedules
//! and limits are managed with `pgfleet schedule` / `pgfleet queue limits` and shown by
//! `pgfleet status`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pgfleet_testkit::TestDb;
use serde_json::Value;

use crate::processes::rand_suffix;
use crate::{pgfleet, signal, spawn, stderr, stdout, wait_exit, Proc};

/// Each tick of `schedule` (its time) with when its job was enqueued.
async fn ticks(db: &TestDb, schedule: &str) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        // The tick the scheduler recorded, not `run_at`: a tick's job held by a killed
        // worker is rescued with `run_at` moved to the rescue.
        "SELECT (metadata->>'tick')::timestamptz AS tick, created_at \
         FROM (SELECT created_at, metadata FROM pgfleet.jobs \
           UNION ALL SELECT created_at, metadata FROM pgfleet.jobs_finished) j \
         WHERE metadata->>'schedule' = $1 ORDER BY tick",
    )
    .bind(schedule)
    .fetch_all(&db.pool)
    .await?)
}

fn worker(db: &TestDb, dir: &std::path::Path, name: &str) -> Proc {
    let args = [
        "worker",
        "--queues",
        "periodic",
        "--health-addr",
        "",
        "--lease-secs",
        "2",
        "--ownership-ttl-secs",
        "2",
    ];
    spawn(Some(&db.url), &args, &dir.join(format!("{name}.log")), &[])
}

fn put(db: &TestDb, name: &str, misfire: &[&str]) {
    let mut args = vec![
        "schedule",
        "put",
        name,
        "--cron",
        "@every 1s",
        "--kind",
        "noop",
        "--queue",
        "periodic",
        "--timezone",
        "America/New_York",
    ];
    args.extend(misfire);
    let out = pgfleet(&db.url, &args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn each_tick_runs_once_across_three_workers_with_one_sigkilled() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let dir = std::env::temp_dir().join(format!("pgfleet-sched-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let mut ws: Vec<Proc> = (0..3)
        .map(|i| worker(&db, &dir, &format!("w{i}")))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    put(
        &db,
        "every-second",
        &["--misfire", "catch-up", "--catch-up", "100"],
    );
    let began = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&ws[0], "KILL");
    wait_exit(&mut ws[0], Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ended = Utc::now();
    for w in &mut ws[1..] {
        signal(w, "TERM");
        wait_exit(w, Duration::from_secs(20)).await;
    }
    let all = ticks(&db, "every-second").await?;
    let in_run: Vec<_> = all
        .iter()
        .filter(|(t, _)| *t >= began && *t <= ended)
        .collect();
    assert!(in_run.len() >= 9, "{} ticks in 10 s: {all:?}", in_run.len());
    let mut seen = std::collections::BTreeSet::new();
    for pair in all.windows(2) {
        assert_eq!(
            (pair[1].0 - pair[0].0).num_milliseconds(),
            1000,
            "consecutive ticks, none twice, none skipped: {all:?}"
        );
    }
    for (tick, created) in &all {
        assert!(seen.insert(*tick), "tick {tick} twice");
        let late = (*created - *tick).num_milliseconds();
        assert!(late <= 1000, "tick {tick} enqueued {late} ms late: {all:?}");
    }
    // `pgfleet status` shows it with its last job.
    let status = pgfleet(&db.url, &["status", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&status))?;
    let s = &v["schedules"][0];
    assert_eq!(s["name"], "every-second");
    assert!(s["last_job_state"].is_string(), "{s}");
    Ok(())
}

#[tokio::test]
async fn missed_ticks_follow_the_policy_after_every_worker_was_down_for_5_s() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let dir = std::env::temp_dir().join(format!("pgfleet-misfire-{}", rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    put(&db, "skip", &["--misfire", "skip"]);
    put(&db, "once", &["--misfire", "run-once"]);
    put(
        &db,
        "catch-up",
        &["--misfire", "catch-up", "--catch-up", "3"],
    );
    let mut ws: Vec<Proc> = (0..2)
        .map(|i| worker(&db, &dir, &format!("a{i}")))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for w in &mut ws {
        signal(w, "KILL");
        wait_exit(w, Duration::from_secs(5)).await;
    }
    let down = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut back = worker(&db, &dir, "b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&back, "TERM");
    wait_exit(&mut back, Duration::from_secs(20)).await;

    let mut recovered = BTreeMap::new();
    for name in ["skip", "once", "catch-up"] {
        let all = ticks(&db, name).await?;
        let before = all.iter().filter(|(_, c)| *c < down).count();
        assert!(before >= 2, "{name} ticked before the outage: {all:?}");
        // The first scheduler pass after the outage enqueued these, in one transaction.
        let first_after = all
            .iter()
            .map(|(_, c)| *c)
            .filter(|c| *c > down)
            .min()
            .unwrap();
        let pass: Vec<DateTime<Utc>> = all
            .iter()
            .filter(|(_, c)| *c == first_after)
            .map(|(t, _)| *t)
            .collect();
        let last_before = all
            .iter()
            .filter(|(_, c)| *c < down)
            .map(|(t, _)| *t)
            .max()
            .unwrap();
        assert!(
            (first_after - last_before).num_milliseconds() >= 5000,
            "{name}: the outage missed ticks"
        );
        let mut distinct = all.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{name}: a tick twice");
        recovered.insert(name, (pass, first_after));
    }
    let lateness = |name: &str| -> Vec<i64> {
        let (pass, at) = &recovered[name];
        pass.iter().map(|t| (*at - *t).num_milliseconds()).collect()
    };
    // Skip: only a tick within the 1 s grace, none of the missed ones.
    assert!(
        lateness("skip").iter().all(|&l| l <= 1000),
        "skip: {:?}",
        lateness("skip")
    );
    assert!(recovered["skip"].0.len() <= 1);
    // Run once: one tick, the latest due.
    assert_eq!(recovered["once"].0.len(), 1, "{:?}", lateness("once"));
    assert!(lateness("once")[0] < 1000);
    // Catch up 3: the latest three missed ticks, consecutive.
    let c = &recovered["catch-up"].0;
    assert_eq!(c.len(), 3, "{:?}", lateness("catch-up"));
    assert_eq!((c[2] - c[0]).num_milliseconds(), 2000);
    Ok(())
}

#[tokio::test]
async fn schedule_and_limit_commands_manage_and_show_them() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    // Bad input: a clear error naming the field, nothing written.
    for (args, want) in [
        (
            &["schedule", "put", "s", "--cron", "* * *", "--kind", "k"][..],
            "cron",
        ),
        (
            &[
                "schedule",
                "put",
                "s",
                "--cron",
                "@daily",
                "--kind",
                "k",
                "--timezone",
                "Nowhere/City",
            ][..],
            "timezone",
        ),
        (
            &["queue", "limits", "q", "--concurrency", "-2"][..],
            "concurrency",
        ),
        (&["queue", "limits", "q", "--rate", "0"][..], "rate"),
    ] {
        let out = pgfleet(&db.url, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pgfleet.schedules) + (SELECT count(*) FROM pgfleet.queues)",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(n, 0, "nothing written");
    // A file applies schedules and limits; status shows both.
    let file = std::env::temp_dir().join(format!("pgfleet-decl-{}.yaml", rand_suffix()));
    std::fs::write(
        &file,
        "schedules:\n  - {name: nightly, cron: '0 3 * * *', timezone: Europe/Berlin, kind: noop}\n\
         limits:\n  emails: {concurrency: 3, rate: {per_second: 50}}\n",
    )?;
    let out = pgfleet(&db.url, &["schedule", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgfleet(&db.url, &["queue", "limits", "emails"]);
    assert!(stdout(&out).contains("concurrency 0/3"), "{}", stdout(&out));
    let out = pgfleet(&db.url, &["queue", "limits", "emails", "--fair"]);
    assert!(stdout(&out).contains("fair") && !stdout(&out).contains("concurrency 0/3"));
    let out = pgfleet(&db.url, &["schedule", "pause", "nightly"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&pgfleet(&db.url, &["status"]));
    assert!(table.contains("emails: running 0, fair"), "{table}");
    assert!(
        table.contains("nightly") && table.contains("paused"),
        "{table}"
    );
    let out = pgfleet(&db.url, &["schedule", "delete", "nightly"]);
    assert!(out.status.success());
    let out = pgfleet(&db.url, &["schedule", "delete", "nightly"]);
    assert!(!out.status.success() && stderr(&out).contains("no schedule"));
    Ok(())
}
