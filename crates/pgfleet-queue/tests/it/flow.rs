//! Flow control against a real PostgreSQL: claimers on separate connections never claim
//! past a queue's or a key's concurrency limit, rate limits spend tokens fleet-wide, fair
//! claims serve a one-job tenant within a turn, and bad limits write nothing.

use std::collections::HashMap;
use std::time::Duration;

use pgfleet_queue::claim::{ClaimRequest, QueueOrder};
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::flow::{Limits, Rate};
use pgfleet_queue::{NewJob, Queue, QueueError};

use crate::setup;

fn request<'a>(queues: &'a [String], n: usize, w: &'a str) -> ClaimRequest<'a> {
    ClaimRequest {
        queues,
        order: &QueueOrder::ByPriority,
        partitions: None,
        limit: n,
        worker_id: w,
        lease: Duration::from_secs(30),
    }
}

async fn enqueue_keyed(queue: &Queue, q: &str, key: &str, n: usize) -> anyhow::Result<()> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|_| NewJob::new(q, "noop").partition_key(key))
        .collect();
    for chunk in jobs.chunks(10_000) {
        queue.enqueue_many(chunk).await?;
    }
    Ok(())
}

async fn running(queue: &Queue, q: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pgfleet.jobs WHERE queue = $1 AND state = 'running'",
    )
    .bind(q)
    .fetch_one(queue.pool())
    .await?)
}

#[tokio::test]
async fn four_claimers_never_hold_more_than_the_queue_limit() -> anyhow::Result<()> {
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
        .enqueue_many(&vec![NewJob::new("limited", "noop"); 60])
        .await?;
    let queues = vec!["limited".to_string()];
    let mut tasks = Vec::new();
    for w in 0..4 {
        let q = Queue::new(db.new_pool(2).await?).await?;
        let queues = queues.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut done = 0;
            let mut held_back = 0;
            for _ in 0..400 {
                let c = q.claim_detailed(&request(&queues, 10, &worker)).await?;
                held_back += usize::from(c.held_back.is_some());
                let finished: Vec<Finished> = c
                    .jobs
                    .iter()
                    .map(|j| Finished::new(j.id, j.attempt, Outcome::Completed))
                    .collect();
                done += finished.len();
                tokio::time::sleep(Duration::from_millis(2)).await;
                q.finalize(&worker, &finished).await?;
                if done > 0 && c.jobs.is_empty() && c.held_back.is_none() {
                    break;
                }
            }
            anyhow::Ok((done, held_back))
        }));
    }
    let sampler = {
        let q = queue.clone();
        tokio::spawn(async move {
            let mut max = 0;
            for _ in 0..200 {
                max = max.max(running(&q, "limited").await?);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            anyhow::Ok(max)
        })
    };
    let mut total = 0;
    let mut held = 0;
    for t in tasks {
        let (d, h) = t.await??;
        total += d;
        held += h;
    }
    let max = sampler.await??;
    assert!(max <= 3, "running count reached {max}");
    assert_eq!(total, 60, "every job ran once");
    assert!(held > 0, "claims were held back by the limit");
    assert_eq!(queue.flow_status(Some("limited")).await?[0].running, 0);
    Ok(())
}

#[tokio::test]
async fn a_key_limit_of_one_holds_while_other_keys_run() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    queue
        .set_limits(
            "per-key",
            &Limits {
                key_concurrency: Some(1),
                ..Limits::default()
            },
        )
        .await?;
    for key in ["a", "b", "c"] {
        enqueue_keyed(&queue, "per-key", key, 5).await?;
    }
    queue
        .enqueue_many(&vec![NewJob::new("per-key", "noop"); 4])
        .await?;
    let queues = vec!["per-key".to_string()];
    let first = queue.claim_detailed(&request(&queues, 50, "w1")).await?;
    let mut per_key: HashMap<Option<String>, usize> = HashMap::new();
    for j in &first.jobs {
        *per_key.entry(j.partition_key.clone()).or_default() += 1;
    }
    for key in ["a", "b", "c"] {
        assert_eq!(per_key[&Some(key.to_string())], 1, "{per_key:?}");
    }
    assert_eq!(
        per_key[&None], 4,
        "jobs without a key are not limited per key"
    );
    assert!(
        first.held_back.is_some(),
        "keys at their limit have waiting jobs"
    );
    let again = queue.claim_detailed(&request(&queues, 50, "w2")).await?;
    assert!(
        again.jobs.is_empty(),
        "every key is at its limit: {:?}",
        again.jobs
    );
    // One of `a` finishes: exactly one more of `a` may start.
    let a = first
        .jobs
        .iter()
        .find(|j| j.partition_key.as_deref() == Some("a"))
        .unwrap();
    queue
        .finalize("w1", &[Finished::new(a.id, a.attempt, Outcome::Completed)])
        .await?;
    let next = queue.claim_detailed(&request(&queues, 50, "w2")).await?;
    assert_eq!(next.jobs.len(), 1);
    assert_eq!(next.jobs[0].partition_key.as_deref(), Some("a"));
    Ok(())
}

