//! Claim ahead: how many jobs a worker holds beyond its free slots.
//!
//! A worker that claims only when a slot is free waits one claim round trip per batch, so at
//! 10 slots its throughput is bounded by round trips, not by CPU. Holding a few claimed jobs
//! in a local buffer lets a freed slot start its next job at once while the next claim is
//! under way. Buffered jobs are claimed like running ones (leased, heartbeated, rescued if
//! the worker dies, released without spending an attempt at shutdown), so the buffer must
//! stay small: a job waiting in one busy worker's buffer is a job an idle worker cannot
//! take.
//!
//! The rule: hold what the slots consumed during two claim round trips (the measured start
//! rate), or what they would consume during one if all were busy (slots × round trip ÷ mean
//! job time), whichever is more, at most [`crate::WorkerConfig::prefetch`]. The second term
//! says that a buffered job waits less for its slot than a claim would take, so holding it
//! costs nobody anything; it keeps claims batched on a worker that is not saturated (many
//! replicas sharing one backlog). Slow jobs get nothing held ahead, so nothing is hoarded
//! behind a long-running handler. The inputs are measured and smoothed with an exponential
//! moving average.

use std::time::Duration;

/// The smoothing factor of both averages (weight of the newest window).
const ALPHA: f64 = 0.5;

/// The shortest window over which the start rate is measured.
const MIN_WINDOW: Duration = Duration::from_millis(50);

/// The prefetch estimator: feed it claim round trips and started-job counts, ask it for the
/// target.
#[derive(Debug, Clone)]
pub struct Prefetch {
    cap: usize,
    slots: usize,
    rate: f64,
    rtt: f64,
    job_time: Option<f64>,
    window: Duration,
    window_jobs: u64,
}

impl Prefetch {
    /// An estimator for `slots` slots holding at most `cap` jobs ahead; it starts at 0 and
    /// learns.
    pub fn new(slots: usize, cap: usize) -> Self {
        Self {
            cap,
            slots,
            rate: 0.0,
            rtt: 0.0,
            job_time: None,
            window: Duration::ZERO,
            window_jobs: 0,
        }
    }

    /// Records that `jobs` handlers finished, having run for `busy` in all.
    pub fn observe_finished(&mut self, jobs: u64, busy: Duration) {
        if jobs == 0 {
            return;
        }
        let x = busy.as_secs_f64() / jobs as f64;
        self.job_time = Some(match self.job_time {
            None => x,
            Some(t) => ALPHA * x + (1.0 - ALPHA) * t,
        });
    }

    /// Records one claim statement's round trip.
    pub fn observe_claim(&mut self, rtt: Duration) {
        let x = rtt.as_secs_f64();
        self.rtt = if self.rtt == 0.0 {
            x
        } else {
            ALPHA * x + (1.0 - ALPHA) * self.rtt
        };
    }

    /// Records that `jobs` started during `elapsed`; windows shorter than 50 ms accumulate.
    pub fn observe_started(&mut self, jobs: u64, elapsed: Duration) {
        self.window += elapsed;
        self.window_jobs += jobs;
        if self.window < MIN_WINDOW {
            return;
        }
        let r = self.window_jobs as f64 / self.window.as_secs_f64();
        self.rate = ALPHA * r + (1.0 - ALPHA) * self.rate;
        self.window = Duration::ZERO;
        self.window_jobs = 0;
    }

    /// Jobs to hold beyond the free slots now.
    pub fn target(&self) -> usize {
        let by_rate = target(self.rate, self.rtt, self.cap);
        let by_wait = self
            .job_time
            .map_or(0, |t| target_by_job_time(self.slots, t, self.rtt, self.cap));
        by_rate.max(by_wait)
    }
}

/// What the slots consumed in two claim round trips (`rate` jobs/s, `rtt` seconds), rounded
/// down and capped at `cap`.
pub fn target(rate: f64, rtt: f64, cap: usize) -> usize {
    capped(rate * 2.0 * rtt, cap)
}

/// What `slots` busy slots with jobs of `job_time` seconds consume in one claim round trip
/// of `rtt` seconds, rounded down and capped at `cap`.
pub fn target_by_job_time(slots: usize, job_time: f64, rtt: f64, cap: usize) -> usize {
    if job_time <= 0.0 {
        return if rtt > 0.0 { cap } else { 0 };
    }
    capped(slots as f64 * rtt / job_time, cap)
}

fn capped(want: f64, cap: usize) -> usize {
    if !want.is_finite() || want <= 0.0 {
        return 0;
    }
    (want.floor() as usize).min(cap)
}

