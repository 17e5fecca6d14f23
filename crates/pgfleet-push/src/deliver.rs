//! The `webpush.deliver` step: load, encrypt, send, record the attempt, act on the answer.

use std::time::Duration;

use sqlx::PgPool;

use crate::client::{Delivery, PushOptions, Target, Verdict};
use crate::payload::Content;
use crate::{PushClient, PushMessage};

/// What a delivery did when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The push service accepted it.
    Accepted,
    /// The subscription is gone (404/410): it was deactivated; nothing to retry.
    Gone,
    /// Nothing to do: the subscription was deleted or deactivated, or the notification
    /// deleted, before this job ran.
    Skipped,
}

/// Why a delivery failed, and what the job should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// Retry with backoff (no answer, or a database error).
    #[error("{0}")]
    Retry(String),
    /// Retry no earlier than this (the push service's `Retry-After`).
    #[error("{1}")]
    RetryAfter(Duration, String),
    /// Refused for good: do not retry.
    #[error("{0}")]
    Permanent(String),
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    content: Content,
    ttl: i32,
    urgency: String,
    topic: Option<String>,
    user_id: String,
    endpoint: String,
    p256dh: String,
    auth: String,
    active: bool,
}

/// What one run of the step did.
#[derive(Debug)]
pub struct Report {
    /// Done, or what the job should do next.
    pub result: Result<Delivered, DeliverError>,
    /// The push request's result, when one was made (for metrics).
    pub delivery: Option<Delivery>,
}

/// Delivers notification `notification_id` to subscription `subscription_id` as job
/// attempt `attempt`, records the attempt, and deactivates the subscription on 404/410.
pub async fn deliver(
    pool: &PgPool,
    client: &PushClient,
    notification_id: i64,
    subscription_id: i64,
    attempt: i32,
) -> Report {
    let mut delivery = None;
    let result = run(
        pool,
        client,
        notification_id,
        subscription_id,
        attempt,
        &mut delivery,
    )
    .await;
    Report { result, delivery }
}

async fn run(
    pool: &PgPool,
    client: &PushClient,
    notification_id: i64,
    subscription_id: i64,
    attempt: i32,
    out: &mut Option<Delivery>,
) -> Result<Delivered, DeliverError> {
    let db = |e: sqlx::Error| DeliverError::Retry(format!("database: {e}"));
    let row: Option<Row> = sqlx::query_as(
        "SELECT n.type, n.title, n.body, n.icon, n.url, n.locale, n.data, n.ttl, \
                n.urgency, n.topic, s.user_id, s.endpoint, s.p256dh, s.auth, s.active \
         FROM pgfleet.notifications n, pgfleet.push_subscriptions s \
         WHERE n.id = $1 AND s.id = $2",
    )
    .bind(notification_id)
    .bind(subscription_id)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(row) = row.filter(|r| r.active) else {
        return Ok(Delivered::Skipped);
    };
    let message = PushMessage {
        notification_id,
        content: row.content,
    };
    let opts = PushOptions {
        ttl: u32::try_from(row.ttl).unwrap_or(0),
        urgency: row.urgency,
        topic: row.topic,
    };
    let target = Target {
        endpoint: &row.endpoint,
        p256dh: &row.p256dh,
        auth: &row.auth,
    };
    let d = client.send(target, &message.to_bytes(), &opts).await;
    let delivered = d.verdict == Verdict::Delivered;
    let gone = d.verdict == Verdict::Gone;
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query(
        "INSERT INTO pgfleet.delivery_attempts \
           (notification_id, subscription_id, user_id, status, http_status, latency_ms, error, attempt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(notification_id)
    .bind(subscription_id)
    .bind(&row.user_id)
    .bind(if delivered { "delivered" } else { "failed" })
    .bind(d.http_status.map(i32::from))
    .bind(i32::try_from(d.latency.as_millis()).unwrap_or(i32::MAX))
    .bind(&d.error)
    .bind(attempt)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if gone {
        sqlx::query(
            "UPDATE pgfleet.push_subscriptions SET active = false, deactivated_at = now(), \
               deactivated_reason = $2, updated_at = now() WHERE id = $1",
        )
        .bind(subscription_id)
        .bind(format!(
            "push service answered {}",
            d.http_status.unwrap_or_default()
        ))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    let error = d.error.clone().unwrap_or_default();
    let verdict = d.verdict.clone();
    *out = Some(d);
    match verdict {
        Verdict::Delivered => Ok(Delivered::Accepted),
        Verdict::Gone => Ok(Delivered::Gone),
        Verdict::RetryAfter(Some(after)) => Err(DeliverError::RetryAfter(after, error)),
        Verdict::RetryAfter(None) | Verdict::Transport => Err(DeliverError::Retry(error)),
        Verdict::Rejected => Err(DeliverError::Permanent(error)),
    }
}
