use std::sync::atomic::Ordering;
use std::time::Duration;

use pgfleet_queue::claim::ClaimRequest;
use pgfleet_queue::{JobState, NewJob};
use pgfleet_testkit::eventually;
use pgfleet_worker::Registry;
use serde_json::json;

use crate::{fast_config, finished, setup, start};

/// A worker claims jobs and vanishes without completing anything: another worker runs them
/// within lease + rescue interval.
#[tokio::test]
async fn jobs_of_a_vanished_worker_are_rescued_and_completed() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let jobs: Vec<NewJob> = (0..25).map(|_| NewJob::new("q", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    let config = fast_config(&["q"]);
    // The ghost: its own connection, claims with the configured lease, then is dropped.
    let ghost_pool = db.new_pool(1).await?;
    let ghost = pgfleet_queue::Queue::new(ghost_pool.clone()).await?;
    let queues = vec!["q".to_string()];
    let taken = ghost
        .claim(&ClaimRequest {
            order: &pgfleet_queue::claim::QueueOrder::ByPriority,
            queues: &queues,
            partitions: None,
            limit: 100,
            worker_id: "ghost",
            lease: config.lease,
        })
        .await?;
    assert_eq!(taken.len(), 25);
    ghost_pool.close().await;
    let started = tokio::time::Instant::now();
    let w = start(&db, config.clone(), Registry::builtin()).await?;
    eventually(
        "rescued jobs completed",
        Duration::from_secs(15),
        || async { Ok((finished(&db, "completed").await? == 25).then_some(())) },
    )
    .await?;
    let took = started.elapsed();
    let budget = config.lease + config.rescue_interval + Duration::from_secs(2);
    assert!(took <= budget, "took {took:?}, promised within {budget:?}");
    let j = queue.get_job(taken[0].id).await?;
    assert_eq!(j.attempt, 2);
    assert_eq!(j.errors[0]["kind"], "rescued");
    w.stop().await
}

/// With the backstop poll effectively off, only NOTIFY and the post-reconnect resync can
/// wake the worker: kill its listener's backend and enqueue during the outage.
#[tokio::test]
async fn worker_survives_its_listener_backend_being_killed() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let mut config = fast_config(&["q"]);
    config.poll_interval = Duration::from_secs(3600);
    let w = start(&db, config, Registry::builtin()).await?;
    queue.enqueue(NewJob::new("q", "noop")).await?;
    eventually("first job via NOTIFY", Duration::from_secs(10), || async {
        Ok((finished(&db, "completed").await? == 1).then_some(()))
    })
    .await?;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'pgfleet-listener' AND datname = current_database()) t",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(killed, 1);
    let jobs: Vec<NewJob> = (0..10).map(|_| NewJob::new("q", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    eventually(
        "jobs enqueued during the outage are worked",
        Duration::from_secs(10),
        || async { Ok((finished(&db, "completed").await? == 11).then_some(())) },
    )
    .await?;
    // The jobs can be done before this check sees the new listener backend (1 in 5 runs
    // here): wait for it, and fail if it never comes back.
    eventually("the listener is connected again", Duration::from_secs(10), || async {
        let listeners: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet-listener' AND datname = current_database()",
        )
        .fetch_one(&db.pool)
        .await?;
        Ok((listeners == 1).then_some(()))
    })
    .await?;
    w.stop().await
}

#[tokio::test]
async fn pausing_stops_claims_within_a_second_and_resuming_restarts_them() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let w = start(&db, fast_config(&["q"]), Registry::builtin()).await?;
    queue.pause_queue("q").await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    queue
        .enqueue_many(&(0..5).map(|_| NewJob::new("q", "noop")).collect::<Vec<_>>())
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        finished(&db, "completed").await?,
        0,
        "nothing runs while paused"
    );
    queue.resume_queue("q").await?;
    eventually("resumed", Duration::from_secs(5), || async {
        Ok((finished(&db, "completed").await? == 5).then_some(()))
    })
    .await?;
    w.stop().await
}

