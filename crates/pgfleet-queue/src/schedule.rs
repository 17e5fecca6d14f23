//! Periodic jobs: schedules stored in `pgfleet.schedules` (the one module that reads and
//! writes it). A schedule is a name, a cron expression (5 fields, or 6 with seconds first;
//! `@hourly`-style aliases) or an interval (`@every 30s`), a time zone (DST handled by
//! evaluating the expression in the zone), the job it enqueues, and a misfire policy for
//! ticks missed while no scheduler ran.
//!
//! Every worker runs [`Queue::run_due_schedules`] about twice a second: it locks due rows
//! with `FOR UPDATE SKIP LOCKED`, enqueues their ticks and moves `next_run_at` in one
//! transaction, so each tick is enqueued once across the fleet; each tick's job also
//! carries the unique key `schedule:<name>:<tick ms>`. The decisions are pure functions
//! ([`Spec::next_after`], [`due_ticks`]).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{QueueError, Result};
use crate::job::NewJob;
use crate::Queue;

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Spec {
    /// A cron expression, evaluated in the schedule's time zone.
    Cron(Box<croner::Cron>),
    /// A fixed interval from the previous tick.
    Every(Duration),
}

impl Spec {
    /// Parses `@every 30s` (units `ms`, `s`, `m`, `h`; at least 1 s) or a cron expression.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming `cron`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(every) = s.strip_prefix("@every") {
            let d = parse_interval(every.trim()).ok_or_else(|| {
                QueueError::invalid(
                    "cron",
                    format!("{s:?}: @every takes a duration such as 30s, 5m or 1h (at least 1s)"),
                )
            })?;
            return Ok(Self::Every(d));
        }
        let fields = s.split_whitespace().count();
        if !s.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(QueueError::invalid(
                "cron",
                format!("{s:?}: a cron expression has 5 fields (6 with seconds first)"),
            ));
        }
        croner::Cron::from_str(s)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| QueueError::invalid("cron", format!("{s:?}: {e}")))
    }

    /// The first tick strictly after `t`, in `tz`.
    pub fn next_after(&self, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| t + d),
            Self::Cron(c) => c
                .find_next_occurrence(&t.with_timezone(&tz), false)
                .ok()
                .map(|n| n.with_timezone(&Utc)),
        }
    }
}

fn parse_interval(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d >= Duration::from_secs(1) && d <= Duration::from_secs(366 * 86_400)).then_some(d)
}

/// Parses an IANA time zone name.
///
/// # Errors
/// [`QueueError::Invalid`] naming `timezone`.
pub fn parse_timezone(s: &str) -> Result<Tz> {
    s.parse::<Tz>().map_err(|_| {
        QueueError::invalid(
            "timezone",
            format!("{s:?} is not an IANA time zone (e.g. Europe/Berlin)"),
        )
    })
}

/// What happens to ticks missed while no scheduler ran (an outage, every worker down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "policy", content = "max")]
pub enum Misfire {
    /// Run no missed tick; only ticks due within [`MISFIRE_GRACE`] run.
    Skip,
    /// Run once for however many ticks were missed (the latest).
    RunOnce,
    /// Run the latest `n` missed ticks.
    CatchUp(u32),
}

/// A tick this much late or less is on time, not missed: schedulers look twice a second, so
/// a running fleet enqueues every tick within half a second; one second leaves room for a
/// slow pass without calling a tick missed.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(1);

/// At most this many ticks are considered in one pass (a `@every 1s` schedule after a day
/// down has 86,400; catch-up takes the latest).
const MAX_TICKS: usize = 10_000;

/// The ticks to enqueue now, oldest first, and the schedule's next run after `now`.
/// `next_run_at` is the first tick not yet enqueued.
pub fn due_ticks(
    spec: &Spec,
    tz: Tz,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
    misfire: Misfire,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let mut due = std::collections::VecDeque::new();
    let mut t = Some(next_run_at);
    while let Some(tick) = t.filter(|t| *t <= now) {
        due.push_back(tick);
        if due.len() > MAX_TICKS {
            due.pop_front();
        }
        t = spec.next_after(tz, tick);
    }
    let grace = chrono::Duration::from_std(MISFIRE_GRACE).unwrap_or_default();
    let run: Vec<DateTime<Utc>> = match misfire {
        Misfire::Skip => due.into_iter().filter(|t| now - *t <= grace).collect(),
        Misfire::RunOnce => due.into_iter().last().into_iter().collect(),
        Misfire::CatchUp(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX).max(1);
            let skip = due.len().saturating_sub(n);
            due.into_iter().skip(skip).collect()
        }
    };
    (run, t)
}

