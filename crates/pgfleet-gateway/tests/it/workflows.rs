//! Workflows and batches over HTTP: created with dependents blocked, shown with their state
//! and jobs, cancelled; a cycle, an unknown dependency id or a key outside a workflow is 422
//! naming the field with nothing written; read keys cannot create or cancel.

use serde_json::{json, Value};

use crate::{get_json, problem, rows, send_json, spawn_gateway, Gateway, ADMIN_KEY, READ_KEY};

async fn post(g: &Gateway, path: &str, key: &str, body: Value) -> reqwest::Response {
    send_json(g, reqwest::Method::POST, path, key, body).await
}

#[tokio::test]
async fn a_workflow_is_created_shown_and_cancelled() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let body = json!({"name": "etl", "jobs": [
        {"key": "load", "kind": "noop", "depends_on": ["extract"]},
        {"key": "extract", "kind": "noop", "payload": {"url": "s3://x"}},
    ]});
    let r = post(&g, "/v1/workflows", ADMIN_KEY, body).await;
    assert_eq!(r.status(), 201);
    let wf: Value = r.json().await?;
    assert_eq!(wf["jobs"][0]["key"], "load");
    assert_eq!(wf["jobs"][0]["state"], "blocked");
    assert_eq!(wf["jobs"][1]["state"], "available");
    let id = wf["id"].as_i64().unwrap();
    let load = wf["jobs"][0]["id"].as_i64().unwrap();
    let extract = wf["jobs"][1]["id"].as_i64().unwrap();
    let shown: Value = get_json(&g, &format!("/v1/workflows/{id}")).await;
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["counts"], json!({"available": 1, "blocked": 1}));
    let deps: Value = get_json(&g, &format!("/v1/jobs/{load}/dependencies")).await;
    assert_eq!(
        deps,
        json!([{"id": extract, "kind": "noop", "state": "available", "output": null}])
    );
    let job: Value = get_json(&g, &format!("/v1/jobs/{load}")).await;
    assert_eq!(job["workflow_id"], id);
    problem(
        post(
            &g,
            &format!("/v1/workflows/{id}/cancel"),
            READ_KEY,
            json!({}),
        )
        .await,
        403,
    )
    .await;
    let cancelled: Value = post(
        &g,
        &format!("/v1/workflows/{id}/cancel"),
        ADMIN_KEY,
        json!({}),
    )
    .await
    .json()
    .await?;
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["counts"], json!({"cancelled": 2}));
    problem(
        g.http
            .get(format!("{}/v1/workflows/999999", g.base))
            .bearer_auth(READ_KEY)
            .send()
            .await?,
        404,
    )
    .await;
    // A batch and a dependent job through the plain jobs API.
    let r = post(
        &g,
        "/v1/batches",
        ADMIN_KEY,
        json!({"name": "b",
        "jobs": [{"kind": "noop"}, {"kind": "noop"}], "callback": {"kind": "noop"}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await?;
    assert_eq!(b["jobs"][2]["key"], "callback");
    assert_eq!(b["jobs"][2]["state"], "blocked");
    let r = post(
        &g,
        "/v1/jobs",
        ADMIN_KEY,
        json!({"kind": "noop",
        "depends_on": [b["jobs"][0]["id"]], "on_dependency_failure": "run"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await?["state"], "blocked");
    Ok(())
}

#[tokio::test]
async fn bad_workflows_are_422_naming_the_field_with_nothing_written() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let cases = [
        (
            json!({"name": "w", "jobs": [
            {"key": "a", "kind": "noop", "depends_on": ["b"]},
            {"key": "b", "kind": "noop", "depends_on": ["a"]}]}),
            "jobs[1].depends_on[0]",
        ),
        (
            json!({"name": "w", "jobs": [
            {"key": "a", "kind": "noop"},
            {"key": "b", "kind": "noop", "depends_on": ["a", 987654]}]}),
            "jobs[1].depends_on",
        ),
        (
            json!({"name": "w", "jobs": [{"key": "a", "kind": "noop", "depends_on": ["zz"]}]}),
            "jobs[0].depends_on[0]",
        ),
        (
            json!({"name": "w", "jobs": [{"kind": "noop"}]}),
            "jobs[0].key",
        ),
        (
            json!({"name": "w", "jobs": [{"key": "a", "kind": "no op"}]}),
            "jobs[0].kind",
        ),
        (
            json!({"name": "", "jobs": [{"key": "a", "kind": "noop"}]}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let p = problem(
            post(&g, "/v1/workflows", ADMIN_KEY, body.clone()).await,
            422,
        )
        .await;
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    let p = problem(
        post(
            &g,
            "/v1/jobs",
            ADMIN_KEY,
            json!({"kind": "noop", "key": "a"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "key");
    let p = problem(
        post(
            &g,
            "/v1/jobs",
            ADMIN_KEY,
            json!({"kind": "noop", "depends_on": [424242]}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "depends_on");
    let p = problem(
        post(
            &g,
            "/v1/batches",
            ADMIN_KEY,
            json!({"name": "b", "jobs": [{"kind": "noop"}],
        "callback": {"kind": "noop", "depends_on": [1]}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "callback.depends_on");
    // A callback is its batch's own: a unique key (which could name another batch's
    // callback) is refused, not a 503 (found by schemathesis).
    post(
        &g,
        "/v1/jobs",
        ADMIN_KEY,
        json!({"kind": "noop", "unique_key": "taken"}),
    )
    .await;
    let p = problem(
        post(
            &g,
            "/v1/batches",
            ADMIN_KEY,
            json!({"name": "b", "jobs": [{"kind": "noop"}],
        "callback": {"kind": "noop", "unique_key": "taken"}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "callback.unique_key");
    problem(
        post(
            &g,
            "/v1/workflows",
            READ_KEY,
            json!({"name": "w", "jobs": [{"key": "a", "kind": "noop"}]}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(
        rows(&g, "pgfleet.jobs").await,
        1,
        "only the job holding `taken`"
    );
    for table in ["pgfleet.workflows", "pgfleet.job_deps"] {
        assert_eq!(rows(&g, table).await, 0, "{table}");
    }
    Ok(())
}
