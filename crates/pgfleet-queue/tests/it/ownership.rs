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
