//! Retry backoff: exponential with full-range jitter, capped.
//!
//! `delay(attempt) = min(max, base · 2^(attempt-1)) · (1 ± jitter)`. Pure, so it is
//! unit- and property-tested on its own.

use std::time::Duration;

use rand::Rng;

/// Backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound before jitter.
    pub max: Duration,
    /// Relative jitter in `[0, 1)`: 0.2 spreads delays over ±20 %.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The undithered delay after failed attempt number `attempt` (1-based).
    pub fn nominal(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 64) as u32 - 1;
        let factor = 2u64.checked_pow(exp).unwrap_or(u64::MAX);
        let nanos = (self.base.as_nanos() as u64).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.max)
    }

    /// The delay with jitter drawn from `rng`.
    pub fn delay_with<R: Rng>(&self, attempt: i32, rng: &mut R) -> Duration {
        let nominal = self.nominal(attempt).as_secs_f64();
        let j = self.jitter.clamp(0.0, 0.99);
        let factor = if j > 0.0 {
            rng.gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        Duration::from_secs_f64(nominal * factor)
    }

    /// The delay with thread-local randomness.
    pub fn delay(&self, attempt: i32) -> Duration {
        self.delay_with(attempt, &mut rand::thread_rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            jitter: 0.0,
        };
        let got: Vec<u64> = (1..=6).map(|a| b.nominal(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.nominal(1000), Duration::from_secs(10));
        assert_eq!(b.nominal(-3), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let samples: Vec<f64> = (0..1000)
            .map(|_| b.delay_with(3, &mut rng).as_secs_f64())
            .collect();
        assert!(samples.iter().all(|&s| (3.2..=4.8).contains(&s)));
        let min = samples.iter().cloned().fold(f64::MAX, f64::min);
        let max = samples.iter().cloned().fold(0.0, f64::max);
        assert!(max - min > 1.0, "jitter should spread delays: {min}..{max}");
    }
}
