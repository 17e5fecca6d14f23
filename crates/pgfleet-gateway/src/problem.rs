//! Errors as RFC 9457 `application/problem+json`, mapped to HTTP in one place.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pgfleet_queue::QueueError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The offending field, when one is to blame (JSON path such as `amount` or `jobs[3].queue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error a route can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Body is not JSON (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// A field is missing, of the wrong type or invalid (422).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials lack the scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource is in a state that forbids the action (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests for this credential (429); retry after this many seconds.
    #[error("rate limit exceeded: retry after {0} s")]
    RateLimited(u64),
    /// The request took longer than the gateway's request timeout (408).
    #[error("the request did not complete within {0} s")]
    Timeout(u64),
    /// Body over the limit (413).
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// A feature this request needs is not configured (503, the message says how).
    #[error("{0}")]
    NotConfigured(String),
    /// The database is unavailable or failed (503); the cause is logged, not shown.
    #[error("service unavailable")]
    Unavailable(String),
}

impl ApiError {
    /// Shorthand for [`ApiError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with its field named inside `parent` (`state` becomes
    /// `filter.state`); other errors unchanged.
    pub fn under(self, parent: &str) -> Self {
        match self {
            ApiError::Invalid { field, reason } => ApiError::Invalid {
                field: format!("{parent}.{field}"),
                reason,
            },
            other => other,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::Invalid { .. } => "invalid-field",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "body-too-large",
            ApiError::Timeout(_) => "timeout",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotConfigured(_) => "not-configured",
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("https://pgfleet.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            field: match self {
                ApiError::Invalid { field, .. } => Some(field.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            tracing::error!(cause = %cause, "request failed: database unavailable");
        }
        let p = self.problem();
        let body = serde_json::to_vec(&p).unwrap_or_default();
        let mut res = (
            self.status(),
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        match self {
            ApiError::RateLimited(secs) => {
                if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unauthorized(_) => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"pgfleet\""),
                );
            }
            _ => {}
        }
        res
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Invalid { field, reason } => ApiError::invalid(field, reason),
            QueueError::InvalidAt { path, reason } => ApiError::invalid(path, reason),
            QueueError::NotFound(id) => ApiError::NotFound(format!("job {id} not found")),
            QueueError::WrongState { .. } | QueueError::LeaseLost(_) => {
                ApiError::Conflict(e.to_string())
            }
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

/// A page size from a `limit` query parameter: `default` when absent, 422 naming `limit`
/// outside 1..=1000 (the most any list returns).
///
/// # Errors
/// [`ApiError::Invalid`].
pub fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    use pgfleet_queue::admin::MAX_PAGE;
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

/// Parses a JSON body into `T`: syntax errors are 400; missing fields, wrong types and what
/// could not be stored exactly (NUL characters, numbers a 64-bit float cannot hold: see
/// [`crate::json_guard`]) are 422 naming the field's path.
///
/// # Errors
/// [`ApiError::MalformedJson`] or [`ApiError::Invalid`].
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        // serde reads a struct from an array too (`[null, null]`): only an object is one.
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            return parse_json(body);
        }
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    parse_json(body)
}

/// Parses a JSON body into `T`; see [`parse_object`] for bodies that must be objects.
///
/// # Errors
/// [`ApiError::MalformedJson`] or [`ApiError::Invalid`].
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        if e.inner().to_string().starts_with("number out of range") {
            if let Err(v) = crate::json_guard::check(body) {
                return ApiError::invalid(v.field, v.reason);
            }
        }
        let path = field_path(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ApiError::MalformedJson(inner.to_string()),
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                // A missing field is reported at its parent: name the field itself. An
                // unknown field's path already ends with its name.
                let missing = msg
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next());
                let field = match (missing, path.is_empty()) {
                    (Some(f), true) => f.to_owned(),
                    (Some(f), false) => format!("{path}.{f}"),
                    (None, true) => "body".to_owned(),
                    (None, false) => path,
                };
                ApiError::invalid(field, msg)
            }
        }
    })?;
    crate::json_guard::check(body).map_err(|v| ApiError::invalid(v.field, v.reason))?;
    Ok(value)
}

/// Integers as JSON Schema means them (`3` and `3.0`), shared with the queue's request
/// types (limits, schedules).
pub use pgfleet_queue::serde_int::opt_integer;

/// `jobs[3].queue` from the deserializer's path. Keys that would make the name ambiguous or
/// empty (`""`, `".."`: found by fuzzing) end the name at their parent.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if !key.is_empty() && !key.contains(['.', '[', ']']) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Map { .. } => break,
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: i32,
    }

    fn field(body: &str) -> String {
        match parse_json::<Outer>(body.as_bytes()) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_fields_are_always_named() {
        assert_eq!(field(r#"{"inner": [{"a": "x"}]}"#), "inner[0].a");
        assert_eq!(field(r#"{"inner": [{}]}"#), "inner[0].a");
        assert_eq!(field(r#"{}"#), "inner");
        assert_eq!(field(r#"[]"#), "body");
        // Empty or dotted keys (fuzzing found these named nothing).
        assert_eq!(field(r#"{"": 1}"#), "body");
        assert_eq!(field(r#"{"..": 1}"#), "body");
        assert_eq!(field(r#"{"inner": [{"": 1}]}"#), "inner[0]");
        assert_eq!(field(r#"{"inner": [{"a.b": 1}]}"#), "inner[0]");
        assert_eq!(field(r#"{"nope": 1}"#), "nope");
    }
}