#[tokio::test]
async fn panics_timeouts_and_permanent_errors_fail_the_job_not_the_worker() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let mut registry = Registry::builtin();
    registry.register("explode", |_job, _ctx| async { panic!("kaboom") });
    registry.register_with_timeout("slow", Duration::from_millis(100), |_job, _ctx| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(())
    });
    let w = start(&db, fast_config(&["q"]), registry).await?;
    let panics = queue
        .enqueue(NewJob::new("q", "explode").max_attempts(1))
        .await?
        .id;
    let slow = queue
        .enqueue(NewJob::new("q", "slow").max_attempts(1))
        .await?
        .id;
    let permanent = queue
        .enqueue(
            NewJob::new("q", "fail").payload(json!({"permanent": true, "message": "bad card"})),
        )
        .await?
        .id;
    let unknown = queue
        .enqueue(NewJob::new("q", "nobody-handles-this").max_attempts(1))
        .await?
        .id;
    let ok = queue.enqueue(NewJob::new("q", "noop")).await?.id;
    eventually("all finished", Duration::from_secs(10), || async {
        Ok(
            (finished(&db, "discarded").await? == 4 && finished(&db, "completed").await? == 1)
                .then_some(()),
        )
    })
    .await?;
    let err = |id| {
        let q = queue.clone();
        async move {
            anyhow::Ok(
                q.get_job(id).await?.errors[0]["error"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        }
    };
    assert!(err(panics).await?.contains("panicked: kaboom"));
    assert!(err(slow).await?.contains("timed out"));
    assert_eq!(err(permanent).await?, "bad card");
    assert_eq!(
        queue.get_job(permanent).await?.attempt,
        1,
        "permanent errors are not retried"
    );
    assert!(err(unknown).await?.contains("no handler registered"));
    assert_eq!(queue.get_job(ok).await?.state, JobState::Completed);
    assert_eq!(w.stats.panicked.load(Ordering::Relaxed), 1);
    w.stop().await
}

#[tokio::test]
async fn cancelling_a_running_job_stops_its_handler() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let w = start(&db, fast_config(&["q"]), Registry::builtin()).await?;
    let id = queue
        .enqueue(NewJob::new("q", "sleep").payload(json!({"ms": 60_000})))
        .await?
        .id;
    eventually("running", Duration::from_secs(5), || async {
        Ok((queue.get_job(id).await?.state == JobState::Running).then_some(()))
    })
    .await?;
    queue.cancel_job(id).await?;
    eventually("cancelled", Duration::from_secs(5), || async {
        Ok((queue.get_job(id).await?.state == JobState::Cancelled).then_some(()))
    })
    .await?;
    assert_eq!(finished(&db, "cancelled").await?, 1);
    w.stop().await
}

