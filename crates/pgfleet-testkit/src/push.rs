//! A fake Web Push service, strict like a real one and able to read what it receives like a
//! browser: it checks the VAPID JWT (ES256 signature against `k`, `aud`, `exp`, `sub`),
//! requires `TTL` and `Content-Encoding: aes128gcm`, and decrypts the body (RFC 8291 / RFC
//! 8188) with the private key and auth secret it generated for the subscription.
//!
//! The decryption here is written from the RFCs with the RustCrypto primitives, apart from
//! the encryption crate pgfleet uses, so a mistake there cannot hide itself.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::Value;
use sha2::Sha256;

/// A subscription the fake service created, as a browser would hand it to a page
/// (`PushSubscription.toJSON()`), with the secrets kept here.
#[derive(Debug, Clone)]
pub struct FakeSubscription {
    /// Path id under `/push/`.
    pub id: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// base64url public key.
    pub p256dh: String,
    /// base64url auth secret.
    pub auth: String,
}

impl FakeSubscription {
    /// The JSON body for `POST /v1/subscriptions`.
    pub fn to_json(&self, user_id: &str) -> Value {
        serde_json::json!({
            "user_id": user_id,
            "endpoint": self.endpoint,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Retry-After` value, if any.
    pub retry_after: Option<String>,
}

impl Reply {
    /// A status without `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many(secs: u64) -> Self {
        Self {
            status: 429,
            retry_after: Some(secs.to_string()),
        }
    }
}

/// One received push.
#[derive(Debug, Clone)]
pub struct Received {
    /// Subscription id.
    pub subscription: String,
    /// What the service answered.
    pub status: u16,
    /// The decrypted body, when every check passed.
    pub plaintext: Option<Vec<u8>>,
    /// Why the request was refused by the checks (400/401), if it was.
    pub problem: Option<String>,
    /// `TTL` header.
    pub ttl: Option<String>,
    /// `Urgency` header.
    pub urgency: Option<String>,
    /// `Topic` header.
    pub topic: Option<String>,
    /// The JWT claims.
    pub claims: Option<Value>,
}

impl Received {
    /// The decrypted body as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(self.plaintext.as_ref()?).ok()
    }
}

struct Keys {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, Keys>,
    plans: HashMap<String, VecDeque<Reply>>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Shared {
    origin: String,
    inner: Arc<Mutex<Inner>>,
}

/// The running fake service; stopped on drop.
pub struct FakePushService {
    addr: SocketAddr,
    shared: Shared,
    _shutdown: Shutdown,
}

/// Stops the server when dropped.
struct Shutdown(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Shutdown {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl FakePushService {
    /// Starts on 127.0.0.1 with an OS-assigned port.
    ///
    /// # Errors
    /// When it cannot bind.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            origin: format!("http://{addr}"),
            inner: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/push/{id}", axum::routing::post(push))
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            _shutdown: Shutdown(Some(tx)),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new subscription, as a browser would create it.
    pub fn subscribe(&self) -> FakeSubscription {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let mut auth = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut auth);
        let id = format!("{:016x}", rand::random::<u64>());
        let public = secret.public_key().to_encoded_point(false);
        let sub = FakeSubscription {
            endpoint: format!("{}/push/{id}", self.shared.origin),
            p256dh: B64URL.encode(public.as_bytes()),
            auth: B64URL.encode(auth),
            id: id.clone(),
        };
        if let Ok(mut i) = self.shared.inner.lock() {
            i.keys.insert(id, Keys { secret, auth });
        }
        sub
    }

    /// Scripts the next answers for `sub` (then 201 again).
    pub fn reply(&self, sub: &FakeSubscription, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut i) = self.shared.inner.lock() {
            i.plans.entry(sub.id.clone()).or_default().extend(replies);
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .inner
            .lock()
            .map(|i| i.received.clone())
            .unwrap_or_default()
    }

    /// What `sub` received.
    pub fn received_by(&self, sub: &FakeSubscription) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.subscription == sub.id)
            .collect()
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn push(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut rec = Received {
        subscription: id.clone(),
        status: 0,
        plaintext: None,
        problem: None,
        ttl: header(&headers, "ttl"),
        urgency: header(&headers, "urgency"),
        topic: header(&headers, "topic"),
        claims: None,
    };
    let checked = check(&shared, &id, &headers, &body, &mut rec);
    let (status, retry_after) = match checked {
        Err((status, problem)) => {
            rec.problem = Some(problem);
            (status, None)
        }
        Ok(plaintext) => {
            rec.plaintext = Some(plaintext);
            let next = shared
                .inner
                .lock()
                .ok()
                .and_then(|mut i| i.plans.get_mut(&id).and_then(VecDeque::pop_front));
            match next {
                Some(r) => (r.status, r.retry_after),
                None => (201, None),
            }
        }
    };
    rec.status = status;
    let problem = rec.problem.clone();
    if let Ok(mut i) = shared.inner.lock() {
        i.received.push(rec);
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (code, problem.unwrap_or_default()).into_response();
    if let Some(ra) = retry_after.and_then(|v| v.parse().ok()) {
        res.headers_mut().insert("retry-after", ra);
    }
    res
}

fn check(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    rec: &mut Received,
) -> Result<Vec<u8>, (u16, String)> {
    let (secret, auth) = {
        let inner = shared.inner.lock().map_err(|_| (500, "poisoned".into()))?;
        let k = inner
            .keys
            .get(id)
            .ok_or((404, "no such subscription".to_owned()))?;
        (k.secret.clone(), k.auth)
    };
    let claims = check_vapid(&shared.origin, headers).map_err(|e| (401, e))?;
    rec.claims = Some(claims);
    match rec.ttl.as_deref().map(str::parse::<u64>) {
        Some(Ok(_)) => {}
        _ => return Err((400, "TTL header missing or not an integer".into())),
    }
    if header(headers, "content-encoding").as_deref() != Some("aes128gcm") {
        return Err((400, "Content-Encoding must be aes128gcm".into()));
    }
    if body.len() > 4096 {
        return Err((413, "payload too large".into()));
    }
    decrypt(body, &secret, &auth).map_err(|e| (400, e))
}

/// Verifies `Authorization: vapid t=<jwt>, k=<key>` and returns the claims.
fn check_vapid(origin: &str, headers: &HeaderMap) -> Result<Value, String> {
    let h = header(headers, "authorization").ok_or("missing Authorization")?;
    let rest = h
        .strip_prefix("vapid ")
        .ok_or("Authorization is not vapid")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(t) = part.strip_prefix("t=") {
            token = Some(t);
        } else if let Some(k) = part.strip_prefix("k=") {
            key = Some(k);
        }
    }
    let (token, key) = (token.ok_or("no t=")?, key.ok_or("no k=")?);
    let key = B64URL.decode(key).map_err(|_| "k is not base64url")?;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key).map_err(|_| "k is not P-256")?;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("JWT does not have three parts".into());
    }
    let head: Value = serde_json::from_slice(&B64URL.decode(parts[0]).map_err(|_| "bad header")?)
        .map_err(|_| "bad header")?;
    if head["alg"] != "ES256" {
        return Err(format!("alg must be ES256, got {}", head["alg"]));
    }
    let sig = B64URL.decode(parts[2]).map_err(|_| "bad signature")?;
    let sig = p256::ecdsa::Signature::from_slice(&sig).map_err(|_| "signature is not r||s")?;
    let signed = format!("{}.{}", parts[0], parts[1]);
    vk.verify(signed.as_bytes(), &sig)
        .map_err(|_| "signature does not verify against k")?;
    let claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).map_err(|_| "bad claims")?)
        .map_err(|_| "bad claims")?;
    if claims["aud"] != origin {
        return Err(format!("aud {} is not {origin}", claims["aud"]));
    }
    let now = chrono::Utc::now().timestamp();
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= now || exp > now + 24 * 3600 {
        return Err(format!("exp {exp} is not within 24 h of now {now}"));
    }
    let sub = claims["sub"].as_str().ok_or("no sub")?;
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err(format!("sub {sub} is not mailto: or https:"));
    }
    Ok(claims)
}

