//! Subscriptions, notifications and delivery attempts in PostgreSQL.

use chrono::{DateTime, Utc};
use pgfleet_queue::enqueue::Wakeups;
use pgfleet_queue::{NewJob, Queue, QueueError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::payload::{Content, PushMessage, MAX_PLAINTEXT};
use crate::subscription::NewSubscription;
use crate::{DeliverPush, InvalidField};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bad input: nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The queue refused the delivery jobs.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Subscription {
    /// Id.
    pub id: i64,
    /// Its user.
    pub user_id: String,
    /// Push service URL.
    pub endpoint: String,
    /// Browser public key (base64url).
    pub p256dh: String,
    /// Browser auth secret (base64url).
    pub auth: String,
    /// False once the push service said it is gone (404/410).
    pub active: bool,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last registered or changed.
    pub updated_at: DateTime<Utc>,
    /// When it was deactivated.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Why.
    pub deactivated_reason: Option<String>,
}

const SUB_COLS: &str = "id, user_id, endpoint, p256dh, auth, active, created_at, updated_at, \
                        deactivated_at, deactivated_reason";

/// Registers a subscription, or updates the one with the same endpoint (a browser that
/// re-subscribes, possibly for another user) and reactivates it. Returns it and whether it
/// is new. Validate with [`crate::subscription::validate`] first.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn upsert_subscription(
    pool: &PgPool,
    s: &NewSubscription,
) -> Result<(Subscription, bool), StoreError> {
    let sql = format!(
        "INSERT INTO pgfleet.push_subscriptions (user_id, endpoint, p256dh, auth) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, \
           p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth, active = true, \
           deactivated_at = NULL, deactivated_reason = NULL, updated_at = now() \
         RETURNING {SUB_COLS}, (xmax = 0) AS created"
    );
    let row = sqlx::query(&sql)
        .bind(s.user_id.trim())
        .bind(&s.endpoint)
        .bind(s.keys.p256dh.trim_end_matches('='))
        .bind(s.keys.auth.trim_end_matches('='))
        .fetch_one(pool)
        .await?;
    use sqlx::{FromRow, Row};
    let created: bool = row.try_get("created")?;
    Ok((Subscription::from_row(&row)?, created))
}

/// A user's subscriptions (active only unless `include_inactive`), newest first.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn list_subscriptions(
    pool: &PgPool,
    user_id: &str,
    include_inactive: bool,
) -> Result<Vec<Subscription>, StoreError> {
    let sql = format!(
        "SELECT {SUB_COLS} FROM pgfleet.push_subscriptions \
         WHERE user_id = $1 AND (active OR $2) ORDER BY id DESC LIMIT 1000"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(include_inactive)
        .fetch_all(pool)
        .await?)
}

/// One subscription.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn get_subscription(pool: &PgPool, id: i64) -> Result<Option<Subscription>, StoreError> {
    let sql = format!("SELECT {SUB_COLS} FROM pgfleet.push_subscriptions WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Deletes a subscription; false when there was none. Its attempts keep their history.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn delete_subscription(pool: &PgPool, id: i64) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM pgfleet.push_subscriptions WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Delivery priority: selects the queue (seed 003's `high` / `default` / `low`, weighted
/// 6 / 3 / 1 by the default worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Queue `high`.
    High,
    /// Queue `default`.
    #[default]
    Normal,
    /// Queue `low`.
    Low,
}

impl Priority {
    /// The queue its jobs go to.
    pub fn queue(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "default",
            Priority::Low => "low",
        }
    }

    /// Its name: `high`, `normal` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// A notification to fan out.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// What it says (type, title, body, icon, URL, locale, data).
    pub content: Content,
    /// Recipients (1 to 1,000), unless `broadcast`.
    pub user_ids: Vec<String>,
    /// Send to every active subscription instead of `user_ids` (which must then be empty).
    pub broadcast: bool,
    /// Priority (queue).
    pub priority: Priority,
    /// Seconds the push service may hold it (0 to 28 days).
    pub ttl: u32,
    /// `very-low`, `low`, `normal` or `high`.
    pub urgency: String,
    /// Replacement topic (up to 32 base64url characters).
    pub topic: Option<String>,
}

/// Most recipients per notification.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest TTL (28 days, what the large push services keep).
pub const MAX_TTL: u32 = 28 * 24 * 3600;

