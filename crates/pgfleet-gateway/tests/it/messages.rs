//! Outbound messages: stored unsent, POSTed signed per Standard Webhooks to a local
//! receiver that verifies the signature; a failure is retried and the message is marked
//! sent exactly once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use pgfleet_gateway::signature::{verify_webhook, WebhookSecret};
use pgfleet_testkit::eventually;
use serde_json::{json, Value};

use crate::{spawn_gateway, start_worker_with, ADMIN_KEY};

const OUT_SECRET: &str = "whsec_b3V0Ym91bmQtbWVzc2FnZXMtc2VjcmV0";

#[derive(Clone, Default)]
struct Receiver {
    /// (webhook-id, verified, body) per request.
    seen: Arc<Mutex<Vec<(String, bool, Value)>>>,
    /// Statuses to answer, in order; 200 after.
    plan: Arc<Mutex<Vec<u16>>>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let ok = verify_webhook(
        &[WebhookSecret::parse(OUT_SECRET).unwrap()],
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
        300,
    )
    .is_ok();
    let id = h("webhook-id").unwrap_or_default().to_owned();
    r.seen
        .lock()
        .unwrap()
        .push((id, ok, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    if !ok {
        return StatusCode::UNAUTHORIZED;
    }
    let mut plan = r.plan.lock().unwrap();
    if plan.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::from_u16(plan.remove(0)).unwrap()
    }
}

#[tokio::test]
async fn a_message_is_retried_after_a_failure_and_marked_sent_once() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let receiver = Receiver::default();
    receiver.plan.lock().unwrap().push(500);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let res = g
        .http
        .post(format!("{}/v1/messages", g.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"recipient": "+15550100", "content": "your code is 123456", "webhook_url": url}))
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await?;
    assert_eq!(m["sent_at"], Value::Null);
    let id = m["id"].as_i64().unwrap();

    let deliverer = pgfleet_messages::Deliverer::new(
        WebhookSecret::parse(OUT_SECRET).unwrap(),
        None,
        Duration::from_secs(5),
    )?;
    let (_stop, _task) = start_worker_with(&g, &["default"], move |k| {
        k.messages = Some(deliverer);
    })
    .await?;

    let sent = eventually("message sent", Duration::from_secs(20), || async {
        let m: Value = g
            .http
            .get(format!("{}/v1/messages/{id}", g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?
            .json()
            .await?;
        Ok((!m["sent_at"].is_null()).then_some(m))
    })
    .await?;
    assert_eq!(sent["attempts"], 2);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one failure, one success");
    let want_id = format!("msg_{id}");
    for (wid, verified, body) in &seen {
        assert!(verified, "signature verifies");
        assert_eq!(wid, &want_id, "the same webhook-id on every attempt");
        assert_eq!(body["data"]["content"], "your code is 123456");
        assert_eq!(body["data"]["recipient"], "+15550100");
    }
    // Listed once among sent messages (the seed alias too).
    for path in ["/v1/messages", "/messages"] {
        let list: Value = g
            .http
            .get(format!("{}{path}", g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?
            .json()
            .await?;
        let ids: Vec<i64> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_i64())
            .collect();
        assert_eq!(ids, vec![id]);
    }
    // The job completed on its second attempt (recorded just after the send).
    let (state, attempt): (String, i32) =
        eventually("the job finished", Duration::from_secs(10), || async {
            Ok(sqlx::query_as(
                "SELECT state::text, attempt FROM pgfleet.jobs_finished \
                 WHERE kind = 'messages.deliver'",
            )
            .fetch_optional(&g.db.pool)
            .await?)
        })
        .await?;
    assert_eq!((state.as_str(), attempt), ("completed", 2));
    server.abort();
    Ok(())
}

#[tokio::test]
async fn bad_messages_are_422_naming_the_field() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    for (body, field) in [
        (json!({"recipient": "", "content": "x"}), "recipient"),
        (json!({"recipient": "r", "content": ""}), "content"),
        (
            json!({"recipient": "r", "content": "x", "webhook_url": "ftp://x/y"}),
            "webhook_url",
        ),
        (json!({"recipient": "r"}), "content"),
    ] {
        let res = g
            .http
            .post(format!("{}/v1/messages", g.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        assert_eq!(res.status(), 422);
        let p: Value = res.json().await?;
        assert_eq!(p["field"], field, "{p}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.messages")
        .fetch_one(&g.db.pool)
        .await?;
    assert_eq!(n, 0);
    Ok(())
}
