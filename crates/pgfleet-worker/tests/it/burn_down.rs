use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_queue::NewJob;
use pgfleet_testkit::eventually;
use pgfleet_worker::{JobError, Registry};
use rand::Rng;
use serde_json::json;

use crate::{fast_config, finished, setup, start};

#[derive(Default)]
struct Ledger {
    in_flight: HashMap<i64, String>,
    overlaps: Vec<i64>,
    successes: HashMap<i64, u32>,
    failures: HashMap<i64, u32>,
}

/// 4 workers on separate connections burn down 20,000 jobs while 10 % fail once: no job is
/// ever held by two workers at once, none is lost, each completes exactly once, and the
/// failed ones run again only after their backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_burn_down_twenty_thousand_jobs_with_failures() -> anyhow::Result<()> {
    let _one = crate::fleet::FLEET.lock().await;
    let (db, queue) = setup().await?;
    let mut rng = rand::thread_rng();
    let jobs: Vec<NewJob> = (0..20_000)
        .map(|i| {
            NewJob::new("burn", "track").payload(json!({"i": i, "fail_once": rng.gen_bool(0.1)}))
        })
        .collect();
    for chunk in jobs.chunks(5000) {
        queue.enqueue_many(chunk).await?;
    }
    let failing = jobs
        .iter()
        .filter(|j| j.payload["fail_once"] == true)
        .count() as i64;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let ledger = ledger.clone();
        let mut registry = Registry::new();
        let me = format!("w{w}");
        registry.register("track", move |job, _ctx| {
            let ledger = ledger.clone();
            let me = me.clone();
            async move {
                {
                    let mut l = ledger.lock().unwrap();
                    if l.in_flight.insert(job.id, me.clone()).is_some() {
                        l.overlaps.push(job.id);
                    }
                }
                tokio::task::yield_now().await;
                let mut l = ledger.lock().unwrap();
                l.in_flight.remove(&job.id);
                if job.payload["fail_once"] == true && job.attempt == 1 {
                    *l.failures.entry(job.id).or_default() += 1;
                    return Err(JobError::retry("planned failure"));
                }
                *l.successes.entry(job.id).or_default() += 1;
                Ok(())
            }
        });
        let mut config = fast_config(&["burn"]);
        config.concurrency = 50;
        config.lease = Duration::from_secs(30);
        workers.push(start(&db, config, registry).await?);
    }
    eventually(
        "20,000 jobs completed",
        Duration::from_secs(120),
        || async { Ok((finished(&db, "completed").await? == 20_000).then_some(())) },
    )
    .await?;
    for w in workers {
        w.stop().await?;
    }
    {
        let l = ledger.lock().unwrap();
        assert!(
            l.overlaps.is_empty(),
            "jobs held twice at once: {:?}",
            &l.overlaps[..l.overlaps.len().min(10)]
        );
        assert_eq!(l.successes.len(), 20_000, "every job succeeded");
        assert!(
            l.successes.values().all(|&n| n == 1),
            "each succeeded exactly once"
        );
        assert_eq!(l.failures.len() as i64, failing);
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(left, 0, "nothing left behind");
    // Failed jobs ran their second attempt only after the backoff (200 ms ± 10 %).
    let early: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pgfleet.jobs_finished
         WHERE jsonb_array_length(errors) = 1
           AND attempted_at < (errors->0->>'at')::timestamptz + interval '170 milliseconds'",
    )
    .fetch_one(&db.pool)
    .await?;
    let retried: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished WHERE attempt = 2")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(retried, failing);
    assert_eq!(early, 0, "a retry ran before its backoff");
    Ok(())
}