/// A schedule to create or replace.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Unique name: 1..=128 of `[A-Za-z0-9_.:-]`.
    pub name: String,
    /// Cron expression or `@every <duration>`.
    pub cron: String,
    /// IANA time zone the expression is evaluated in.
    pub timezone: String,
    /// The job each tick enqueues (its `run_at` and `unique_key` are the scheduler's).
    pub job: NewJob,
    /// What happens to missed ticks.
    pub misfire: Misfire,
}

impl NewSchedule {
    /// A schedule of `job` at `cron` in UTC, running once for missed ticks.
    pub fn new(name: impl Into<String>, cron: impl Into<String>, job: NewJob) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            job,
            misfire: Misfire::RunOnce,
        }
    }

    /// Checks every field; returns the parsed spec and zone.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(Spec, Tz)> {
        crate::job::validate_queue_name(&self.name)
            .map_err(|_| QueueError::invalid("name", "must be 1 to 128 of [A-Za-z0-9_.:-]"))?;
        let spec = Spec::parse(&self.cron)?;
        let tz = parse_timezone(&self.timezone)?;
        self.job.validate()?;
        if let Misfire::CatchUp(0) = self.misfire {
            return Err(QueueError::invalid(
                "misfire",
                "catch_up needs a maximum of at least 1",
            ));
        }
        if spec.next_after(tz, Utc::now()).is_none() {
            return Err(QueueError::invalid("cron", "never fires"));
        }
        Ok((spec, tz))
    }
}

/// A schedule as written by people: the body of `PUT /v1/schedules/{name}`, an entry of
/// a schedules file, the flags of `pgfleet schedule put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleDoc {
    /// Unique name (in a file; the URL names it in the API).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$"))]
    pub name: Option<String>,
    /// Cron expression (5 fields, or 6 with seconds first; `@daily`-style aliases) or
    /// `@every 30s` / `5m` / `1h`.
    #[cfg_attr(feature = "openapi", schema(example = "*/5 * * * *"))]
    pub cron: String,
    /// IANA time zone the expression is evaluated in (DST handled).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Queue of the jobs it enqueues.
    #[serde(default = "default_queue")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$"))]
    pub queue: String,
    /// Kind of the jobs it enqueues.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$"))]
    pub kind: String,
    /// Payload of the jobs it enqueues.
    #[serde(default = "empty_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::JsonValue))]
    pub payload: Value,
    /// Priority, 0 (highest) to 9.
    #[serde(
        default = "default_priority",
        deserialize_with = "crate::serde_int::integer"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9))]
    pub priority: i16,
    /// Attempts per job.
    #[serde(
        default = "default_attempts",
        deserialize_with = "crate::serde_int::integer"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub max_attempts: i32,
    /// Partition key of its jobs, 1 to 512 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
    pub partition_key: Option<String>,
    /// What happens to ticks missed while no worker ran (default: run once).
    #[serde(default)]
    pub misfire: MisfireDoc,
}

/// A misfire policy as written: `{"policy": "catch_up", "max": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MisfireDoc {
    /// `skip`, `run_once` or `catch_up`.
    pub policy: MisfirePolicy,
    /// With `catch_up`: the most missed ticks to run (default 10; ignored otherwise).
    #[serde(default, deserialize_with = "crate::serde_int::opt_integer")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub max: Option<u32>,
}

/// The kinds of [`Misfire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// See [`Misfire::Skip`].
    Skip,
    /// See [`Misfire::RunOnce`].
    #[default]
    RunOnce,
    /// See [`Misfire::CatchUp`].
    CatchUp,
}

/// Missed ticks `catch_up` runs when no maximum is given.
pub const DEFAULT_CATCH_UP: u32 = 10;

