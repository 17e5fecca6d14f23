//! The feed: keeps a worker's slots busy.
//!
//! The claim loop claims into a small buffer ahead of the slots ([`crate::prefetch`]) and
//! a slot that frees takes its next job from the buffer at once ([`fill_slots`]), so at the
//! default 10 slots the worker is not bound by claim round trips. Claims look first in the
//! partitions the worker owns (where its wake-ups come from, in order), then — when slots
//! are left and stealing is on — in every partition, so replicas beyond the partition
//! count, a hot partition and the tail of a burst are served by the whole fleet. Once the
//! owned partitions came back dry, the worker claims from all partitions in one statement
//! (one round trip per claim, like an owner) until a wake-up says its own have work again.
//! A claim from the others' partitions that finds nothing is not repeated for
//! `steal_interval` (the backstop poll always looks), so an idle fleet pays almost nothing
//! for it.
//!
//! Buffered jobs are held like running ones: leased, extended by the heartbeat, rescued if
//! the process dies; at shutdown they run within the grace period, and what is left when it
//! ends is released without spending an attempt ([`release_buffer`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgfleet_queue::claim::{ClaimRequest, QueueOrder};
use pgfleet_queue::finalize::{Finished, Outcome};
use pgfleet_queue::{Job, QueueError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::prefetch::{claim_size, Prefetch};
use crate::runtime::{start_job, Held, Shared, STOP_NONE};

/// Claims until `stop` is cancelled.
pub(crate) async fn claim_loop(
    shared: Arc<Shared>,
    owned: watch::Receiver<Vec<i16>>,
    completer: mpsc::Sender<Finished>,
    stop: CancellationToken,
) {
    let cfg = &shared.config;
    let mut poll = tokio::time::interval(cfg.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prefetch = Prefetch::new(cfg.concurrency, cfg.prefetch);
    let mut meter = Meter::new(&shared);
    let mut state = FeedState {
        polled: true,
        ..FeedState::default()
    };
    while !stop.is_cancelled() {
        meter.update(&shared, &mut prefetch);
        let in_flight = shared.in_flight.load(Ordering::Relaxed);
        let want = claim_size(
            cfg.concurrency,
            in_flight,
            shared.buffered(),
            prefetch.target(),
        );
        if let (false, Some(want)) = (state.drained, want) {
            let round = state.claim_round(&shared, &owned, want, &mut prefetch, &completer);
            if let Some(backoff) = round.await {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
            }
            continue;
        }
        let recheck = state.recheck;
        tokio::select! {
            _ = shared.slot_freed.notified(), if !state.drained || recheck.is_some() => {
                state.drained = false;
            }
            _ = sleep_until(recheck) => {
                state.drained = false;
                state.recheck = None;
            }
            _ = shared.wake.notified() => {
                state.drained = false;
                state.own_dry = false;
            }
            _ = poll.tick() => {
                state.drained = false;
                state.polled = true;
            }
            _ = stop.cancelled() => break,
        }
    }
}

/// What the claim loop remembers between claims.
#[derive(Debug, Default)]
struct FeedState {
    /// The last claim came back short: nothing more until a wake-up or the poll.
    drained: bool,
    /// A backstop poll looks everywhere, whatever the steal interval says.
    polled: bool,
    /// No stealing before this (a steal found nothing).
    steal_after: Option<Instant>,
    /// The owned partitions came back dry: claim everywhere in one statement.
    own_dry: bool,
    /// Claims failed in a row.
    errors: u32,
    /// A flow limit held back waiting work: claim again at this time (or when a slot of
    /// this worker frees, which may be the limit's capacity).
    recheck: Option<Instant>,
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl FeedState {
    /// One claim of up to `want` jobs, handed to the slots; on failure, how long to back off.
    async fn claim_round(
        &mut self,
        shared: &Arc<Shared>,
        owned: &watch::Receiver<Vec<i16>>,
        want: usize,
        prefetch: &mut Prefetch,
        completer: &mpsc::Sender<Finished>,
    ) -> Option<Duration> {
        let cfg = &shared.config;
        let steal_now = self.polled || self.steal_after.is_none_or(|t| Instant::now() >= t);
        self.polled = false;
        match claim(shared, owned, want, steal_now, self.own_dry).await {
            Ok(c) => {
                self.errors = 0;
                self.own_dry = c.own_dry;
                prefetch.observe_claim(c.rtt);
                if c.stole_nothing {
                    self.steal_after = Some(Instant::now() + cfg.steal_interval);
                }
                let limit = want.min(cfg.max_claim);
                self.drained = is_drained(&cfg.queues, &cfg.queue_order, limit, &c.jobs);
                self.recheck = None;
                if let (true, Some(wait)) = (self.drained, c.held_back) {
                    if wait.is_zero() {
                        self.drained = false;
                    } else {
                        self.recheck = Some(Instant::now() + wait);
                    }
                }
                accept(shared, c.jobs, completer);
                None
            }
            Err(e) => {
                self.errors += 1;
                tracing::warn!(error = %e, "claim failed");
                Some(Duration::from_millis(100 * u64::from(self.errors.min(50))))
            }
        }
    }
}

/// Feeds the prefetch estimator from the worker's counters: jobs started, and handlers
/// finished with their run time.
struct Meter {
    started: u64,
    at: Instant,
    ran: u64,
    busy_nanos: u64,
}

impl Meter {
    fn new(shared: &Shared) -> Self {
        Self {
            started: shared.stats.started.load(Ordering::Relaxed),
            at: Instant::now(),
            ran: shared.ran.load(Ordering::Relaxed),
            busy_nanos: shared.busy_nanos.load(Ordering::Relaxed),
        }
    }

    /// Hands what happened since the last call to `prefetch`.
    fn update(&mut self, shared: &Shared, prefetch: &mut Prefetch) {
        let now = Self::new(shared);
        prefetch.observe_started(now.started - self.started, now.at - self.at);
        prefetch.observe_finished(
            now.ran - self.ran,
            Duration::from_nanos(now.busy_nanos - self.busy_nanos),
        );
        *self = now;
    }
}

/// Whether a claim of `limit` jobs that brought `jobs` says the queues are drained for now:
/// it came back short and no queue filled its share of it (a weighted queue that filled its
/// share probably has more, and the next claim gives it another share).
fn is_drained(queues: &[String], order: &QueueOrder, limit: usize, jobs: &[Job]) -> bool {
    if jobs.len() >= limit {
        return false;
    }
    let shares = order.limits(queues.len(), limit);
    !queues.iter().zip(&shares).any(|(q, &share)| {
        share > 0 && jobs.iter().filter(|j| j.queue == *q).count() >= share as usize
    })
}

/// What one claim round brought.
struct Claimed {
    jobs: Vec<Job>,
    rtt: Duration,
    /// A claim from the others' partitions was made and found nothing.
    stole_nothing: bool,
    /// The owned partitions had fewer jobs than asked (or were not looked at because they
    /// were dry before).
    own_dry: bool,
    /// A flow limit held back waiting work; look again after this long.
    held_back: Option<Duration>,
}

/// Claims up to `want` jobs: from the owned partitions first, then (when `steal_now`) from
/// any partition for what is left — or, when the owned ones were dry last time, from any
/// partition at once.
async fn claim(
    shared: &Shared,
    owned: &watch::Receiver<Vec<i16>>,
    want: usize,
    steal_now: bool,
    own_dry: bool,
) -> Result<Claimed, QueueError> {
    let cfg = &shared.config;
    let limit = want.min(cfg.max_claim);
    let mine = owned.borrow().clone();
    let began = std::time::Instant::now();
    let mut jobs = Vec::new();
    let mut rtt = None;
    let mut held_back = None;
    let stealing = cfg.own_partitions && cfg.steal && steal_now;
    let skip_own = stealing && (own_dry || mine.is_empty());
    if !cfg.own_partitions {
        (jobs, held_back) = claim_from(shared, None, limit).await?;
        rtt = Some(began.elapsed());
    } else if !skip_own && !mine.is_empty() {
        (jobs, held_back) = claim_from(shared, Some(&mine), limit).await?;
        rtt = Some(began.elapsed());
    }
    let own_dry = cfg.own_partitions && (skip_own || jobs.len() < limit);
    let mut stole_nothing = false;
    if stealing && jobs.len() < limit {
        let t = std::time::Instant::now();
        let (stolen, held) = claim_from(shared, None, limit - jobs.len()).await?;
        held_back = match (held_back, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        rtt.get_or_insert(t.elapsed());
        stole_nothing = stolen.is_empty();
        count_stolen(shared, &stolen, &mine);
        jobs.extend(stolen);
    }
    Ok(Claimed {
        jobs,
        rtt: rtt.unwrap_or_default(),
        stole_nothing,
        own_dry,
        held_back,
    })
}

/// Counts the jobs of `stolen` that lie outside the owned partitions `mine`.
fn count_stolen(shared: &Shared, stolen: &[Job], mine: &[i16]) {
    let foreign = stolen.iter().filter(|j| !mine.contains(&j.partition));
    for (q, n, served) in per_queue(&shared.config.queues, foreign) {
        shared.stats.stolen.fetch_add(n, Ordering::Relaxed);
        if served {
            shared.claims.count_stolen(q, n);
        }
    }
}

/// `jobs` counted by queue, each with whether it is one of `queues` (only those get a
/// metric label, so client-chosen names cannot grow the series).
fn per_queue<'a>(
    queues: &[String],
    jobs: impl Iterator<Item = &'a Job>,
) -> Vec<(&'a str, u64, bool)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for job in jobs {
        *counts.entry(job.queue.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(q, n)| (q, n, queues.iter().any(|c| c == q)))
        .collect()
}

/// One claim from `partitions` (`None`: all), with how long a flow limit asks to wait.
async fn claim_from(
    shared: &Shared,
    partitions: Option<&[i16]>,
    limit: usize,
) -> Result<(Vec<Job>, Option<Duration>), QueueError> {
    let cfg = &shared.config;
    let request = ClaimRequest {
        queues: &cfg.queues,
        order: &cfg.queue_order,
        partitions,
        limit,
        worker_id: &shared.worker_id,
        lease: cfg.lease,
    };
    let began = std::time::Instant::now();
    let claimed = shared.queue.claim_detailed(&request).await?;
    let jobs = claimed.jobs;
    shared.claims.observe_claim(began.elapsed().as_secs_f64());
    let stats = &shared.stats;
    stats.claims.fetch_add(1, Ordering::Relaxed);
    stats
        .claimed
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    for (q, n, served) in per_queue(&cfg.queues, jobs.iter()) {
        if served {
            shared.claims.count_claimed(q, n);
        }
    }
    Ok((jobs, claimed.held_back))
}

/// Holds claimed jobs (so the heartbeat keeps their leases) and hands them to free slots.
fn accept(shared: &Arc<Shared>, jobs: Vec<Job>, completer: &mpsc::Sender<Finished>) {
    if jobs.is_empty() {
        return;
    }
    let now = Instant::now();
    if let Ok(mut held) = shared.held.lock() {
        for job in &jobs {
            held.insert(
                job.id,
                Held {
                    attempt: job.attempt,
                    claimed: now,
                    cancel: CancellationToken::new(),
                    reason: Arc::new(AtomicU8::new(STOP_NONE)),
                },
            );
        }
    }
    let n = jobs.len() as i64;
    if let Ok(mut buffer) = shared.buffer.lock() {
        buffer.extend(jobs);
        shared.claims.buffered(n);
    }
    fill_slots(shared, completer);
}

/// Starts buffered jobs on free slots until one or the other runs out.
///
/// Called after every push to the buffer and after every slot is freed. It re-checks the
/// buffer after giving back a slot it could not use, so a job pushed concurrently is never
/// left waiting beside a free slot.
pub(crate) fn fill_slots(shared: &Arc<Shared>, completer: &mpsc::Sender<Finished>) {
    loop {
        if shared.closing.load(Ordering::Acquire) || shared.buffered() == 0 {
            return;
        }
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            return;
        };
        let next = shared.buffer.lock().ok().and_then(|mut b| b.pop_front());
        match next {
            Some(job) => {
                shared.claims.buffered(-1);
                start_job(shared, job, permit, completer.clone());
            }
            None => drop(permit),
        }
    }
}

/// At the end of the grace period: gives every job still buffered back (available at once,
/// attempt not spent) and starts no more.
pub(crate) async fn release_buffer(shared: &Shared, completer: &mpsc::Sender<Finished>) {
    shared.closing.store(true, Ordering::Release);
    let jobs: Vec<Job> = shared
        .buffer
        .lock()
        .map(|mut b| b.drain(..).collect())
        .unwrap_or_default();
    if jobs.is_empty() {
        return;
    }
    shared.claims.buffered(-(jobs.len() as i64));
    tracing::info!(jobs = jobs.len(), "releasing jobs claimed ahead");
    for job in jobs {
        if let Ok(mut held) = shared.held.lock() {
            held.remove(&job.id);
        }
        shared.stats.released.fetch_add(1, Ordering::Relaxed);
        let _ = completer
            .send(Finished::new(job.id, job.attempt, Outcome::Release))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(queue: &str) -> Job {
        Job {
            id: 1,
            queue: queue.into(),
            kind: "k".into(),
            partition: 0,
            priority: 1,
            state: pgfleet_queue::JobState::Running,
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            attempt: 1,
            max_attempts: 20,
            run_at: chrono::Utc::now(),
            attempted_at: None,
            attempted_by: None,
            lease_until: None,
            errors: serde_json::json!([]),
            unique_key: None,
            created_at: chrono::Utc::now(),
            finalized_at: None,
            partition_key: None,
            workflow_id: None,
            progress: None,
            output: None,
        }
    }

    #[test]
    fn a_filled_weighted_share_is_not_drained() {
        let queues: Vec<String> = ["high", "default", "low"].map(String::from).to_vec();
        let weighted = QueueOrder::Weighted(vec![6, 3, 1]);
        // 20 asked: shares 12 / 6 / 2. Only `default` has work, and it filled its 6.
        let six = vec![job("default"); 6];
        assert!(!is_drained(&queues, &weighted, 20, &six));
        // 5 of `default` is short of its share: drained.
        assert!(is_drained(&queues, &weighted, 20, &six[..5]));
        assert!(
            !is_drained(&queues, &QueueOrder::ByPriority, 6, &six),
            "full"
        );
        assert!(is_drained(&queues, &QueueOrder::ByPriority, 20, &six));
        assert!(is_drained(&queues, &QueueOrder::ByPriority, 20, &[]));
    }
}
