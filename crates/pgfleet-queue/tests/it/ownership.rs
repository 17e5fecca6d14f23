use std::collections::BTreeSet;
use std::time::Duration;

use pgfleet_queue::ownership::{rendezvous_partitions, WorkerInfo};
use pgfleet_queue::Queue;
use pgfleet_testkit::eventually;

use crate::setup;

fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        pool: "pool-a".into(),
        queues: vec!["q".into()],
        concurrency: 4,
    }
}

async fn converge(
    queue: &Queue,
    workers: &[WorkerInfo],
    ttl: Duration,
) -> anyhow::Result<Vec<Vec<i16>>> {
    let ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
    let want: Vec<Vec<i16>> = ids
        .iter()
        .map(|id| rendezvous_partitions(id, &ids, queue.partitions()))
        .collect();
    eventually("ownership converges", Duration::from_secs(10), || async {
        let mut sets = Vec::new();
        for w in workers {
            sets.push(queue.rebalance(w, ttl).await?);
        }
        Ok((sets == want).then_some(sets))
    })
    .await
}

#[tokio::test]
async fn three_workers_own_disjoint_covering_sets_and_take_over_when_one_dies() -> anyhow::Result<()>
{
    let (_db, queue) = setup().await?;
    let ttl = Duration::from_millis(1500);
    let ws = vec![worker("w-a"), worker("w-b"), worker("w-c")];
    let sets = converge(&queue, &ws, ttl).await?;
    let total: usize = sets.iter().map(Vec::len).sum();
    assert_eq!(total, 16, "disjoint: {sets:?}");
    assert!(sets.iter().all(|s| !s.is_empty()), "{sets:?}");
    let leases = queue.partition_leases(Some("pool-a")).await?;
    assert_eq!(leases.len(), 16);
    // w-c dies (no deregister): its partitions move once its registration and leases expire.
    let dead: BTreeSet<i16> = sets[2].iter().copied().collect();
    let started = tokio::time::Instant::now();
    let survivors = &ws[..2];
    let sets = converge(&queue, survivors, ttl).await?;
    let waited = started.elapsed();
    assert!(waited <= ttl + Duration::from_secs(2), "took {waited:?}");
    let total: usize = sets.iter().map(Vec::len).sum();
    assert_eq!(total, 16);
    let leases = queue.partition_leases(Some("pool-a")).await?;
    assert!(leases.iter().all(|l| l.worker_id != "w-c"));
    assert!(dead
        .iter()
        .all(|p| leases.iter().any(|l| l.partition == *p)));
    // A graceful stop hands partitions over at once.
    queue.deregister("w-b").await?;
    let sets = converge(&queue, &ws[..1], ttl).await?;
    assert_eq!(sets[0].len(), 16);
    assert_eq!(queue.workers(Some("pool-a")).await?.len(), 1);
    Ok(())
}

/// A worker whose LISTEN backend is gone (its process died) is not live, whatever its
/// registration's expiry says; a live backend keeps it live.
#[tokio::test]
async fn a_worker_whose_listener_backend_is_gone_is_not_live() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let ttl = Duration::from_secs(60);
    let mut listener = db.pool.acquire().await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *listener)
        .await?;
    queue.heartbeat(&worker("w-a"), Some(pid), ttl).await?;
    let live = queue.heartbeat(&worker("w-b"), None, ttl).await?;
    assert_eq!(live, vec!["w-a".to_string(), "w-b".to_string()]);
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await?;
    assert!(killed);
    drop(listener);
    eventually("w-a is no longer live", Duration::from_secs(5), || async {
        let live = queue.live_workers("pool-a").await?;
        Ok((live == vec!["w-b".to_string()]).then_some(()))
    })
    .await?;
    // w-b takes every partition at once, w-a's leases included.
    let held = queue.rebalance(&worker("w-b"), ttl).await?;
    assert_eq!(held.len(), 16);
    Ok(())
}

/// A leaving worker's partitions are taken by the others at their next rebalance, without
/// waiting for its leases to expire; until then it still holds them.
#[tokio::test]
async fn a_leaving_workers_partitions_are_taken_at_once() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let ttl = Duration::from_secs(60);
    let ws = vec![worker("w-a"), worker("w-b")];
    let sets = converge(&queue, &ws, ttl).await?;
    let b_had = sets[1].len() as i64;
    assert!(b_had > 0);
    assert_eq!(queue.leases_held("w-b").await?, b_had);
    queue.leave("w-b").await?;
    assert_eq!(queue.live_workers("pool-a").await?, vec!["w-a".to_string()]);
    assert_eq!(queue.leases_held("w-b").await?, b_had, "held until taken");
    let held = queue.rebalance(&ws[0], ttl).await?;
    assert_eq!(held.len(), 16, "w-a took everything at once");
    assert_eq!(queue.leases_held("w-b").await?, 0);
    Ok(())
}
