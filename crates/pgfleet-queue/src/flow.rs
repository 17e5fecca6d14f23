//! Flow control: concurrency and rate limits per queue and per partition key, and fair
//! claiming across partition keys. Owner of the limit columns of `pgfleet.queues` and of
//! `pgfleet.key_tokens`.
//!
//! A queue with any limit (or fairness) set is claimed through the SQL function
//! `pgfleet.claim_flow` (migration 0007). A queue-wide limit (concurrency, rate) locks the
//! queue's row; a per-key limit takes the key's advisory lock (a key another claim is
//! serving is passed over). Either way the claims a limit governs are serialised across the
//! fleet, and each one counts running jobs and spends tokens after every earlier claim
//! committed. Fairness alone takes no lock: claims walk the partition keys round robin from
//! a cursor and lock job rows with `SKIP LOCKED`. The plain claim statement skips such
//! queues in SQL, so a worker whose view of which queues are limited is stale (it refreshes
//! it every [`FLOW_REFRESH`]) can never claim past a limit; it only claims a newly limited
//! queue up to one refresh later.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, Row};

use crate::claim::ClaimRequest;
use crate::error::{QueueError, Result};
use crate::job::{validate_queue_name, Job};
use crate::Queue;

/// How often a process re-reads which queues are flow-controlled.
pub const FLOW_REFRESH: Duration = Duration::from_secs(1);

/// The largest concurrency limit accepted.
pub const MAX_CONCURRENCY: i32 = 1_000_000;

/// The largest rate accepted, in jobs per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A token bucket: `per_second` jobs may start per second on average, and up to `burst`
/// at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Jobs started per second (may be fractional: 0.5 is one every two seconds).
    #[cfg_attr(
        feature = "openapi",
        schema(exclusive_minimum = 0.0, maximum = 1000000.0)
    )]
    pub per_second: f64,
    /// Jobs that may start at once; defaults to one second's worth (at least 1).
    #[serde(default, deserialize_with = "crate::serde_int::opt_integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub burst: Option<i32>,
}

impl Rate {
    /// The burst in effect: the given one, or one second's worth (at least 1).
    pub fn burst(&self) -> i32 {
        self.burst
            .unwrap_or_else(|| (self.per_second.ceil() as i32).max(1))
    }

    fn validate(&self, field: &'static str) -> Result<()> {
        if !self.per_second.is_finite() || self.per_second <= 0.0 || self.per_second > MAX_RATE {
            return Err(QueueError::invalid(
                field,
                format!("per_second must be above 0 and at most {MAX_RATE}"),
            ));
        }
        if let Some(b) = self.burst {
            if !(1..=MAX_CONCURRENCY).contains(&b) {
                return Err(QueueError::invalid(
                    field,
                    format!("burst must be between 1 and {MAX_CONCURRENCY}"),
                ));
            }
        }
        Ok(())
    }
}

/// A queue's flow-control settings. Every field is optional; all unset means none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// At most this many jobs of the queue running at once, across the whole fleet.
    #[serde(default, deserialize_with = "crate::serde_int::opt_integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub concurrency: Option<i32>,
    /// At most this many jobs per partition key running at once (jobs without a key are
    /// not limited by it).
    #[serde(default, deserialize_with = "crate::serde_int::opt_integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub key_concurrency: Option<i32>,
    /// Jobs of the queue started per second, shared by the fleet.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Jobs per partition key started per second.
    #[serde(default)]
    pub key_rate: Option<Rate>,
    /// Claim round-robin across partition keys, so one key's backlog cannot delay another
    /// key's jobs by more than a turn.
    #[serde(default)]
    pub fair: bool,
}

impl Limits {
    /// Whether any limit or fairness is set.
    pub fn is_flow(&self) -> bool {
        self.concurrency.is_some()
            || self.key_concurrency.is_some()
            || self.rate.is_some()
            || self.key_rate.is_some()
            || self.fair
    }

    /// Checks every field, naming the first bad one.
    ///
    /// # Errors
    /// [`QueueError::Invalid`].
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("concurrency", self.concurrency),
            ("key_concurrency", self.key_concurrency),
        ] {
            if let Some(n) = v {
                if !(1..=MAX_CONCURRENCY).contains(&n) {
                    return Err(QueueError::invalid(
                        field,
                        format!(
                            "must be between 1 and {MAX_CONCURRENCY} (leave it out for no limit)"
                        ),
                    ));
                }
            }
        }
        if let Some(r) = &self.rate {
            r.validate("rate")?;
        }
        if let Some(r) = &self.key_rate {
            r.validate("key_rate")?;
        }
        Ok(())
    }
}

/// A queue's limits with what they are holding now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowStatus {
    /// The queue.
    pub queue: String,
    /// Its settings.
    pub limits: Limits,
    /// Jobs of the queue claimed and not finished (running or held ahead by a worker).
    pub running: i64,
    /// Whole tokens in the queue's bucket now (with a rate limit).
    pub tokens: Option<f64>,
}

