//! Webhook ingest: `POST /webhooks/{source}`.
//!
//! The signature (Standard Webhooks) is checked over the raw bytes first; then the body is
//! validated (payments: amount and currency too); then, in one transaction, the event is
//! stored once per (source, event id) and its processing job enqueued — batched with other
//! requests' events by the group-commit writer ([`crate::ingest`]). 202 after commit; a
//! redelivery answers 200 with the stored event and writes nothing.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::read_body;
use crate::extract::Path;
use crate::ingest::{job_key, Incoming, Stored};
use crate::problem::{parse_json, ApiError, Problem};
use crate::signature::verify_webhook;
use crate::AppState;

/// A stored webhook event.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredEvent {
    /// Source (`payments`, ...).
    pub source: String,
    /// Provider's event id.
    pub event_id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// received | processing | done | failed.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i32,
    /// The last processing error.
    pub last_error: Option<String>,
    /// The processing job.
    pub job_id: Option<i64>,
    /// When it arrived.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// The answer to an accepted (202) or redelivered (200) event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always true.
    pub ok: bool,
    /// The event id.
    pub event_id: String,
    /// The processing job (202) — or the stored event (200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// The stored event, on a redelivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<StoredEvent>,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The job kind that processes events of `source`.
pub fn job_kind(source: &str) -> String {
    if source == "payments" {
        pgfleet_payments::KIND.to_owned()
    } else {
        format!("webhooks.{source}")
    }
}

/// Receives a signed webhook.
#[utoipa::path(post, path = "/webhooks/{source}", tag = "webhooks",
    params(("source" = String, Path, description = "configured webhook source, e.g. payments")),
    request_body(content = Object, description = "the provider's event (payments: event_id, type, amount, currency, occurred_at)"),
    responses(
        (status = 202, description = "stored and queued", body = Accepted),
        (status = 200, description = "a redelivery: nothing written", body = Accepted),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn receive(
    State(state): State<AppState>,
    Path(source): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let secrets = state
        .config
        .webhook_secrets
        .get(&source)
        .ok_or_else(|| ApiError::NotFound(format!("no webhook source named {source:?}")))?
        .clone();
    let headers = req.headers().clone();
    let body = read_body(req, state.config.body_limit).await?;
    verify_webhook(
        &secrets,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
        state.config.tolerance.as_secs() as i64,
    )
    .map_err(|e| {
        state.recorded.count_signature_failure(&source);
        ApiError::Unauthorized(format!("webhook signature: {e}"))
    })?;
    let payload: Value = parse_json(&body)?;
    let (event_id, kind) = if source == "payments" {
        let e = pgfleet_payments::validate(&payload)
            .map_err(|e| ApiError::invalid(e.field, e.reason))?;
        (e.event_id, e.kind)
    } else {
        let text = |f: &'static str| {
            payload
                .get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 255)
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid(f, "is required: a string of 1 to 255 characters"))
        };
        (text("event_id")?, text("type")?)
    };
    let res = store(&state, &source, &event_id, &kind, payload).await;
    let result = match &res {
        Ok(r) if r.status() == StatusCode::ACCEPTED => "accepted",
        Ok(_) => "duplicate",
        Err(_) => "failed",
    };
    state.recorded.count_webhook(&source, result);
    if result == "accepted" {
        let kind = job_kind(&source);
        state
            .jobs
            .count_enqueued(&state.config.webhook_queue, &kind, 1);
    }
    res
}

async fn store(
    state: &AppState,
    source: &str,
    event_id: &str,
    kind: &str,
    payload: Value,
) -> Result<Response, ApiError> {
    let incoming = Incoming {
        source: source.to_owned(),
        event_id: event_id.to_owned(),
        kind: kind.to_owned(),
        payload,
        job_kind: job_kind(source),
        metadata: pgfleet_telemetry::trace_metadata()
            .unwrap_or_else(|| Value::Object(Default::default())),
    };
    match state.ingest.submit(incoming).await? {
        Stored::Accepted { job_id } => {
            let body = Accepted {
                ok: true,
                event_id: event_id.to_owned(),
                job_id: Some(job_id),
                event: None,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Stored::Duplicate => {
            let e = pgfleet_payments::events::find(state.queue.pool(), source, event_id)
                .await?
                .ok_or_else(|| ApiError::Unavailable("a duplicate event vanished".into()))?;
            let job_id = state
                .queue
                .job_for_unique_key(&job_key(source, event_id))
                .await?;
            let event = StoredEvent {
                source: e.source,
                event_id: e.event_id,
                kind: e.kind,
                status: e.status,
                attempts: e.attempts,
                last_error: e.last_error,
                job_id,
                received_at: e.received_at,
            };
            let body = Accepted {
                ok: true,
                event_id: event_id.to_owned(),
                job_id: None,
                event: Some(event),
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
    }
}
