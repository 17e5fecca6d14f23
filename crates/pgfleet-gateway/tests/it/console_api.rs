//! The API the console runs on: who am I, the job list's filters and newest-first pages,
//! counts, bulk actions by filter (admin only, 422 naming the field), failures grouped,
//! queue history and pools.

use pgfleet_queue::pools::PoolReport;
use pgfleet_queue::NewJob;
use reqwest::Method;
use serde_json::json;

use crate::{get_json, problem, send_json, spawn_gateway_with, ADMIN_KEY, READ_KEY};

/// GETs `path` with the read key, expects 422 and returns the field it names.
async fn invalid_field(g: &crate::Gateway, path: &str) -> serde_json::Value {
    problem(crate::get_as_reader(g, path).await, 422).await["field"].clone()
}

#[tokio::test]
async fn me_says_the_scope_and_the_trace_link() -> anyhow::Result<()> {
    let g =
        spawn_gateway_with(|c| c.trace_url = Some("http://jaeger.local/trace/{trace_id}".into()))
            .await?;
    let me = get_json(&g, "/v1/me").await;
    assert_eq!(
        me,
        json!({"scope": "read", "trace_url": "http://jaeger.local/trace/{trace_id}"})
    );
    let r = g
        .http
        .get(format!("{}/v1/me", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    assert_eq!(r.json::<serde_json::Value>().await?["scope"], "admin");
    let r = g.http.get(format!("{}/v1/me", g.base)).send().await?;
    problem(r, 401).await;
    Ok(())
}

#[tokio::test]
async fn the_list_filters_counts_and_acts_in_bulk() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|_| {}).await?;
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let jobs: Vec<NewJob> = (0..30)
        .map(|i| {
            let mut j = NewJob::new("mail", if i < 20 { "email.send" } else { "email.digest" })
                .payload(json!({"to": format!("user{i}@example.com")}));
            j.run_at = Some(later);
            j.partition_key = Some(format!("tenant-{}", i % 3));
            j
        })
        .collect();
    g.queue.enqueue_many(&jobs).await?;
    let page = get_json(
        &g,
        "/v1/jobs?state=scheduled&kind=email.send&order=desc&limit=8",
    )
    .await;
    let ids: Vec<i64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 8);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let next = page["next_after"].as_i64().unwrap();
    let page2 = get_json(
        &g,
        &format!("/v1/jobs?state=scheduled&kind=email.send&order=desc&limit=8&after={next}"),
    )
    .await;
    assert!(page2["jobs"][0]["id"].as_i64().unwrap() < next);
    assert_eq!(page2["jobs"][0]["partition_key"].as_str().unwrap().len(), 8);
    let found = get_json(&g, "/v1/jobs?q=user7%40example&partition_key=tenant-1").await;
    assert_eq!(found["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(found["jobs"][0]["payload"]["to"], "user7@example.com");
    let count = get_json(
        &g,
        "/v1/jobs/count?state=scheduled,available&kind=email.send",
    )
    .await;
    assert_eq!(count["count"], 20);

    // Bad filters name the parameter, in the query and in a bulk body.
    assert_eq!(invalid_field(&g, "/v1/jobs?state=failed").await, "state");
    assert_eq!(
        invalid_field(&g, "/v1/jobs/count?state=").await,
        "state",
        "an empty state list"
    );
    let backwards = "/v1/jobs/count?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z";
    assert_eq!(invalid_field(&g, backwards).await, "from");
    let r = send_json(
        &g,
        Method::POST,
        "/v1/jobs/bulk",
        ADMIN_KEY,
        json!({"action": "cancel", "filter": {"state": "later"}}),
    )
    .await;
    assert_eq!(problem(r, 422).await["field"], "filter.state");
    let r = send_json(
        &g,
        Method::POST,
        "/v1/jobs/bulk",
        ADMIN_KEY,
        json!({"action": "explode", "filter": {}}),
    )
    .await;
    assert_eq!(problem(r, 422).await["field"], "action");

    // Read keys cannot act; admins cancel exactly what the filter matches.
    let filter = json!({"state": "scheduled", "kind": "email.send"});
    let r = send_json(
        &g,
        Method::POST,
        "/v1/jobs/bulk",
        READ_KEY,
        json!({"action": "cancel", "filter": filter}),
    )
    .await;
    problem(r, 403).await;
    let r = send_json(
        &g,
        Method::POST,
        "/v1/jobs/bulk",
        ADMIN_KEY,
        json!({"action": "cancel", "filter": filter, "max": 20}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await?,
        json!({"affected": 20, "done": true})
    );
    assert_eq!(
        get_json(&g, "/v1/jobs/count?state=cancelled").await["count"],
        20
    );
    assert_eq!(
        get_json(&g, "/v1/jobs/count?state=scheduled&kind=email.digest").await["count"],
        10
    );
    Ok(())
}

#[tokio::test]
async fn errors_history_and_pools_for_the_console() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|_| {}).await?;
    g.queue.enqueue(NewJob::new("default", "noop")).await?;
    g.queue.sample_queues(std::time::Duration::ZERO).await?;
    let h = get_json(&g, "/v1/queues/default/history?minutes=5").await;
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["available"], 1);
    let zero = "/v1/queues/default/history?minutes=0";
    assert_eq!(invalid_field(&g, zero).await, "minutes");
    assert_eq!(get_json(&g, "/v1/errors").await, json!([]));
    g.queue
        .record_pool(&PoolReport {
            name: "local-pool".into(),
            source: "local".into(),
            desired: 3,
            actual: 1,
            backlog: 900,
            lag_seconds: 4.5,
            reason: "scale up: lag 4.5 s over 2 s".into(),
            updated_at: chrono::Utc::now(),
        })
        .await?;
    let pools = get_json(&g, "/v1/pools").await;
    assert_eq!(pools[0]["pool"]["name"], "local-pool");
    assert_eq!(pools[0]["history"][0]["desired"], 3);
    assert_eq!(
        pools[0]["history"][0]["reason"],
        "scale up: lag 4.5 s over 2 s"
    );
    Ok(())
}