/// What one claim brought, and whether a limit held back work that is waiting.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The claimed jobs.
    pub jobs: Vec<Job>,
    /// Set when a limit held back waiting work: look again after this long (zero: at
    /// once; a rate limit gives the time to its next token, a concurrency limit
    /// [`HELD_RECHECK`]).
    pub held_back: Option<Duration>,
}

/// How soon to look again at a queue held back by a concurrency limit (its capacity frees
/// when a job finishes, which can be on any worker).
pub const HELD_RECHECK: Duration = Duration::from_millis(25);

/// The process's view of which queues are flow-controlled.
#[derive(Debug, Default)]
pub(crate) struct FlowCache {
    read_at: Option<Instant>,
    queues: Arc<HashSet<String>>,
}

const CLAIM_FLOW_SQL: &str = "SELECT * FROM pgfleet.claim_flow($1, $2, $3, $4, $5)";

#[derive(FromRow)]
struct LimitRow {
    name: String,
    concurrency_limit: Option<i32>,
    key_concurrency_limit: Option<i32>,
    rate_limit: Option<f64>,
    rate_burst: Option<i32>,
    key_rate_limit: Option<f64>,
    key_rate_burst: Option<i32>,
    fair: bool,
    running: i64,
    tokens: Option<f64>,
}

impl LimitRow {
    fn into_status(self) -> FlowStatus {
        let rate = |r: Option<f64>, b: Option<i32>| {
            r.map(|per_second| Rate {
                per_second,
                burst: b,
            })
        };
        FlowStatus {
            queue: self.name,
            limits: Limits {
                concurrency: self.concurrency_limit,
                key_concurrency: self.key_concurrency_limit,
                rate: rate(self.rate_limit, self.rate_burst),
                key_rate: rate(self.key_rate_limit, self.key_rate_burst),
                fair: self.fair,
            },
            running: self.running,
            tokens: self.tokens,
        }
    }
}

const STATUS_SQL: &str = r#"
SELECT q.name, q.concurrency_limit, q.key_concurrency_limit, q.rate_limit, q.rate_burst,
       q.key_rate_limit, q.key_rate_burst, q.fair,
       (SELECT count(*) FROM pgfleet.jobs j WHERE j.queue = q.name AND j.lease_until IS NOT NULL)
           AS running,
       CASE WHEN q.rate_limit IS NULL THEN NULL
            ELSE floor(least(q.rate_burst::double precision, coalesce(q.tokens + q.rate_limit
                 * greatest(extract(epoch FROM clock_timestamp() - q.tokens_at), 0), q.rate_burst)))
       END AS tokens
FROM pgfleet.queues q
WHERE q.flow AND ($1::text IS NULL OR q.name = $1)
ORDER BY q.name
"#;

impl Queue {
    /// Sets a queue's limits (all of them: a field left out is removed). Takes effect at
    /// the next claim of every worker (within [`FLOW_REFRESH`] for a queue that had none).
    /// The queue is created if it was never used. A new rate starts with a full bucket.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the field (nothing written); [`QueueError::Database`].
    pub async fn set_limits(&self, queue: &str, limits: &Limits) -> Result<FlowStatus> {
        validate_queue_name(queue)?;
        limits.validate()?;
        let (rate, burst) = rate_of(&limits.rate);
        let (key_rate, key_burst) = rate_of(&limits.key_rate);
        sqlx::query(
            "INSERT INTO pgfleet.queues AS q (name, concurrency_limit, key_concurrency_limit, \
             rate_limit, rate_burst, key_rate_limit, key_rate_burst, fair) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET concurrency_limit = $2, \
             key_concurrency_limit = $3, rate_limit = $4, rate_burst = $5, \
             key_rate_limit = $6, key_rate_burst = $7, fair = $8, updated_at = now(), \
             tokens = CASE WHEN q.rate_limit IS NOT DISTINCT FROM $4 \
                      AND q.rate_burst IS NOT DISTINCT FROM $5 THEN q.tokens END, \
             tokens_at = CASE WHEN q.rate_limit IS NOT DISTINCT FROM $4 \
                      AND q.rate_burst IS NOT DISTINCT FROM $5 THEN q.tokens_at END",
        )
        .bind(queue)
        .bind(limits.concurrency)
        .bind(limits.key_concurrency)
        .bind(rate)
        .bind(burst)
        .bind(key_rate)
        .bind(key_burst)
        .bind(limits.fair)
        .execute(self.pool())
        .await?;
        if let Ok(mut cache) = self.inner.flow.lock() {
            cache.read_at = None;
        }
        self.limits(queue).await
    }

