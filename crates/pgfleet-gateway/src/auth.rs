//! Authentication: `Authorization: Bearer <api key>` (compared by SHA-256, constant time,
//! scoped read / write / admin) or an HMAC-signed request (`X-Timestamp`, `X-Signature`),
//! which is granted every scope. Webhook routes use their own signatures instead.
//!
//! [`Authed`] is an extractor that reads the body (within the limit) and authorizes the
//! request for the scope in its type parameter, so a handler cannot forget either.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{hash_key, Scope};
use crate::problem::ApiError;
use crate::signature::{verify_request, SignedParts};
use crate::AppState;

/// Scope level: read.
pub const READ: u8 = 0;
/// Scope level: write.
pub const WRITE: u8 = 1;
/// Scope level: admin.
pub const ADMIN: u8 = 2;

fn scope_of(level: u8) -> Scope {
    match level {
        READ => Scope::Read,
        WRITE => Scope::Write,
        _ => Scope::Admin,
    }
}

/// An authorized request's body.
pub struct Authed<const LEVEL: u8>(pub Bytes);

/// Reads a body within the limit (413 beyond it).
///
/// # Errors
/// [`ApiError::TooLarge`], or [`ApiError::MalformedJson`] when the body cannot be read.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return ApiError::TooLarge(limit);
                }
                cause = c.source();
            }
            ApiError::MalformedJson(format!("cannot read body: {e}"))
        })
}

impl<const LEVEL: u8> FromRequest<AppState> for Authed<LEVEL> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let body = read_body(req, state.config.body_limit).await?;
        authorize(state, &headers, &method, &path, &body, scope_of(LEVEL))?;
        Ok(Authed(body))
    }
}

fn limit(state: &AppState, credential: [u8; 32]) -> Result<(), ApiError> {
    match &state.limiter {
        Some(l) => l.take(credential).map_err(ApiError::RateLimited),
        None => Ok(()),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Checks credentials for `needed`.
///
/// # Errors
/// 401 without valid credentials, 403 when the key's scope is too small.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    needed: Scope,
) -> Result<(), ApiError> {
    let scope = credential_scope(state, headers, method, path, body)?;
    if scope < needed {
        return Err(ApiError::Forbidden(format!(
            "this API key has scope {scope:?}; {needed:?} is required"
        )));
    }
    Ok(())
}

/// The scope the request's credentials grant: an API key's own, every scope for a valid
/// signed request.
///
/// # Errors
/// 401 without valid credentials; 429 over the credential's rate limit.
pub fn credential_scope(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Scope, ApiError> {
    let cfg = &state.config;
    if let Some(auth) = header(headers, "authorization") {
        let key = bearer_token(auth).ok_or_else(|| {
            ApiError::Unauthorized("Authorization must be `Bearer <api key>`".into())
        })?;
        let hash = hash_key(key.trim());
        let mut found: Option<Scope> = None;
        for k in &cfg.api_keys {
            if bool::from(k.hash.ct_eq(&hash)) {
                found = Some(k.scope);
            }
        }
        let scope = found.ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
        limit(state, hash)?;
        return Ok(scope);
    }
    if header(headers, "x-signature").is_some() {
        let secret = cfg
            .hmac_secret
            .as_deref()
            .ok_or_else(|| ApiError::Unauthorized("signed requests are not enabled".into()))?;
        let now = chrono::Utc::now().timestamp();
        limit(state, hash_key("hmac-signed-requests"))?;
        let parts = SignedParts { method, path, body };
        verify_request(
            secret,
            header(headers, "x-timestamp"),
            header(headers, "x-signature"),
            parts,
            now,
            cfg.tolerance.as_secs() as i64,
        )
        .map_err(|e| ApiError::Unauthorized(format!("request signature: {e}")))?;
        return Ok(Scope::Admin);
    }
    Err(ApiError::Unauthorized(
        "missing credentials: send `Authorization: Bearer <api key>` or a signed request".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer k1"), Some("k1"));
        assert_eq!(bearer_token("bearer k1"), Some("k1"));
        assert_eq!(bearer_token("BEARER k1"), Some("k1"));
        assert_eq!(bearer_token("Basic a2V5"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
