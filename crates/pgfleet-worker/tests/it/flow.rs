//! Flow control with several workers, each on its own connection pool: a queue limit of
//! 3 holds across 4 workers of 10 slots and the queue drains; a per-key limit of 1 holds
//! while keys run side by side; a rate of 50/s holds over 10 s; a fair queue starts a
//! one-job tenant long before another tenant's backlog is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet_queue::flow::{Limits, Rate};
use pgfleet_queue::NewJob;
use pgfleet_testkit::{eventually, TestDb};
use pgfleet_worker::Registry;

use crate::{fast_config, finished, setup, start, Running};

/// What the handlers saw: how many ran at once (per key and in all) and when each started.
#[derive(Default)]
struct Seen {
    running: HashMap<String, usize>,
    max_per_key: HashMap<String, usize>,
    now: usize,
    max: usize,
    starts: Vec<(Instant, String)>,
}

/// A registry whose `work` handler sleeps `sleep` and records into `seen`.
fn tracking(seen: &Arc<Mutex<Seen>>, sleep: Duration) -> Registry {
    let mut r = Registry::new();
    let seen = seen.clone();
    r.register("work", move |job, _ctx| {
        let seen = seen.clone();
        async move {
            let key = job.partition_key.clone().unwrap_or_default();
            {
                let mut s = seen.lock().unwrap();
                s.now += 1;
                s.max = s.max.max(s.now);
                let n = s.running.entry(key.clone()).or_default();
                *n += 1;
                let n = *n;
                let m = s.max_per_key.entry(key.clone()).or_default();
                *m = (*m).max(n);
                s.starts.push((Instant::now(), key.clone()));
            }
            tokio::time::sleep(sleep).await;
            let mut s = seen.lock().unwrap();
            s.now -= 1;
            *s.running.get_mut(&key).unwrap() -= 1;
            Ok(())
        }
    });
    r
}

async fn workers(
    db: &TestDb,
    n: usize,
    queue: &str,
    registry: impl Fn() -> Registry,
) -> anyhow::Result<Vec<Running>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = fast_config(&[queue]);
        c.concurrency = 10;
        out.push(start(db, c, registry()).await?);
    }
    Ok(out)
}