impl MisfireDoc {
    /// The policy this describes.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a `max` outside 1..=10,000.
    pub fn misfire(&self) -> Result<Misfire> {
        if let Some(m) = self.max {
            if !(1..=MAX_TICKS as u32).contains(&m) {
                return Err(QueueError::invalid(
                    "misfire.max",
                    format!("must be between 1 and {MAX_TICKS}"),
                ));
            }
        }
        Ok(match self.policy {
            MisfirePolicy::Skip => Misfire::Skip,
            MisfirePolicy::RunOnce => Misfire::RunOnce,
            MisfirePolicy::CatchUp => Misfire::CatchUp(self.max.unwrap_or(DEFAULT_CATCH_UP)),
        })
    }
}

fn utc() -> String {
    "UTC".into()
}
fn default_queue() -> String {
    "default".into()
}
fn empty_object() -> Value {
    json!({})
}
fn default_priority() -> i16 {
    crate::job::PRIORITY_DEFAULT
}
fn default_attempts() -> i32 {
    crate::job::DEFAULT_MAX_ATTEMPTS
}

impl ScheduleDoc {
    /// The schedule named `name` (or the document's own name) this document describes.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the field.
    pub fn into_schedule(self, name: Option<&str>) -> Result<NewSchedule> {
        let name = name
            .map(str::to_owned)
            .or(self.name)
            .ok_or_else(|| QueueError::invalid("name", "every schedule needs a name"))?;
        let mut job = NewJob::new(self.queue, self.kind)
            .payload(self.payload)
            .priority(self.priority)
            .max_attempts(self.max_attempts);
        job.partition_key = self.partition_key;
        let s = NewSchedule {
            name,
            cron: self.cron,
            timezone: self.timezone,
            job,
            misfire: self.misfire.misfire()?,
        };
        s.validate()?;
        Ok(s)
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// Name.
    pub name: String,
    /// Cron expression or `@every <duration>`.
    pub spec: String,
    /// Time zone.
    pub timezone: String,
    /// Queue of its jobs.
    pub queue: String,
    /// Kind of its jobs.
    pub kind: String,
    /// Payload of its jobs.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::JsonValue))]
    pub payload: Value,
    /// Priority of its jobs.
    pub priority: i16,
    /// Attempts of its jobs.
    pub max_attempts: i32,
    /// Partition key of its jobs.
    pub partition_key: Option<String>,
    /// skip, run_once or catch_up.
    pub misfire: String,
    /// catch_up's maximum.
    pub catch_up: i32,
    /// Paused schedules do not fire (missed ticks follow the policy on resume).
    pub paused: bool,
    /// The next tick.
    pub next_run_at: DateTime<Utc>,
    /// The last tick enqueued.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The last tick's job.
    pub last_job_id: Option<i64>,
    /// That job's state now (`None` once retention pruned it, or before the first tick).
    #[sqlx(default)]
    pub last_job_state: Option<String>,
}

impl Schedule {
    fn misfire(&self) -> Misfire {
        match self.misfire.as_str() {
            "skip" => Misfire::Skip,
            "catch_up" => Misfire::CatchUp(u32::try_from(self.catch_up).unwrap_or(1)),
            _ => Misfire::RunOnce,
        }
    }

    fn tick_job(&self, tick: DateTime<Utc>) -> NewJob {
        let mut j = NewJob::new(&self.queue, &self.kind)
            .payload(self.payload.clone())
            .priority(self.priority)
            .max_attempts(self.max_attempts)
            .run_at(tick)
            .unique_key(format!(
                "schedule:{}:{}",
                self.name,
                tick.timestamp_millis()
            ))
            .metadata(json!({"schedule": self.name, "tick": tick}));
        if let Some(k) = &self.partition_key {
            j = j.partition_key(k);
        }
        j
    }
}

const COLS: &str = "name, spec, timezone, queue, kind, payload, priority, max_attempts, \
                    partition_key, misfire, catch_up, paused, next_run_at, last_run_at, last_job_id";

impl Queue {
    /// Creates or replaces schedule `s.name`; its next tick is computed from now.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the field (nothing written), or a database error.
    pub async fn put_schedule(&self, s: &NewSchedule) -> Result<Schedule> {
        let (spec, tz) = s.validate()?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(self.pool())
            .await?;
        let next = spec
            .next_after(tz, now)
            .ok_or_else(|| QueueError::invalid("cron", "never fires"))?;
        let (misfire, catch_up) = match s.misfire {
            Misfire::Skip => ("skip", 0),
            Misfire::RunOnce => ("run_once", 0),
            Misfire::CatchUp(n) => ("catch_up", i32::try_from(n).unwrap_or(i32::MAX)),
        };
        let sql = format!(
            "INSERT INTO pgfleet.schedules (name, spec, timezone, queue, kind, payload, priority, \
               max_attempts, partition_key, misfire, catch_up, next_run_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (name) DO UPDATE SET spec = $2, timezone = $3, queue = $4, kind = $5, \
               payload = $6, priority = $7, max_attempts = $8, partition_key = $9, misfire = $10, \
               catch_up = $11, next_run_at = $12, updated_at = now() \
             RETURNING {COLS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(&s.name)
            .bind(s.cron.trim())
            .bind(&s.timezone)
            .bind(&s.job.queue)
            .bind(&s.job.kind)
            .bind(&s.job.payload)
            .bind(s.job.priority)
            .bind(s.job.max_attempts)
            .bind(&s.job.partition_key)
            .bind(misfire)
            .bind(catch_up)
            .bind(next)
            .fetch_one(self.pool())
            .await?)
    }

