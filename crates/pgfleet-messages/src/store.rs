//! Messages in PostgreSQL.

use chrono::{DateTime, Utc};
use pgfleet_queue::enqueue::Wakeups;
use pgfleet_queue::{NewJob, Queue, QueueError};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::kind::DeliverMessage;
use crate::InvalidField;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bad input: nothing written.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The queue refused the job.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Largest message content in bytes.
pub const MAX_CONTENT: usize = 64 * 1024;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Who it is for.
    pub recipient: String,
    /// What it says.
    pub content: String,
    /// Where to POST it (else the configured default).
    pub webhook_url: Option<String>,
}

impl NewMessage {
    /// Checks the fields.
    ///
    /// # Errors
    /// [`InvalidField`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let bad = |field, reason: &str| InvalidField {
            field,
            reason: reason.into(),
        };
        if self.recipient.trim().is_empty() || self.recipient.chars().count() > 255 {
            return Err(bad("recipient", "must be 1 to 255 characters"));
        }
        if self.content.is_empty() || self.content.len() > MAX_CONTENT {
            return Err(bad("content", "must be 1 byte to 64 KiB"));
        }
        if let Some(u) = &self.webhook_url {
            let url = url::Url::parse(u).map_err(|_| bad("webhook_url", "is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(bad("webhook_url", "must be an http or https URL"));
            }
            if u.len() > 2048 {
                return Err(bad("webhook_url", "must be at most 2048 characters"));
            }
        }
        Ok(())
    }
}

/// A stored message (as the API shows it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// Id.
    pub id: i64,
    /// Recipient.
    pub recipient: String,
    /// Content.
    pub content: String,
    /// Its own webhook URL, if any.
    pub webhook_url: Option<String>,
    /// Delivery attempts made.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When a 2xx was received (null while unsent).
    pub sent_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

const COLS: &str = "id, recipient, content, webhook_url, attempts, last_error, sent_at, created_at";

/// Stores messages unsent with one `messages.deliver` job each, inside the caller's
/// transaction (one statement for the rows, one for the jobs). Wake with the returned
/// [`Wakeups`] after commit.
///
/// # Errors
/// [`StoreError`]; nothing is written on invalid input.
pub async fn create_in(
    queue: &Queue,
    conn: &mut PgConnection,
    queue_name: &str,
    messages: &[NewMessage],
) -> Result<(Vec<Message>, Wakeups), StoreError> {
    for m in messages {
        m.validate()?;
    }
    let recipients: Vec<&str> = messages.iter().map(|m| m.recipient.as_str()).collect();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let urls: Vec<Option<&str>> = messages.iter().map(|m| m.webhook_url.as_deref()).collect();
    let sql = format!(
        "INSERT INTO pgfleet.messages (recipient, content, webhook_url) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) RETURNING {COLS}"
    );
    let rows: Vec<Message> = sqlx::query_as(&sql)
        .bind(&recipients)
        .bind(&contents)
        .bind(&urls)
        .fetch_all(&mut *conn)
        .await?;
    let jobs = rows
        .iter()
        .map(|m| {
            Ok(NewJob::from_args(&DeliverMessage { message_id: m.id })?
                .on_queue(queue_name)
                .partition_key(m.recipient.clone()))
        })
        .collect::<Result<Vec<NewJob>, QueueError>>()?;
    let (_, wakeups) = queue.enqueue_in(conn, &jobs).await?;
    Ok((rows, wakeups))
}

/// One message in its own transaction.
///
/// # Errors
/// As [`create_in`].
pub async fn create(
    queue: &Queue,
    queue_name: &str,
    m: &NewMessage,
) -> Result<Message, StoreError> {
    m.validate()?;
    let mut tx = queue.pool().begin().await?;
    let (mut rows, wakeups) =
        create_in(queue, &mut tx, queue_name, std::slice::from_ref(m)).await?;
    queue.commit_and_wake(tx, wakeups).await?;
    rows.pop()
        .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
}

/// One message.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Message>, StoreError> {
    let sql = format!("SELECT {COLS} FROM pgfleet.messages WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Sent messages, most recently sent first.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn list_sent(pool: &PgPool, limit: i64) -> Result<Vec<Message>, StoreError> {
    let sql = format!(
        "SELECT {COLS} FROM pgfleet.messages WHERE sent_at IS NOT NULL \
         ORDER BY sent_at DESC, id DESC LIMIT $1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(limit.clamp(1, 1000))
        .fetch_all(pool)
        .await?)
}
