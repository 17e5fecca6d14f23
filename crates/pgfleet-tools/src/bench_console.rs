//! `pgfleet bench console`: how fast the console's job list answers on a large history.
//!
//! Fills a fresh database with `--finished` finished jobs (default 1,000,000: 5 queues, 20
//! kinds, 94 % completed, 5 % discarded with an error, 1 % cancelled, 30 % with one of 1,000
//! partition keys, finished over the last 7 days in id order) and 10,000 waiting jobs, runs
//! `VACUUM ANALYZE`, then asks each list question the console asks (newest first, 50 a page,
//! through the library's `search_jobs`, the statement the API runs) `--console-runs` times,
//! half of them for the first page and half for the next:
//! p50 and p95 per question, p95 over all of them (target < 200 ms), each beside the
//! unfiltered newest page measured in the same run (the floor: a primary-key scan). With
//! `--explain`, prints each question's `EXPLAIN (ANALYZE, BUFFERS)`.

use std::time::Instant;

use chrono::{Duration, Utc};
use pgfleet_queue::admin::{JobFilter, PageRequest, StateFilter};
use pgfleet_queue::{JobState, Queue};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::bench::{percentile, progress, ratio, BenchArgs};
use pgfleet_app::database::connect_pool;

/// The questions, named as the report names them.
fn questions(now: chrono::DateTime<Utc>) -> Vec<(&'static str, JobFilter)> {
    let st = |s: &[JobState]| s.iter().map(|s| StateFilter::Is(*s)).collect::<Vec<_>>();
    vec![
        ("newest (no filter)", JobFilter::default()),
        (
            "discarded",
            JobFilter {
                states: st(&[JobState::Discarded]),
                ..Default::default()
            },
        ),
        (
            "failed of one kind",
            JobFilter {
                states: st(&[JobState::Retryable, JobState::Discarded]),
                kind: Some("kind_7".into()),
                ..Default::default()
            },
        ),
        (
            "completed in one queue",
            JobFilter {
                states: st(&[JobState::Completed]),
                queue: Some("mail".into()),
                ..Default::default()
            },
        ),
        (
            "one kind",
            JobFilter {
                kind: Some("kind_13".into()),
                ..Default::default()
            },
        ),
        (
            "one partition key",
            JobFilter {
                partition_key: Some("tenant-42".into()),
                ..Default::default()
            },
        ),
        (
            "last hour",
            JobFilter {
                from: Some(now - Duration::hours(1)),
                ..Default::default()
            },
        ),
        (
            "one hour 3 days ago",
            JobFilter {
                from: Some(now - Duration::days(3)),
                to: Some(now - Duration::days(3) + Duration::hours(1)),
                ..Default::default()
            },
        ),
        (
            "text in payloads (common)",
            JobFilter {
                text: Some("@example.com".into()),
                ..Default::default()
            },
        ),
        (
            "text in errors, discarded",
            JobFilter {
                states: st(&[JobState::Discarded]),
                text: Some("HTTP 503".into()),
                ..Default::default()
            },
        ),
        (
            "text one job has, one hour",
            JobFilter {
                text: Some("ord_000999000".into()),
                from: Some(now - Duration::hours(1)),
                ..Default::default()
            },
        ),
        (
            "text one job has, last day",
            JobFilter {
                text: Some("ord_000777777".into()),
                from: Some(now - Duration::days(1)),
                ..Default::default()
            },
        ),
    ]
}

/// Fills the history: `n` finished jobs and 10,000 waiting ones.
async fn fill(pool: &sqlx::PgPool, n: usize) -> anyhow::Result<()> {
    let chunk = 200_000;
    let mut start = 1;
    while start <= n {
        let end = (start + chunk - 1).min(n);
        progress(&format!("finished jobs {start}..{end} of {n} ..."));
        sqlx::query(
            r#"
INSERT INTO pgfleet.jobs_finished (id, queue, kind, partition, priority, state, payload, metadata,
    attempt, max_attempts, run_at, attempted_at, attempted_by, errors, created_at, finalized_at,
    partition_key)
SELECT i, (ARRAY['default', 'mail', 'webhooks', 'push', 'reports'])[1 + i % 5],
    'kind_' || (i % 20), i % 16, 1,
    (CASE WHEN (i / 7) % 100 < 94 THEN 'completed' WHEN (i / 7) % 100 < 99 THEN 'discarded' ELSE 'cancelled' END)::pgfleet.job_state,
    jsonb_build_object('user_id', i % 50000, 'email', 'user' || (i % 50000) || '@example.com',
        'order', 'ord_' || lpad(i::text, 9, '0')),
    '{}', CASE WHEN (i / 7) % 100 BETWEEN 94 AND 98 THEN 3 ELSE 1 END, 3, t, t, 'bench-worker-' || (i % 8),
    CASE WHEN (i / 7) % 100 BETWEEN 94 AND 98 THEN jsonb_build_array(jsonb_build_object('attempt', 3,
        'at', t, 'kind', 'error', 'error', 'upstream answered HTTP 503 for order ' || i)) ELSE '[]' END,
    t - interval '2 seconds', t,
    CASE WHEN i % 10 < 3 THEN 'tenant-' || (i % 1000) END
FROM (SELECT i, now() - interval '7 days' + (i::float8 / $2) * interval '7 days' AS t
      FROM generate_series($1::bigint, $3::bigint) AS i) s
"#,
        )
        .bind(start as i64)
        .bind(n as f64)
        .bind(end as i64)
        .execute(pool)
        .await?;
        start = end + 1;
    }
    sqlx::query("SELECT setval(pg_get_serial_sequence('pgfleet.jobs', 'id'), $1)")
        .bind(n as i64 + 1)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO pgfleet.jobs (queue, kind, partition, payload, run_at) \
         SELECT 'mail', 'kind_' || (i % 20), i % 16, jsonb_build_object('i', i), \
         now() + (i % 2) * interval '1 hour' FROM generate_series(1, 10000) AS i",
    )
    .execute(pool)
    .await?;
    progress("VACUUM ANALYZE ...");
    sqlx::query("VACUUM ANALYZE pgfleet.jobs_finished")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(pool)
        .await?;
    Ok(())
}

