//! Job types: the state machine, a validated new job, and a job as stored.
//!
//! State machine (see ARCHITECTURE.md):
//! `blocked` (waiting for dependencies) → (last dependency finished) → `available`;
//! `available` → (claim) → `running` → `completed` | `retryable` (backoff) | `discarded`
//! (attempts exhausted or permanent error) | `cancelled`; `retryable` → (run_at reached,
//! claimed) → `running`; a running job whose lease expires is rescued back to `retryable`.
//! `discarded` → (operator retry) → `available`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{QueueError, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "pgfleet.job_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its dependencies to finish (never claimed; not backlog).
    Blocked,
    /// Waiting to run (at or after `run_at`).
    Available,
    /// Claimed by a worker and holding a lease.
    Running,
    /// Failed; waits for its backoff (`run_at`) before the next attempt.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Gave up: attempts exhausted or a permanent error.
    Discarded,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 7] = [
        JobState::Blocked,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The lowercase name used in SQL, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for the final states, which live in `jobs_finished`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Discarded | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                QueueError::invalid(
                    "state",
                    format!(
                        "unknown state {s:?}; expected one of blocked, available, running, \
                         retryable, completed, discarded, cancelled"
                    ),
                )
            })
    }
}

/// Checks a queue or kind name: 1..=128 characters of `[A-Za-z0-9_.:-]`.
fn check_name(field: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 128 {
        return Err(QueueError::invalid(field, "must be 1 to 128 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(QueueError::invalid(
            field,
            format!("character {c:?} is not allowed (use letters, digits, _ . : -)"),
        ));
    }
    Ok(())
}

pub(crate) const NUL_REASON: &str =
    "holds a NUL character (\\u0000), which PostgreSQL cannot store";

/// Where a JSON value holds a NUL character in a string or a key (`a.b[2]`, `.` for the
/// value itself), if anywhere.
pub(crate) fn nul_in(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(".".to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item).map(|at| join_path(&format!("[{i}]"), &at))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                Some("(a key)".to_owned())
            } else {
                nul_in(item).map(|at| join_path(k, &at))
            }
        }),
        _ => None,
    }
}

fn join_path(head: &str, rest: &str) -> String {
    match rest {
        "." => head.to_owned(),
        r if r.starts_with('[') => format!("{head}{r}"),
        r => format!("{head}.{r}"),
    }
}

/// Checks a queue name (see [`NewJob`]).
///
/// # Errors
/// [`QueueError::Invalid`] naming `queue`.
pub fn validate_queue_name(s: &str) -> Result<()> {
    check_name("queue", s)
}

/// The highest (most urgent) priority.
pub const PRIORITY_HIGHEST: i16 = 0;
/// The lowest priority.
pub const PRIORITY_LOWEST: i16 = 9;
/// The default priority of a new job.
pub const PRIORITY_DEFAULT: i16 = 1;
/// The default attempt limit of a new job.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 20;

/// A job to enqueue, validated on [`NewJob::validate`] (called by every enqueue).
///
/// Fields are public so callers can build them from their own DTOs; the enqueue functions
/// refuse an invalid job with [`QueueError::Invalid`] naming the field, before writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Queue name: 1..=128 of `[A-Za-z0-9_.:-]`.
    pub queue: String,
    /// Job kind (selects the handler), same alphabet as queue.
    pub kind: String,
    /// JSON payload handed to the handler.
    pub payload: Value,
    /// 0 (highest) ..= 9 (lowest); jobs with a lower number run first.
    pub priority: i16,
    /// Earliest time to run; `None` = now.
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before the job is discarded (≥ 1).
    pub max_attempts: i32,
    /// Key hashed to choose the partition (user id, event id...). `None` spreads jobs evenly.
    pub partition_key: Option<String>,
    /// When set, enqueue is idempotent on this key and returns the existing job.
    pub unique_key: Option<String>,
    /// Free-form metadata (trace context lives here).
    pub metadata: Value,
    /// Jobs that must finish first: the job is `blocked` until they have.
    #[serde(default)]
    pub depends_on: Vec<i64>,
    /// What happens when a dependency is discarded or cancelled.
    #[serde(default)]
    pub on_dependency_failure: DependencyFailure,
}

/// What a job does when one of its dependencies is discarded or cancelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "pgfleet.dependency_failure", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DependencyFailure {
    /// It is cancelled too (and so are its own dependents that cancel).
    #[default]
    Cancel,
    /// It runs anyway, once every dependency has finished one way or another.
    Run,
}

impl DependencyFailure {
    /// The lowercase name used in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyFailure::Cancel => "cancel",
            DependencyFailure::Run => "run",
        }
    }
}

impl FromStr for DependencyFailure {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cancel" => Ok(Self::Cancel),
            "run" => Ok(Self::Run),
            _ => Err(QueueError::invalid(
                "on_dependency_failure",
                format!("unknown policy {s:?}; expected cancel or run"),
            )),
        }
    }
}

