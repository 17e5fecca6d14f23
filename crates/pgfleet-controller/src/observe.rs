//! Queue statistics per pool, from PostgreSQL: what the scaling policy decides on.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use pgfleet_queue::{Queue, QueueError};

use crate::scaling::Sample;

/// Why queue statistics are unavailable.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The controller has not reached PostgreSQL yet (it keeps trying).
    #[error("PostgreSQL is not reachable yet: {0}")]
    Unreachable(String),
    /// A query failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Samples the queues of pools; remembers each pool's previous backlog to estimate the
/// arrival rate (completions + backlog growth). It can start before PostgreSQL is reachable
/// ([`Observer::connecting`]): until [`Observer::connected`], every sample fails with the
/// reason, so pools hold their size and report `Degraded`.
pub struct Observer {
    queue: RwLock<Result<Queue, String>>,
    previous: Mutex<HashMap<String, (Instant, i64)>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Observer {
    /// An observer reading through `queue`.
    pub fn new(queue: Queue) -> Self {
        Self {
            queue: RwLock::new(Ok(queue)),
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// An observer still waiting for PostgreSQL.
    pub fn connecting() -> Self {
        Self {
            queue: RwLock::new(Err("connecting".into())),
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// PostgreSQL is reachable: read through `queue` from now on.
    pub fn connected(&self, queue: Queue) {
        if let Ok(mut q) = self.queue.write() {
            *q = Ok(queue);
        }
    }

    /// Records why PostgreSQL is still unreachable (reported by every sample until then).
    pub fn unreachable(&self, reason: impl Into<String>) {
        if let Ok(mut q) = self.queue.write() {
            if q.is_err() {
                *q = Err(reason.into());
            }
        }
    }

    /// The queue handle, once connected.
    pub fn queue(&self) -> Option<Queue> {
        self.queue.read().ok()?.as_ref().ok().cloned()
    }

    /// What `queues` look like now, for the pool `key` (namespace/name).
    ///
    /// # Errors
    /// [`ObserveError`]: not connected yet, or a query failed.
    pub async fn sample(&self, key: &str, queues: &[String]) -> Result<Sample, ObserveError> {
        let queue = match self.queue.read() {
            Ok(q) => q.clone().map_err(ObserveError::Unreachable)?,
            Err(_) => return Err(ObserveError::Unreachable("observer poisoned".into())),
        };
        let stats = queue.stats().await?;
        let mut s = Sample::default();
        let mut completed_last_minute = 0;
        for q in stats.iter().filter(|q| queues.contains(&q.queue)) {
            let t = &q.total;
            s.backlog += t.available;
            s.running += t.running;
            s.oldest_age_secs = s.oldest_age_secs.max(t.oldest_available_age_secs);
            completed_last_minute += t.completed_last_minute;
        }
        s.completion_per_sec = completed_last_minute as f64 / 60.0;
        s.mean_job_secs = queue
            .mean_run_secs(queues, std::time::Duration::from_secs(60))
            .await?;
        let now = Instant::now();
        let growth = match self.previous.lock() {
            Ok(mut prev) => {
                let g = prev.get(key).map(|(t, b)| {
                    let dt = now.duration_since(*t).as_secs_f64().max(0.001);
                    (s.backlog - b) as f64 / dt
                });
                prev.insert(key.to_owned(), (now, s.backlog));
                g.unwrap_or(0.0)
            }
            Err(_) => 0.0,
        };
        s.arrival_per_sec = (s.completion_per_sec + growth).max(0.0);
        Ok(s)
    }
}
