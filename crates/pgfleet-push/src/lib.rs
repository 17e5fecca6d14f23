//! # pgfleet-push
//!
//! Web Push end to end, without HTTP-server concerns:
//! - [`vapid`]: the application server's key pair (RFC 8292), and an `Authorization` header
//!   signer that caches one JWT per push-service origin instead of signing every message;
//! - [`subscription`]: validation of a browser `PushSubscription` (https endpoint, 65-byte
//!   uncompressed P-256 `p256dh`, 16-byte `auth`);
//! - [`payload`]: the JSON a service worker receives, and RFC 8291's 3,993-byte plaintext
//!   limit, checked when a notification is created rather than at delivery;
//! - [`client`]: encryption (`aes128gcm`, RFC 8291, by `web-push-native`), the push request
//!   and the classification of the push service's answer;
//! - [`store`]: subscriptions, notifications (one `webpush.deliver` job per active
//!   subscription, inserted as one batch in the caller's transaction) and delivery attempts;
//! - [`deliver`]: the `webpush.deliver` step a worker runs;
//! - [`kind`]: the `webpush.deliver` kind (typed arguments, handler, metrics).

pub mod client;
pub mod deliver;
pub mod kind;
pub mod payload;
pub mod store;
pub mod subscription;
pub mod vapid;

pub use client::{PushClient, Verdict};
pub use kind::{DeliverPush, PushHandler, PushMetrics};
pub use payload::{Content, PushMessage, MAX_PLAINTEXT};
pub use vapid::{VapidKeys, VapidSigner};

/// The job kind that delivers one notification to one subscription.
pub const KIND: &str = "webpush.deliver";

/// A request field that is not acceptable; `field` names it as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    /// The field (`keys.p256dh`, `user_ids[2]`...).
    pub field: String,
    /// Why.
    pub reason: String,
}

impl InvalidField {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Decodes base64url, padded or not (browsers send it unpadded).
pub(crate) fn b64url_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('='))
}

/// Encodes base64url without padding.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(bytes)
}