impl NewJob {
    /// A job with default priority, attempts and an empty object payload.
    pub fn new(queue: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload: Value::Object(Default::default()),
            priority: PRIORITY_DEFAULT,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            partition_key: None,
            unique_key: None,
            metadata: Value::Object(Default::default()),
            depends_on: Vec::new(),
            on_dependency_failure: DependencyFailure::Cancel,
        }
    }

    /// Makes the job wait for `ids` (it is `blocked` until each has finished).
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.depends_on.extend(ids);
        self
    }

    /// Sets what happens when a dependency is discarded or cancelled.
    pub fn on_dependency_failure(mut self, policy: DependencyFailure) -> Self {
        self.on_dependency_failure = policy;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// Parses and sets the payload from JSON text.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming `payload` when the text is not JSON.
    pub fn payload_json(mut self, text: &str) -> Result<Self> {
        self.payload = serde_json::from_str(text)
            .map_err(|e| QueueError::invalid("payload", format!("not valid JSON: {e}")))?;
        Ok(self)
    }

    /// Sets the priority (0 highest ..= 9 lowest).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Schedules the job for later.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the attempt limit.
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the partition key.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets the unique key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        check_name("queue", &self.queue)?;
        check_name("kind", &self.kind)?;
        if !(PRIORITY_HIGHEST..=PRIORITY_LOWEST).contains(&self.priority) {
            return Err(QueueError::invalid(
                "priority",
                format!(
                    "must be between {PRIORITY_HIGHEST} (highest) and {PRIORITY_LOWEST}, got {}",
                    self.priority
                ),
            ));
        }
        if self.max_attempts < 1 {
            return Err(QueueError::invalid(
                "max_attempts",
                format!("must be at least 1, got {}", self.max_attempts),
            ));
        }
        if !self.metadata.is_object() {
            return Err(QueueError::invalid("metadata", "must be a JSON object"));
        }
        for (field, v) in [
            ("partition_key", &self.partition_key),
            ("unique_key", &self.unique_key),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.chars().count() > 512 {
                    return Err(QueueError::invalid(field, "must be 1 to 512 characters"));
                }
                if v.contains('\0') {
                    return Err(QueueError::invalid(field, NUL_REASON));
                }
            }
        }
        for (field, v) in [("payload", &self.payload), ("metadata", &self.metadata)] {
            if let Some(at) = nul_in(v) {
                let reason = match at.as_str() {
                    "." => NUL_REASON.to_owned(),
                    at => format!("{field}.{at} {NUL_REASON}"),
                };
                return Err(QueueError::invalid(field, reason));
            }
        }
        Ok(())
    }
}

/// A job as stored, in either table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Job {
    /// Job id (unique for the life of the install).
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Partition (0..P).
    pub partition: i16,
    /// Priority, 0 highest.
    pub priority: i16,
    /// State.
    pub state: JobState,
    /// Payload.
    pub payload: Value,
    /// Metadata (trace context...).
    pub metadata: Value,
    /// Attempts started so far (the running attempt included).
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Earliest next run.
    pub run_at: DateTime<Utc>,
    /// When the last attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// Which worker ran the last attempt.
    pub attempted_by: Option<String>,
    /// Lease expiry while running.
    pub lease_until: Option<DateTime<Utc>>,
    /// Every failed attempt's error, oldest first.
    pub errors: Value,
    /// Unique key, if any.
    pub unique_key: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it reached a final state.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The key it was enqueued with (it chose the partition; flow control groups by it).
    #[serde(default)]
    #[sqlx(default)]
    pub partition_key: Option<String>,
    /// The workflow (or batch) it belongs to.
    #[serde(default)]
    #[sqlx(default)]
    pub workflow_id: Option<i64>,
    /// The last progress its handler reported: `{"value", "message", "at"}`.
    #[serde(default)]
    #[sqlx(default)]
    pub progress: Option<Value>,
    /// What its handler returned on completion.
    #[serde(default)]
    #[sqlx(default)]
    pub output: Option<Value>,
}

impl Job {
    /// Decodes a row of [`Job`] columns even when a JSON column cannot be decoded (a number
    /// beyond the float range written by SQL, say): such a column becomes
    /// `{"undecodable": "<its text>", "error": "..."}` so an operator can see and remove it.
    ///
    /// # Errors
    /// [`sqlx::Error`] when another column cannot be decoded.
    pub fn from_row_lossy(row: &sqlx::postgres::PgRow) -> std::result::Result<Self, sqlx::Error> {
        use sqlx::Row;
        let json = |name: &str| -> std::result::Result<Value, sqlx::Error> {
            match row.try_get::<Value, _>(name) {
                Ok(v) => Ok(v),
                Err(e) => {
                    let raw: sqlx::types::Json<Box<serde_json::value::RawValue>> =
                        row.try_get(name)?;
                    Ok(serde_json::json!({
                        "undecodable": raw.0.get(),
                        "error": e.to_string(),
                    }))
                }
            }
        };
        Ok(Job {
            id: row.try_get("id")?,
            queue: row.try_get("queue")?,
            kind: row.try_get("kind")?,
            partition: row.try_get("partition")?,
            priority: row.try_get("priority")?,
            state: row.try_get("state")?,
            payload: json("payload")?,
            metadata: json("metadata")?,
            attempt: row.try_get("attempt")?,
            max_attempts: row.try_get("max_attempts")?,
            run_at: row.try_get("run_at")?,
            attempted_at: row.try_get("attempted_at")?,
            attempted_by: row.try_get("attempted_by")?,
            lease_until: row.try_get("lease_until")?,
            errors: json("errors")?,
            unique_key: row.try_get("unique_key")?,
            created_at: row.try_get("created_at")?,
            finalized_at: row.try_get("finalized_at")?,
            partition_key: row.try_get("partition_key").unwrap_or_default(),
            workflow_id: row.try_get("workflow_id").unwrap_or_default(),
            progress: json("progress").ok().filter(|v| !v.is_null()),
            output: json("output").ok().filter(|v| !v.is_null()),
        })
    }
}

