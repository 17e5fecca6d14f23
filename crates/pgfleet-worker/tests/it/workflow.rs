//! Workflows, batches, outputs and completion in the handler's transaction, with several
//! workers on their own connection pools: a diamond whose B fails twice runs D once, after
//! B and C, reading their outputs; a discarded dependency cancels or releases its
//! dependents per their policy; a batch of 1,000 on 4 workers calls back exactly once with
//! the right counts; a worker process SIGKILLed around a completion in the handler's own
//! transaction leaves each effect exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgfleet_queue::workflow::{NewBatch, NewWorkflow, WorkflowJob, WorkflowState};
use pgfleet_queue::{DependencyFailure, JobState, NewJob, Queue};
use pgfleet_testkit::{eventually, TestDb};
use pgfleet_worker::{JobError, Registry};
use serde_json::{json, Value};

use crate::{fast_config, setup, start, Running};

/// `step`: fails `payload.fail_times` times, then completes with output
/// `{"name", "attempt"}`. `join`: completes with its dependencies' outputs, counting its
/// runs in `joins`.
fn registry(joins: &Arc<AtomicUsize>) -> Registry {
    let mut r = Registry::builtin();
    r.register("step", |job, ctx| async move {
        let fails = job.payload["fail_times"].as_i64().unwrap_or(0);
        if i64::from(job.attempt) <= fails {
            return Err(JobError::retry(format!("planned failure {}", job.attempt)));
        }
        // Reported many times; the worker writes the latest once a second.
        for i in 0..=1000 {
            ctx.progress(f64::from(i) / 10.0, Some("working"))
                .map_err(|e| JobError::permanent(e.to_string()))?;
        }
        let linger = job.payload["linger_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(linger)).await;
        ctx.set_output(json!({"name": job.payload["name"], "attempt": job.attempt}))
            .map_err(|e| JobError::permanent(e.to_string()))?;
        Ok(())
    });
    let joins = joins.clone();
    r.register("join", move |_job, ctx| {
        let joins = joins.clone();
        async move {
            joins.fetch_add(1, Ordering::SeqCst);
            let deps = ctx
                .dependencies()
                .await
                .map_err(|e| JobError::retry(e.to_string()))?;
            let outputs: Vec<Value> = deps.into_iter().filter_map(|d| d.output).collect();
            ctx.set_output(json!({"inputs": outputs}))
                .map_err(|e| JobError::permanent(e.to_string()))?;
            Ok(())
        }
    });
    r
}

async fn workers(db: &TestDb, n: usize, joins: &Arc<AtomicUsize>) -> anyhow::Result<Vec<Running>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(start(db, fast_config(&["wf"]), registry(joins)).await?);
    }
    Ok(out)
}

async fn settled(queue: &Queue, id: i64) -> anyhow::Result<pgfleet_queue::workflow::Workflow> {
    eventually(
        "the workflow to finish",
        Duration::from_secs(30),
        || async {
            let wf = queue.workflow(id).await?;
            Ok((wf.state != WorkflowState::Running).then_some(wf))
        },
    )
    .await
}

fn step(name: &str, fail_times: i64) -> NewJob {
    NewJob::new("wf", "step").payload(json!({"name": name, "fail_times": fail_times}))
}

fn lingering_step(name: &str, fail_times: i64, linger_ms: u64) -> NewJob {
    NewJob::new("wf", "step")
        .payload(json!({"name": name, "fail_times": fail_times, "linger_ms": linger_ms}))
}

