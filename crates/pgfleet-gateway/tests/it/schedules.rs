//! Schedules and queue limits over HTTP: created, shown with their next and last run and
//! last job state, paused, deleted; bad cron, zone and limits are 422 naming the field with
//! nothing written; read keys cannot change them.

use std::time::Duration;

use pgfleet_testkit::eventually;
use serde_json::{json, Value};

use crate::{get_json, problem, rows, send_json, spawn_gateway, Gateway, ADMIN_KEY, READ_KEY};

async fn put(g: &Gateway, path: &str, key: &str, body: Value) -> reqwest::Response {
    send_json(g, reqwest::Method::PUT, path, key, body).await
}

#[tokio::test]
async fn a_schedule_is_created_ticks_and_shows_its_last_job() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let body = json!({"cron": "@every 1s", "timezone": "Europe/Berlin", "queue": "periodic",
                      "kind": "noop", "payload": {"report": "daily"},
                      "misfire": {"policy": "catch_up", "max": 3}});
    let r = put(&g, "/v1/schedules/report", ADMIN_KEY, body).await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await?;
    assert_eq!(s["name"], "report");
    assert_eq!(s["misfire"], "catch_up");
    assert_eq!(s["catch_up"], 3);
    assert!(s["next_run_at"].is_string());
    // The gateway does not run schedules; a worker's scheduler does. Run one pass by hand.
    eventually("a tick", Duration::from_secs(10), || async {
        g.queue.run_due_schedules().await?;
        let s = get_json(&g, "/v1/schedules/report").await;
        Ok(s["last_job_id"].as_i64().map(|_| s))
    })
    .await
    .map(|s| {
        assert_eq!(s["last_job_state"], "available");
        assert!(s["last_run_at"].is_string());
    })?;
    let list = get_json(&g, "/v1/schedules").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Pause, resume, delete.
    let paused: Value = g
        .http
        .post(format!("{}/v1/schedules/report/pause", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(paused["paused"], true);
    let r = g
        .http
        .delete(format!("{}/v1/schedules/report", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    problem(
        g.http
            .get(format!("{}/v1/schedules/report", g.base))
            .bearer_auth(READ_KEY)
            .send()
            .await?,
        404,
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn bad_schedules_and_limits_are_422_naming_the_field_and_write_nothing() -> anyhow::Result<()>
{
    let g = spawn_gateway().await?;
    let base = json!({"cron": "*/5 * * * *", "kind": "noop"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("cron", json!("61 * * * *")), "cron"),
        (with("cron", json!("@every 0s")), "cron"),
        (with("timezone", json!("Mars/Olympus")), "timezone"),
        (
            with("misfire", json!({"policy": "catch_up", "max": 0})),
            "misfire.max",
        ),
        (
            with("misfire", json!({"policy": "sometimes"})),
            "misfire.policy",
        ),
        (with("priority", json!(12)), "priority"),
        (with("name", json!("other")), "name"),
    ] {
        let v = problem(
            put(&g, "/v1/schedules/s1", ADMIN_KEY, body.clone()).await,
            422,
        )
        .await;
        assert_eq!(v["field"], field, "{body}");
    }
    assert_eq!(rows(&g, "pgfleet.schedules").await, 0);
    for (body, field) in [
        (json!({"concurrency": -3}), "concurrency"),
        (json!({"concurrency": 0}), "concurrency"),
        (json!({"key_concurrency": -1}), "key_concurrency"),
        (json!({"rate": {"per_second": -5}}), "rate"),
        (json!({"rate": {"per_second": 5, "burst": 0}}), "rate"),
    ] {
        let v = problem(
            put(&g, "/v1/queues/q1/limits", ADMIN_KEY, body.clone()).await,
            422,
        )
        .await;
        assert_eq!(v["field"], field, "{body}");
    }
    let v = problem(
        put(&g, "/v1/queues/q1/limits", ADMIN_KEY, json!([null, null])).await,
        422,
    )
    .await;
    assert_eq!(v["field"], "body", "an array is not a limits object");
    assert_eq!(rows(&g, "pgfleet.queues WHERE flow").await, 0);
    // A read key can look but not change.
    problem(
        put(&g, "/v1/schedules/s1", READ_KEY, base.clone()).await,
        403,
    )
    .await;
    problem(
        put(
            &g,
            "/v1/queues/q1/limits",
            READ_KEY,
            json!({"concurrency": 1}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(rows(&g, "pgfleet.schedules").await, 0);
    Ok(())
}

#[tokio::test]
async fn limits_are_set_at_run_time_and_shown_with_the_queue() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let body = json!({"concurrency": 3, "key_concurrency": 1,
                      "rate": {"per_second": 50, "burst": 10}, "fair": true});
    let r = put(&g, "/v1/queues/emails/limits", ADMIN_KEY, body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["limits"]["concurrency"], 3);
    assert_eq!(v["running"], 0);
    let q = get_json(&g, "/v1/queues").await;
    let emails = q
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "emails")
        .unwrap()
        .clone();
    assert_eq!(emails["limits"]["rate"]["per_second"], 50.0);
    assert_eq!(emails["limits"]["fair"], true);
    // Lifted: the queue has no limits any more.
    let r = put(&g, "/v1/queues/emails/limits", ADMIN_KEY, json!({})).await;
    assert_eq!(r.status(), 200);
    let v = get_json(&g, "/v1/queues/emails/limits").await;
    assert_eq!(v["limits"]["concurrency"], Value::Null);
    Ok(())
}
