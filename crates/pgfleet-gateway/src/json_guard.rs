//! What PostgreSQL and the worker would refuse, found in the request's JSON text before
//! anything is written.
//!
//! A body can be valid JSON and still be poison: PostgreSQL refuses `\u0000` in `jsonb` and
//! `text`, and a number that a 64-bit float cannot hold (`1e400`, `1e-400`, or more digits
//! than a double keeps) would be stored as one value and handed back as another — or, beyond
//! the float range, not decoded at all. [`check`] scans the raw text once (it sees each
//! number as written, which the parsed value no longer does) and names the first offending
//! field, so the gateway answers 422 and writes nothing. Integers that fit 64 bits, and
//! non-integral numbers written as a decimal that round-trips through a double (`0.1`,
//! `5e-324`), pass; integral values beyond 64 bits (`1e20`, `1.7e308`) are refused as well,
//! because a double holds most of them only approximately and the OpenAPI document can then
//! state the rule exactly.

/// The first thing in a body that cannot be stored exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path (`payload.x`, `jobs[3].payload`), `body` for the top level.
    pub field: String,
    /// Why, for a person.
    pub reason: String,
}

enum Frame {
    Object { key: Option<String>, want_key: bool },
    Array { index: usize },
}

/// Scans a JSON document (syntactically valid, or refused by the parser only for a number
/// out of range) for NUL characters in strings and keys and for numbers that a 64-bit
/// integer or float cannot hold exactly.
///
/// # Errors
/// The first [`Violation`], in document order.
pub fn check(body: &[u8]) -> Result<(), Violation> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'{' => stack.push(Frame::Object {
                key: None,
                want_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { key, want_key }) => {
                    *key = None;
                    *want_key = true;
                }
                None => {}
            },
            b'"' => {
                let is_key = matches!(stack.last(), Some(Frame::Object { want_key: true, .. }));
                let (end, text, nul) = string_at(body, i, is_key);
                if is_key {
                    if let Some(Frame::Object { key, want_key }) = stack.last_mut() {
                        *key = Some(text);
                        *want_key = false;
                    }
                }
                if nul {
                    let what = if is_key { "a key" } else { "a string" };
                    return Err(Violation {
                        field: path(&stack),
                        reason: format!(
                            "{what} holds a NUL character (\\u0000), which cannot be stored"
                        ),
                    });
                }
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&body[start..i]).unwrap_or("");
                if let Err(reason) = exact_number(token) {
                    return Err(Violation {
                        field: path(&stack),
                        reason,
                    });
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The string starting at `body[start] == '"'`: the index after its closing quote, its text
/// when `want_text` (escapes other than `\"` and `\\` kept as written; only used to name
/// fields) and whether it holds `\u0000`.
fn string_at(body: &[u8], start: usize, want_text: bool) -> (usize, String, bool) {
    let mut i = start + 1;
    let mut text = Vec::new();
    let mut nul = false;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let text = if want_text {
                    String::from_utf8_lossy(&text).into_owned()
                } else {
                    String::new()
                };
                return (i + 1, text, nul);
            }
            b'\\' if i + 1 < body.len() => {
                let next = body[i + 1];
                if next == b'u' && body.get(i + 2..i + 6) == Some(b"0000".as_slice()) {
                    nul = true;
                }
                if want_text {
                    match next {
                        b'"' | b'\\' => text.push(next),
                        _ => text.extend_from_slice(&body[i..i + 2]),
                    }
                }
                i += 2;
            }
            b => {
                nul |= b == 0;
                if want_text {
                    text.push(b);
                }
                i += 1;
            }
        }
    }
    (i, String::from_utf8_lossy(&text).into_owned(), nul)
}

/// `payload.x[2]` from the open containers; keys that would make the name ambiguous or empty
/// end it at their parent (as the parser's own error paths do).
fn path(stack: &[Frame]) -> String {
    let mut out = String::new();
    for f in stack {
        match f {
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
            Frame::Object {
                key: Some(k),
                want_key: false,
            } if !k.is_empty() && !k.contains(['.', '[', ']', '\\']) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Object { .. } => break,
        }
    }
    if out.is_empty() {
        "body".to_owned()
    } else {
        out
    }
}

