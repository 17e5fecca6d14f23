//! A browser's `PushSubscription`, validated.

use serde::{Deserialize, Serialize};

use crate::{b64url_decode, InvalidField};

/// What `PushSubscription.toJSON()` gives, plus the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSubscription {
    /// The user to notify.
    pub user_id: String,
    /// The push service URL.
    pub endpoint: String,
    /// The browser's keys.
    pub keys: SubscriptionKeys,
}

/// The browser's public key and auth secret, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionKeys {
    /// The 65-byte uncompressed P-256 public key.
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// Longest accepted endpoint URL.
pub const MAX_ENDPOINT: usize = 2048;

/// Checks a subscription: a user id of 1 to 255 characters; an `https` endpoint (plain
/// `http` only to a loopback host and only when `allow_http_loopback` — a dev setting);
/// `p256dh` a valid uncompressed P-256 point; `auth` 16 bytes. Errors name the field as
/// the client sent it.
///
/// # Errors
/// [`InvalidField`].
pub fn validate(s: &NewSubscription, allow_http_loopback: bool) -> Result<(), InvalidField> {
    if s.user_id.trim().is_empty() || s.user_id.chars().count() > 255 {
        return Err(InvalidField::new("user_id", "must be 1 to 255 characters"));
    }
    validate_endpoint(&s.endpoint, allow_http_loopback)?;
    let p = b64url_decode(&s.keys.p256dh)
        .map_err(|_| InvalidField::new("keys.p256dh", "is not base64url"))?;
    if p.len() != 65 || p[0] != 0x04 {
        return Err(InvalidField::new(
            "keys.p256dh",
            format!(
                "must be a 65-byte uncompressed P-256 point (0x04...), got {} bytes",
                p.len()
            ),
        ));
    }
    if web_push_native::p256::PublicKey::from_sec1_bytes(&p).is_err() {
        return Err(InvalidField::new(
            "keys.p256dh",
            "is not a point on the P-256 curve",
        ));
    }
    let a = b64url_decode(&s.keys.auth)
        .map_err(|_| InvalidField::new("keys.auth", "is not base64url"))?;
    if a.len() != 16 {
        return Err(InvalidField::new(
            "keys.auth",
            format!("must be 16 bytes, got {}", a.len()),
        ));
    }
    Ok(())
}

fn validate_endpoint(endpoint: &str, allow_http_loopback: bool) -> Result<(), InvalidField> {
    if endpoint.len() > MAX_ENDPOINT {
        return Err(InvalidField::new(
            "endpoint",
            format!("must be at most {MAX_ENDPOINT} characters"),
        ));
    }
    let url = url::Url::parse(endpoint)
        .map_err(|e| InvalidField::new("endpoint", format!("is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err(InvalidField::new("endpoint", "has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback && allow_http_loopback => Ok(()),
        "http" if loopback => Err(InvalidField::new(
            "endpoint",
            "must be https (plain http to a loopback host needs PGFLEET_PUSH_ALLOW_HTTP_LOOPBACK)",
        )),
        _ => Err(InvalidField::new("endpoint", "must be an https URL")),
    }
}
