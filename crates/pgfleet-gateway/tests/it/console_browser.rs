//! The console in headless Chromium, driven mostly by keyboard (`tests/browser/console.mjs`):
//! filter to a failed job, open it, read its error history, retry it and watch it complete;
//! bulk-cancel 500 scheduled jobs of one kind by filter; pause and resume a queue; the
//! fleet, errors and workflow views; a read-scope key sees no action and the API refuses it; every
//! control is labelled and axe-core's WCAG 2 A/AA rules pass on every view; the key stays in
//! its tab; no CSP violation or script error.
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser` (CI and `scripts/test` do
//! both); skipped, saying so, where Chromium is not installed.

use std::time::Duration;

use pgfleet_queue::workflow::{NewWorkflow, WorkflowJob};
use pgfleet_queue::{JobState, NewJob};
use serde_json::{json, Value};

use crate::{spawn_gateway_with, start_worker, ADMIN_KEY, READ_KEY};

#[tokio::test]
async fn an_operator_finds_retries_bulk_cancels_and_pauses_from_the_console() -> anyhow::Result<()>
{
    let Some((chromium, dir)) = crate::browser::chromium_and_scripts("the console test")? else {
        return Ok(());
    };
    let g = spawn_gateway_with(|c| c.timeout = Duration::from_secs(30)).await?;
    let (_stop, _task) = start_worker(&g, &["default", "mail"]).await?;
    // A job that fails twice (its attempts run out), then succeeds once retried; and one
    // that fails for good.
    let failed = g
        .queue
        .enqueue(
            NewJob::new("default", "fail")
                .payload(json!({"times": 2, "message": "payment gateway timeout after 30 s"}))
                .max_attempts(2),
        )
        .await?
        .id;
    let declined = g
        .queue
        .enqueue(
            NewJob::new("default", "fail")
                .payload(json!({"permanent": true, "message": "card declined: code 51"})),
        )
        .await?
        .id;
    for id in [failed, declined] {
        pgfleet_testkit::eventually(
            "the failing jobs discarded",
            Duration::from_secs(30),
            || {
                let q = g.queue.clone();
                async move { Ok((q.get_job(id).await?.state == JobState::Discarded).then_some(())) }
            },
        )
        .await?;
    }
    // 500 scheduled emails to cancel, and 20 digests of the same queue to leave alone.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let jobs: Vec<NewJob> = (0..520)
        .map(|i| {
            let mut j = NewJob::new(
                "mail",
                if i < 500 {
                    "email.send"
                } else {
                    "email.digest"
                },
            )
            .payload(json!({"to": format!("user{i}@example.com")}));
            j.run_at = Some(later);
            j
        })
        .collect();
    g.queue.enqueue_many(&jobs).await?;
    g.queue.sample_queues(Duration::ZERO).await?;
    // A workflow of two jobs, the second waiting for the first.
    let wf = g
        .queue
        .enqueue_workflow(&NewWorkflow {
            name: "signup".into(),
            jobs: vec![
                WorkflowJob::new("create", NewJob::new("default", "noop")),
                WorkflowJob::new("welcome", NewJob::new("default", "noop")).after(["create"]),
            ],
        })
        .await?;

    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(dir.join("console.mjs"))
            .current_dir(&dir)
            .env("CHROMIUM", &chromium)
            .env("PGFLEET_UI_BASE", &g.base)
            .env("PGFLEET_UI_ADMIN_KEY", ADMIN_KEY)
            .env("PGFLEET_UI_READ_KEY", READ_KEY)
            .env("PGFLEET_UI_FAILED_JOB", failed.to_string())
            .env("PGFLEET_UI_WORKFLOW", wf.id.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "console script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;

    // 1. Found, read, retried, completed.
    assert_eq!(f["scope"], "scope: admin", "{f}");
    let listed = f["listed"].as_array().unwrap();
    assert!(
        listed.contains(&json!([failed.to_string(), "discarded"])),
        "{f}"
    );
    assert!(
        listed
            .iter()
            .all(|r| r[1] == "discarded" || r[1] == "retryable"),
        "{f}"
    );
    assert!(
        f["jobUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#/jobs/{failed}")),
        "{f}"
    );
    assert_eq!(f["stateBefore"], "discarded");
    let before = f["attemptsBefore"].as_array().unwrap();
    assert_eq!(before.len(), 2, "{f}");
    for (i, a) in before.iter().enumerate() {
        assert_eq!(a[0], (i + 1).to_string());
        assert_eq!(a[6], "payment gateway timeout after 30 s");
        assert!(
            a[5].as_str().unwrap().contains('-'),
            "the worker is named: {a}"
        );
    }
    assert_eq!(f["stateAfter"], "completed");
    assert_eq!(f["attemptsAfter"][2][1], "completed", "{f}");
    assert_eq!(g.queue.get_job(failed).await?.state, JobState::Completed);
    assert_eq!(f["actionsAfter"], json!(["delete"]));

    // 2. Exactly the 500 scheduled emails were cancelled, confirmed by keyboard.
    let confirm = f["confirmText"].as_str().unwrap();
    assert!(confirm.starts_with("Cancel 500 jobs matching"), "{confirm}");
    assert_eq!(f["confirmFocus"], "confirm-no", "the safe choice has focus");
    assert_eq!(f["confirmFocusAfterTab"], "confirm-yes");
    assert_eq!(f["bulkStatus"], "Cancel: 500 jobs done.");
    let by_kind: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT kind, state::text, count(*) FROM (SELECT kind, state FROM pgfleet.jobs WHERE queue = 'mail' \
         UNION ALL SELECT kind, state FROM pgfleet.jobs_finished WHERE queue = 'mail') j GROUP BY 1, 2 ORDER BY 1",
    )
    .fetch_all(&g.db.pool)
    .await?;
    assert_eq!(
        by_kind,
        vec![
            ("email.digest".into(), "available".into(), 20),
            ("email.send".into(), "cancelled".into(), 500)
        ]
    );

    // 3. Paused (and the API agreed), then resumed.
    assert_eq!(f["pausedShown"], "paused");
    assert_eq!(f["pausedInApi"], true);
    assert_eq!(f["resumedShown"], "running");
    assert!(g.queue.paused_queues().await?.is_empty());
    assert_eq!(f["charts"].as_array().unwrap().len(), 4, "{f}");
    assert!(f["workers"][0].as_str().unwrap().ends_with("/ 10"), "{f}");
    let groups = f["errorGroups"].as_array().unwrap();
    assert!(
        groups.contains(&json!(["fail", "card declined: code #", "1"])),
        "{f}"
    );

    // The workflow's jobs, the second waiting for the first.
    let wf_jobs = f["workflowJobs"].as_array().unwrap();
    assert_eq!(wf_jobs.len(), 2, "{f}");
    let first = &wf_jobs[0][0];
    assert!(wf_jobs.iter().all(|j| j[1] == "completed"), "{f}");
    assert_eq!(
        wf_jobs[1][2],
        format!("#{}", first.as_str().unwrap()),
        "{f}"
    );

    // The key stays in its tab.
    assert_eq!(f["keyInLocalStorage"], false);
    assert!(
        f["newTabError"]
            .as_str()
            .unwrap()
            .contains("Enter an API key"),
        "{f}"
    );

    // 4. Read scope: no action shown, every action refused.
    assert_eq!(f["readScope"], "scope: read (read only)");
    assert_eq!(f["readBulkButtons"], 0);
    assert_eq!(f["readJobButtons"], 0);
    assert_eq!(f["readQueueButtons"], 0);
    assert_eq!(f["readApiStatuses"], json!([403, 403, 403]));
    let refusals = f["refusalErrors"].as_array().unwrap();
    assert!(
        refusals.len() <= 3 && refusals.iter().all(|e| e.as_str().unwrap().contains("403")),
        "{f}"
    );

    // axe-core's WCAG 2 A/AA rules find nothing on any view.
    assert_eq!(f["a11yViews"], 7);
    assert_eq!(f["a11y"], json!([]), "{f}");
    // Accessibility basics and a clean console (a CSP violation would be logged here).
    for (view, missing) in f["unlabelled"].as_object().unwrap() {
        assert_eq!(missing, &json!([]), "unlabelled controls on {view}");
    }
    assert_eq!(f["consoleErrors"], json!([]), "{f}");
    Ok(())
}
