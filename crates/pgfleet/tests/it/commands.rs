use pgfleet_testkit::TestDb;
use serde_json::Value;

use crate::{pgfleet, stderr, stdout};

#[tokio::test]
async fn migrate_enqueue_and_status() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(&db.url, &["migrate", "--partitions", "8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("8 partitions"));
    let out = pgfleet(
        &db.url,
        &["enqueue", "noop", "--count", "50", "--queue", "mail"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgfleet(
        &db.url,
        &[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 5}"#,
            "--unique-key",
            "k1",
        ],
    );
    assert!(stdout(&out).starts_with("job "), "{}", stdout(&out));
    let again = pgfleet(&db.url, &["enqueue", "sleep", "--unique-key", "k1"]);
    assert!(
        stdout(&again).contains("already existed"),
        "{}",
        stdout(&again)
    );
    let status = pgfleet(&db.url, &["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let v: Value = serde_json::from_str(&stdout(&status))?;
    let mail = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "mail")
        .unwrap();
    assert_eq!(mail["total"]["available"], 50);
    let table = pgfleet(&db.url, &["status"]);
    assert!(stdout(&table).contains("mail"));
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_writes_nothing() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    assert!(pgfleet(&db.url, &["migrate"]).status.success());
    let cases: [(&[&str], &str); 4] = [
        (
            &["enqueue", "noop", "--payload", "{oops"],
            "invalid payload",
        ),
        (
            &["enqueue", "noop", "--max-attempts", "-2"],
            "invalid max_attempts",
        ),
        (
            &["enqueue", "noop", "--queue", "has space"],
            "invalid queue",
        ),
        (&["enqueue", "noop", "--priority", "12"], "invalid priority"),
    ];
    for (args, expected) in cases {
        let out = pgfleet(&db.url, args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"));
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(n, 0);
    let unreachable = pgfleet("postgres://postgres@127.0.0.1:1/none", &["status"]);
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("cannot connect to PostgreSQL"),
        "{}",
        stderr(&unreachable)
    );
    Ok(())
}

/// The benchmark runs end to end and reports every number it promises (speed itself is
/// judged from `pgfleet bench` runs, not here).
#[tokio::test]
async fn bench_reports_every_number_with_its_baseline() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(
        &db.url,
        &[
            "bench",
            "--jobs",
            "3000",
            "--concurrency",
            "100",
            "--latency-rate",
            "100",
            "--latency-secs",
            "1",
            "--enqueue-secs",
            "1",
            "--enqueue-callers",
            "2",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim())?;
    for key in [
        "burn_down_jobs_per_sec",
        "burn_down_2_processes_jobs_per_sec",
        "burn_down_2_processes_vs_one",
        "ceiling_jobs_per_sec",
        "enqueue_jobs_per_sec",
        "raw_insert_per_sec",
    ] {
        assert!(v[key].as_f64().unwrap_or(0.0) > 0.0, "{key} in {v}");
    }
    assert_eq!(v["burn_down_2_processes_slots"], 10, "the default slots");
    for p in ["p50", "p95", "p99"] {
        assert!(
            v["latency_ms"][p].as_f64().unwrap_or(0.0) > 0.0,
            "{p} in {v}"
        );
    }
    assert_eq!(v["latency_ms"]["samples"], 100);
    assert!(v["notifications_sent"].as_u64().unwrap_or(0) > 0);
    assert!(stderr(&out).contains("[bench]"), "progress goes to stderr");
    Ok(())
}

/// `pgfleet bench fleet` starts worker processes of this binary: every fleet size drains
/// the whole backlog exactly once (the command fails otherwise), shares are fractions, and
/// the join/leave phase serves every job.
#[tokio::test]
async fn bench_fleet_reports_rates_shares_and_join_leave_latency() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(
        &db.url,
        &[
            "bench",
            "fleet",
            "--jobs",
            "3000",
            "--processes",
            "1,3",
            "--latency-rate",
            "100",
            "--join-leave-secs",
            "3",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim())?;
    assert!(
        v["ceiling_jobs_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    let fleet = v["fleet"].as_array().cloned().unwrap_or_default();
    assert_eq!(fleet.len(), 2, "{v}");
    assert_eq!(fleet[0]["processes"], 1);
    assert_eq!(
        fleet[0]["min_share"], 1.0,
        "one process ran everything: {v}"
    );
    assert_eq!(fleet[1]["processes"], 3);
    for run in &fleet {
        assert!(run["jobs_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
        let (min, max) = (
            run["min_share"].as_f64().unwrap_or(-1.0),
            run["max_share"].as_f64().unwrap_or(-1.0),
        );
        assert!(0.0 <= min && min <= max && max <= 1.0, "{v}");
    }
    let jl = &v["join_leave"];
    assert_eq!(
        jl["jobs"], 300,
        "every job of the join/leave phase ran: {v}"
    );
    for key in ["p50_ms", "p99_ms", "max_ms"] {
        assert!(jl[key].as_f64().unwrap_or(-1.0) >= 0.0, "{key} in {v}");
    }
    assert!(stdout(&out).contains("\"fleet\""));
    Ok(())
}

#[tokio::test]
async fn bench_ingest_reports_throughput_latency_and_its_baseline() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(
        &db.url,
        &[
            "bench",
            "ingest",
            "--ingest-secs",
            "1",
            "--enqueue-secs",
            "1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim())?;
    for key in [
        "ingest_webhooks_per_sec",
        "raw_commits_per_sec",
        "ingest_vs_raw_commits",
    ] {
        assert!(v[key].as_f64().unwrap_or(0.0) > 0.0, "{key} in {v}");
    }
    assert!(
        v["latency_ms_at_1000"]["p99"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    assert_eq!(v["errors"], 0, "{v}");
    Ok(())
}

#[tokio::test]
async fn bench_push_reports_rates_crypto_share_and_its_baseline() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(
        &db.url,
        &[
            "bench",
            "push",
            "--ingest-secs",
            "1",
            "--push-subscriptions",
            "200",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim())?;
    for key in [
        "baseline_posts_per_sec",
        "send_pushes_per_sec",
        "send_vs_baseline",
        "crypto_us_per_push",
        "end_to_end_deliveries_per_sec",
    ] {
        assert!(v[key].as_f64().unwrap_or(0.0) > 0.0, "{key} in {v}");
    }
    let share = v["crypto_share_of_cpu"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{v}");
    assert_eq!(v["end_to_end_failed"], 0, "{v}");
    Ok(())
}

#[test]
fn vapid_generate_prints_a_usable_key_pair() {
    let out = crate::pgfleet(
        "",
        &["vapid", "generate", "--subject", "mailto:ops@example.org"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
            .to_owned()
    };
    let private = var("PGFLEET_VAPID_PRIVATE_KEY");
    let public = var("PGFLEET_VAPID_PUBLIC_KEY");
    assert_eq!(var("PGFLEET_VAPID_SUBJECT"), "mailto:ops@example.org");
    // The printed pair is what the configuration takes, and it matches.
    let keys =
        pgfleet_push::VapidKeys::from_base64url(&private, Some(&public), "mailto:ops@example.org")
            .unwrap();
    assert_eq!(keys.public_key(), public);
    assert_eq!(public.len(), 87, "65 bytes, base64url");
    let bad = crate::pgfleet("", &["vapid", "generate", "--subject", "ops"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("PGFLEET_VAPID_SUBJECT"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test]
async fn bench_long_tx_reports_throughput_and_dead_tuples_per_phase() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let out = pgfleet(
        &db.url,
        &[
            "bench",
            "long-tx",
            "--long-tx-secs",
            "3",
            "--long-tx-rate",
            "400",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim())?;
    for phase in ["before", "during", "after"] {
        assert!(
            v["jobs_per_sec"][phase].as_f64().unwrap_or(0.0) > 0.0,
            "{phase}: {v}"
        );
        assert!(v["dead_tuples"][phase].as_i64().is_some(), "{v}");
    }
    assert!(v["during_vs_before"].as_f64().unwrap() > 0.0, "{v}");
    Ok(())
}
