//! Integers as JSON Schema means them: `3` and `3.0` alike (a number with no fraction),
//! refusing fractions and values out of the target type's range. For request fields
//! declared `integer` in the OpenAPI document (`#[serde(deserialize_with = ...)]`).

use serde::de::Error;
use serde::{Deserialize, Deserializer};

fn whole<T: TryFrom<i64>, E: Error>(n: &serde_json::Number) -> Result<T, E> {
    let whole = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Some(i),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
        _ => None,
    };
    whole
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| E::custom(format!("{n} is not an integer in range")))
}

/// An optional integer (`null` or absent: `None`).
///
/// # Errors
/// A serde error naming the number (reported as 422 on the field).
pub fn opt_integer<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    match Option::<serde_json::Number>::deserialize(d)? {
        Some(n) => whole(&n).map(Some),
        None => Ok(None),
    }
}

/// A required integer (pair it with `#[serde(default = ...)]` for an optional one with a
/// default).
///
/// # Errors
/// A serde error naming the number (reported as 422 on the field).
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    whole(&serde_json::Number::deserialize(d)?)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_integer")]
        n: Option<i16>,
    }

    #[test]
    fn whole_numbers_in_range_only() {
        let n = |s: &str| serde_json::from_str::<T>(s).map(|t| t.n);
        assert_eq!(n(r#"{"n": 3}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n": 3.0}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n("{}").unwrap(), None);
        assert!(n(r#"{"n": 3.5}"#).is_err());
        assert!(n(r#"{"n": 40000}"#).is_err());
    }
}
