//! # pgfleet-payments
//!
//! Payment events as a payment provider sends them (seed 001: `event_id`, `type`, `amount`,
//! `currency`, `occurred_at`, optionally `customer_id` / `user_id`), their validation, and
//! the `payments.process` step: upsert the ledger row idempotently and mark the stored
//! webhook event `done` — or `failed` with the error and the attempt count.
//!
//! When a payment is recorded for a user who has push subscriptions, a "payment received"
//! notification is created in the same transaction (so it is sent exactly when the payment
//! is recorded, and never twice for a redelivered event).
//!
//! Validation is shared: the gateway refuses a bad event before storing it (422 naming the
//! field) and the processor checks again, so a row written by any other path is safe too.

mod currency;
pub mod events;
pub mod kind;

use pgfleet_queue::Queue;
use serde_json::Value;

pub use currency::is_iso4217;
pub use kind::{PaymentHandler, ProcessPayment};

/// The job kind that processes a stored payment event.
pub const KIND: &str = "payments.process";

/// A validated payment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// Provider's event id (idempotency key).
    pub event_id: String,
    /// Event type (`payment.succeeded`, ...).
    pub kind: String,
    /// Amount in minor units (> 0).
    pub amount_minor: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// The customer, when the provider names one.
    pub user_id: Option<String>,
    /// When it happened at the provider.
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why an event is invalid; `field` names the offending JSON field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidEvent {
    /// The field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        field,
        reason: reason.into(),
    }
}

/// Parses an amount in integer minor units, given as a JSON number or a decimal string.
///
/// # Errors
/// Not an integer, not positive, or out of range.
pub fn parse_amount(v: &Value) -> Result<i64, InvalidEvent> {
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| invalid("amount", "must be an integer number of minor units"))?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<i64>()
            .map_err(|_| invalid("amount", "is out of range"))?,
        Value::String(_) => {
            return Err(invalid(
                "amount",
                "must be an integer number of minor units, e.g. \"1999\"",
            ))
        }
        Value::Null => return Err(invalid("amount", "is required")),
        _ => return Err(invalid("amount", "must be a number or a string of digits")),
    };
    if n <= 0 {
        return Err(invalid(
            "amount",
            format!("must be greater than 0, got {n}"),
        ));
    }
    Ok(n)
}

/// Validates a payment event body (a JSON object).
///
/// # Errors
/// [`InvalidEvent`] naming the first bad field.
pub fn validate(body: &Value) -> Result<PaymentEvent, InvalidEvent> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let text = |field: &'static str| -> Result<String, InvalidEvent> {
        match obj.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => Ok(s.clone()),
            Some(Value::String(_)) => Err(invalid(field, "must be 1 to 255 characters")),
            Some(_) => Err(invalid(field, "must be a string")),
            None => Err(invalid(field, "is required")),
        }
    };
    let event_id = text("event_id")?;
    let kind = text("type")?;
    let amount_minor = parse_amount(obj.get("amount").unwrap_or(&Value::Null))?;
    let currency = text("currency")?.to_ascii_uppercase();
    if !is_iso4217(&currency) {
        return Err(invalid(
            "currency",
            format!("{currency:?} is not an ISO 4217 currency code"),
        ));
    }
    let occurred_at = match obj.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| invalid("occurred_at", "must be an RFC 3339 timestamp"))?
                .with_timezone(&chrono::Utc),
        ),
        Some(_) => {
            return Err(invalid(
                "occurred_at",
                "must be an RFC 3339 timestamp string",
            ))
        }
    };
    let user_id = ["user_id", "customer_id"]
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str).map(str::to_owned));
    Ok(PaymentEvent {
        event_id,
        kind,
        amount_minor,
        currency,
        user_id,
        occurred_at,
    })
}

/// What processing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The ledger row was written now.
    Recorded,
    /// The ledger already had it (a redelivery or a retry after a partial failure).
    AlreadyRecorded,
}

/// Why processing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The stored event is invalid: retrying cannot help.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The stored event is missing.
    #[error("webhook event {0} not found")]
    Missing(i64),
    /// The database failed: retry.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The notification could not be created: retry.
    #[error("payment notification: {0}")]
    Notify(String),
}

impl From<pgfleet_push::store::StoreError> for ProcessError {
    fn from(e: pgfleet_push::store::StoreError) -> Self {
        match e {
            pgfleet_push::store::StoreError::Database(d) => Self::Database(d),
            other => Self::Notify(other.to_string()),
        }
    }
}

/// The notification type sent when a payment is recorded.
pub const NOTIFICATION_TYPE: &str = "payment.received";

/// Currencies without minor units (ISO 4217 exponent 0) among the common ones.
const ZERO_DECIMAL: &[&str] = &[
    "JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG",
];

