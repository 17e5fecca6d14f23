use crate::{
    counts, post_webhook, problem, spawn_gateway, webhook_request, ADMIN_KEY, READ_KEY, SECRET,
};

#[tokio::test]
async fn every_bad_webhook_gets_its_status_a_problem_body_and_writes_nothing() -> anyhow::Result<()>
{
    let g = spawn_gateway().await?;
    let before = counts(&g).await?;
    let good = |amount: &str, currency: &str| {
        format!(
            r#"{{"event_id":"evt_x","type":"payment.succeeded","amount":{amount},"currency":"{currency}"}}"#
        )
    };
    // Malformed JSON: 400.
    problem(post_webhook(&g, "payments", "m1", "{not json").await, 400).await;
    // Missing field / wrong type / bad values: 422 naming the field.
    for (body, field) in [
        (
            r#"{"type":"t","amount":1,"currency":"EUR"}"#.to_owned(),
            "event_id",
        ),
        (good("\"-5\"", "EUR"), "amount"),
        (good("0", "EUR"), "amount"),
        (good("19.99", "EUR"), "amount"),
        (good("100", "XYZ"), "currency"),
        (
            r#"{"event_id":"e","type":7,"amount":1,"currency":"EUR"}"#.to_owned(),
            "type",
        ),
    ] {
        let v = problem(post_webhook(&g, "payments", "m2", &body).await, 422).await;
        assert_eq!(v["field"], field, "{body}");
    }
    // Oversized body: 413.
    let big = format!(r#"{{"event_id":"e","pad":"{}"}}"#, "x".repeat(70 * 1024));
    problem(post_webhook(&g, "payments", "m3", &big).await, 413).await;
    // Signatures: missing, wrong, stale.
    let body = good("100", "EUR");
    let r = g
        .http
        .post(format!("{}/webhooks/payments", g.base))
        .body(body.clone())
        .send()
        .await?;
    let v = problem(r, 401).await;
    assert!(v["detail"].as_str().unwrap().contains("webhook-id"));
    let ts = chrono::Utc::now().timestamp();
    let wrong_secret = "whsec_d3Jvbmc=";
    let r = webhook_request(&g, "payments", "m4", ts, wrong_secret, &body)
        .send()
        .await?;
    problem(r, 401).await;
    let r = webhook_request(&g, "payments", "m5", ts - 3600, SECRET, &body)
        .send()
        .await?;
    let v = problem(r, 401).await;
    assert!(v["detail"].as_str().unwrap().contains("tolerance"));
    // Unknown source: 404.
    problem(post_webhook(&g, "nobody", "m6", &body).await, 404).await;
    assert_eq!(counts(&g).await?, before, "no table changed");
    Ok(())
}

#[tokio::test]
async fn api_auth_and_validation_errors() -> anyhow::Result<()> {
    let g = spawn_gateway().await?;
    let before = counts(&g).await?;
    let url = format!("{}/v1/jobs", g.base);
    // No credentials, unknown key, read key writing.
    problem(
        g.http.post(&url).body(r#"{"kind":"noop"}"#).send().await?,
        401,
    )
    .await;
    problem(
        g.http
            .post(&url)
            .bearer_auth("nope-nope-nope-nope")
            .body(r#"{"kind":"noop"}"#)
            .send()
            .await?,
        401,
    )
    .await;
    problem(
        g.http
            .post(&url)
            .bearer_auth(READ_KEY)
            .body(r#"{"kind":"noop"}"#)
            .send()
            .await?,
        403,
    )
    .await;
    // Bad bodies.
    // Bad bodies: 422 naming the field (an unknown field is named in the detail).
    for (body, field) in [
        (r#"{"queue":"q"}"#, "kind"),
        (r#"{"kind":"noop","max_attempts":"x"}"#, "max_attempts"),
        (r#"{"kind":"noop","max_attempts":-1}"#, "max_attempts"),
        (r#"{"kind":"noop","colour":"red"}"#, "colour"),
    ] {
        let r = g
            .http
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .body(body)
            .send()
            .await?;
        let v = problem(r, 422).await;
        assert_eq!(v["field"], field, "{body}");
        assert!(v["detail"].as_str().unwrap().contains(field), "{v}");
    }
    problem(
        g.http
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .body("[")
            .send()
            .await?,
        400,
    )
    .await;
    let batch = r#"{"jobs":[{"kind":"noop"},{"kind":"noop","queue":"bad queue"}]}"#;
    let v = problem(
        g.http
            .post(format!("{url}/batch"))
            .bearer_auth(ADMIN_KEY)
            .body(batch)
            .send()
            .await?,
        422,
    )
    .await;
    assert_eq!(v["field"], "jobs[1].queue");
    let v = problem(
        g.http
            .get(format!("{url}?state=finished"))
            .bearer_auth(READ_KEY)
            .send()
            .await?,
        422,
    )
    .await;
    assert_eq!(v["field"], "state");
    problem(
        g.http
            .get(format!("{url}/999"))
            .bearer_auth(READ_KEY)
            .send()
            .await?,
        404,
    )
    .await;
    assert_eq!(counts(&g).await?, before, "no table changed");
    Ok(())
}

#[tokio::test]
async fn each_credential_is_rate_limited_with_429_and_retry_after() -> anyhow::Result<()> {
    let g = crate::spawn_gateway_with(|c| c.rate_limit = Some(5)).await?;
    let url = format!("{}/v1/queues", g.base);
    for _ in 0..5 {
        assert_eq!(
            g.http
                .get(&url)
                .bearer_auth(READ_KEY)
                .send()
                .await?
                .status(),
            200
        );
    }
    let r = g.http.get(&url).bearer_auth(READ_KEY).send().await?;
    let retry_after: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry_after >= 1);
    let v = problem(r, 429).await;
    assert!(v["detail"].as_str().unwrap().contains("rate limit"));
    // Another key has its own bucket.
    assert_eq!(
        g.http
            .get(&url)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?
            .status(),
        200
    );
    // The bucket refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        g.http
            .get(&url)
            .bearer_auth(READ_KEY)
            .send()
            .await?
            .status(),
        200
    );
    Ok(())
}