impl NewNotification {
    /// A notification with defaults: priority normal, TTL one day, urgency normal.
    pub fn new(kind: &str, user_ids: Vec<String>, title: &str, body: &str) -> Self {
        Self {
            content: Content {
                kind: kind.into(),
                title: title.into(),
                body: body.into(),
                icon: None,
                url: None,
                locale: None,
                data: json!({}),
            },
            user_ids,
            broadcast: false,
            priority: Priority::Normal,
            ttl: 86_400,
            urgency: "normal".into(),
            topic: None,
        }
    }

    /// The message every subscription will receive, for notification `id`.
    pub fn message(&self, id: i64) -> PushMessage {
        PushMessage {
            notification_id: id,
            content: self.content.clone(),
        }
    }

    /// Checks every field, and that the encrypted message fits one push record.
    ///
    /// # Errors
    /// [`InvalidField`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let text = |field: &str, v: &str, max: usize, required: bool| {
            if required && v.trim().is_empty() {
                Err(InvalidField::new(field, "is required"))
            } else if v.chars().count() > max {
                Err(InvalidField::new(
                    field,
                    format!("must be at most {max} characters"),
                ))
            } else {
                Ok(())
            }
        };
        let c = &self.content;
        text("type", &c.kind, 100, true)?;
        text("title", &c.title, 255, true)?;
        text("body", &c.body, MAX_PLAINTEXT, false)?;
        for (f, v) in [("icon", &c.icon), ("url", &c.url)] {
            if let Some(v) = v {
                text(f, v, 2048, false)?;
            }
        }
        if let Some(l) = &c.locale {
            text("locale", l, 35, false)?;
        }
        if self.broadcast {
            if !self.user_ids.is_empty() {
                return Err(InvalidField::new(
                    "user_ids",
                    "must be empty for a broadcast",
                ));
            }
        } else if self.user_ids.is_empty() || self.user_ids.len() > MAX_RECIPIENTS {
            return Err(InvalidField::new(
                "user_ids",
                format!("must name 1 to {MAX_RECIPIENTS} users"),
            ));
        }
        for (i, u) in self.user_ids.iter().enumerate() {
            if u.trim().is_empty() || u.chars().count() > 255 {
                return Err(InvalidField::new(
                    format!("user_ids[{i}]"),
                    "must be 1 to 255 characters",
                ));
            }
        }
        if self.ttl > MAX_TTL {
            return Err(InvalidField::new(
                "ttl",
                format!("must be at most {MAX_TTL} seconds (28 days)"),
            ));
        }
        if !["very-low", "low", "normal", "high"].contains(&self.urgency.as_str()) {
            return Err(InvalidField::new(
                "urgency",
                "must be one of very-low, low, normal, high",
            ));
        }
        if let Some(t) = &self.topic {
            let ok = !t.is_empty()
                && t.len() <= 32
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(InvalidField::new(
                    "topic",
                    "must be 1 to 32 characters of the URL-safe base64 alphabet",
                ));
            }
        }
        let size = self.message(0).max_size();
        if size > MAX_PLAINTEXT {
            return Err(InvalidField::new(
                "body",
                format!(
                    "the push message would be {size} bytes; RFC 8291 allows {MAX_PLAINTEXT} \
                     (shorten body, title or data)"
                ),
            ));
        }
        Ok(())
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// Type.
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Recipients.
    pub user_ids: Vec<String>,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Icon.
    pub icon: Option<String>,
    /// URL.
    pub url: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// Data.
    #[cfg_attr(feature = "openapi", schema(value_type = pgfleet_queue::schema::JsonValue))]
    pub data: Value,
    /// high, normal or low.
    pub priority: String,
    /// TTL seconds.
    pub ttl: i32,
    /// Urgency.
    pub urgency: String,
    /// Topic.
    pub topic: Option<String>,
    /// Delivery jobs created (one per active subscription of each user).
    pub deliveries: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
}

const NOTE_COLS: &str = "id, type, user_ids, title, body, icon, url, locale, data, priority, \
                         ttl, urgency, topic, deliveries, created_at";