fn expand<const N: usize>(prk: &Hkdf<Sha256>, info: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    // Lengths of 12, 16 and 32 are far below HKDF-SHA256's limit.
    let _ = prk.expand(info, &mut out);
    out
}

/// Decrypts an `aes128gcm` Web Push body (RFC 8291 section 3.4, RFC 8188 section 2) as the
/// user agent holding `secret` and `auth`.
///
/// # Errors
/// A description of what does not decode or authenticate.
pub fn decrypt(body: &[u8], secret: &p256::SecretKey, auth: &[u8; 16]) -> Result<Vec<u8>, String> {
    if body.len() < 21 {
        return Err("body shorter than the aes128gcm header".into());
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let idlen = body[20] as usize;
    if idlen != 65 || body.len() < 21 + idlen {
        return Err(format!("keyid must be the 65-byte sender key, got {idlen}"));
    }
    let as_public = p256::PublicKey::from_sec1_bytes(&body[21..21 + idlen])
        .map_err(|_| "keyid is not a P-256 point")?;
    let records = &body[21 + idlen..];
    if records.len() > rs || rs < 18 {
        return Err(format!(
            "one record expected (rs {rs}, {} bytes)",
            records.len()
        ));
    }
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), as_public.as_affine());
    let ua_public = secret.public_key().to_encoded_point(false);
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let prk_key = Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes());
    let ikm: [u8; 32] = expand(&prk_key, &key_info);
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let cek: [u8; 16] = expand(&prk, b"Content-Encoding: aes128gcm\0");
    let nonce: [u8; 12] = expand(&prk, b"Content-Encoding: nonce\0");
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "bad key")?;
    let mut padded = cipher
        .decrypt(Nonce::from_slice(&nonce), records)
        .map_err(|_| "record does not authenticate (wrong keys or corrupted)")?;
    // Strip padding: the last non-zero byte is the delimiter, 2 for the last record.
    while padded.last() == Some(&0) {
        padded.pop();
    }
    match padded.pop() {
        Some(2) => Ok(padded),
        _ => Err("last record's padding delimiter is not 2".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8291 appendix A.
    #[test]
    fn decrypts_the_rfc_8291_example() {
        let d = |s: &str| B64URL.decode(s).unwrap();
        let body = d("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN");
        let secret =
            p256::SecretKey::from_slice(&d("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
        let auth: [u8; 16] = d("BTBZMqHH6r4Tts7J_aSIgg").try_into().unwrap();
        let plain = decrypt(&body, &secret, &auth).unwrap();
        assert_eq!(plain, b"When I grow up, I want to be a watermelon");
        let mut wrong = auth;
        wrong[0] ^= 1;
        assert!(decrypt(&body, &secret, &wrong).is_err());
    }
}