/// `1999` `EUR` → `19.99 EUR`; `500` `JPY` → `500 JPY`.
pub fn format_amount(amount_minor: i64, currency: &str) -> String {
    if ZERO_DECIMAL.contains(&currency) {
        format!("{amount_minor} {currency}")
    } else {
        format!(
            "{}.{:02} {currency}",
            amount_minor / 100,
            amount_minor % 100
        )
    }
}

/// The "payment received" notification for `event`'s user.
pub fn payment_notification(
    event: &PaymentEvent,
    user_id: &str,
) -> pgfleet_push::store::NewNotification {
    let mut n = pgfleet_push::store::NewNotification::new(
        NOTIFICATION_TYPE,
        vec![user_id.to_owned()],
        "Payment received",
        &format!(
            "We received your payment of {}.",
            format_amount(event.amount_minor, &event.currency)
        ),
    );
    n.priority = pgfleet_push::store::Priority::High;
    n.urgency = "high".into();
    n.content.data = serde_json::json!({
        "event_id": event.event_id,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
    });
    n
}

/// Processes stored webhook event `event_row`: validates it, upserts the ledger row, creates
/// the "payment received" notification when the payment is new and its user has push
/// subscriptions, and marks the event `done`, all in one transaction. On failure, records
/// `failed`, the error and the attempt count (in its own transaction) and returns the error.
///
/// # Errors
/// [`ProcessError`]; `Invalid` and `Missing` are permanent, the others worth a retry.
#[tracing::instrument(name = "payments.process", skip(queue))]
pub async fn process(queue: &Queue, event_row: i64) -> Result<Processed, ProcessError> {
    let pool = queue.pool();
    match process_once(queue, event_row).await {
        Ok(p) => Ok(p),
        Err(e) => {
            let _ = events::failed(pool, event_row, &e.to_string()).await;
            Err(e)
        }
    }
}

async fn process_once(queue: &Queue, event_row: i64) -> Result<Processed, ProcessError> {
    let mut tx = queue.pool().begin().await?;
    let row = events::start(&mut tx, event_row).await?;
    let (source, payload) = row.ok_or(ProcessError::Missing(event_row))?;
    let event = validate(&payload)?;
    let inserted = sqlx::query(
        "INSERT INTO pgfleet.payments (event_id, source, type, amount_minor, currency, user_id, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.event_id)
    .bind(&source)
    .bind(&event.kind)
    .bind(event.amount_minor)
    .bind(&event.currency)
    .bind(&event.user_id)
    .bind(event.occurred_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let mut wakeups = None;
    if let (1, Some(user)) = (inserted, event.user_id.as_deref()) {
        let subscribed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgfleet.push_subscriptions WHERE user_id = $1 AND active)",
        )
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        if subscribed {
            let n = payment_notification(&event, user);
            let (_, w) = pgfleet_push::store::create_notification_in(
                queue,
                &mut tx,
                &n,
                pgfleet_telemetry::trace_metadata(),
            )
            .await?;
            wakeups = Some(w);
        }
    }
    events::done(&mut tx, event_row).await?;
    queue.commit_and_wake(tx, wakeups).await?;
    Ok(if inserted == 1 {
        Processed::Recorded
    } else {
        Processed::AlreadyRecorded
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount(&json!(1999)), Ok(1999));
        assert_eq!(parse_amount(&json!("1999")), Ok(1999));
        for bad in [
            json!(0),
            json!(-5),
            json!(19.99),
            json!("19.99"),
            json!(""),
            json!(true),
            json!(null),
        ] {
            assert_eq!(parse_amount(&bad).unwrap_err().field, "amount", "{bad}");
        }
    }

    #[test]
    fn events() {
        let ok = json!({"event_id": "evt_1", "type": "payment.succeeded", "amount": "500",
                        "currency": "eur", "occurred_at": "2026-11-22T10:00:00Z", "customer_id": "u1"});
        let e = validate(&ok).unwrap();
        assert_eq!(
            (e.amount_minor, e.currency.as_str(), e.user_id.as_deref()),
            (500, "EUR", Some("u1"))
        );
        let field = |v: Value| validate(&v).unwrap_err().field;
        assert_eq!(
            field(json!({"type": "t", "amount": 1, "currency": "EUR"})),
            "event_id"
        );
        assert_eq!(
            field(json!({"event_id": "e", "type": "t", "amount": 1, "currency": "XYZ"})),
            "currency"
        );
        assert_eq!(
            field(json!({"event_id": "e", "type": 5, "amount": 1, "currency": "EUR"})),
            "type"
        );
        assert_eq!(
            field(
                json!({"event_id": "e", "type": "t", "amount": 1, "currency": "EUR", "occurred_at": "yesterday"})
            ),
            "occurred_at"
        );
        assert_eq!(field(json!([1])), "body");
    }
}