/// Stores a notification and one `webpush.deliver` job per active subscription of its
/// users (or of everyone, for a broadcast), inside the caller's transaction; the jobs are inserted as one batch. Call
/// [`Queue::wake`] with the returned [`Wakeups`] after commit. `metadata` (trace context)
/// goes on every job.
///
/// # Errors
/// [`StoreError::Invalid`] (nothing written) or a database/queue error.
pub async fn create_notification_in(
    queue: &Queue,
    conn: &mut PgConnection,
    n: &NewNotification,
    metadata: Option<Value>,
) -> Result<(Notification, Wakeups), StoreError> {
    n.validate()?;
    let subs: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, user_id FROM pgfleet.push_subscriptions \
         WHERE active AND ($2 OR user_id = ANY($1)) ORDER BY id",
    )
    .bind(&n.user_ids)
    .bind(n.broadcast)
    .fetch_all(&mut *conn)
    .await?;
    let sql = format!(
        "INSERT INTO pgfleet.notifications \
           (type, user_ids, title, body, icon, url, locale, data, priority, ttl, urgency, topic, deliveries) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {NOTE_COLS}"
    );
    let note: Notification = sqlx::query_as(&sql)
        .bind(&n.content.kind)
        .bind(&n.user_ids)
        .bind(&n.content.title)
        .bind(&n.content.body)
        .bind(&n.content.icon)
        .bind(&n.content.url)
        .bind(&n.content.locale)
        .bind(&n.content.data)
        .bind(n.priority.as_str())
        .bind(i32::try_from(n.ttl).unwrap_or(i32::MAX))
        .bind(&n.urgency)
        .bind(&n.topic)
        .bind(i32::try_from(subs.len()).unwrap_or(i32::MAX))
        .fetch_one(&mut *conn)
        .await?;
    let jobs = subs
        .iter()
        .map(|&(subscription_id, ref user)| {
            let args = DeliverPush {
                notification_id: note.id,
                subscription_id,
            };
            let mut j = NewJob::from_args(&args)?
                .on_queue(n.priority.queue())
                .partition_key(user.clone());
            if let Some(m) = &metadata {
                j = j.metadata(m.clone());
            }
            Ok(j)
        })
        .collect::<Result<Vec<NewJob>, QueueError>>()?;
    let (_, wakeups) = queue.enqueue_in(conn, &jobs).await?;
    Ok((note, wakeups))
}

/// [`create_notification_in`] in its own transaction, waking workers after commit.
///
/// # Errors
/// As [`create_notification_in`].
pub async fn create_notification(
    queue: &Queue,
    n: &NewNotification,
    metadata: Option<Value>,
) -> Result<Notification, StoreError> {
    n.validate()?;
    let mut tx = queue.pool().begin().await?;
    let (note, wakeups) = create_notification_in(queue, &mut tx, n, metadata).await?;
    queue.commit_and_wake(tx, wakeups).await?;
    Ok(note)
}

/// One notification.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn get_notification(pool: &PgPool, id: i64) -> Result<Option<Notification>, StoreError> {
    let sql = format!("SELECT {NOTE_COLS} FROM pgfleet.notifications WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Recent notifications, newest first, optionally only those naming `user_id`.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn list_notifications(
    pool: &PgPool,
    user_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Notification>, StoreError> {
    let sql = format!(
        "SELECT {NOTE_COLS} FROM pgfleet.notifications \
         WHERE $1::text IS NULL OR $1 = ANY(user_ids) ORDER BY id DESC LIMIT $2"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(pool)
        .await?)
}

/// One delivery attempt (as the API shows it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// Id.
    pub id: i64,
    /// The notification.
    pub notification_id: i64,
    /// The subscription (null once it was deleted).
    pub subscription_id: Option<i64>,
    /// The user.
    pub user_id: String,
    /// delivered or failed.
    pub status: String,
    /// The push service's status, when it answered.
    pub http_status: Option<i32>,
    /// Milliseconds from encryption to answer.
    pub latency_ms: i32,
    /// What went wrong.
    pub error: Option<String>,
    /// The job attempt (1 first).
    pub attempt: i32,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A notification's attempts, oldest first.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn attempts(pool: &PgPool, notification_id: i64) -> Result<Vec<Attempt>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, notification_id, subscription_id, user_id, status, http_status, latency_ms, \
                error, attempt, created_at \
         FROM pgfleet.delivery_attempts WHERE notification_id = $1 ORDER BY id LIMIT 10000",
    )
    .bind(notification_id)
    .fetch_all(pool)
    .await?)
}
