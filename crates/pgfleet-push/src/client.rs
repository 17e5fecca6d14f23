//! Sending one push: encrypt (RFC 8291 `aes128gcm`), sign (VAPID), POST, classify the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use web_push_native::p256::PublicKey;
use web_push_native::Auth;

use crate::{b64url_decode, VapidSigner};

/// Where to push: a stored subscription's endpoint and keys (base64url).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Push service URL.
    pub endpoint: &'a str,
    /// Browser public key.
    pub p256dh: &'a str,
    /// Browser auth secret.
    pub auth: &'a str,
}

/// RFC 8030 delivery options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOptions {
    /// Seconds the push service keeps an undelivered message (`TTL`).
    pub ttl: u32,
    /// `Urgency`: very-low, low, normal or high.
    pub urgency: String,
    /// `Topic`: a newer message with the same topic replaces an undelivered one.
    pub topic: Option<String>,
}

/// What the push service's answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: accepted.
    Delivered,
    /// 404 or 410: the subscription is gone; deactivate it, never retry.
    Gone,
    /// 429 or 5xx: try again, no earlier than `Retry-After` when the service sent one.
    RetryAfter(Option<Duration>),
    /// Refused for good (400, 401, 403, 413...): retrying the same request cannot help.
    Rejected,
    /// No answer (connect error, timeout): retry with backoff.
    Transport,
}

/// One attempt's result.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The push service's status, when it answered.
    pub http_status: Option<u16>,
    /// Time from encryption start to the answer.
    pub latency: Duration,
    /// Time spent encrypting and signing.
    pub crypto: Duration,
    /// The meaning.
    pub verdict: Verdict,
    /// What went wrong, for the attempt record.
    pub error: Option<String>,
}

/// A push client: an HTTP client (rustls), the VAPID signer and counters.
#[derive(Clone)]
pub struct PushClient {
    http: reqwest::Client,
    signer: Arc<VapidSigner>,
}

impl std::fmt::Debug for PushClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushClient")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// The default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl PushClient {
    /// A client signing with `signer`, giving up on a request after `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS backend initialisation).
    pub fn new(signer: Arc<VapidSigner>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .user_agent(concat!("pgfleet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, signer })
    }

    /// The VAPID signer.
    pub fn signer(&self) -> &VapidSigner {
        &self.signer
    }

    /// Encrypts `plaintext` for `target` and posts it. Never fails: every problem is a
    /// [`Verdict`] with an error text.
    pub async fn send(&self, target: Target<'_>, plaintext: &[u8], opts: &PushOptions) -> Delivery {
        let started = Instant::now();
        let request = match self.build(target, plaintext, opts) {
            Ok(r) => r,
            Err(e) => {
                return Delivery {
                    http_status: None,
                    latency: started.elapsed(),
                    crypto: started.elapsed(),
                    verdict: Verdict::Rejected,
                    error: Some(e),
                }
            }
        };
        let crypto = started.elapsed();
        match request.send().await {
            Ok(res) => {
                let status = res.status();
                let verdict = classify(status.as_u16(), res.headers());
                let error = if status.is_success() {
                    None
                } else {
                    let text = res.text().await.unwrap_or_default();
                    let text: String = text.chars().take(300).collect();
                    Some(format!("push service answered {status}: {}", text.trim()))
                };
                Delivery {
                    http_status: Some(status.as_u16()),
                    latency: started.elapsed(),
                    crypto,
                    verdict,
                    error,
                }
            }
            Err(e) => Delivery {
                http_status: None,
                latency: started.elapsed(),
                crypto,
                verdict: Verdict::Transport,
                error: Some(if e.is_timeout() {
                    "push service did not answer in time".to_owned()
                } else {
                    format!("push service unreachable: {e}")
                }),
            },
        }
    }

    fn build(
        &self,
        target: Target<'_>,
        plaintext: &[u8],
        opts: &PushOptions,
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = url::Url::parse(target.endpoint).map_err(|e| format!("bad endpoint: {e}"))?;
        let body = encrypt(target, plaintext)?;
        let authorization = self.signer.authorization(&url).map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .post(url)
            .header("TTL", opts.ttl)
            .header("Urgency", &opts.urgency)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(AUTHORIZATION, authorization)
            .body(body);
        if let Some(topic) = &opts.topic {
            req = req.header("Topic", topic);
        }
        Ok(req)
    }
}

/// Encrypts `plaintext` for `target` (`aes128gcm`, RFC 8291: a fresh ephemeral key and salt
/// per message, one record).
///
/// # Errors
/// Malformed keys, or a plaintext too large for one record.
pub fn encrypt(target: Target<'_>, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let p256dh = b64url_decode(target.p256dh).map_err(|_| "bad p256dh".to_owned())?;
    let public = PublicKey::from_sec1_bytes(&p256dh).map_err(|_| "bad p256dh".to_owned())?;
    let auth = b64url_decode(target.auth).map_err(|_| "bad auth".to_owned())?;
    if auth.len() != 16 {
        return Err("bad auth".into());
    }
    web_push_native::encrypt(plaintext.to_vec(), &public, Auth::from_slice(&auth))
        .map_err(|e| format!("encryption failed: {e}"))
}

/// Classifies a push service status (RFC 8030 section 5 and the services' documented codes).
pub fn classify(status: u16, headers: &HeaderMap) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        404 | 410 => Verdict::Gone,
        429 | 500..=599 => Verdict::RetryAfter(retry_after(headers)),
        _ => Verdict::Rejected,
    }
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at a day.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(Duration::from_secs(86_400)))
}