#[tokio::test]
async fn a_diamond_runs_its_join_once_after_both_branches_with_their_outputs() -> anyhow::Result<()>
{
    let (db, queue) = setup().await?;
    let joins = Arc::new(AtomicUsize::new(0));
    let running = workers(&db, 3, &joins).await?;
    let wf = queue
        .enqueue_workflow(&NewWorkflow {
            name: "diamond".into(),
            jobs: vec![
                WorkflowJob::new("d", NewJob::new("wf", "join")).after(["b", "c"]),
                WorkflowJob::new("b", lingering_step("B", 2, 1500)).after(["a"]),
                WorkflowJob::new("c", step("C", 0)).after(["a"]),
                WorkflowJob::new("a", step("A", 0)),
            ],
        })
        .await?;
    let states: Vec<JobState> = wf.jobs.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        [
            JobState::Blocked,
            JobState::Blocked,
            JobState::Blocked,
            JobState::Available
        ],
        "members come back in the given order"
    );
    let done = settled(&queue, wf.id).await?;
    assert_eq!(done.state, WorkflowState::Completed, "{done:?}");
    assert_eq!(joins.load(Ordering::SeqCst), 1, "D ran exactly once");
    let id = |k: &str| wf.jobs.iter().find(|m| m.key == k).unwrap().id;
    let (b, c, d) = (
        queue.get_job(id("b")).await?,
        queue.get_job(id("c")).await?,
        queue.get_job(id("d")).await?,
    );
    assert_eq!((b.attempt, c.attempt, d.attempt), (3, 1, 1));
    assert_eq!(
        b.errors.as_array().unwrap().len(),
        2,
        "B's two failures are kept"
    );
    let d_started = d.attempted_at.unwrap();
    assert!(d_started >= b.finalized_at.unwrap() && d_started >= c.finalized_at.unwrap());
    let mut inputs = d.output.unwrap()["inputs"].as_array().unwrap().clone();
    inputs.sort_by_key(|v| v["name"].to_string());
    assert_eq!(
        inputs,
        [
            json!({"name": "B", "attempt": 3}),
            json!({"name": "C", "attempt": 1})
        ],
        "D read both dependencies' outputs"
    );
    let progress = b.progress.expect("progress written while B ran is kept");
    assert_eq!(
        (progress["value"].as_f64(), &progress["message"]),
        (Some(100.0), &json!("working"))
    );
    for r in running {
        r.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_discarded_dependency_cancels_or_releases_dependents_per_policy() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let joins = Arc::new(AtomicUsize::new(0));
    let running = workers(&db, 2, &joins).await?;
    let failing = NewJob::new("wf", "fail").payload(json!({"permanent": true}));
    let wf = queue
        .enqueue_workflow(&NewWorkflow {
            name: "policies".into(),
            jobs: vec![
                WorkflowJob::new("bad", failing),
                // cancel (the default) carries on to its own dependents
                WorkflowJob::new("cancelled", step("X", 0)).after(["bad"]),
                WorkflowJob::new("grandchild", step("Y", 0)).after(["cancelled"]),
                WorkflowJob::new(
                    "runs",
                    NewJob::new("wf", "join").on_dependency_failure(DependencyFailure::Run),
                )
                .after(["bad"]),
            ],
        })
        .await?;
    let done = settled(&queue, wf.id).await?;
    assert_eq!(done.state, WorkflowState::Failed);
    let state = |k: &str| {
        let id = wf.jobs.iter().find(|m| m.key == k).unwrap().id;
        done.jobs.iter().find(|j| j.id == id).unwrap().state
    };
    assert_eq!(state("bad"), JobState::Discarded);
    assert_eq!(state("cancelled"), JobState::Cancelled);
    assert_eq!(state("grandchild"), JobState::Cancelled);
    assert_eq!(state("runs"), JobState::Completed);
    let cancelled = queue
        .get_job(wf.jobs.iter().find(|m| m.key == "cancelled").unwrap().id)
        .await?;
    assert!(
        cancelled.errors.to_string().contains("was discarded"),
        "{}",
        cancelled.errors
    );
    // A job enqueued later on the discarded one is cancelled at once (or released).
    let bad = wf.jobs[0].id;
    let late = queue.enqueue(step("late", 0).depends_on([bad])).await?;
    assert_eq!(queue.get_job(late.id).await?.state, JobState::Cancelled);
    let late_run = queue
        .enqueue(
            step("late", 0)
                .depends_on([bad])
                .on_dependency_failure(DependencyFailure::Run),
        )
        .await?;
    eventually(
        "the late job that runs anyway",
        Duration::from_secs(10),
        || async {
            Ok((queue.get_job(late_run.id).await?.state == JobState::Completed).then_some(()))
        },
    )
    .await?;
    for r in running {
        r.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_of_1000_on_4_workers_calls_back_exactly_once_with_counts() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let calls = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let registry = || {
        let mut r = Registry::builtin();
        let calls = calls.clone();
        r.register("batch.done", move |job, _ctx| {
            let calls = calls.clone();
            async move {
                calls.lock().unwrap().push(job.payload.clone());
                Ok(())
            }
        });
        r
    };
    let jobs: Vec<NewJob> = (0..1000)
        .map(|i| match i % 100 {
            0 => NewJob::new("wf", "fail").payload(json!({"permanent": true})),
            _ => NewJob::new("wf", "noop"),
        })
        .collect();
    let batch = queue
        .enqueue_batch(&NewBatch {
            name: "thousand".into(),
            jobs,
            callback: NewJob::new("wf", "batch.done").payload(json!({"report": "nightly"})),
        })
        .await?;
    assert_eq!(batch.jobs.len(), 1001);
    assert_eq!(batch.jobs[1000].key, "callback");
    let mut running = Vec::new();
    for _ in 0..4 {
        let mut c = fast_config(&["wf"]);
        c.concurrency = 10;
        running.push(start(&db, c, registry()).await?);
    }
    let done = settled(&queue, batch.id).await?;
    assert_eq!(done.state, WorkflowState::Failed, "ten jobs were discarded");
    // Give a duplicate callback every chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "exactly one callback: {calls:?}");
    assert_eq!(
        calls[0]["batch"],
        json!({"id": batch.id, "total": 1000, "completed": 990, "discarded": 10, "cancelled": 0})
    );
    assert_eq!(
        calls[0]["report"], "nightly",
        "the callback's own payload is kept"
    );
    let shares: Vec<u64> = running
        .iter()
        .map(|r| r.stats.completed.load(Ordering::Relaxed))
        .collect();
    assert!(
        shares.iter().filter(|&&n| n > 0).count() >= 2,
        "work was shared: {shares:?}"
    );
    for r in running {
        r.stop().await?;
    }
    Ok(())
}

/// The worker the SIGKILL test runs in a child process: `effect.tx` writes its effect and
/// completes the job in one transaction, holding it open `hold_in_tx_ms` on the first
/// attempt, and after committing sleeps `hold_after_ms` before returning.
#[tokio::test]
#[ignore = "run by complete_in_tx_makes_the_effect_exactly_once_across_sigkill"]
async fn child_worker_with_effects() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("PGFLEET_EFFECT_CHILD_URL") else {
        return Ok(());
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let pool = sqlx::PgPool::connect_with(options.clone()).await?;
    let queue = Queue::new(pool.clone()).await?;
    let worker = pgfleet_worker::Worker::new(queue, options, fast_config(&["fx"]), effects(pool))?;
    worker
        .run(tokio_util::sync::CancellationToken::new())
        .await?;
    Ok(())
}

fn effects(pool: sqlx::PgPool) -> Registry {
    let mut r = Registry::new();
    r.register("effect.tx", move |job, ctx| {
        let pool = pool.clone();
        async move {
            let hold = |k: &str| Duration::from_millis(job.payload[k].as_u64().unwrap_or(0));
            let fail = |e: &dyn std::fmt::Display| JobError::retry(e.to_string());
            let mut tx = pool.begin().await.map_err(|e| fail(&e))?;
            sqlx::query("INSERT INTO effects (job_id, attempt) VALUES ($1, $2)")
                .bind(job.id)
                .bind(job.attempt)
                .execute(&mut *tx)
                .await
                .map_err(|e| fail(&e))?;
            ctx.complete_in(&mut tx, Some(json!({"effect": job.id})))
                .await
                .map_err(|e| fail(&e))?;
            if job.attempt == 1 {
                tokio::time::sleep(hold("hold_in_tx_ms")).await;
            }
            tx.commit().await.map_err(|e| fail(&e))?;
            if job.attempt == 1 {
                tokio::time::sleep(hold("hold_after_ms")).await;
            }
            Ok(())
        }
    });
    r
}

#[tokio::test]
async fn complete_in_tx_makes_the_effect_exactly_once_across_sigkill() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    sqlx::query("CREATE TABLE effects (job_id bigint NOT NULL, attempt int NOT NULL)")
        .execute(&db.pool)
        .await?;
    // Killed inside the open transaction (effect and completion roll back together), and
    // killed after the commit but before the handler returned (both stay).
    let in_tx = queue
        .enqueue(NewJob::new("fx", "effect.tx").payload(json!({"hold_in_tx_ms": 60_000})))
        .await?
        .id;
    let after = queue
        .enqueue(NewJob::new("fx", "effect.tx").payload(json!({"hold_after_ms": 60_000})))
        .await?
        .id;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "workflow::child_worker_with_effects",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("PGFLEET_EFFECT_CHILD_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let effects = |id: i64| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM effects WHERE job_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
        }
    };
    let waited = eventually(
        "the child to commit one and hold the other",
        Duration::from_secs(30),
        || async {
            let committed = effects(after).await? == 1;
            let holding = queue.get_job(in_tx).await?.state == JobState::Running;
            Ok((committed && holding).then_some(()))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill()?; // SIGKILL
    child.wait()?;
    waited?;
    assert_eq!(
        queue.get_job(after).await?.state,
        JobState::Completed,
        "committed with its effect"
    );
    assert_eq!(
        effects(in_tx).await?,
        0,
        "the open transaction died with the process"
    );

    let survivor = start(&db, fast_config(&["fx"]), effects_registry(&db)).await?;
    eventually(
        "the rescued job to run again",
        Duration::from_secs(30),
        || async { Ok((queue.get_job(in_tx).await?.state == JobState::Completed).then_some(())) },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    survivor.stop().await?;
    assert_eq!(
        effects(in_tx).await?,
        1,
        "the effect of the rescued job appears once"
    );
    assert_eq!(
        effects(after).await?,
        1,
        "the completed job never ran again"
    );
    let j = queue.get_job(in_tx).await?;
    assert_eq!((j.attempt, j.output), (2, Some(json!({"effect": in_tx}))));
    assert_eq!(queue.get_job(after).await?.attempt, 1);
    Ok(())
}

fn effects_registry(db: &TestDb) -> Registry {
    effects(db.pool.clone())
}

fn psql(db: &TestDb, script: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("psql")
        .args([
            db.url.as_str(),
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            script,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test]
async fn psql_enqueue_in_a_transaction_wakes_a_worker_only_when_committed() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    // Only a NOTIFY can wake this worker within the test: it polls once a minute and
    // never steals.
    let mut c = fast_config(&["sql"]);
    c.poll_interval = Duration::from_secs(60);
    c.steal = false;
    let worker = start(&db, c, Registry::builtin()).await?;
    eventually(
        "the worker to own every partition",
        Duration::from_secs(10),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.partition_leases")
                .fetch_one(&db.pool)
                .await?;
            Ok((n == i64::from(queue.partitions().get())).then_some(()))
        },
    )
    .await?;
    psql(
        &db,
        "BEGIN; SELECT pgfleet.enqueue('sql', 'noop', '{\"n\": 1}'); \
         CREATE TABLE orders (id int); ROLLBACK;",
    )?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(crate::finished(&db, "completed").await?, 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pgfleet.jobs")
            .fetch_one(&db.pool)
            .await?,
        0,
        "the rolled-back enqueue left nothing"
    );
    let out = psql(
        &db,
        "BEGIN; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1); \
         SELECT id || ',' || partition FROM pgfleet.enqueue('sql', 'noop', '{\"order\": 1}', \
         partition_key => 'order-1'); COMMIT;",
    )?;
    let (id, partition) = out.trim().split_once(',').unwrap();
    let id: i64 = id.parse()?;
    assert_eq!(
        partition.parse::<i16>()?,
        queue.partitions().of_key("order-1")
    );
    eventually(
        "the SQL-enqueued job to run",
        Duration::from_secs(10),
        || async { Ok((queue.get_job(id).await?.state == JobState::Completed).then_some(())) },
    )
    .await?;
    worker.stop().await?;
    Ok(())
}
