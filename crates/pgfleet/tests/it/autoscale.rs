//! Local autoscaling end to end: `pgfleet dev --pools DIR` runs a WorkerPool (min 1, max 4)
//! with the controller's policy on a real PostgreSQL; a burst scales it up, the backlog
//! drains, and it scales back down. `pgfleet status` shows the pool.

use std::time::Duration;

use pgfleet_testkit::eventually;
use serde_json::{json, Value};

use crate::{signal, wait_exit, BIN};

const POOL: &str = r#"
apiVersion: pgfleet.dev/v1alpha1
kind: WorkerPool
metadata:
  name: burst
spec:
  image: pgfleet:local
  queues:
    - name: burst
  concurrency: 4
  minReplicas: 1
  maxReplicas: 4
  autoscaling:
    targetBacklogPerReplica: 100
    targetLagSeconds: 5
    scaleDownStabilizationSeconds: 2
    maxStep: 4
    pollSeconds: 1
  database:
    secretName: unused-locally
"#;

#[tokio::test]
async fn a_local_pool_scales_up_under_a_burst_drains_and_scales_down() -> anyhow::Result<()> {
    let crate::Dev {
        proc: mut dev,
        base,
        data,
        ..
    } = crate::start_dev_with("0", |dir| {
        let pools = dir.join("pools");
        std::fs::create_dir_all(&pools).unwrap();
        std::fs::write(pools.join("burst.yaml"), POOL).unwrap();
        vec!["--pools".into(), pools.to_string_lossy().into_owned()]
    })
    .await?;
    let url = std::fs::read_to_string(data.join("database-url"))?;
    let db = sqlx::PgPool::connect(url.trim()).await?;
    let pool_state = || async {
        let row: Option<(i32, i32, i64)> = sqlx::query_as(
            "SELECT desired, actual, backlog FROM pgfleet.pools WHERE name = 'burst'",
        )
        .fetch_optional(&db)
        .await?;
        anyhow::Ok(row)
    };
    eventually(
        "the pool at its minimum",
        Duration::from_secs(20),
        || async { Ok((pool_state().await? == Some((1, 1, 0))).then_some(())) },
    )
    .await?;

    let key = std::fs::read_to_string(data.join("dev-api-key"))?;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let jobs: Vec<Value> = (0..1000)
            .map(|_| json!({"queue": "burst", "kind": "sleep", "payload": {"ms": 50}}))
            .collect();
        let r = http
            .post(format!("{base}/v1/jobs/batch"))
            .bearer_auth(key.trim())
            .json(&json!({"jobs": jobs}))
            .send()
            .await?;
        assert_eq!(r.status(), 201);
    }
    eventually(
        "scaled up to 4 workers",
        Duration::from_secs(20),
        || async {
            Ok(pool_state()
                .await?
                .filter(|(d, a, _)| *d == 4 && *a == 4)
                .map(|_| ()))
        },
    )
    .await?;
    // A worker registers once its LISTEN connection is up (it listens before it joins).
    eventually("4 workers registered", Duration::from_secs(10), || async {
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pgfleet.workers WHERE pool = 'burst'")
                .fetch_one(&db)
                .await?;
        Ok((live >= 4).then_some(()))
    })
    .await?;
    let status = std::process::Command::new(BIN)
        .args(["status"])
        .env("PGFLEET_DATABASE_URL", url.trim())
        .output()?;
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("burst") && table.contains("local"),
        "{table}"
    );

    eventually("the burst drained", Duration::from_secs(60), || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgfleet.jobs_finished WHERE queue = 'burst' AND state = 'completed'",
        )
        .fetch_one(&db)
        .await?;
        Ok((done == 3000).then_some(()))
    })
    .await?;
    eventually("scaled back down to 1", Duration::from_secs(30), || async {
        Ok((pool_state().await? == Some((1, 1, 0))).then_some(()))
    })
    .await?;
    db.close().await;
    signal(&dev, "INT");
    assert!(wait_exit(&mut dev, Duration::from_secs(40)).await.success());
    Ok(())
}