async fn stop_all(ws: Vec<Running>) -> anyhow::Result<()> {
    for w in ws {
        w.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_queue_limit_of_three_holds_across_four_workers_and_the_queue_drains(
) -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    queue
        .set_limits(
            "limited",
            &Limits {
                concurrency: Some(3),
                ..Limits::default()
            },
        )
        .await?;
    queue
        .enqueue_many(&vec![NewJob::new("limited", "work"); 150])
        .await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ws = workers(&db, 4, "limited", || {
        tracking(&seen, Duration::from_millis(15))
    })
    .await?;
    // Sample the running count in the database throughout.
    let mut max_running = 0i64;
    let mut samples = 0;
    while finished(&db, "completed").await? < 150 {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgfleet.jobs WHERE queue = 'limited' AND state = 'running'",
        )
        .fetch_one(&db.pool)
        .await?;
        max_running = max_running.max(running);
        samples += 1;
        assert!(samples < 20_000, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_all(ws).await?;
    let s = seen.lock().unwrap();
    assert!(max_running <= 3, "database showed {max_running} running");
    assert!(s.max <= 3, "handlers saw {} at once", s.max);
    assert_eq!(s.max, 3, "the limit was used, not undercut");
    assert_eq!(s.starts.len(), 150, "each job ran once");
    assert!(samples > 10, "sampled throughout ({samples})");
    Ok(())
}

#[tokio::test]
async fn a_key_limit_of_one_holds_while_keys_run_side_by_side() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    queue
        .set_limits(
            "accounts",
            &Limits {
                key_concurrency: Some(1),
                ..Limits::default()
            },
        )
        .await?;
    let jobs: Vec<NewJob> = (0..60)
        .map(|i| NewJob::new("accounts", "work").partition_key(format!("acct-{}", i % 6)))
        .collect();
    queue.enqueue_many(&jobs).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ws = workers(&db, 4, "accounts", || {
        tracking(&seen, Duration::from_millis(10))
    })
    .await?;
    eventually("60 completed", Duration::from_secs(60), || async {
        Ok((finished(&db, "completed").await? == 60).then_some(()))
    })
    .await?;
    stop_all(ws).await?;
    let s = seen.lock().unwrap();
    for (key, max) in &s.max_per_key {
        assert_eq!(*max, 1, "{key} ran {max} at once");
    }
    assert_eq!(s.max_per_key.len(), 6);
    assert!(s.max > 1, "different keys ran at the same time ({})", s.max);
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_of_fifty_per_second_holds_over_ten_seconds() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let rate = Rate {
        per_second: 50.0,
        burst: Some(5),
    };
    queue
        .set_limits(
            "rated",
            &Limits {
                rate: Some(rate),
                ..Limits::default()
            },
        )
        .await?;
    queue
        .enqueue_many(&vec![NewJob::new("rated", "work"); 1_000])
        .await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ws = workers(&db, 3, "rated", || {
        tracking(&seen, Duration::from_millis(1))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(11_000)).await;
    stop_all(ws).await?;
    let s = seen.lock().unwrap();
    let first = s
        .starts
        .iter()
        .map(|(t, _)| *t)
        .min()
        .expect("jobs started");
    let window = first + Duration::from_secs(10);
    let in_window = s.starts.iter().filter(|(t, _)| *t < window).count();
    eprintln!("rate: {in_window} in 10 s");
    // 50/s for 10 s plus the burst of 5: 505, within 10 %.
    assert!(
        (455..=555).contains(&in_window),
        "{in_window} jobs started in 10 s at 50/s"
    );
    Ok(())
}

#[tokio::test]
async fn a_fair_queue_starts_a_one_job_tenant_before_another_tenants_backlog() -> anyhow::Result<()>
{
    let (db, queue) = setup().await?;
    queue
        .set_limits(
            "tenants",
            &Limits {
                fair: true,
                ..Limits::default()
            },
        )
        .await?;
    let a: Vec<NewJob> = (0..5_000)
        .map(|_| NewJob::new("tenants", "work").partition_key("tenant-a"))
        .collect();
    queue.enqueue_many(&a).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ws = workers(&db, 2, "tenants", || tracking(&seen, Duration::ZERO)).await?;
    eventually("200 of tenant-a done", Duration::from_secs(30), || async {
        Ok((finished(&db, "completed").await? >= 200).then_some(()))
    })
    .await?;
    let enqueued_b = Instant::now();
    queue
        .enqueue(NewJob::new("tenants", "work").partition_key("tenant-b"))
        .await?;
    eventually("tenant-b started", Duration::from_secs(30), || async {
        let started = seen
            .lock()
            .unwrap()
            .starts
            .iter()
            .any(|(_, k)| k == "tenant-b");
        Ok(started.then_some(()))
    })
    .await?;
    let a_between = {
        let s = seen.lock().unwrap();
        let b_at = s.starts.iter().find(|(_, k)| k == "tenant-b").unwrap().0;
        s.starts
            .iter()
            .filter(|(t, k)| k == "tenant-a" && *t >= enqueued_b && *t < b_at)
            .count()
    };
    let a_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pgfleet.jobs WHERE queue = 'tenants' AND partition_key = 'tenant-a'",
    )
    .fetch_one(&db.pool)
    .await?;
    eprintln!("fair: a_between={a_between} a_left={a_left}");
    // Two claims of two workers at most (slots plus what they hold ahead), never the backlog.
    assert!(
        a_between <= 200,
        "{a_between} of tenant-a's jobs started before tenant-b's"
    );
    assert!(
        a_left > 1_000,
        "tenant-b was not served after the backlog ({a_left} left)"
    );
    eventually("all done", Duration::from_secs(120), || async {
        Ok((finished(&db, "completed").await? == 5_001).then_some(()))
    })
    .await?;
    stop_all(ws).await?;
    Ok(())
}
