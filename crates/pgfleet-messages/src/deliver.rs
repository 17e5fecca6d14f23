//! The `messages.deliver` step.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;

use crate::signature::WebhookSecret;
use crate::store::Message;

/// Why a delivery failed and what the job should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Retry with backoff.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// What a successful run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered now and marked sent.
    Now,
    /// It had been sent already (a rerun after a lost completion): nothing was posted.
    Already,
}

/// Posts messages: an HTTP client, the default URL and the signing secret.
#[derive(Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    default_url: Option<String>,
    secret: WebhookSecret,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("default_url", &self.default_url)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer signing with `secret`, posting to `default_url` when a message names no
    /// URL, giving up on a request after `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        secret: WebhookSecret,
        default_url: Option<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pgfleet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            default_url,
            secret,
        })
    }

    /// Delivers message `id` as job attempt `attempt`. The `webhook-id` is `msg_<id>` on
    /// every attempt, so a receiver can drop a repeat.
    ///
    /// # Errors
    /// [`MessageError`].
    pub async fn deliver(&self, pool: &PgPool, id: i64) -> Result<Sent, MessageError> {
        let db = |e: sqlx::Error| MessageError::Retry(format!("database: {e}"));
        let Some(m) = crate::store::get(pool, id).await.map_err(|e| match e {
            crate::store::StoreError::Database(e) => db(e),
            other => MessageError::Retry(other.to_string()),
        })?
        else {
            return Err(MessageError::Permanent(format!(
                "message {id} does not exist"
            )));
        };
        if m.sent_at.is_some() {
            return Ok(Sent::Already);
        }
        let Some(url) = m.webhook_url.clone().or_else(|| self.default_url.clone()) else {
            return Err(MessageError::Permanent(
                "the message has no webhook_url and no default is configured \
                 (PGFLEET_MESSAGES_WEBHOOK_URL)"
                    .into(),
            ));
        };
        let result = self.post(&url, &m).await;
        let (sql, error) = match &result {
            Ok(()) => (
                "UPDATE pgfleet.messages SET attempts = attempts + 1, last_error = NULL, \
                 sent_at = now() WHERE id = $1 AND sent_at IS NULL",
                None,
            ),
            Err(e) => (
                "UPDATE pgfleet.messages SET attempts = attempts + 1, last_error = $2 \
                 WHERE id = $1 AND sent_at IS NULL",
                Some(e.clone()),
            ),
        };
        sqlx::query(sql)
            .bind(id)
            .bind(error)
            .execute(pool)
            .await
            .map_err(db)?;
        result.map(|()| Sent::Now).map_err(MessageError::Retry)
    }

    async fn post(&self, url: &str, m: &Message) -> Result<(), String> {
        let body = json!({
            "type": "message.created",
            "timestamp": m.created_at,
            "data": {"id": m.id, "recipient": m.recipient, "content": m.content},
        });
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let msg_id = format!("msg_{}", m.id);
        let ts = Utc::now().timestamp();
        let res = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", self.secret.sign(&msg_id, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "receiver did not answer in time".to_owned()
                } else {
                    format!("receiver unreachable: {e}")
                }
            })?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            let text: String = res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            Err(format!("receiver answered {status}: {}", text.trim()))
        }
    }
}
