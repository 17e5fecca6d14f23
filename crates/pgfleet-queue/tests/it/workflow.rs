//! Dependencies, workflows, batches, outputs and `pgfleet.enqueue` at the library level:
//! blocked jobs are neither claimable nor backlog; bad graphs and unknown ids are refused
//! naming the field with nothing written; an oversized output is refused and the job stays
//! held; SQL enqueue chooses the library's partition, honours unique keys and writes
//! nothing when its transaction rolls back.

use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::workflow::{Dep, NewWorkflow, WorkflowJob, WorkflowState};
use pgfleet_queue::{JobState, NewJob, QueueError};
use serde_json::json;

use crate::{claim, count, setup};

fn path(e: QueueError) -> String {
    match e {
        QueueError::InvalidAt { path, .. } => path,
        QueueError::Invalid { field, .. } => field.to_owned(),
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[tokio::test]
async fn blocked_jobs_are_not_claimed_nor_backlog_until_released() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let a = queue.enqueue(NewJob::new("q", "k")).await?.id;
    let b = queue
        .enqueue(NewJob::new("q", "k").depends_on([a]))
        .await?
        .id;
    assert_eq!(queue.get_job(b).await?.state, JobState::Blocked);
    let stats = queue.stats().await?;
    assert_eq!((stats[0].total.backlog(), stats[0].total.blocked), (1, 1));
    let got = claim(&queue, &["q"], 10, "w").await?;
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        [a],
        "only the ready job"
    );
    queue
        .finalize(
            "w",
            &[Finished::new(a, 1, Outcome::Completed).with_output(Some(json!(7)))],
        )
        .await?;
    assert_eq!(queue.get_job(b).await?.state, JobState::Available);
    let deps = queue.dependencies(b).await?;
    assert_eq!((deps[0].id, deps[0].output.clone()), (a, Some(json!(7))));
    assert_eq!(claim(&queue, &["q"], 10, "w").await?[0].id, b);
    Ok(())
}

#[tokio::test]
async fn bad_graphs_and_unknown_ids_are_refused_with_nothing_written() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let job = || NewJob::new("q", "k");
    let cycle = NewWorkflow {
        name: "w".into(),
        jobs: vec![
            WorkflowJob::new("a", job()).after(["b"]),
            WorkflowJob::new("b", job()).after(["a"]),
        ],
    };
    let e = queue.enqueue_workflow(&cycle).await.unwrap_err();
    assert!(path(e).ends_with(".depends_on[0]"));
    let mut unknown = NewWorkflow {
        name: "w".into(),
        jobs: vec![
            WorkflowJob::new("a", job()),
            WorkflowJob::new("b", job()).after(["a"]),
        ],
    };
    unknown.jobs[1].after.push(Dep::Job(999_999));
    let e = queue.enqueue_workflow(&unknown).await.unwrap_err();
    assert_eq!(path(e), "jobs[1].depends_on");
    let e = queue
        .enqueue(job().depends_on([999_999]))
        .await
        .unwrap_err();
    assert_eq!(path(e), "depends_on");
    for table in [
        "pgfleet.jobs",
        "pgfleet.jobs_finished",
        "pgfleet.workflows",
        "pgfleet.job_deps",
    ] {
        assert_eq!(count(&db, table).await?, 0, "{table}");
    }
    Ok(())
}

#[tokio::test]
async fn an_oversized_output_is_refused_and_the_job_stays_held() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let id = queue.enqueue(NewJob::new("q", "k")).await?.id;
    let j = claim(&queue, &["q"], 1, "w").await?.remove(0);
    let big = json!({"blob": "x".repeat(pgfleet_queue::output::MAX_OUTPUT_BYTES)});
    let mut tx = queue.pool().begin().await?;
    let e = queue
        .complete_in(&mut tx, "w", id, j.attempt, Some(&big))
        .await
        .unwrap_err();
    assert_eq!(path(e), "output");
    drop(tx);
    assert_eq!(queue.get_job(id).await?.state, JobState::Running);
    // Another worker's attempt cannot be completed.
    let mut tx = queue.pool().begin().await?;
    let e = queue
        .complete_in(&mut tx, "other", id, j.attempt, None)
        .await
        .unwrap_err();
    assert!(matches!(e, QueueError::LeaseLost(i) if i == id));
    drop(tx);
    let mut tx = queue.pool().begin().await?;
    queue
        .complete_in(&mut tx, "w", id, j.attempt, Some(&json!({"ok": 1})))
        .await?;
    tx.commit().await?;
    let done = queue.get_job(id).await?;
    assert_eq!(
        (done.state, done.output),
        (JobState::Completed, Some(json!({"ok": 1})))
    );
    Ok(())
}

