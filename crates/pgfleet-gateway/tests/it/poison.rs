//! Poison input (issue 17): what the database or the worker cannot take is refused before
//! anything is written, what is accepted round-trips exactly, and one bad row or event
//! never holds up its neighbours.

use std::time::Duration;

use pgfleet_gateway::ingest::{Incoming, Ingest, Stored};
use pgfleet_testkit::eventually;
use serde_json::{json, Value};

use crate::{
    counts, post_webhook, problem, spawn_gateway, start_worker, webhook_request, ADMIN_KEY,
    READ_KEY, SECRET,
};

async fn post_job(g: &crate::Gateway, body: &str) -> reqwest::Response {
    g.http
        .post(format!("{}/v1/jobs", g.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn job_state(g: &crate::Gateway, id: i64) -> anyhow::Result<Value> {
    Ok(g.http
        .get(format!("{}/v1/jobs/{id}", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test]
async fn numbers_near_the_float_limit_round_trip_exactly_or_are_refused_before_writing(
) -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let before = counts(&g).await?;
    for (body, field) in [
        (r#"{"kind":"noop","payload":{"x":1e400}}"#, "payload.x"),
        (
            r#"{"kind":"noop","payload":{"a":[1,-1e-400]}}"#,
            "payload.a[1]",
        ),
        (
            r#"{"kind":"noop","payload":{"n":12345678901234567890123}}"#,
            "payload.n",
        ),
        (
            r#"{"kind":"noop","payload":{"max":1.7976931348623157e308}}"#,
            "payload.max",
        ),
    ] {
        let v = problem(post_job(&g, body).await, 422).await;
        assert_eq!(v["field"], field, "{body}");
    }
    let v = problem(
        post_webhook(
            &g,
            "github",
            "big",
            r#"{"event_id":"e1","type":"push","x":1e400}"#,
        )
        .await,
        422,
    )
    .await;
    assert_eq!(v["field"], "x");
    assert_eq!(counts(&g).await?, before, "nothing was written");

    // What a double holds is accepted, stored, listed, claimed and handed back unchanged.
    let (stop, task) = start_worker(&g, &["default"]).await?;
    let r = post_job(
        &g,
        r#"{"kind":"noop","payload":{"max":1.8e19,"x":4503599627370495.5,"tiny":5e-324,"big":18446744073709551615,"tenth":0.1}}"#,
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await?["id"].as_i64().unwrap();
    let done = eventually("completed", Duration::from_secs(10), || async {
        let j = job_state(&g, id).await?;
        Ok((j["state"] == "completed").then_some(j))
    })
    .await?;
    let p = &done["payload"];
    assert_eq!(p["max"].as_f64(), Some(1.8e19), "{p}");
    assert_eq!(p["x"].as_f64(), Some(4503599627370495.5), "{p}");
    assert_eq!(p["tiny"].as_f64(), Some(5e-324), "{p}");
    assert_eq!(p["big"].as_u64(), Some(u64::MAX), "{p}");
    assert_eq!(p["tenth"].as_f64(), Some(0.1), "{p}");
    // What the client sees is the number it sent, digit for digit.
    let text = serde_json::to_string(p)?;
    assert!(
        text.contains("4503599627370495.5") && text.contains("0.1,"),
        "{text}"
    );
    let list = g
        .http
        .get(format!("{}/v1/jobs", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?;
    assert_eq!(list.status(), 200);
    let r = post_webhook(
        &g,
        "github",
        "max",
        r#"{"event_id":"e2","type":"push","x":0.30000000000000004}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    let stored: String = sqlx::query_scalar(
        "SELECT (payload->'x')::text FROM pgfleet.webhook_events WHERE event_id = 'e2'",
    )
    .fetch_one(&g.db.pool)
    .await?;
    assert_eq!(stored, "0.30000000000000004", "stored exactly");
    stop.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn a_row_that_cannot_be_decoded_is_discarded_alone_and_its_batch_runs() -> anyhow::Result<()>
{
    let g = spawn_gateway().await?;
    // Written by SQL (another language's client, say): PostgreSQL takes numbers no
    // double holds.
    let bad: i64 = sqlx::query_scalar(
        "INSERT INTO pgfleet.jobs (queue, kind, partition, payload) \
         VALUES ('default', 'noop', 0, '{\"x\": 1e400}') RETURNING id",
    )
    .fetch_one(&g.db.pool)
    .await?;
    let batch = json!({"jobs": (0..9).map(|i| json!({"kind": "noop", "payload": {"i": i}})).collect::<Vec<_>>()});
    let r = g
        .http
        .post(format!("{}/v1/jobs/batch", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&batch)
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    // The admin views show the row rather than failing the page.
    let list = g
        .http
        .get(format!("{}/v1/jobs?limit=100", g.base))
        .bearer_auth(READ_KEY)
        .send()
        .await?;
    assert_eq!(list.status(), 200);
    let page: Value = list.json().await?;
    let row = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == bad)
        .expect("listed")
        .clone();
    let raw = row["payload"]["undecodable"]
        .as_str()
        .expect("undecodable payload shown");
    assert!(raw.contains(&format!("1{}", "0".repeat(400))), "{row}");

    // One worker, ten slots: the bad row is claimed in the same batch as the nine others,
    // which must not wait for their 15 s lease to expire (the bound below is shorter).
    let (stop, task) = start_worker(&g, &["default"]).await?;
    eventually("every job final", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.jobs_finished")
            .fetch_one(&g.db.pool)
            .await?;
        Ok((n == 10).then_some(()))
    })
    .await?;
    let states: Vec<(i64, String, i32)> =
        sqlx::query_as("SELECT id, state::text, attempt FROM pgfleet.jobs_finished ORDER BY id")
            .fetch_all(&g.db.pool)
            .await?;
    for (id, state, attempt) in &states {
        if *id == bad {
            assert_eq!(state, "discarded");
            assert_eq!(*attempt, 1, "discarded at its first claim, not looped");
        } else {
            assert_eq!(state, "completed", "job {id}");
        }
    }
    let j = job_state(&g, bad).await?;
    assert!(
        j["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot be decoded"),
        "{j}"
    );
    stop.cancel();
    task.await??;
    Ok(())
}

#[tokio::test]
async fn one_event_the_database_refuses_fails_alone_in_its_batch() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let ingest = Ingest::spawn(g.queue.clone(), "webhooks".into(), 1, 64);
    let event = |id: &str, payload: Value| Incoming {
        source: "github".into(),
        event_id: id.into(),
        kind: "push".into(),
        payload,
        job_kind: "webhooks.github".into(),
        metadata: json!({}),
    };
    // Hold the writer inside a first batch (its row is locked by an open transaction) so
    // the next twenty events queue up and are written together.
    let mut blocker = g.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO pgfleet.webhook_events (source, event_id, type, payload) \
         VALUES ('github', 'first', 'push', '{}')",
    )
    .execute(&mut *blocker)
    .await?;
    let first = tokio::spawn({
        let ingest = ingest.clone();
        let e = event("first", json!({}));
        async move { ingest.submit(e).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut handles = Vec::new();
    for i in 0..20 {
        // The bypassed validation: NUL, which jsonb refuses.
        let payload = if i == 7 {
            json!({"s": "a\u{0}b"})
        } else {
            json!({"i": i})
        };
        let ingest = ingest.clone();
        let e = event(&format!("e{i}"), payload);
        handles.push(tokio::spawn(async move { ingest.submit(e).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.rollback().await?;
    assert!(matches!(first.await?, Ok(Stored::Accepted { .. })));
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await?;
        if i == 7 {
            assert!(r.is_err(), "the bad event fails");
        } else {
            assert!(matches!(r, Ok(Stored::Accepted { .. })), "event {i}: {r:?}");
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.webhook_events")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(stored, 20);
    Ok(())
}

#[tokio::test]
async fn concurrent_webhooks_with_one_nul_event_all_answer_for_themselves() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let ts = chrono::Utc::now().timestamp();
    let mut handles = Vec::new();
    for i in 0..54 {
        let body = if i == 20 {
            r#"{"event_id":"bad","type":"push","text":"x\u0000y"}"#.to_owned()
        } else {
            format!(r#"{{"event_id":"ok{i}","type":"push"}}"#)
        };
        let request = webhook_request(&g, "github", &format!("w{i}"), ts, SECRET, &body);
        handles.push(tokio::spawn(request.send()));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await??);
    }
    for (i, r) in results.into_iter().enumerate() {
        if i == 20 {
            let v = problem(r, 422).await;
            assert_eq!(v["field"], "text");
        } else {
            assert_eq!(r.status(), 202, "webhook {i}");
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.webhook_events")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(stored, 53);
    Ok(())
}

#[tokio::test]
async fn nul_characters_are_refused_with_the_field_named() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let before = counts(&g).await?;
    for (body, field) in [
        (r#"{"kind":"no\u0000op"}"#, "kind"),
        (
            r#"{"kind":"noop","payload":{"s":["ok","\u0000"]}}"#,
            "payload.s[1]",
        ),
        (
            r#"{"kind":"noop","partition_key":"a\u0000"}"#,
            "partition_key",
        ),
        (r#"{"kind":"noop","unique_key":"\u0000"}"#, "unique_key"),
    ] {
        let v = problem(post_job(&g, body).await, 422).await;
        assert_eq!(v["field"], field, "{body}");
    }
    let post = |path: &str, body: &str| {
        g.http
            .post(format!("{}{path}", g.base))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let v = problem(
        post(
            "/v1/subscriptions",
            r#"{"user_id":"u\u0000","endpoint":"https://push.example/x","keys":{"p256dh":"a","auth":"b"}}"#,
        )
        .await?,
        422,
    )
    .await;
    assert_eq!(v["field"], "user_id");
    let v = problem(
        post("/v1/messages", r#"{"recipient":"r","content":"hi\u0000"}"#).await?,
        422,
    )
    .await;
    assert_eq!(v["field"], "content");
    for (query, field) in [
        ("/v1/jobs?queue=a%00b", "queue"),
        ("/v1/jobs?kind=%00", "kind"),
        ("/v1/subscriptions?user_id=u%00", "user_id"),
        ("/v1/notifications?user_id=u%00", "user_id"),
    ] {
        let r = g
            .http
            .get(format!("{}{query}", g.base))
            .bearer_auth(READ_KEY)
            .send()
            .await?;
        let v = problem(r, 422).await;
        assert_eq!(v["field"], field, "{query}");
    }
    let r = g
        .http
        .post(format!("{}/v1/queues/a%00b/pause", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    assert_eq!(problem(r, 422).await["field"], "name");
    assert_eq!(counts(&g).await?, before, "nothing was written");
    Ok(())
}

#[tokio::test]
async fn malformed_parameters_auth_headers_and_nosniff() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let get = |path: &str, key: &'static str| {
        g.http
            .get(format!("{}{path}", g.base))
            .header("authorization", key)
            .send()
    };
    let admin = Box::leak(format!("bearer {ADMIN_KEY}").into_boxed_str());
    for (path, field) in [
        ("/v1/jobs?limit=abc", "limit"),
        ("/v1/jobs?after=1.5", "after"),
        ("/v1/jobs/99999999999999999999", "id"),
        ("/v1/jobs/abc", "id"),
        ("/v1/notifications?limit=x", "limit"),
        ("/v1/messages?limit=-", "limit"),
    ] {
        let v = problem(get(path, admin).await?, 422).await;
        assert_eq!(v["field"], field, "{path}");
    }
    // The scheme is case-insensitive; 401 says how to authenticate; nosniff everywhere.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = get(
            "/v1/queues",
            Box::leak(format!("{scheme} {READ_KEY}").into_boxed_str()),
        )
        .await?;
        assert_eq!(r.status(), 200, "{scheme}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let r = get("/v1/queues", "Bearer nope").await?;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"pgfleet\"");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    problem(r, 401).await;
    for path in ["/healthz", "/metrics", "/ui/", "/openapi.json", "/nowhere"] {
        let r = g.http.get(format!("{}{path}", g.base)).send().await?;
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn pausing_an_unknown_queue_is_404_unless_asked_to_create_it() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let pause = |name: &str, query: &str| {
        g.http
            .post(format!("{}/v1/queues/{name}/pause{query}", g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
    };
    let v = problem(pause("emials", "").await?, 404).await;
    assert!(v["detail"].as_str().unwrap().contains("create=true"), "{v}");
    let queues: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.queues")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(queues, 0, "nothing was created");
    let r = g
        .http
        .post(format!("{}/v1/queues/emails/resume", g.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    problem(r, 404).await;
    let r = pause("emails", "?create=true").await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["paused"], true);
    // A queue with jobs is known.
    assert_eq!(
        post_job(&g, r#"{"queue":"mail","kind":"noop"}"#)
            .await
            .status(),
        201
    );
    assert_eq!(pause("mail", "").await?.status(), 200);
    problem(pause("mail", "?create=maybe").await?, 422).await;
    Ok(())
}

#[tokio::test]
async fn client_chosen_queue_and_kind_labels_are_bounded() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let jobs: Vec<Value> = (0..100)
        .map(|i| json!({"queue": format!("q{i}"), "kind": format!("k{i}")}))
        .collect();
    let r = g
        .http
        .post(format!("{}/v1/jobs/batch", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "jobs": jobs }))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let text = g
        .http
        .get(format!("{}/metrics", g.base))
        .send()
        .await?
        .text()
        .await?;
    let series = |family: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .count()
    };
    let budget = pgfleet_telemetry::LABEL_BUDGET;
    assert_eq!(series("pgfleet_jobs_enqueued_total"), budget + 1);
    assert!(text.contains(
        r#"pgfleet_jobs_enqueued_total{kind="other",queue="other",component="gateway"} 36"#
    ));
    assert_eq!(series("pgfleet_queue_paused"), budget + 1);
    Ok(())
}
