use std::collections::HashSet;
use std::time::Duration;

use pgfleet_queue::claim::{ClaimRequest, CLAIM_SQL};
use pgfleet_queue::{JobState, NewJob};

use crate::{claim, setup};

#[tokio::test]
async fn higher_priority_runs_first_then_oldest_first() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let low = queue.enqueue(NewJob::new("q", "noop").priority(5)).await?;
    let normal_a = queue.enqueue(NewJob::new("q", "noop")).await?;
    let normal_b = queue.enqueue(NewJob::new("q", "noop")).await?;
    let urgent = queue
        .enqueue(NewJob::new("other", "noop").priority(0))
        .await?;
    let got: Vec<i64> = claim(&queue, &["q", "other"], 10, "w")
        .await?
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![urgent.id, normal_a.id, normal_b.id, low.id]);
    Ok(())
}

#[tokio::test]
async fn claim_takes_only_requested_queues_and_partitions_and_sets_a_lease() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..200)
        .map(|i| {
            NewJob::new(if i % 2 == 0 { "a" } else { "b" }, "noop").partition_key(i.to_string())
        })
        .collect();
    queue.enqueue_many(&jobs).await?;
    let queues = vec!["a".to_string()];
    let parts: Vec<i16> = vec![1, 3, 5];
    let got = queue
        .claim(&ClaimRequest {
            order: &pgfleet_queue::claim::QueueOrder::ByPriority,
            queues: &queues,
            partitions: Some(&parts),
            limit: 1000,
            worker_id: "w1",
            lease: Duration::from_secs(20),
        })
        .await?;
    assert!(!got.is_empty());
    for j in &got {
        assert_eq!(j.queue, "a");
        assert!(parts.contains(&j.partition));
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.attempt, 1);
        assert_eq!(j.attempted_by.as_deref(), Some("w1"));
        let lease = j.lease_until.unwrap() - j.attempted_at.unwrap();
        assert!((19_000..=21_000).contains(&lease.num_milliseconds()));
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..3000).map(|_| NewJob::new("q", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    let mut tasks = Vec::new();
    for w in 0..6 {
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&q, &["q"], 50, &format!("w{w}")).await?;
                if got.is_empty() {
                    return anyhow::Ok(mine);
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await?? {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 3000);
    Ok(())
}

#[tokio::test]
async fn paused_queues_are_not_claimed_until_resumed() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    queue.enqueue(NewJob::new("mail", "noop")).await?;
    queue.enqueue(NewJob::new("push", "noop")).await?;
    queue.pause_queue("mail").await?;
    assert_eq!(queue.paused_queues().await?, vec!["mail".to_string()]);
    let got = claim(&queue, &["mail", "push"], 10, "w").await?;
    assert_eq!(
        got.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>(),
        vec!["push"]
    );
    queue.resume_queue("mail").await?;
    let got = claim(&queue, &["mail", "push"], 10, "w").await?;
    assert_eq!(
        got.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>(),
        vec!["mail"]
    );
    let stats = queue.stats().await?;
    assert!(stats.iter().all(|s| !s.paused));
    Ok(())
}

/// The claim must be an ordered index scan of the claim index (no sort, no seq scan),
/// whatever the backlog. The plan is recorded in ARCHITECTURE.md.
#[tokio::test]
async fn claim_is_served_by_the_claim_index() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..20_000)
        .map(|i| NewJob::new(if i % 10 == 0 { "b" } else { "a" }, "noop"))
        .collect();
    for chunk in jobs.chunks(10_000) {
        queue.enqueue_many(chunk).await?;
    }
    sqlx::query("ANALYZE pgfleet.jobs")
        .execute(&db.pool)
        .await?;
    let sql = format!("EXPLAIN (COSTS OFF) {CLAIM_SQL}");
    let plan: Vec<String> = sqlx::query_scalar(&sql)
        .bind(vec!["a".to_string(), "b".to_string()])
        .bind(Some(vec![0i16, 1, 2, 3]))
        .bind(100i64)
        .bind("w")
        .bind(30_000f64)
        .bind(vec![100i32, 100])
        .bind(false)
        .fetch_all(&db.pool)
        .await?;
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using jobs_claim_idx"), "{plan}");
    assert!(plan.contains("LockRows"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(!plan.contains("Hash Join"), "{plan}");
    assert!(plan.contains("Index Scan using jobs_pkey"), "{plan}");
    Ok(())
}

#[tokio::test]
async fn strict_and_weighted_queue_orders() -> anyhow::Result<()> {
    use pgfleet_queue::claim::QueueOrder;
    let (_db, queue) = setup().await?;
    for q in ["high", "default", "low"] {
        let jobs: Vec<NewJob> = (0..100).map(|_| NewJob::new(q, "noop")).collect();
        queue.enqueue_many(&jobs).await?;
    }
    let queues: Vec<String> = ["high", "default", "low"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let take = |order: QueueOrder, limit: usize| {
        let (queue, queues) = (queue.clone(), queues.clone());
        async move {
            let got = queue
                .claim(&ClaimRequest {
                    order: &order,
                    queues: &queues,
                    partitions: None,
                    limit,
                    worker_id: "w",
                    lease: Duration::from_secs(30),
                })
                .await?;
            let mut per = std::collections::BTreeMap::new();
            for j in got {
                *per.entry(j.queue).or_insert(0) += 1;
            }
            anyhow::Ok(per)
        }
    };
    // Weighted 6/3/1: one claim of 50 takes 30 / 15 / 5.
    let per = take(QueueOrder::Weighted(vec![6, 3, 1]), 50).await?;
    assert_eq!((per["high"], per["default"], per["low"]), (30, 15, 5));
    // Strict: high first, and the rest only when high is drained.
    let per = take(QueueOrder::Strict, 80).await?;
    assert_eq!(per.get("high"), Some(&70));
    assert_eq!(per.get("default"), Some(&10));
    assert_eq!(per.get("low"), None);
    Ok(())
}
