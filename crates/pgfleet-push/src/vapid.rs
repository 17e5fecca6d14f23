//! VAPID (RFC 8292): the application server's P-256 key pair and the `Authorization` header.
//!
//! A JWT names its audience (the push service's origin), an expiry (at most 24 h ahead) and a
//! subject (`mailto:` or `https:` contact). Signing costs an ECDSA signature, so the signer
//! keeps one token per origin and re-signs only when less than an hour of it remains.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;

use crate::{b64url_decode, b64url_encode, InvalidField};

/// How long a signed token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A cached token is replaced when less than this remains.
const REFRESH_MARGIN: Duration = Duration::from_secs(3600);

/// The application server's key pair and contact.
#[derive(Clone)]
pub struct VapidKeys {
    pair: Arc<ES256KeyPair>,
    public_b64: String,
    subject: String,
}

impl std::fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public", &self.public_b64)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl VapidKeys {
    /// A fresh random key pair.
    ///
    /// # Errors
    /// When `subject` is not a `mailto:` or `https:` URI.
    pub fn generate(subject: &str) -> Result<Self, InvalidField> {
        Self::from_pair(ES256KeyPair::generate(), subject)
    }

    /// Keys from their configured form: the private key as base64url of the 32-byte scalar
    /// (`PGFLEET_VAPID_PRIVATE_KEY`); `public`, when given, must match it.
    ///
    /// # Errors
    /// [`InvalidField`] naming the variable that is wrong.
    pub fn from_base64url(
        private: &str,
        public: Option<&str>,
        subject: &str,
    ) -> Result<Self, InvalidField> {
        let raw = b64url_decode(private.trim())
            .map_err(|_| InvalidField::new("PGFLEET_VAPID_PRIVATE_KEY", "is not base64url"))?;
        let pair = ES256KeyPair::from_bytes(&raw).map_err(|_| {
            InvalidField::new(
                "PGFLEET_VAPID_PRIVATE_KEY",
                "is not a P-256 private key (32 bytes, base64url)",
            )
        })?;
        let keys = Self::from_pair(pair, subject)?;
        if let Some(p) = public {
            if p.trim().trim_end_matches('=') != keys.public_b64 {
                return Err(InvalidField::new(
                    "PGFLEET_VAPID_PUBLIC_KEY",
                    "does not belong to PGFLEET_VAPID_PRIVATE_KEY",
                ));
            }
        }
        Ok(keys)
    }

    fn from_pair(pair: ES256KeyPair, subject: &str) -> Result<Self, InvalidField> {
        let subject = subject.trim();
        let ok = subject
            .strip_prefix("mailto:")
            .is_some_and(|m| m.contains('@'))
            || url::Url::parse(subject).is_ok_and(|u| u.scheme() == "https");
        if !ok {
            return Err(InvalidField::new(
                "PGFLEET_VAPID_SUBJECT",
                "must be a mailto: address or an https: URL (RFC 8292 section 2.1)",
            ));
        }
        let public_b64 = b64url_encode(&pair.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            pair: Arc::new(pair),
            public_b64,
            subject: subject.to_owned(),
        })
    }

    /// The public key as browsers take it (`applicationServerKey`): base64url of the
    /// 65-byte uncompressed point.
    pub fn public_key(&self) -> &str {
        &self.public_b64
    }

    /// The private key in its configured form (base64url of the 32-byte scalar).
    pub fn private_key(&self) -> String {
        b64url_encode(&self.pair.to_bytes())
    }

    /// The contact URI.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Signs `Authorization: vapid t=<jwt>, k=<public key>` headers, one token per origin.
pub struct VapidSigner {
    keys: VapidKeys,
    cache: Mutex<HashMap<String, (String, Instant)>>,
    signed: AtomicU64,
}

impl std::fmt::Debug for VapidSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidSigner")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Why a header could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    /// The endpoint has no origin (no host).
    #[error("endpoint has no origin")]
    NoOrigin,
    /// Signing failed.
    #[error("signing the VAPID token: {0}")]
    Sign(String),
}

impl VapidSigner {
    /// A signer for `keys`.
    pub fn new(keys: VapidKeys) -> Self {
        Self {
            keys,
            cache: Mutex::new(HashMap::new()),
            signed: AtomicU64::new(0),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &VapidKeys {
        &self.keys
    }

    /// How many tokens have been signed (cache misses).
    pub fn signed(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    /// The header value for a push to `endpoint`, from the cache when its token is fresh.
    ///
    /// # Errors
    /// [`VapidError`].
    pub fn authorization(&self, endpoint: &url::Url) -> Result<String, VapidError> {
        let origin = endpoint.origin();
        if !origin.is_tuple() {
            return Err(VapidError::NoOrigin);
        }
        let audience = origin.ascii_serialization();
        let now = Instant::now();
        if let Ok(cache) = self.cache.lock() {
            if let Some((header, until)) = cache.get(&audience) {
                if *until > now + REFRESH_MARGIN {
                    return Ok(header.clone());
                }
            }
        }
        let claims = Claims::create(TOKEN_LIFETIME.into())
            .with_audience(&audience)
            .with_subject(&self.keys.subject);
        let token = self
            .keys
            .pair
            .sign(claims)
            .map_err(|e| VapidError::Sign(e.to_string()))?;
        self.signed.fetch_add(1, Ordering::Relaxed);
        let header = format!("vapid t={token}, k={}", self.keys.public_b64);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(audience, (header.clone(), now + TOKEN_LIFETIME));
        }
        Ok(header)
    }
}