    /// Every schedule, by name.
    ///
    /// # Errors
    /// A database error.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        self.schedules_where(None).await
    }

    /// Schedule `name`, if it exists.
    ///
    /// # Errors
    /// A database error.
    pub async fn schedule(&self, name: &str) -> Result<Option<Schedule>> {
        Ok(self.schedules_where(Some(name)).await?.pop())
    }

    async fn schedules_where(&self, name: Option<&str>) -> Result<Vec<Schedule>> {
        let sql = format!(
            "SELECT {COLS}, (SELECT state::text FROM pgfleet.jobs WHERE id = s.last_job_id                UNION ALL SELECT state::text FROM pgfleet.jobs_finished WHERE id = s.last_job_id                LIMIT 1) AS last_job_state              FROM pgfleet.schedules s WHERE $1::text IS NULL OR s.name = $1 ORDER BY name"
        );
        Ok(sqlx::query_as(&sql)
            .bind(name)
            .fetch_all(self.pool())
            .await?)
    }

    /// Pauses or resumes schedule `name`; false when there is none.
    ///
    /// # Errors
    /// A database error.
    pub async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE pgfleet.schedules SET paused = $2, updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .bind(paused)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Deletes schedule `name` (its enqueued jobs stay); false when there is none.
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM pgfleet.schedules WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Enqueues the due ticks of every due schedule nobody else is handling, per its
    /// misfire policy, and moves each schedule's `next_run_at`, in one transaction.
    /// Returns how many jobs it enqueued.
    ///
    /// # Errors
    /// A database error (nothing enqueued, nothing moved).
    pub async fn run_due_schedules(&self) -> Result<usize> {
        // Every worker asks twice a second and almost always nothing is due: one indexed
        // round trip then, not a transaction of four.
        let any_due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgfleet.schedules WHERE NOT paused AND next_run_at <= now())",
        )
        .fetch_one(self.pool())
        .await?;
        if !any_due {
            return Ok(0);
        }
        let mut tx = self.pool().begin().await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {COLS} FROM pgfleet.schedules WHERE NOT paused AND next_run_at <= $1 \
             ORDER BY next_run_at LIMIT 100 FOR UPDATE SKIP LOCKED"
        );
        let due: Vec<Schedule> = sqlx::query_as(&sql).bind(now).fetch_all(&mut *tx).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut jobs = Vec::new();
        let mut moves = Vec::new();
        for s in &due {
            let (Ok(spec), Ok(tz)) = (Spec::parse(&s.spec), parse_timezone(&s.timezone)) else {
                tracing::warn!(schedule = %s.name, "unparseable schedule: paused");
                moves.push((s.name.clone(), None, None, 0usize, true));
                continue;
            };
            let (ticks, next) = due_ticks(&spec, tz, s.next_run_at, now, s.misfire());
            let first = jobs.len();
            jobs.extend(ticks.iter().map(|t| s.tick_job(*t)));
            moves.push((
                s.name.clone(),
                next,
                ticks.last().copied(),
                jobs.len() - first,
                next.is_none(),
            ));
        }
        let (enqueued, wakeups) = self.enqueue_in(&mut tx, &jobs).await?;
        let mut at = 0;
        for (name, next, last, n, pause) in moves {
            let last_job = (n > 0).then(|| enqueued[at + n - 1].id);
            at += n;
            sqlx::query(
                "UPDATE pgfleet.schedules SET next_run_at = coalesce($2, next_run_at), \
                   last_run_at = coalesce($3, last_run_at), \
                   last_job_id = coalesce($4, last_job_id), paused = paused OR $5 \
                 WHERE name = $1",
            )
            .bind(&name)
            .bind(next)
            .bind(last)
            .bind(last_job)
            .bind(pause)
            .execute(&mut *tx)
            .await?;
        }
        self.commit_and_wake(tx, wakeups).await?;
        Ok(jobs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn intervals_and_cron_expressions_parse_or_name_the_field() {
        assert!(
            matches!(Spec::parse("@every 30s").unwrap(), Spec::Every(d) if d == Duration::from_secs(30))
        );
        assert!(
            matches!(Spec::parse("@every 2m").unwrap(), Spec::Every(d) if d == Duration::from_secs(120))
        );
        for ok in [
            "*/5 * * * *",
            "0 */10 * * * *",
            "@hourly",
            "0 9 * * MON-FRI",
        ] {
            assert!(Spec::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "@every 10ms",
            "@every",
            "@every 5x",
            "* * *",
            "61 * * * *",
            "not cron at all x",
        ] {
            match Spec::parse(bad) {
                Err(QueueError::Invalid { field, .. }) => assert_eq!(field, "cron", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(parse_timezone("Europe/Berlin").is_ok());
        assert!(matches!(
            parse_timezone("Mars/Olympus"),
            Err(QueueError::Invalid {
                field: "timezone",
                ..
            })
        ));
    }

    #[test]
    fn cron_ticks_follow_the_zone_across_daylight_saving_changes() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 09:00 every day in Berlin: 08:00 UTC before the spring change, 07:00 after.
        let daily = Spec::parse("0 9 * * *").unwrap();
        let sat = daily.next_after(tz, at("2026-03-27T12:00:00Z")).unwrap();
        let sun = daily.next_after(tz, sat).unwrap();
        let mon = daily.next_after(tz, sun).unwrap();
        assert_eq!(sat, at("2026-03-28T08:00:00Z"));
        assert_eq!(sun, at("2026-03-29T07:00:00Z"));
        assert_eq!(mon, at("2026-03-30T07:00:00Z"));
        // Hourly across the autumn change: every tick one real hour apart, none lost.
        let hourly = Spec::parse("0 * * * *").unwrap();
        let mut t = at("2026-10-24T22:30:00Z");
        let mut ticks = Vec::new();
        for _ in 0..4 {
            t = hourly.next_after(tz, t).unwrap();
            ticks.push(t);
        }
        assert_eq!(
            ticks,
            [
                at("2026-10-24T23:00:00Z"),
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T01:00:00Z"),
                at("2026-10-25T02:00:00Z"),
            ]
        );
    }

    #[test]
    fn missed_ticks_follow_the_policy() {
        let every = Spec::parse("@every 1s").unwrap();
        let tz = Tz::UTC;
        let start = at("2026-01-01T00:00:00Z");
        // Down for 10 s: ticks 0..=10 are due; 10 is on time.
        let now = at("2026-01-01T00:00:10.200Z");
        let (skip, next) = due_ticks(&every, tz, start, now, Misfire::Skip);
        assert_eq!(next, Some(at("2026-01-01T00:00:11Z")));
        assert_eq!(
            skip,
            [at("2026-01-01T00:00:10Z")],
            "only ticks within the 1 s grace"
        );
        let (once, _) = due_ticks(&every, tz, start, now, Misfire::RunOnce);
        assert_eq!(once, [at("2026-01-01T00:00:10Z")]);
        let (three, _) = due_ticks(&every, tz, start, now, Misfire::CatchUp(3));
        assert_eq!(
            three,
            [
                at("2026-01-01T00:00:08Z"),
                at("2026-01-01T00:00:09Z"),
                at("2026-01-01T00:00:10Z")
            ]
        );
        // Nothing due yet.
        let (none, next) = due_ticks(
            &every,
            tz,
            now + chrono::Duration::seconds(1),
            now,
            Misfire::RunOnce,
        );
        assert!(none.is_empty());
        assert_eq!(next, Some(now + chrono::Duration::seconds(1)));
    }
}