/// How many jobs to claim now, if any, for a worker with `slots` slots, `in_flight`
/// handlers running, `buffered` jobs waiting and a target of `ahead` jobs held ahead.
///
/// It claims at once when a slot has nothing to run next, and otherwise waits until at least
/// half the target is missing (so claims stay batched); it never holds more than
/// `slots + ahead`.
pub fn claim_size(slots: usize, in_flight: usize, buffered: usize, ahead: usize) -> Option<usize> {
    let held = in_flight + buffered;
    let room = (slots + ahead).saturating_sub(held);
    if room == 0 {
        return None;
    }
    let idle_slot = held < slots;
    (idle_slot || room >= ahead.div_ceil(2).max(1)).then_some(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_at_once_for_an_idle_slot_and_in_batches_otherwise() {
        assert_eq!(
            claim_size(10, 0, 0, 0),
            Some(10),
            "an idle worker fills its slots"
        );
        assert_eq!(
            claim_size(10, 10, 0, 0),
            None,
            "no prefetch: full means wait"
        );
        assert_eq!(claim_size(10, 9, 0, 0), Some(1));
        assert_eq!(
            claim_size(10, 10, 0, 10),
            Some(10),
            "room for the whole buffer"
        );
        assert_eq!(
            claim_size(10, 10, 8, 10),
            None,
            "2 missing of 10 ahead: wait"
        );
        assert_eq!(
            claim_size(10, 10, 5, 10),
            Some(5),
            "half the buffer missing"
        );
        assert_eq!(
            claim_size(10, 9, 5, 10),
            Some(6),
            "a slot will take a buffered job"
        );
        assert_eq!(claim_size(10, 10, 10, 10), None);
        assert_eq!(
            claim_size(10, 12, 10, 10),
            None,
            "never more than slots + ahead"
        );
    }

    #[test]
    fn slow_jobs_are_not_held_ahead() {
        // 10 slots of 1-second jobs: 10 jobs/s, 2 ms claims.
        assert_eq!(target(10.0, 0.002, 10), 0);
        assert_eq!(target(0.0, 0.002, 10), 0);
    }

    #[test]
    fn fast_jobs_fill_the_buffer_up_to_the_cap() {
        // 5,000 jobs/s with 2 ms claims: 20 consumed in two round trips.
        assert_eq!(target(5000.0, 0.002, 100), 20);
        assert_eq!(target(5000.0, 0.002, 10), 10);
        assert_eq!(target(1000.0, 0.0015, 10), 3);
        assert_eq!(target(f64::NAN, 0.002, 10), 0);
    }

    #[test]
    fn short_jobs_fill_the_buffer_even_at_a_low_rate() {
        // 10 slots, 2 ms claims: 0.1 ms jobs would drain 200 per round trip.
        assert_eq!(target_by_job_time(10, 0.0001, 0.002, 10), 10);
        // 20 ms jobs: 1 per round trip.
        assert_eq!(target_by_job_time(10, 0.02, 0.002, 10), 1);
        // 1 s jobs: nothing held ahead.
        assert_eq!(target_by_job_time(10, 1.0, 0.002, 10), 0);
        assert_eq!(
            target_by_job_time(10, 0.0, 0.0, 10),
            0,
            "no claim measured yet"
        );
        let mut p = Prefetch::new(10, 10);
        p.observe_claim(Duration::from_millis(2));
        p.observe_started(10, Duration::from_secs(1)); // 10 jobs/s: the rate says 0
        assert_eq!(p.target(), 0);
        p.observe_finished(10, Duration::from_micros(500)); // 50 µs each
        assert_eq!(p.target(), 10);
        p.observe_finished(10, Duration::from_secs(30)); // now 3 s each (average 1.5 s)
        assert_eq!(p.target(), 0);
    }

    #[test]
    fn the_estimator_learns_and_forgets() {
        let mut p = Prefetch::new(10, 10);
        assert_eq!(p.target(), 0, "nothing is known at first");
        p.observe_claim(Duration::from_millis(2));
        for _ in 0..6 {
            p.observe_started(400, Duration::from_millis(100)); // 4,000 jobs/s
        }
        assert_eq!(p.target(), 10, "{p:?}");
        for _ in 0..10 {
            p.observe_started(1, Duration::from_millis(100)); // 10 jobs/s
        }
        assert_eq!(p.target(), 0, "{p:?}");
    }

    #[test]
    fn short_windows_accumulate() {
        let mut p = Prefetch::new(10, 50);
        p.observe_claim(Duration::from_millis(5));
        for _ in 0..4 {
            p.observe_started(100, Duration::from_millis(10));
        }
        assert_eq!(p.target(), 0, "40 ms is not a window yet");
        p.observe_started(100, Duration::from_millis(10));
        // 500 jobs in 50 ms = 10,000/s, halved by the first average: 5,000/s × 10 ms.
        assert_eq!(p.target(), 50);
    }
}
