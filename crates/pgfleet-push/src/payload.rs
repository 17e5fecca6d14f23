//! The JSON a service worker receives in its `push` event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// RFC 8291 section 4: with the default 4,096-byte record, at most 3,993 bytes of plaintext
/// fit (4,096 − 86 header − 16 tag − 1 padding delimiter).
pub const MAX_PLAINTEXT: usize = 3993;

/// What a notification says: stored with it, and sent in every push of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Content {
    /// Its type (`payment.received`, `test`...).
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Icon URL.
    pub icon: Option<String>,
    /// URL to open on click.
    pub url: Option<String>,
    /// Locale (BCP 47).
    pub locale: Option<String>,
    /// Free-form data.
    pub data: Value,
}

/// The decrypted push message: the notification's id and its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushMessage {
    /// The notification.
    pub notification_id: i64,
    /// What it says.
    #[serde(flatten)]
    pub content: Content,
}

impl PushMessage {
    /// The serialized plaintext.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The plaintext size with the largest possible notification id, so a message that
    /// passes here fits whatever id it is given.
    pub fn max_size(&self) -> usize {
        let worst = Self {
            notification_id: i64::MAX,
            ..self.clone()
        };
        worst.to_bytes().len()
    }
}
