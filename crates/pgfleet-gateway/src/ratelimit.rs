//! Per-credential rate limits: a token bucket per API key (by its hash) or for HMAC-signed
//! requests, refilled at `per_sec` tokens a second up to a burst of `per_sec`. An empty
//! bucket answers 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets by credential.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    buckets: Mutex<HashMap<[u8; 32], (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_sec` requests a second per credential (bursts of as many).
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `credential`; `Err(seconds)` says when one will be available.
    ///
    /// # Errors
    /// The whole seconds to wait (at least 1) when the bucket is empty.
    pub fn take(&self, credential: [u8; 32]) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets.entry(credential).or_insert((self.per_sec, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_sec).min(self.per_sec);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - *tokens) / self.per_sec).ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_per_credential() {
        let l = RateLimiter::new(3);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert!((0..3).all(|_| l.take(a).is_ok()));
        assert_eq!(l.take(a), Err(1));
        assert!(l.take(b).is_ok(), "another credential has its own bucket");
    }
}
