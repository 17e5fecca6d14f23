use std::sync::Arc;
use std::time::Duration;

use pgfleet_testkit::eventually;
use pgfleet_testkit::otlp::OtlpReceiver;

use crate::{spawn_gateway, start_worker, SECRET};

/// One trace follows a webhook from the gateway through the queue: the worker's job span is a
/// child of the request span (via the `traceparent` stored in the job's metadata), and the
/// payment processing is nested in the job span. Spans arrive over OTLP/HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_webhook_to_ledger_over_otlp() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let guard = Arc::new(pgfleet_telemetry::init_with(
        "pgfleet-test",
        Some(&receiver.endpoint),
    ));
    let g = spawn_gateway().await?;
    let (stop, worker) = start_worker(&g, &["default"]).await?;
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span = format!("{:016x}", rand::random::<u64>() | 1);
    let body =
        r#"{"event_id":"evt_traced","type":"payment.succeeded","amount":42,"currency":"EUR"}"#;
    let ts = chrono::Utc::now().timestamp();
    let r = crate::webhook_request(&g, "payments", "t1", ts, SECRET, body)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    eventually("processed", Duration::from_secs(10), || async {
        let s: String = sqlx::query_scalar(
            "SELECT status FROM pgfleet.webhook_events WHERE event_id = 'evt_traced'",
        )
        .fetch_one(&g.db.pool)
        .await?;
        Ok((s == "done").then_some(()))
    })
    .await?;
    let spans = eventually("spans exported", Duration::from_secs(20), || {
        let guard = guard.clone();
        let receiver = &receiver;
        let trace_id = trace_id.clone();
        async move {
            tokio::task::spawn_blocking(move || guard.flush()).await?;
            let spans: Vec<_> = receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            let complete = names.iter().any(|n| n.starts_with("POST"))
                && names.contains(&"job payments.process")
                && names.contains(&"payments.process");
            Ok(complete.then_some(spans))
        }
    })
    .await?;
    let find = |pred: &dyn Fn(&str) -> bool| spans.iter().find(|s| pred(&s.name)).unwrap().clone();
    let request = find(&|n| n.starts_with("POST"));
    let job = find(&|n| n == "job payments.process");
    let payment = find(&|n| n == "payments.process");
    assert_eq!(
        request.parent_span_id, caller_span,
        "the request continues the caller's trace"
    );
    assert_eq!(
        job.parent_span_id, request.span_id,
        "the job span is a child of the request span"
    );
    assert_eq!(
        payment.parent_span_id, job.span_id,
        "payment processing is nested in the job span"
    );
    let keys: Vec<&str> = job.attributes.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "job.id",
        "job.queue",
        "job.kind",
        "job.partition",
        "job.attempt",
    ] {
        assert!(keys.contains(&k), "job span lacks {k}: {keys:?}");
    }
    assert!(
        request.service.contains("pgfleet-test"),
        "{}",
        request.service
    );
    stop.cancel();
    worker.await??;
    Ok(())
}
