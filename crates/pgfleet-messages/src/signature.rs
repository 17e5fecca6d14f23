//! Signature checks, pure and constant-time.
//!
//! - **Standard Webhooks** (incoming webhooks): headers `webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` (several,
//!   space separated); secrets `whsec_<base64 key>`, several accepted for rotation; the
//!   timestamp must be within the tolerance (replay protection).
//! - **Signed API requests**: `X-Timestamp` (unix seconds, within the tolerance) and
//!   `X-Signature` = hex HMAC-SHA256 over `"{timestamp}.{METHOD}.{path}.{body}"`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused (each maps to 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header is not in the expected form.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The timestamp is outside the tolerance.
    #[error("timestamp is outside the {tolerance_secs} s tolerance")]
    Stale {
        /// The tolerance in seconds.
        tolerance_secs: i64,
    },
    /// No signature matched any secret.
    #[error("no signature matches")]
    Mismatch,
}

/// A webhook signing secret (`whsec_<base64>`), decoded.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64 key>` (the prefix is optional).
    ///
    /// # Errors
    /// When the key is not base64 or empty.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        let key = B64
            .decode(b64)
            .map_err(|e| format!("webhook secret is not base64: {e}"))?;
        if key.is_empty() {
            return Err("webhook secret is empty".into());
        }
        Ok(Self(key))
    }

    /// Signs a message the Standard Webhooks way: `v1,<base64 signature>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            B64.encode(mac(&self.0, &content(id, timestamp, body)))
        )
    }
}

fn content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(id.len() + body.len() + 24);
    c.extend_from_slice(id.as_bytes());
    c.push(b'.');
    c.extend_from_slice(timestamp.to_string().as_bytes());
    c.push(b'.');
    c.extend_from_slice(body);
    c
}

fn mac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn check_timestamp(
    ts: &str,
    now: i64,
    tolerance_secs: i64,
    header: &'static str,
) -> Result<i64, SignatureError> {
    let ts: i64 = ts
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed(header))?;
    if (now - ts).abs() > tolerance_secs {
        return Err(SignatureError::Stale { tolerance_secs });
    }
    Ok(ts)
}

/// Verifies a Standard Webhooks delivery against any of `secrets`.
///
/// # Errors
/// [`SignatureError`] naming what is wrong.
pub fn verify_webhook(
    secrets: &[WebhookSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let id = id.ok_or(SignatureError::Missing("webhook-id"))?;
    let ts = timestamp.ok_or(SignatureError::Missing("webhook-timestamp"))?;
    let sig = signature.ok_or(SignatureError::Missing("webhook-signature"))?;
    let ts = check_timestamp(ts, now, tolerance_secs, "webhook-timestamp")?;
    let msg = content(id, ts, body);
    let candidates: Vec<Vec<u8>> = sig
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b| B64.decode(b).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("webhook-signature"));
    }
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(&secret.0, &msg);
        for c in &candidates {
            ok |= expected.as_slice().ct_eq(c.as_slice());
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The hex signature of an API request.
pub fn sign_request(
    secret: &[u8],
    timestamp: i64,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    let mut msg = format!("{timestamp}.{method}.{path}.").into_bytes();
    msg.extend_from_slice(body);
    hex::encode(mac(secret, &msg))
}

/// The parts of an API request that its signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path (no query).
    pub path: &'a str,
    /// Raw body.
    pub body: &'a [u8],
}

/// Verifies an HMAC-signed API request (`timestamp` and `signature` are the `X-Timestamp`
/// and `X-Signature` headers).
///
/// # Errors
/// [`SignatureError`] naming what is wrong.
pub fn verify_request(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    parts: SignedParts<'_>,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let ts = timestamp.ok_or(SignatureError::Missing("x-timestamp"))?;
    let sig = signature.ok_or(SignatureError::Missing("x-signature"))?;
    let ts = check_timestamp(ts, now, tolerance_secs, "x-timestamp")?;
    let given = hex::decode(sig.trim()).map_err(|_| SignatureError::Malformed("x-signature"))?;
    let expected = sign_request(secret, ts, parts.method, parts.path, parts.body);
    let expected = hex::decode(expected).map_err(|_| SignatureError::Mismatch)?;
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let body = br#"{"test": 2432232314}"#;
        let sig = secret().sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn accepts_rotation_and_several_signatures_and_rejects_the_rest() {
        let body = b"{}";
        let old = WebhookSecret::parse("whsec_b2xkLXNlY3JldA==").unwrap();
        let sig = secret().sign("id1", 1000, body);
        let header = format!("v1,AAAA {sig}");
        let secrets = [old.clone(), secret()];
        assert_eq!(
            verify_webhook(
                &secrets,
                Some("id1"),
                Some("1000"),
                Some(&header),
                body,
                1010,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify_webhook(
                &[old],
                Some("id1"),
                Some("1000"),
                Some(&header),
                body,
                1010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(
                &secrets,
                Some("id1"),
                Some("1000"),
                Some(&sig),
                b"{ }",
                1010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(
                &secrets,
                Some("id1"),
                Some("1000"),
                Some(&sig),
                body,
                2000,
                300
            ),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_webhook(&secrets, None, Some("1000"), Some(&sig), body, 1000, 300),
            Err(SignatureError::Missing("webhook-id"))
        );
        assert_eq!(
            verify_webhook(
                &secrets,
                Some("id1"),
                Some("x"),
                Some(&sig),
                body,
                1000,
                300
            ),
            Err(SignatureError::Malformed("webhook-timestamp"))
        );
        assert_eq!(
            verify_webhook(
                &secrets,
                Some("id1"),
                Some("1000"),
                Some("v2,zzz"),
                body,
                1000,
                300
            ),
            Err(SignatureError::Malformed("webhook-signature"))
        );
    }

    #[test]
    fn signed_requests() {
        let s = b"topsecret";
        let sig = sign_request(s, 500, "POST", "/v1/jobs", b"{}");
        let parts = SignedParts {
            method: "POST",
            path: "/v1/jobs",
            body: b"{}",
        };
        let other = SignedParts {
            path: "/v1/jobs/1",
            ..parts
        };
        let check =
            |sig: &str, ts: &str, parts| verify_request(s, Some(ts), Some(sig), parts, 510, 300);
        assert_eq!(check(&sig, "500", parts), Ok(()));
        assert_eq!(check(&sig, "500", other), Err(SignatureError::Mismatch));
        assert_eq!(
            check("zz", "500", parts),
            Err(SignatureError::Malformed("x-signature"))
        );
        assert_eq!(
            check(&sig, "100", parts),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
    }
}
