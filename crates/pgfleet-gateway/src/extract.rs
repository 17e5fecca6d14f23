//! Path and query extractors whose rejections are problem+json like every other error:
//! a value that does not parse is 422 naming the parameter, and a NUL character (which
//! PostgreSQL cannot store or compare) is refused before any handler runs.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

const NUL: &str = "holds a NUL character (\\u0000), which is not allowed";

/// Path parameters, deserialized like `axum::extract::Path`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let raw: Vec<(String, String)> = RawPathParams::from_request_parts(parts, state)
            .await
            .map(|raw| {
                raw.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((key, _)) = raw.iter().find(|(_, v)| v.contains('\0')) {
            return Err(ApiError::invalid(key.as_str(), NUL));
        }
        // A single parameter's errors carry no key: name the only one there is.
        let only = match raw.as_slice() {
            [(key, _)] => key.as_str(),
            _ => "path",
        };
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(match e.into_kind() {
                ErrorKind::ParseErrorAtKey {
                    key,
                    value,
                    expected_type,
                } => ApiError::invalid(key, format!("{value:.64?} is not a valid {expected_type}")),
                ErrorKind::ParseError {
                    value,
                    expected_type,
                } => {
                    ApiError::invalid(only, format!("{value:.64?} is not a valid {expected_type}"))
                }
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    ApiError::invalid(key, "is not valid UTF-8")
                }
                other => ApiError::invalid(only, other.to_string()),
            }),
            Err(other) => Err(ApiError::invalid(only, other.body_text())),
        }
    }
}

/// Query parameters, deserialized like `axum::extract::Query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Parses a query string into `T`, naming the parameter that is malformed or holds a NUL.
///
/// # Errors
/// [`ApiError::Invalid`].
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    if let Some((k, _)) = pairs
        .clone()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        let field = if k.contains('\0') { "query" } else { &k };
        return Err(ApiError::invalid(field, NUL));
    }
    let de = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field.is_empty() || field == "?" {
            "query".to_owned()
        } else {
            field
        };
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct P {
        limit: Option<i64>,
        queue: Option<String>,
    }

    fn field(q: &str) -> String {
        match parse_query::<P>(q) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(field("limit=abc"), "limit");
        assert_eq!(field("limit=99999999999999999999"), "limit");
        assert_eq!(field("queue=a%00b"), "queue");
        assert_eq!(field("queue=ok&limit=1.5"), "limit");
        assert!(parse_query::<P>("queue=x&limit=5&other=1").is_ok());
    }
}