    /// One queue's limits with its running count; a queue without limits (or unknown)
    /// answers with no limits.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn limits(&self, queue: &str) -> Result<FlowStatus> {
        let status = self.flow_status(Some(queue)).await?.pop();
        Ok(status.unwrap_or(FlowStatus {
            queue: queue.to_owned(),
            limits: Limits::default(),
            running: 0,
            tokens: None,
        }))
    }

    /// The limits of one queue, or of every flow-controlled queue (`None`), with their
    /// running counts. A queue without limits is not listed.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn flow_status(&self, queue: Option<&str>) -> Result<Vec<FlowStatus>> {
        let rows: Vec<LimitRow> = sqlx::query_as(STATUS_SQL)
            .bind(queue)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(LimitRow::into_status).collect())
    }

    /// The flow-controlled queues among `queues`, from a view at most [`FLOW_REFRESH`] old.
    pub(crate) async fn flow_queues(&self, queues: &[String]) -> Result<Vec<String>> {
        let fresh = self.inner.flow.lock().ok().and_then(|c| {
            c.read_at
                .filter(|t| t.elapsed() < FLOW_REFRESH)
                .map(|_| c.queues.clone())
        });
        let set = match fresh {
            Some(set) => set,
            None => {
                let names: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pgfleet.queues WHERE flow")
                        .fetch_all(self.pool())
                        .await?;
                let set = Arc::new(names.into_iter().collect::<HashSet<_>>());
                if let Ok(mut c) = self.inner.flow.lock() {
                    c.read_at = Some(Instant::now());
                    c.queues = set.clone();
                }
                set
            }
        };
        Ok(queues
            .iter()
            .filter(|q| set.contains(*q))
            .cloned()
            .collect())
    }

    /// Claims up to `limit` jobs from the flow-controlled `queues` (see the module docs).
    ///
    /// From every partition, whatever `req.partitions` says: the round robin over keys and
    /// the limits are the fleet's, and a claim that walked the keys of one worker's
    /// partitions only would probe every other worker's keys on its way (the claimer is
    /// still fenced like any other; any worker may run any job).
    pub(crate) async fn claim_flow(
        &self,
        queues: &[String],
        req: &ClaimRequest<'_>,
        limit: usize,
    ) -> Result<(Vec<sqlx::postgres::PgRow>, Option<Duration>)> {
        let rows = sqlx::query(CLAIM_FLOW_SQL)
            .bind(queues)
            .bind(None::<&[i16]>)
            .bind(limit as i32)
            .bind(req.worker_id)
            .bind(req.lease.as_millis() as f64)
            .fetch_all(self.pool())
            .await?;
        let mut held: Option<Duration> = None;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Option<i64> = row.try_get("id")?;
            if id.is_some() {
                jobs.push(row);
                continue;
            }
            let retry: Option<f64> = row.try_get("retry_ms")?;
            let wait = retry.map_or(HELD_RECHECK, |ms| {
                Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1.0))
            });
            held = Some(held.map_or(wait, |h| h.min(wait)));
        }
        Ok((jobs, held))
    }

    /// Deletes the token buckets of partition keys that have refilled (a missing row is a
    /// full bucket). Returns how many went.
    ///
    /// # Errors
    /// [`QueueError::Database`].
    pub async fn sweep_key_tokens(&self) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM pgfleet.key_tokens t USING pgfleet.queues q \
             WHERE q.name = t.queue AND (q.key_rate_limit IS NULL OR t.tokens \
             + q.key_rate_limit * extract(epoch FROM now() - t.tokens_at) >= q.key_rate_burst)",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

fn rate_of(r: &Option<Rate>) -> (Option<f64>, Option<i32>) {
    r.map(|r| (r.per_second, r.burst())).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(l: Limits) -> &'static str {
        match l.validate() {
            Err(QueueError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn limits_are_checked_naming_the_field() {
        let rate = |per_second, burst| Some(Rate { per_second, burst });
        assert_eq!(
            field(Limits {
                concurrency: Some(0),
                ..Limits::default()
            }),
            "concurrency"
        );
        assert_eq!(
            field(Limits {
                key_concurrency: Some(-1),
                ..Limits::default()
            }),
            "key_concurrency"
        );
        assert_eq!(
            field(Limits {
                rate: rate(-1.0, None),
                ..Limits::default()
            }),
            "rate"
        );
        assert_eq!(
            field(Limits {
                rate: rate(f64::NAN, None),
                ..Limits::default()
            }),
            "rate"
        );
        assert_eq!(
            field(Limits {
                key_rate: rate(5.0, Some(0)),
                ..Limits::default()
            }),
            "key_rate"
        );
        assert!(Limits::default().validate().is_ok());
        assert!(!Limits::default().is_flow());
        let ok = Limits {
            concurrency: Some(3),
            rate: rate(0.5, None),
            fair: true,
            ..Limits::default()
        };
        assert!(ok.validate().is_ok() && ok.is_flow());
    }

    #[test]
    fn the_default_burst_is_a_second_of_rate() {
        assert_eq!(
            Rate {
                per_second: 50.0,
                burst: None
            }
            .burst(),
            50
        );
        assert_eq!(
            Rate {
                per_second: 0.2,
                burst: None
            }
            .burst(),
            1
        );
        assert_eq!(
            Rate {
                per_second: 50.0,
                burst: Some(5)
            }
            .burst(),
            5
        );
    }
}