/// Runs the console suite against the fresh database (`options`).
///
/// # Errors
/// When the database fails.
pub async fn bench_console(
    args: &BenchArgs,
    options: PgConnectOptions,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options, 4).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    fill(&pool, args.finished).await?;
    let now = Utc::now();
    let runs = args.console_runs.max(1);
    let mut results = Vec::new();
    let mut all = Vec::new();
    // Every question but the day-wide search for one job's text, which reads every job
    // finished that day (reported on its own).
    let mut bounded = Vec::new();
    let mut floor_p50 = 0.0;
    for (name, filter) in questions(now) {
        // Half the runs on the first page, half on the next one (the cursor the first
        // page gave, as the console's "Next page" sends it; the first page again when it
        // was the last).
        let mut ms = Vec::with_capacity(runs);
        let mut rows = 0;
        let mut next = None;
        for r in 0..runs {
            let page = PageRequest {
                newest_first: true,
                cursor: if r % 2 == 1 { next } else { None },
                limit: 50,
            };
            let t = Instant::now();
            let jobs = queue.search_jobs(&filter, &page).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            rows = jobs.len();
            if r % 2 == 0 {
                // The console offers a next page only after a full one.
                next = (jobs.len() == 50)
                    .then(|| jobs.last().map(|j| j.id))
                    .flatten();
            }
        }
        ms.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
        if results.is_empty() {
            floor_p50 = p50;
        }
        all.extend_from_slice(&ms);
        if name != "text one job has, last day" {
            bounded.extend_from_slice(&ms);
        }
        progress(&format!(
            "{name}: p50 {p50:.1} ms, p95 {p95:.1} ms ({rows} rows)"
        ));
        let mut entry = json!({
            "question": name, "p50_ms": round1(p50), "p95_ms": round1(p95),
            "p50_vs_newest": ratio(p50, floor_p50), "rows_last_page": rows,
        });
        if args.explain {
            let plan = queue
                .explain_search(
                    &filter,
                    &PageRequest {
                        newest_first: true,
                        cursor: None,
                        limit: 50,
                    },
                )
                .await?;
            entry["plan"] = json!(plan);
        }
        results.push(entry);
    }
    all.sort_by(f64::total_cmp);
    bounded.sort_by(f64::total_cmp);
    let t = Instant::now();
    let count = queue
        .count_jobs(&JobFilter {
            states: vec![StateFilter::Is(JobState::Discarded)],
            kind: Some("kind_7".into()),
            ..Default::default()
        })
        .await?;
    let count_ms = t.elapsed().as_secs_f64() * 1000.0;
    queue.close().await;
    pool.close().await;
    Ok(json!({
        "finished": args.finished, "runs": runs, "questions": results,
        "p95_all_ms": round1(percentile(&all, 0.95)), "target_ms": 200,
        "p95_but_day_wide_text_ms": round1(percentile(&bounded, 0.95)),
        "count_discarded_of_one_kind": count, "count_ms": round1(count_ms),
    }))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Prints the report.
pub fn print_console(r: &serde_json::Value) {
    println!(
        "pgfleet bench console ({} finished jobs, {} runs per question, 50 a page, newest first; PostgreSQL {} via {})",
        r["finished"], r["runs"],
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    for q in r["questions"].as_array().into_iter().flatten() {
        println!(
            "  {:<30} p50 {:>7} ms  p95 {:>7} ms  p50 vs newest page {}",
            q["question"].as_str().unwrap_or("?"),
            q["p50_ms"],
            q["p95_ms"],
            q["p50_vs_newest"]
        );
        for line in q["plan"].as_array().into_iter().flatten() {
            println!("      {}", line.as_str().unwrap_or_default());
        }
    }
    println!(
        "  p95 over every question: {} ms (target < {} ms)",
        r["p95_all_ms"], r["target_ms"]
    );
    println!(
        "  p95 over every question but the day-wide search for one job's text: {} ms",
        r["p95_but_day_wide_text_ms"]
    );
    println!(
        "  count for a bulk confirmation (discarded of one kind: {}): {} ms",
        r["count_discarded_of_one_kind"], r["count_ms"]
    );
}
