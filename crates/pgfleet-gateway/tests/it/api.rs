use std::time::Duration;

use pgfleet_gateway::signature::sign_request;
use pgfleet_testkit::eventually;
use serde_json::{json, Value};

use crate::{spawn_gateway, start_worker, ADMIN_KEY, HMAC, READ_KEY};

#[tokio::test]
async fn jobs_api_create_get_list_retry_cancel_delete() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let url = format!("{}/v1/jobs", g.base);
    let r = g.http.post(&url).bearer_auth(ADMIN_KEY)
        .json(&json!({"queue": "mail", "kind": "fail", "payload": {"permanent": true}, "unique_key": "k1"}))
        .send().await?;
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await?;
    let id = job["id"].as_i64().unwrap();
    let again = g
        .http
        .post(&url)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"queue": "mail", "kind": "fail", "unique_key": "k1"}))
        .send()
        .await?;
    assert_eq!(again.status(), 200, "unique key: same job");
    assert_eq!(again.json::<Value>().await?["id"], id);
    let batch = json!({"jobs": (0..25).map(|i| json!({"kind": "noop", "payload": {"i": i}})).collect::<Vec<_>>()});
    let r = g
        .http
        .post(format!("{url}/batch"))
        .bearer_auth(ADMIN_KEY)
        .json(&batch)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Vec<Value>>().await?.len(), 25);
    // Keyset pagination over everything.
    let mut seen = 0;
    let mut after = 0;
    loop {
        let page: Value = g
            .http
            .get(format!("{url}?limit=10&after={after}"))
            .bearer_auth(READ_KEY)
            .send()
            .await?
            .json()
            .await?;
        let jobs = page["jobs"].as_array().unwrap();
        seen += jobs.len();
        match page["next_after"].as_i64() {
            Some(a) => after = a,
            None => break,
        }
    }
    assert_eq!(seen, 26);
    let mail: Value = g
        .http
        .get(format!("{url}?queue=mail&state=available"))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(mail["jobs"].as_array().unwrap().len(), 1);
    // Work it: the permanent failure discards it; retry it over the API.
    let (stop, worker) = start_worker(&g, &["mail"]).await?;
    eventually("discarded", Duration::from_secs(10), || async {
        let j: Value = g
            .http
            .get(format!("{url}/{id}"))
            .bearer_auth(READ_KEY)
            .send()
            .await?
            .json()
            .await?;
        Ok((j["state"] == "discarded").then_some(()))
    })
    .await?;
    stop.cancel();
    worker.await??;
    let r = g
        .http
        .post(format!("{url}/{id}/retry"))
        .bearer_auth(READ_KEY)
        .send()
        .await?;
    assert_eq!(r.status(), 403, "retry needs admin");
    let r: Value = g
        .http
        .post(format!("{url}/{id}/retry"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["state"], "available");
    let r: Value = g
        .http
        .post(format!("{url}/{id}/cancel"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["state"], "cancelled");
    assert_eq!(
        g.http
            .delete(format!("{url}/{id}"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?
            .status(),
        204
    );
    assert_eq!(
        g.http
            .get(format!("{url}/{id}"))
            .bearer_auth(READ_KEY)
            .send()
            .await?
            .status(),
        404
    );
    Ok(())
}

#[tokio::test]
async fn signed_requests_are_accepted_and_tampering_is_not() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let body = r#"{"kind":"noop"}"#;
    let ts = chrono::Utc::now().timestamp();
    let sig = sign_request(HMAC.as_bytes(), ts, "POST", "/v1/jobs", body.as_bytes());
    let send = |body: &'static str, sig: String| {
        g.http
            .post(format!("{}/v1/jobs", g.base))
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(send(body, sig.clone()).await?.status(), 201);
    assert_eq!(send(r#"{"kind":"fail"}"#, sig).await?.status(), 401);
    Ok(())
}

#[tokio::test]
async fn pause_over_the_api_stops_every_worker_and_resume_restarts_them() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let (s1, w1) = start_worker(&g, &["default"]).await?;
    let (s2, w2) = start_worker(&g, &["default"]).await?;
    let r = g
        .http
        .post(format!("{}/v1/queues/default/pause?create=true", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["paused"], true);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let batch = json!({"jobs": (0..40).map(|_| json!({"kind": "noop"})).collect::<Vec<_>>()});
    g.http
        .post(format!("{}/v1/jobs/batch", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&batch)
        .send()
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done = || async {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pgfleet.jobs_finished")
                .fetch_one(&g.db.pool)
                .await?,
        )
    };
    assert_eq!(done().await?, 0, "no worker claims from a paused queue");
    let workers: Value = g
        .http
        .get(format!("{}/v1/workers", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(workers.as_array().unwrap().len(), 2);
    let parts: Value = g
        .http
        .get(format!("{}/v1/partitions", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(parts.as_array().unwrap().len(), 16);
    g.http
        .post(format!("{}/v1/queues/default/resume", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    eventually("resumed", Duration::from_secs(10), || async {
        Ok((done().await? == 40).then_some(()))
    })
    .await?;
    // The seed aliases: /stop pauses every queue, /start resumes them.
    let r: Value = g
        .http
        .post(format!("{}/stop", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["status"], "stopped");
    let queues: Value = g
        .http
        .get(format!("{}/v1/queues", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert!(queues
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["paused"] == true));
    let r: Value = g
        .http
        .post(format!("{}/start", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["status"], "running");
    s1.cancel();
    s2.cancel();
    w1.await??;
    w2.await??;
    Ok(())
}

#[tokio::test]
async fn openapi_lists_every_route_and_the_task_aliases_work() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let doc: Value = g
        .http
        .get(format!("{}/openapi.json", g.base))
        .send()
        .await?
        .json()
        .await?;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/webhooks/{source}",
        "/v1/jobs",
        "/v1/jobs/batch",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/retry",
        "/v1/jobs/{id}/cancel",
        "/v1/queues",
        "/v1/queues/{name}/pause",
        "/v1/queues/{name}/resume",
        "/v1/workers",
        "/v1/partitions",
        "/tasks",
        "/start",
        "/stop",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        g.http
            .get(format!("{}/docs/", g.base))
            .send()
            .await?
            .status(),
        200,
        "Swagger UI"
    );
    let r = g
        .http
        .post(format!("{}/tasks", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"type": "noop", "payload": {"x": 1}}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await?;
    assert_eq!(
        (t["type"].as_str(), t["status"].as_str()),
        (Some("noop"), Some("available"))
    );
    let list: Value = g
        .http
        .get(format!("{}/tasks", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list[0]["id"], t["id"]);
    assert_eq!(
        g.http
            .get(format!("{}/healthz", g.base))
            .send()
            .await?
            .status(),
        200
    );
    assert_eq!(
        g.http
            .get(format!("{}/readyz", g.base))
            .send()
            .await?
            .status(),
        200
    );
    let r = g
        .http
        .get(format!("{}/healthz", g.base))
        .header("x-request-id", "abc")
        .send()
        .await?;
    assert_eq!(r.headers()["x-request-id"], "abc", "request ids propagate");
    Ok(())
}

/// `/metrics` after real traffic: route templates (never raw ids), webhook and enqueue
/// counters, queue gauges, and the text passes `promtool check metrics` when promtool is
/// installed (CI installs it).
#[tokio::test]
async fn metrics_are_scraped_after_traffic_and_pass_promtool() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let r = g
        .http
        .post(format!("{}/v1/jobs", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"queue": "mail", "kind": "noop"}))
        .send()
        .await?;
    let id = r.json::<Value>().await?["id"].as_i64().unwrap();
    g.http
        .get(format!("{}/v1/jobs/{id}", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?;
    let body = r#"{"event_id":"evt_m","type":"payment.succeeded","amount":5,"currency":"EUR"}"#;
    assert_eq!(
        crate::post_webhook(&g, "payments", "m1", body)
            .await
            .status(),
        202
    );
    g.http
        .post(format!("{}/webhooks/payments", g.base))
        .body(body)
        .send()
        .await?; // unsigned: 401
    let r = g.http.get(format!("{}/metrics", g.base)).send().await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()?
        .starts_with("text/plain"));
    let text = r.text().await?;
    for needle in [
        r#"pgfleet_http_requests_total{method="GET",route="/v1/jobs/{id}",status="200",component="gateway"} 1"#,
        r#"pgfleet_jobs_enqueued_total{kind="noop",queue="mail",component="gateway"} 1"#,
        r#"pgfleet_jobs_enqueued_total{kind="payments.process",queue="default",component="gateway"} 1"#,
        r#"pgfleet_webhooks_total{result="accepted",source="payments",component="gateway"} 1"#,
        r#"pgfleet_webhook_signature_failures_total{source="payments",component="gateway"} 1"#,
        r#"pgfleet_queue_paused{queue="mail",component="gateway"} 0"#,
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
    assert!(text.contains("pgfleet_queue_depth{partition="), "{text}");
    assert!(
        !text.contains(&format!("/v1/jobs/{id}\"")),
        "raw ids never become labels"
    );
    pgfleet_testkit::promtool_check_metrics(&text)?;
    Ok(())
}