#[tokio::test]
async fn sql_enqueue_matches_the_library_and_honours_unique_keys() -> anyhow::Result<()> {
    let (db, queue) = setup().await?;
    let p = queue.partitions();
    let keys: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => format!("user-{i}"),
            1 => format!("tenant/é✓/{i}"),
            _ => "k".repeat(1 + i % 512),
        })
        .collect();
    let sql: Vec<i16> =
        sqlx::query_scalar("SELECT pgfleet.partition_of(k) FROM unnest($1::text[]) k")
            .bind(&keys)
            .fetch_all(&db.pool)
            .await?;
    let lib: Vec<i16> = keys.iter().map(|k| p.of_key(k)).collect();
    assert_eq!(sql, lib);
    let (id, dup): (i64, bool) = sqlx::query_as(
        "SELECT id, duplicate FROM pgfleet.enqueue('q', 'k', '{\"n\": 1}', unique_key => 'once')",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(!dup);
    let again: (i64, bool) =
        sqlx::query_as("SELECT id, duplicate FROM pgfleet.enqueue('q', 'k', unique_key => 'once')")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(again, (id, true));
    let lib = queue
        .enqueue(NewJob::new("q", "k").unique_key("once"))
        .await?;
    assert_eq!((lib.id, lib.duplicate), (id, true));
    // Rolled back: nothing.
    let mut tx = db.pool.begin().await?;
    sqlx::query("SELECT pgfleet.enqueue('q', 'k', partition_key => 'user-1')")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    assert_eq!(count(&db, "pgfleet.jobs").await?, 1);
    // Refusals name the field.
    let e = sqlx::query("SELECT pgfleet.enqueue('q', 'k', priority => 12)")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert_eq!(path(QueueError::from_sql(e)), "priority");
    let e = sqlx::query("SELECT * FROM pgfleet.enqueue_many('[{\"queue\": \"q\", \"kind\": \"k\"}, {\"queue\": \"q\", \"kind\": \"k\", \"colour\": 1}]')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert_eq!(path(QueueError::from_sql(e)), "jobs[1].colour");
    assert_eq!(count(&db, "pgfleet.jobs").await?, 1);
    Ok(())
}

#[tokio::test]
async fn cancelling_a_workflow_cancels_what_has_not_finished() -> anyhow::Result<()> {
    let (_db, queue) = setup().await?;
    let wf = queue
        .enqueue_workflow(&NewWorkflow {
            name: "w".into(),
            jobs: vec![
                WorkflowJob::new("a", NewJob::new("q", "k")),
                WorkflowJob::new("b", NewJob::new("q", "k")).after(["a"]),
                WorkflowJob::new("c", NewJob::new("q", "k")),
            ],
        })
        .await?;
    let running = claim(&queue, &["q"], 1, "w").await?.remove(0);
    let out = queue.cancel_workflow(wf.id).await?;
    assert_eq!(
        out.state,
        WorkflowState::Running,
        "a running job is asked to stop"
    );
    let by_id = |id: i64| out.jobs.iter().find(|j| j.id == id).unwrap().state;
    assert_eq!(by_id(running.id), JobState::Running);
    assert_eq!(
        out.jobs
            .iter()
            .filter(|j| j.state == JobState::Cancelled)
            .count(),
        2
    );
    let cancel = Outcome::Cancelled {
        reason: "stopped".into(),
    };
    queue
        .finalize("w", &[Finished::new(running.id, running.attempt, cancel)])
        .await?;
    assert_eq!(queue.workflow(wf.id).await?.state, WorkflowState::Cancelled);
    // Deleting a job that others wait for counts as cancelling it for them.
    let a = queue.enqueue(NewJob::new("q", "k")).await?.id;
    let b = queue
        .enqueue(NewJob::new("q", "k").depends_on([a]))
        .await?
        .id;
    queue.delete_job(a).await?;
    assert_eq!(queue.get_job(b).await?.state, JobState::Cancelled);
    Ok(())
}
