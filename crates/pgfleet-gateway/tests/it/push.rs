//! Web Push end to end: the gateway takes subscriptions and notifications, a worker
//! encrypts and signs, and the fake push service checks the VAPID JWT and decrypts the body
//! like a browser. Each of its answers is checked for its effect.

use std::sync::Arc;
use std::time::Duration;

use pgfleet_push::{PushClient, VapidKeys, VapidSigner};
use pgfleet_testkit::eventually;
use pgfleet_testkit::push::{FakePushService, FakeSubscription, Reply};
use serde_json::{json, Value};

use crate::{
    post_webhook, spawn_gateway_with, start_worker_with, Gateway, WorkerHandle, ADMIN_KEY,
};

const SUBJECT: &str = "mailto:push-tests@pgfleet.dev";
const QUEUES: &[&str] = &["high", "default", "low"];

struct Push {
    g: Gateway,
    fake: FakePushService,
    client: PushClient,
}

async fn setup() -> anyhow::Result<Push> {
    let keys = VapidKeys::generate(SUBJECT)?;
    let public = keys.public_key().to_owned();
    let g = spawn_gateway_with(|c| {
        c.vapid_public_key = Some(public);
        c.push_allow_http_loopback = true;
    })
    .await?;
    let fake = FakePushService::start().await?;
    let client = PushClient::new(Arc::new(VapidSigner::new(keys)), Duration::from_secs(5))?;
    Ok(Push { g, fake, client })
}