#[tokio::test]
async fn a_fair_queue_serves_a_one_job_tenant_within_a_turn() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    queue
        .set_limits(
            "fair",
            &Limits {
                fair: true,
                ..Limits::default()
            },
        )
        .await?;
    enqueue_keyed(&queue, "fair", "tenant-a", 5_000).await?;
    let queues = vec!["fair".to_string()];
    // A single tenant gets the whole claim.
    let solo = queue.claim_detailed(&request(&queues, 40, "w")).await?;
    assert_eq!(solo.jobs.len(), 40);
    enqueue_keyed(&queue, "fair", "tenant-b", 1).await?;
    let mut claims = 0;
    loop {
        claims += 1;
        let c = queue.claim_detailed(&request(&queues, 40, "w")).await?;
        if c.jobs
            .iter()
            .any(|j| j.partition_key.as_deref() == Some("tenant-b"))
        {
            break;
        }
        assert!(claims < 3, "tenant-b waited {claims} claims");
    }
    // Keyless and keyed jobs share a round: each key's first job before anyone's second.
    for key in ["x", "y", "z"] {
        enqueue_keyed(&queue, "fair", key, 3).await?;
    }
    let round = queue.claim_detailed(&request(&queues, 4, "w")).await?;
    let keys: Vec<_> = round
        .jobs
        .iter()
        .map(|j| j.partition_key.clone().unwrap())
        .collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four keys, one job each: {keys:?}");
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_spends_tokens_across_claimers() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let rate = Rate {
        per_second: 20.0,
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
        .enqueue_many(&vec![NewJob::new("rated", "noop"); 200])
        .await?;
    let queues = vec!["rated".to_string()];
    let other = Queue::new(db.new_pool(2).await?).await?;
    let started = std::time::Instant::now();
    let mut claimed = 0;
    let mut held = None;
    while started.elapsed() < Duration::from_millis(500) {
        for q in [&queue, &other] {
            let c = q.claim_detailed(&request(&queues, 100, "w")).await?;
            claimed += c.jobs.len();
            held = held.or(c.held_back);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // The burst plus what the rate refilled, never more.
    assert!(
        claimed as f64 <= 5.0 + 20.0 * secs + 1.0,
        "{claimed} in {secs:.2}s"
    );
    assert!(claimed >= 5, "{claimed}");
    let wait = held.expect("the limit held work back");
    assert!(
        wait <= Duration::from_millis(50),
        "next token within 1/20 s: {wait:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field_and_nothing_is_written() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let bad = [
        (
            Limits {
                concurrency: Some(-3),
                ..Limits::default()
            },
            "concurrency",
        ),
        (
            Limits {
                key_concurrency: Some(0),
                ..Limits::default()
            },
            "key_concurrency",
        ),
        (
            Limits {
                rate: Some(Rate {
                    per_second: 0.0,
                    burst: None,
                }),
                ..Limits::default()
            },
            "rate",
        ),
    ];
    for (limits, want) in bad {
        match queue.set_limits("q", &limits).await {
            Err(QueueError::Invalid { field, .. }) => assert_eq!(field, want),
            other => panic!("expected invalid {want}, got {other:?}"),
        }
    }
    assert!(queue.flow_status(None).await?.is_empty());
    // Limits can be lifted: the queue is then claimed by the plain statement again.
    queue
        .set_limits(
            "q",
            &Limits {
                concurrency: Some(1),
                ..Limits::default()
            },
        )
        .await?;
    assert_eq!(queue.flow_status(None).await?.len(), 1);
    queue.set_limits("q", &Limits::default()).await?;
    assert!(queue.flow_status(None).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_per_key_rate_limits_each_key_and_not_the_others() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let rate = Rate {
        per_second: 10.0,
        burst: Some(2),
    };
    queue
        .set_limits(
            "per-key-rate",
            &Limits {
                key_rate: Some(rate),
                ..Limits::default()
            },
        )
        .await?;
    enqueue_keyed(&queue, "per-key-rate", "slow-a", 100).await?;
    enqueue_keyed(&queue, "per-key-rate", "slow-b", 100).await?;
    queue
        .enqueue_many(&vec![NewJob::new("per-key-rate", "noop"); 30])
        .await?;
    let queues = vec!["per-key-rate".to_string()];
    let other = Queue::new(db.new_pool(2).await?).await?;
    let started = std::time::Instant::now();
    let mut per_key: HashMap<Option<String>, usize> = HashMap::new();
    while started.elapsed() < Duration::from_millis(600) {
        for q in [&queue, &other] {
            let c = q.claim_detailed(&request(&queues, 20, "w")).await?;
            for j in c.jobs {
                *per_key.entry(j.partition_key).or_default() += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let most = (2.0 + 10.0 * secs + 1.0) as usize;
    for key in ["slow-a", "slow-b"] {
        let n = per_key[&Some(key.to_string())];
        assert!(
            (2..=most).contains(&n),
            "{key}: {n} in {secs:.2}s (at most {most})"
        );
    }
    assert_eq!(
        per_key[&None], 30,
        "jobs without a key are not rate limited per key"
    );
    Ok(())
}
