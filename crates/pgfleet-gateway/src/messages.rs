//! Outbound messages (seed 004) under `/v1/messages`, and the seed alias `/messages`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pgfleet_messages::store::{self, StoreError};
use pgfleet_messages::{Message, NewMessage};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authed, READ, WRITE};
use crate::extract::{Path, Query};
use crate::problem::{parse_json, ApiError, Problem};
use crate::AppState;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => ApiError::invalid(i.field, i.reason),
            StoreError::Queue(q) => q.into(),
            StoreError::Database(d) => d.into(),
        }
    }
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// Who it is for (1 to 255 characters, not blank).
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub recipient: String,
    /// What it says (1 byte to 64 KiB).
    #[schema(min_length = 1, max_length = 65536)]
    pub content: String,
    /// Where to POST it (default: the worker's `PGFLEET_MESSAGES_WEBHOOK_URL`).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub webhook_url: Option<String>,
}

/// Stores a message unsent and enqueues its delivery, in one transaction.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = MessageRequest,
    responses((status = 201, body = Message), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let r: MessageRequest = parse_json(&body)?;
    let m = NewMessage {
        recipient: r.recipient,
        content: r.content,
        webhook_url: r.webhook_url,
    };
    let stored = store::create(&state.queue, &state.config.messages_queue, &m).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// One message.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    responses((status = 200, body = Message), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _a: Authed<READ>,
) -> Result<Json<Message>, ApiError> {
    store::get(state.queue.pool(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("message {id} not found")))
}

/// Page size.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SentParams {
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Sent messages, most recently sent first (also at `/messages`, the seed alias).
#[utoipa::path(get, path = "/v1/messages", tag = "messages", params(SentParams),
    responses((status = 200, body = Vec<Message>)), security(("api_key" = [])))]
pub async fn list_sent(
    State(state): State<AppState>,
    Query(p): Query<SentParams>,
    _a: Authed<READ>,
) -> Result<Json<Vec<Message>>, ApiError> {
    let list = store::list_sent(
        state.queue.pool(),
        crate::problem::page_limit(p.limit, 100)?,
    )
    .await?;
    Ok(Json(list))
}
