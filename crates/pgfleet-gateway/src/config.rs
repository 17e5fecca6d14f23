//! Gateway settings, parsed from the environment's strings (the binary reads the variables).

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::signature::WebhookSecret;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET routes.
    Read,
    /// Create jobs, ingest.
    Write,
    /// Retry, cancel, delete, pause, resume.
    Admin,
}

impl Scope {
    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?} (read, write, admin)")),
        }
    }
}

/// An API key as kept in memory: only its SHA-256 and scope.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    /// Its scope.
    pub scope: Scope,
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// API keys (hashed).
    pub api_keys: Vec<ApiKey>,
    /// Webhook secrets per source (several per source during rotation).
    pub webhook_secrets: HashMap<String, Vec<WebhookSecret>>,
    /// Secret for HMAC-signed API requests, if enabled.
    pub hmac_secret: Option<Vec<u8>>,
    /// Signature timestamp tolerance (default 300 s).
    pub tolerance: Duration,
    /// Largest accepted body (default 1 MiB).
    pub body_limit: usize,
    /// Request timeout (default 10 s).
    pub timeout: Duration,
    /// The queue webhook jobs go to (default `default`).
    pub webhook_queue: String,
    /// Requests per second allowed per credential (`None`: unlimited).
    pub rate_limit: Option<u32>,
    /// The VAPID public key served at `/v1/vapid-public-key` (`None`: push not configured).
    pub vapid_public_key: Option<String>,
    /// Accept `http://` subscription endpoints on loopback hosts (development only).
    pub push_allow_http_loopback: bool,
    /// The queue outbound message jobs go to (default `default`).
    pub messages_queue: String,
    /// How long a client may take to send a request's headers (default 10 s); a slow or
    /// stalled client is disconnected instead of holding a connection.
    pub header_read_timeout: Duration,
    /// Link template for a job's trace in the console, `{trace_id}` replaced (for example
    /// `http://localhost:16686/trace/{trace_id}`); `None`: trace ids are shown unlinked.
    pub trace_url: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            webhook_secrets: HashMap::new(),
            hmac_secret: None,
            tolerance: Duration::from_secs(300),
            body_limit: 1024 * 1024,
            timeout: Duration::from_secs(10),
            webhook_queue: "default".into(),
            rate_limit: None,
            vapid_public_key: None,
            push_allow_http_loopback: false,
            messages_queue: "default".into(),
            header_read_timeout: Duration::from_secs(10),
            trace_url: None,
        }
    }
}

impl GatewayConfig {
    /// Parses `PGFLEET_API_KEYS` (`key:scope,...`).
    ///
    /// # Errors
    /// An entry without a known scope.
    pub fn parse_api_keys(s: &str) -> Result<Vec<ApiKey>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (key, scope) = e
                    .rsplit_once(':')
                    .ok_or_else(|| "PGFLEET_API_KEYS entries are key:scope".to_owned())?;
                if key.len() < 16 {
                    return Err("PGFLEET_API_KEYS: keys must be at least 16 characters".into());
                }
                Ok(ApiKey {
                    hash: hash_key(key),
                    scope: scope.parse()?,
                })
            })
            .collect()
    }

    /// Parses `PGFLEET_WEBHOOK_SECRETS` (`source=whsec_...,...`; repeat a source to rotate).
    ///
    /// # Errors
    /// An entry that is not `source=secret` or a secret that is not base64.
    pub fn parse_webhook_secrets(s: &str) -> Result<HashMap<String, Vec<WebhookSecret>>, String> {
        let mut out: HashMap<String, Vec<WebhookSecret>> = HashMap::new();
        for e in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (source, secret) = e
                .split_once('=')
                .ok_or_else(|| "PGFLEET_WEBHOOK_SECRETS entries are source=whsec_...".to_owned())?;
            out.entry(source.trim().to_owned())
                .or_default()
                .push(WebhookSecret::parse(secret.trim())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_secrets() {
        let keys =
            GatewayConfig::parse_api_keys("aaaaaaaaaaaaaaaa:read, bbbbbbbbbbbbbbbb:admin").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].scope, Scope::Admin);
        assert!(GatewayConfig::parse_api_keys("short:read").is_err());
        assert!(GatewayConfig::parse_api_keys("aaaaaaaaaaaaaaaa:root").is_err());
        let s = GatewayConfig::parse_webhook_secrets(
            "payments=whsec_c2VjcmV0,payments=whsec_b2xk,stripe=whsec_eA==",
        )
        .unwrap();
        assert_eq!(s["payments"].len(), 2);
        assert!(GatewayConfig::parse_webhook_secrets("payments").is_err());
    }
}
