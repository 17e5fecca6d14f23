//! `pgfleet.webhook_events`: the one module that reads and writes it. The gateway's ingest
//! stores events through [`insert_batch`] and answers redeliveries from [`find`]; payment
//! processing moves an event through `processing` → `done` | `failed`.

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

/// A stored event as the API shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    /// Source (`payments`, ...).
    pub source: String,
    /// Provider's event id.
    pub event_id: String,
    /// Event type.
    #[sqlx(rename = "type")]
    pub kind: String,
    /// received | processing | done | failed.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i32,
    /// The last processing error.
    pub last_error: Option<String>,
    /// When it arrived.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// A new event to store.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Source.
    pub source: &'a str,
    /// Provider's event id.
    pub event_id: &'a str,
    /// Event type.
    pub kind: &'a str,
    /// Body.
    pub payload: &'a Value,
}

const INSERT_EVENTS: &str = r#"
INSERT INTO pgfleet.webhook_events (source, event_id, type, payload)
SELECT DISTINCT ON (source, event_id) source, event_id, type, payload
FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) WITH ORDINALITY
     AS t(source, event_id, type, payload, ord)
ORDER BY source, event_id, ord
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id, source, event_id
"#;

/// Stores `events` in one statement inside the caller's transaction; an event whose
/// `(source, event_id)` is already stored (or repeated in the batch) is written once.
/// Returns `(source, event_id, row id)` of each event stored now.
///
/// # Errors
/// The database's error (the caller's transaction is then to be rolled back).
pub async fn insert_batch(
    conn: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let sources: Vec<&str> = events.iter().map(|e| e.source).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| e.payload).collect();
    let rows = sqlx::query(INSERT_EVENTS)
        .persistent(events.len() == 1)
        .bind(&sources)
        .bind(&ids)
        .bind(&kinds)
        .bind(&payloads)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("source")?,
                r.try_get("event_id")?,
                r.try_get("id")?,
            ))
        })
        .collect()
}

/// The stored event `(source, event_id)`, if any.
///
/// # Errors
/// The database's error.
pub async fn find(
    pool: &PgPool,
    source: &str,
    event_id: &str,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT source, event_id, type, status, attempts, last_error, received_at \
         FROM pgfleet.webhook_events WHERE source = $1 AND event_id = $2",
    )
    .bind(source)
    .bind(event_id)
    .fetch_optional(pool)
    .await
}

/// Marks event row `id` `processing` and returns its source and payload (`None`: no such
/// row), inside the processing transaction.
pub(crate) async fn start(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE pgfleet.webhook_events SET status = 'processing', updated_at = now() \
         WHERE id = $1 RETURNING source, payload",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Marks event row `id` `done` (one more attempt), inside the processing transaction.
pub(crate) async fn done(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pgfleet.webhook_events SET status = 'done', last_error = NULL, \
         attempts = attempts + 1, processed_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Marks event row `id` `failed` with `error` (one more attempt), on its own.
pub(crate) async fn failed(pool: &PgPool, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pgfleet.webhook_events SET status = 'failed', last_error = $2, \
         attempts = attempts + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await
    .map(drop)
}

/// The payload of the job that processes a stored event (`payments.process`, or
/// `webhooks.<source>` for other sources): the row and the provider's identity of the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRef {
    /// The `webhook_events` row.
    pub webhook_event_id: i64,
    /// Source (`payments`, ...).
    #[serde(default)]
    pub source: String,
    /// Provider's event id.
    #[serde(default)]
    pub event_id: String,
}

impl EventRef {
    /// The job of `kind` on `queue` that processes this event.
    ///
    /// # Errors
    /// Never in practice (an id and two strings always serialize); typed for the caller's `?`.
    pub fn job(
        &self,
        queue: &str,
        kind: &str,
    ) -> Result<pgfleet_queue::NewJob, pgfleet_queue::QueueError> {
        let payload = serde_json::to_value(self)
            .map_err(|e| pgfleet_queue::QueueError::invalid("payload", e.to_string()))?;
        Ok(pgfleet_queue::NewJob::new(queue, kind).payload(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_job_carries_its_reference_as_typed_arguments() {
        let r = EventRef {
            webhook_event_id: 42,
            source: "payments".into(),
            event_id: "evt_1".into(),
        };
        let job = r.job("default", crate::KIND).unwrap();
        assert_eq!(job.kind, crate::KIND);
        let args: crate::ProcessPayment = serde_json::from_value(job.payload).unwrap();
        assert_eq!(args.0, r);
    }
}