/// Shutdown lets short jobs finish and releases long ones without spending an attempt, then
/// deregisters so another worker can take the partitions at once.
#[tokio::test]
async fn graceful_shutdown_finishes_or_releases_in_flight_jobs() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let mut config = fast_config(&["q"]);
    config.shutdown_grace = Duration::from_millis(500);
    let w = start(&db, config, Registry::builtin()).await?;
    let short = queue
        .enqueue(NewJob::new("q", "sleep").payload(json!({"ms": 200})))
        .await?
        .id;
    let long = queue
        .enqueue(
            NewJob::new("q", "sleep")
                .payload(json!({"ms": 60_000}))
                .max_attempts(1),
        )
        .await?
        .id;
    eventually("both running", Duration::from_secs(5), || async {
        let a = queue.get_job(short).await?.state == JobState::Running;
        let b = queue.get_job(long).await?.state == JobState::Running;
        Ok((a && b).then_some(()))
    })
    .await?;
    w.stop().await?;
    assert_eq!(queue.get_job(short).await?.state, JobState::Completed);
    let released = queue.get_job(long).await?;
    assert_eq!(released.state, JobState::Available, "released, not failed");
    assert!(
        released.max_attempts > released.attempt,
        "the attempt was not spent"
    );
    assert!(queue.workers(None).await?.is_empty(), "deregistered");
    assert!(queue.partition_leases(None).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn worker_pools_commit_asynchronously() -> anyhow::Result<()> {
    let (db, _queue) = setup().await?;
    let opts = pgfleet_worker::worker_connect_options(db.options.clone());
    let pool = sqlx::PgPool::connect_with(opts).await?;
    let mode: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await?;
    assert_eq!(mode, "off");
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn health_port_reports_liveness_and_readiness() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let worker = pgfleet_worker::Worker::new(
        queue.clone(),
        db.options.clone(),
        fast_config(&["q"]),
        Registry::builtin(),
    )?;
    let ready = worker.readiness();
    let metrics = worker.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(pgfleet_worker::health::serve(
        listener,
        db.pool.clone(),
        ready,
        metrics,
        stop.clone(),
    ));
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await?.status(),
        200
    );
    let not_yet = http.get(format!("{base}/readyz")).send().await?;
    assert_eq!(not_yet.status(), 503, "not ready before the worker runs");
    let run = tokio::spawn(worker.run(stop.clone()));
    pgfleet_testkit::eventually("ready", Duration::from_secs(10), || async {
        Ok((http.get(format!("{base}/readyz")).send().await?.status() == 200).then_some(()))
    })
    .await?;
    // /metrics shows what the worker did, by queue, kind and outcome.
    queue
        .enqueue(pgfleet_queue::NewJob::new("q", "noop"))
        .await?;
    let text = pgfleet_testkit::eventually("metrics show the job", Duration::from_secs(10), || async {
        let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
        Ok(text
            .contains(r#"pgfleet_jobs_finished_total{kind="noop",outcome="completed",queue="q",component="worker"} 1"#)
            .then_some(text))
    })
    .await?;
    assert!(
        text.contains("pgfleet_claim_duration_seconds_count"),
        "{text}"
    );
    pgfleet_testkit::promtool_check_metrics(&text)?;
    stop.cancel();
    run.await??;
    server.await??;
    Ok(())
}

/// A worker whose registration fails at start returns the error and leaves nothing running:
/// its LISTEN connection (already open, since it listens before it registers) is closed.
#[tokio::test]
async fn a_failed_start_leaves_no_listener_behind() -> anyhow::Result<()> {
    let (db, _queue) = setup().await?;
    sqlx::query(
        "CREATE FUNCTION pgfleet.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'registration refused'; END $$",
    )
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON pgfleet.workers \
         FOR EACH ROW EXECUTE FUNCTION pgfleet.refuse()",
    )
    .execute(&db.pool)
    .await?;
    let running = start(&db, fast_config(&["q"]), Registry::builtin()).await?;
    let result = tokio::time::timeout(Duration::from_secs(20), running.task).await??;
    let err = result.expect_err("the start fails");
    assert!(err.to_string().contains("registration refused"), "{err}");
    let listeners = || async {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'pgfleet-listener' AND datname = current_database()",
            )
            .fetch_one(&db.pool)
            .await?,
        )
    };
    eventually("the listener is closed", Duration::from_secs(5), || async {
        Ok((listeners().await? == 0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_worker_runs_its_schedules_ticks() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    queue
        .put_schedule(&pgfleet_queue::schedule::NewSchedule::new(
            "tick",
            "@every 1s",
            NewJob::new("q", "noop"),
        ))
        .await?;
    let w = start(&db, fast_config(&["q"]), Registry::builtin()).await?;
    eventually("two ticks ran", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgfleet.jobs_finished \
             WHERE state = 'completed' AND metadata->>'schedule' = 'tick'",
        )
        .fetch_one(&db.pool)
        .await?;
        Ok((n >= 2).then_some(()))
    })
    .await?;
    w.stop().await
}