/// Ok when the number written as `token` is stored and handed back with the same value:
/// an integer that fits `i64`/`u64`, or a decimal equal to the double nearest to it.
fn exact_number(token: &str) -> Result<(), String> {
    let integer = !token.contains(['.', 'e', 'E']);
    if integer && (token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok()) {
        return Ok(());
    }
    let value: f64 = token
        .parse()
        .map_err(|_| format!("{token:.40} is not a number"))?;
    if !value.is_finite() {
        return Err(format!(
            "{token:.40} is beyond the range of a 64-bit float (about ±1.8e308)"
        ));
    }
    // Every double from 2^53 up is integral; past the 64-bit integer range such a value is
    // refused rather than held as a float, so that a number is an integer exactly when the
    // OpenAPI document says so (`JsonValue`: 64-bit integers, or non-integral doubles).
    if value.fract() == 0.0
        && !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&value)
    {
        return Err(format!(
            "{token:.40} is an integer beyond the 64-bit range (-2^63 to 2^64-1); send it as a string"
        ));
    }
    // Zero, or a decimal of at most 15 significant digits in the normal range (DBL_DIG: the
    // double nearest it gives it back), is exact without formatting.
    let mantissa = token.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    if significant == 0 || (significant <= 15 && value.abs() >= f64::MIN_POSITIVE) {
        return Ok(());
    }
    let nearest = format!("{value:e}");
    if decimal(token) == decimal(&nearest) {
        Ok(())
    } else {
        Err(format!(
            "{token:.40} cannot be held exactly by a 64-bit float (the nearest is {nearest}); \
             send it as a string"
        ))
    }
}

/// A decimal literal as (negative, significant digits, exponent of the last digit), zero as
/// `(false, "", 0)`; `None` when the exponent does not fit.
fn decimal(s: &str) -> Option<(bool, String, i64)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], s[p + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let mut exp = exp.checked_sub(frac.len() as i64)?;
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    exp = exp.checked_add((digits.len() - trimmed.len()) as i64)?;
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((neg, trimmed.to_owned(), exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> Option<String> {
        check(body.as_bytes()).err().map(|v| v.field)
    }

    #[test]
    fn numbers_a_double_holds_pass() {
        for ok in [
            r#"{"x": 1.8e19, "y": -9.2e18, "z": 123.456e-300}"#,
            r#"{"x": 0.1, "y": 1.5, "z": 5e-324, "w": 4503599627370495.5}"#,
            r#"{"x": 18446744073709551615, "y": -9223372036854775808, "z": 0, "w": -0.0}"#,
            r#"{"x": 1.50, "y": 2.5e0, "z": 0e999}"#,
            r#"[1, 2.25, "1e400", {"k": "\\u0000 is text here"}]"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn numbers_a_double_cannot_hold_are_named() {
        assert_eq!(field(r#"{"x": 1e400}"#).as_deref(), Some("x"));
        assert_eq!(
            field(r#"{"x": 1.7976931348623157e308}"#).as_deref(),
            Some("x")
        );
        assert_eq!(
            field(r#"{"y": 100000000000000000000}"#).as_deref(),
            Some("y")
        );
        assert_eq!(
            field(r#"{"z": 1.8446744073709552e19}"#).as_deref(),
            Some("z")
        );
        assert_eq!(
            field(r#"{"a": {"b": [1, -1e-400]}}"#).as_deref(),
            Some("a.b[1]")
        );
        assert_eq!(
            field(r#"{"jobs": [{}, {"payload": {"n": 12345678901234567890123}}]}"#).as_deref(),
            Some("jobs[1].payload.n")
        );
        assert_eq!(
            field(r#"{"x": 0.10000000000000000001}"#).as_deref(),
            Some("x")
        );
        assert_eq!(field("1e309").as_deref(), Some("body"));
        assert_eq!(
            field(r#"{"x": 1e99999999999999999999999}"#).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn nul_characters_are_named() {
        assert_eq!(field(r#"{"a": 1, "b": "x\u0000y"}"#).as_deref(), Some("b"));
        assert_eq!(field(r#"{"a": ["ok", "\u0000"]}"#).as_deref(), Some("a[1]"));
        assert_eq!(field(r#"{"p": {"k\u0000": 1}}"#).as_deref(), Some("p"));
        assert_eq!(
            field(r#"{"a": "\\", "b": "\"\u0000"}"#).as_deref(),
            Some("b")
        );
        assert_eq!(field(r#"{"a": "\\u0000"}"#), None);
    }
}