impl Push {
    async fn worker(&self) -> anyhow::Result<WorkerHandle> {
        let client = self.client.clone();
        start_worker_with(&self.g, QUEUES, move |k| {
            k.push = Some(client);
        })
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .g
            .http
            .post(format!("{}{path}", self.g.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.g
            .http
            .get(format!("{}{path}", self.g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn subscribe(&self, user: &str) -> (FakeSubscription, i64) {
        let sub = self.fake.subscribe();
        let (status, body) = self.post("/v1/subscriptions", sub.to_json(user)).await;
        assert_eq!(status, 201, "{body}");
        (sub, body["id"].as_i64().unwrap())
    }

    async fn notify(&self, users: &[&str], title: &str) -> i64 {
        let (status, body) = self
            .post(
                "/v1/notifications",
                json!({"type": "test", "user_ids": users, "title": title, "body": "hello"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Waits until notification `id` has `n` attempts and returns them.
    async fn attempts(&self, id: i64, n: usize) -> Vec<Value> {
        eventually(
            &format!("{n} attempts of notification {id}"),
            Duration::from_secs(20),
            || async {
                let a = self.get(&format!("/v1/notifications/{id}/attempts")).await;
                let a = a.as_array().cloned().unwrap_or_default();
                Ok((a.len() >= n).then_some(a))
            },
        )
        .await
        .unwrap()
    }

    async fn job_states(&self, id: i64) -> Vec<(String, i32)> {
        sqlx::query_as(
            "SELECT state::text, attempt FROM pgfleet.jobs_finished \
             WHERE kind = 'webpush.deliver' AND (payload->>'notification_id')::bigint = $1 \
             UNION ALL SELECT state::text, attempt FROM pgfleet.jobs \
             WHERE kind = 'webpush.deliver' AND (payload->>'notification_id')::bigint = $1",
        )
        .bind(id)
        .fetch_all(&self.g.db.pool)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_notification_arrives_encrypted_signed_and_decryptable() -> anyhow::Result<()> {
    let p = setup().await?;
    let (sub, _) = p.subscribe("alice").await;
    let (_stop, _task) = p.worker().await?;
    let (status, note) = p
        .post(
            "/v1/notifications",
            json!({"type": "order.shipped", "user_ids": ["alice"], "title": "Shipped",
                   "body": "Your order is on its way", "icon": "https://example.com/i.png",
                   "url": "https://example.com/orders/7", "locale": "en-GB",
                   "data": {"order": 7}, "priority": "high", "ttl": 600,
                   "urgency": "high", "topic": "order-7"}),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["deliveries"], 1);
    let id = note["id"].as_i64().unwrap();
    let attempts = p.attempts(id, 1).await;
    assert_eq!(attempts[0]["status"], "delivered", "{attempts:?}");
    assert_eq!(attempts[0]["http_status"], 201);
    assert_eq!(attempts[0]["attempt"], 1);

    let got = p.fake.received_by(&sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].problem, None);
    assert_eq!(
        got[0].json().unwrap(),
        json!({"notification_id": id, "type": "order.shipped", "title": "Shipped",
               "body": "Your order is on its way", "icon": "https://example.com/i.png",
               "url": "https://example.com/orders/7", "locale": "en-GB", "data": {"order": 7}})
    );
    assert_eq!(got[0].ttl.as_deref(), Some("600"));
    assert_eq!(got[0].urgency.as_deref(), Some("high"));
    assert_eq!(got[0].topic.as_deref(), Some("order-7"));
    let claims = got[0].claims.clone().unwrap();
    assert_eq!(claims["sub"], SUBJECT);
    assert_eq!(claims["aud"], format!("http://{}", p.fake.addr()));
    // The job ran on the high queue (its completion is recorded just after the attempt).
    let queue: String = eventually("the job finished", Duration::from_secs(10), || async {
        Ok(sqlx::query_scalar(
            "SELECT queue FROM pgfleet.jobs_finished WHERE kind = 'webpush.deliver'",
        )
        .fetch_optional(&p.g.db.pool)
        .await?)
    })
    .await?;
    assert_eq!(queue, "high");

    // More pushes to the same push service reuse the signed token.
    for i in 0..3 {
        let id = p.notify(&["alice"], &format!("again {i}")).await;
        p.attempts(id, 1).await;
    }
    assert_eq!(p.fake.received_by(&sub).len(), 4);
    assert_eq!(
        p.client.signer().signed(),
        1,
        "one JWT per audience, not per message"
    );
    Ok(())
}

#[tokio::test]
async fn fan_out_one_notification_to_three_users_with_two_subscriptions_each() -> anyhow::Result<()>
{
    let p = setup().await?;
    let mut subs = Vec::new();
    for user in ["u1", "u2", "u3"] {
        for _ in 0..2 {
            subs.push(p.subscribe(user).await.0);
        }
    }
    let other = p.subscribe("not-addressed").await.0;
    let id = p.notify(&["u1", "u2", "u3"], "fan-out").await;
    // Six jobs, written by one statement of one transaction (same xmin, same created_at).
    let (jobs, xmins, stamps): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT xmin::text), count(DISTINCT created_at) FROM pgfleet.jobs \
         WHERE kind = 'webpush.deliver' AND (payload->>'notification_id')::bigint = $1",
    )
    .bind(id)
    .fetch_one(&p.g.db.pool)
    .await?;
    assert_eq!((jobs, xmins, stamps), (6, 1, 1));
    let (_stop, _task) = p.worker().await?;
    let attempts = p.attempts(id, 6).await;
    assert_eq!(attempts.len(), 6);
    assert!(
        attempts.iter().all(|a| a["status"] == "delivered"),
        "{attempts:?}"
    );
    for s in &subs {
        let got = p.fake.received_by(s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].json().unwrap()["notification_id"], id);
    }
    assert!(p.fake.received_by(&other).is_empty());
    Ok(())
}

#[tokio::test]
async fn each_push_service_answer_has_its_effect() -> anyhow::Result<()> {
    let p = setup().await?;
    let (gone404, gone404_id) = p.subscribe("g404").await;
    let (gone410, gone410_id) = p.subscribe("g410").await;
    let (too_big, _) = p.subscribe("t413").await;
    let (limited, _) = p.subscribe("t429").await;
    let (broken, _) = p.subscribe("t500").await;
    p.fake.reply(&gone404, [Reply::status(404)]);
    p.fake.reply(&gone410, [Reply::status(410)]);
    p.fake.reply(&too_big, [Reply::status(413)]);
    p.fake.reply(&limited, [Reply::too_many(2)]);
    p.fake
        .reply(&broken, [Reply::status(500), Reply::status(503)]);
    let (_stop, _task) = p.worker().await?;

    // 404 and 410: subscription deactivated, one failed attempt, no retry, job completed.
    for (user, sub_id, code) in [("g404", gone404_id, 404), ("g410", gone410_id, 410)] {
        let id = p.notify(&[user], "gone").await;
        let a = p.attempts(id, 1).await;
        assert_eq!(
            (a[0]["status"].as_str(), a[0]["http_status"].as_i64()),
            (Some("failed"), Some(code))
        );
        let sub = p.get(&format!("/v1/subscriptions/{sub_id}")).await;
        assert_eq!(sub["active"], false, "{sub}");
        assert!(sub["deactivated_reason"]
            .as_str()
            .unwrap()
            .contains(&code.to_string()));
        eventually("job completed", Duration::from_secs(10), || async {
            Ok((p.job_states(id).await == vec![("completed".to_owned(), 1)]).then_some(()))
        })
        .await?;
        // Later notifications skip it entirely.
        let later = p.notify(&[user], "after gone").await;
        let n = p.get(&format!("/v1/notifications/{later}")).await;
        assert_eq!(n["deliveries"], 0);
    }

    // 413: failed for good, discarded after one attempt.
    let id = p.notify(&["t413"], "too big").await;
    let a = p.attempts(id, 1).await;
    assert_eq!(a[0]["http_status"], 413);
    eventually("413 job discarded", Duration::from_secs(10), || async {
        Ok((p.job_states(id).await == vec![("discarded".to_owned(), 1)]).then_some(()))
    })
    .await?;

    // 429 with Retry-After: 2 — retried, not before two seconds, then delivered.
    let id = p.notify(&["t429"], "limited").await;
    let a = p.attempts(id, 2).await;
    assert_eq!(a[0]["http_status"], 429);
    assert_eq!(
        (a[1]["status"].as_str(), a[1]["attempt"].as_i64()),
        (Some("delivered"), Some(2))
    );
    let t = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).unwrap()
    };
    let gap = t(&a[1]) - t(&a[0]);
    assert!(
        gap >= chrono::Duration::milliseconds(1900),
        "retried after {gap}, Retry-After was 2 s"
    );

    // 500 then 503 without Retry-After: retried with backoff, delivered on the third attempt.
    let id = p.notify(&["t500"], "flaky").await;
    let a = p.attempts(id, 3).await;
    let codes: Vec<i64> = a
        .iter()
        .map(|a| a["http_status"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 503, 201]);
    eventually("flaky job completed", Duration::from_secs(10), || async {
        Ok((p.job_states(id).await == vec![("completed".to_owned(), 3)]).then_some(()))
    })
    .await?;
    // Every request passed the fake service's checks.
    assert!(p.fake.received().iter().all(|r| r.problem.is_none()));
    Ok(())
}

#[tokio::test]
async fn a_processed_payment_sends_payment_received_once() -> anyhow::Result<()> {
    let p = setup().await?;
    let (sub, _) = p.subscribe("cust_42").await;
    let (_stop, _task) = p.worker().await?;
    let body = json!({"event_id": "evt_pay_1", "type": "payment.succeeded", "amount": 1999,
                      "currency": "EUR", "customer_id": "cust_42"})
    .to_string();
    assert_eq!(
        post_webhook(&p.g, "payments", "wh_1", &body).await.status(),
        202
    );
    let got = eventually("payment push", Duration::from_secs(20), || async {
        let r = p.fake.received_by(&sub);
        Ok((!r.is_empty()).then_some(r))
    })
    .await?;
    let msg = got[0].json().unwrap();
    assert_eq!(msg["type"], "payment.received");
    assert_eq!(msg["title"], "Payment received");
    assert!(msg["body"].as_str().unwrap().contains("19.99 EUR"), "{msg}");
    assert_eq!(msg["data"]["event_id"], "evt_pay_1");
    // The provider redelivers: no second notification.
    assert_eq!(
        post_webhook(&p.g, "payments", "wh_1", &body).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes: i64 = sqlx::query_scalar("SELECT count(*) FROM pgfleet.notifications")
        .fetch_one(&p.g.db.pool)
        .await?;
    assert_eq!(notes, 1);
    assert_eq!(p.fake.received_by(&sub).len(), 1);
    Ok(())
}

#[tokio::test]
async fn subscriptions_list_refresh_and_delete() -> anyhow::Result<()> {
    let p = setup().await?;
    let (sub, id) = p.subscribe("bob").await;
    // The same endpoint again refreshes, 200.
    let (status, again) = p.post("/v1/subscriptions", sub.to_json("bob")).await;
    assert_eq!((status, again["id"].as_i64()), (200, Some(id)));
    // The seed alias, with expirationTime as browsers send it.
    let s2 = p.fake.subscribe();
    let mut body = s2.to_json("bob");
    body["expirationTime"] = Value::Null;
    let (status, _) = p.post("/subscriptions", body).await;
    assert_eq!(status, 201);
    let list = p.get("/v1/subscriptions?user_id=bob").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(
        list[0].get("keys").is_none() && list[0].get("auth").is_none(),
        "secrets are not returned"
    );
    let res =
        p.g.http
            .delete(format!("{}/v1/subscriptions/{id}", p.g.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
    assert_eq!(res.status(), 204);
    assert_eq!(
        p.get("/v1/subscriptions?user_id=bob")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The public key is served without credentials.
    let key: Value =
        p.g.http
            .get(format!("{}/v1/vapid-public-key", p.g.base))
            .send()
            .await?
            .json()
            .await?;
    assert_eq!(key["publicKey"].as_str().unwrap().len(), 87);
    Ok(())
}

#[tokio::test]
async fn seed_alias_broadcasts_to_everyone_subscribed() -> anyhow::Result<()> {
    let p = setup().await?;
    let (a, _) = p.subscribe("a").await;
    let (b, _) = p.subscribe("b").await;
    let (_stop, _task) = p.worker().await?;
    let (status, note) = p.post("/notifications", json!({"body": "to all"})).await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["deliveries"], 2);
    p.attempts(note["id"].as_i64().unwrap(), 2).await;
    for s in [&a, &b] {
        assert_eq!(p.fake.received_by(s)[0].json().unwrap()["body"], "to all");
    }
    Ok(())
}

#[tokio::test]
async fn bad_subscriptions_and_notifications_are_422_naming_the_field() -> anyhow::Result<()> {
    let p = setup().await?;
    let good = p.fake.subscribe();
    let cases = [
        (
            json!({"user_id": "u", "endpoint": "http://push.example.com/x", "keys": {"p256dh": good.p256dh, "auth": good.auth}}),
            "endpoint",
        ),
        (
            json!({"user_id": "u", "endpoint": "ftp://push.example.com/x", "keys": {"p256dh": good.p256dh, "auth": good.auth}}),
            "endpoint",
        ),
        (
            json!({"user_id": "u", "endpoint": good.endpoint, "keys": {"p256dh": "AAAA", "auth": good.auth}}),
            "keys.p256dh",
        ),
        (
            json!({"user_id": "u", "endpoint": good.endpoint, "keys": {"p256dh": "not base64 !", "auth": good.auth}}),
            "keys.p256dh",
        ),
        (
            json!({"user_id": "u", "endpoint": good.endpoint, "keys": {"p256dh": good.p256dh, "auth": "AAAAAAAAAAAAAAAAAAAA"}}),
            "keys.auth",
        ),
        (
            json!({"user_id": "", "endpoint": good.endpoint, "keys": {"p256dh": good.p256dh, "auth": good.auth}}),
            "user_id",
        ),
        (json!({"user_id": "u", "endpoint": good.endpoint}), "keys"),
    ];
    for (body, field) in cases {
        let (status, problem) = p.post("/v1/subscriptions", body.clone()).await;
        assert_eq!(status, 422, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    p.subscribe("u").await;
    let big = "x".repeat(4000);
    let base = json!({"type": "t", "user_ids": ["u"], "title": "t", "body": "b"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("body", json!(big)), "body"),
        (with("data", json!({"blob": "y".repeat(3900)})), "body"),
        (with("urgency", json!("urgent")), "urgency"),
        (with("topic", json!("has spaces")), "topic"),
        (with("user_ids", json!([])), "user_ids"),
        (with("user_ids", json!(["ok", ""])), "user_ids[1]"),
        (with("ttl", json!(99_999_999)), "ttl"),
        (with("priority", json!("urgent")), "priority"),
        (with("title", json!("")), "title"),
    ];
    for (body, field) in cases {
        let (status, problem) = p.post("/v1/notifications", body.clone()).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
        assert_eq!(problem["status"], 422);
    }
    let (notes, jobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pgfleet.notifications), (SELECT count(*) FROM pgfleet.jobs)",
    )
    .fetch_one(&p.g.db.pool)
    .await?;
    assert_eq!((notes, jobs), (0, 0), "nothing half-written");
    // A message just under the limit is accepted.
    let (status, _) = p
        .post("/v1/notifications", with("body", json!("z".repeat(3800))))
        .await;
    assert_eq!(status, 201);
    Ok(())
}

#[tokio::test]
async fn vapid_public_key_is_503_when_push_is_not_configured() -> anyhow::Result<()> {
    let g = spawn_gateway_with(|_| {}).await?;
    let res = g
        .http
        .get(format!("{}/v1/vapid-public-key", g.base))
        .send()
        .await?;
    assert_eq!(res.status(), 503);
    let p: Value = res.json().await?;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("PGFLEET_VAPID_PUBLIC_KEY"),
        "{p}"
    );
    Ok(())
}