/// The columns of [`Job`] as a select list over `pgfleet.jobs` (no `finalized_at`).
pub(crate) const HOT_COLUMNS: &str = "id, queue, kind, partition, priority, state, payload, \
    metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, lease_until, errors, \
    unique_key, created_at, NULL::timestamptz AS finalized_at, partition_key, workflow_id, \
    progress, NULL::jsonb AS output";

/// The columns of [`Job`] as a select list over `pgfleet.jobs_finished`.
pub(crate) const FINISHED_COLUMNS: &str = "id, queue, kind, partition, priority, state, payload, \
    metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, \
    NULL::timestamptz AS lease_until, errors, unique_key, created_at, finalized_at, partition_key, \
    workflow_id, progress, output";

/// SQL fragment: `INSERT INTO pgfleet.jobs_finished (...) SELECT ... FROM` a set of deleted
/// `pgfleet.jobs` rows that also carries `final_state` and `final_error` (jsonb or NULL)
/// columns — and, in the `output` form, `final_output`. Used with `concat!` by every
/// statement that finalizes jobs.
macro_rules! insert_finished_from {
    () => {
        $crate::job::insert_finished_from!("NULL::jsonb")
    };
    (output) => {
        $crate::job::insert_finished_from!("final_output")
    };
    ($output:literal) => {
        concat!(
            "INSERT INTO pgfleet.jobs_finished (id, queue, kind, partition, priority, state, \
             payload, metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, \
             errors, unique_key, created_at, partition_key, workflow_id, has_dependents, \
             progress, output) \
             SELECT id, queue, kind, partition, priority, final_state::pgfleet.job_state, \
             payload, metadata, attempt, max_attempts, run_at, attempted_at, attempted_by, \
             CASE WHEN final_error IS NULL THEN errors ELSE errors || jsonb_build_array(final_error) END, \
             unique_key, created_at, partition_key, workflow_id, has_dependents, progress, ",
            $output,
            " FROM "
        )
    };
}
pub(crate) use insert_finished_from;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_reject_unknown() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        let err = "finished".parse::<JobState>().unwrap_err();
        assert!(matches!(err, QueueError::Invalid { field: "state", .. }));
    }

    #[test]
    fn nul_characters_are_refused_before_writing() {
        let reason = |j: NewJob| match j.validate() {
            Err(QueueError::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected invalid, got {other:?}"),
        };
        let payload = serde_json::json!({"a": [1, {"b": "x\u{0}"}]});
        assert!(reason(NewJob::new("q", "k").payload(payload))
            .starts_with("payload: payload.a[1].b holds a NUL"));
        let top = NewJob::new("q", "k").payload(Value::String("\u{0}".into()));
        assert!(reason(top).starts_with("payload: holds a NUL"));
        let key = NewJob::new("q", "k").payload(serde_json::json!({"k\u{0}": 1}));
        assert!(reason(key).contains("(a key)"));
        assert!(reason(NewJob::new("q", "k").partition_key("a\u{0}")).starts_with("partition_key"));
        let meta = NewJob::new("q", "k").metadata(serde_json::json!({"t": "\u{0}"}));
        assert!(reason(meta).starts_with("metadata: metadata.t"));
        assert!(NewJob::new("q", "k")
            .payload(serde_json::json!({"ok": "\\u0000"}))
            .validate()
            .is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let field = |j: NewJob| match j.validate() {
            Err(QueueError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(NewJob::new("", "k")), "queue");
        assert_eq!(field(NewJob::new("q w", "k")), "queue");
        assert_eq!(field(NewJob::new("q", "")), "kind");
        assert_eq!(
            field(NewJob::new("q", "k").max_attempts(-1)),
            "max_attempts"
        );
        assert_eq!(field(NewJob::new("q", "k").priority(10)), "priority");
        assert_eq!(field(NewJob::new("q", "k").unique_key("")), "unique_key");
        assert!(NewJob::new("q", "k").payload_json("{not json").is_err());
        assert!(NewJob::new("default", "payments.process")
            .validate()
            .is_ok());
    }
}
