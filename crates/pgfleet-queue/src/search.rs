//! Finding jobs the way an operator asks: by state, queue, kind, partition key, a time range
//! and a text search over payloads and errors, newest or oldest first, a page at a time
//! (keyset on `id`, so page 1,000 costs what page 1 does); counting by the same filter; and
//! the filter's matches in id order, for bulk actions ([`crate::admin`]).
//!
//! The SQL is built from the conditions present only (never `$1 IS NULL OR ...`, which a
//! cached generic plan cannot use an index for). Each table is searched on its own with the
//! states it can hold, and the two pages are merged.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::error::{QueueError, Result};
use crate::job::{Job, JobState, FINISHED_COLUMNS, HOT_COLUMNS};
use crate::Queue;

/// The most rows one list call returns.
pub const MAX_PAGE: i64 = 1000;

/// The widest time window searched through the BRIN index rather than the primary key.
pub const NARROW_WINDOW_HOURS: i64 = 24;

/// The longest text search (characters).
pub const MAX_TEXT: usize = 200;

/// One entry of a state filter: a state, or `scheduled` (waiting for a future `run_at`,
/// which the state column calls `available` or `retryable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    /// Jobs in this state.
    Is(JobState),
    /// Jobs that wait for a time in the future (`available` or `retryable`, `run_at > now()`).
    Scheduled,
}

impl std::str::FromStr for StateFilter {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "scheduled" => Ok(Self::Scheduled),
            other => other.parse().map(Self::Is),
        }
    }
}

impl StateFilter {
    /// Whether jobs it matches live in `table`.
    fn in_table(self, table: Table) -> bool {
        match self {
            Self::Is(s) => table.holds(s),
            Self::Scheduled => table == Table::Hot,
        }
    }
}

impl std::fmt::Display for StateFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Is(s) => f.write_str(s.as_str()),
            Self::Scheduled => f.write_str("scheduled"),
        }
    }
}

/// Which jobs. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobFilter {
    /// Any of these states (empty: every state).
    pub states: Vec<StateFilter>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this partition key.
    pub partition_key: Option<String>,
    /// Not before this time: when the job finished for finished jobs, when it was created
    /// for the others (the time the console lists).
    pub from: Option<DateTime<Utc>>,
    /// Before this time (same clock as `from`).
    pub to: Option<DateTime<Utc>>,
    /// Text in the payload or the errors, exactly as written (case-sensitive: half the cost
    /// of `ILIKE` on every row the search reads; 1 to 200 characters).
    pub text: Option<String>,
}

/// Where a page starts and how it is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Newest first (ids descending) instead of oldest first.
    pub newest_first: bool,
    /// The last id of the previous page: the page holds ids past it in the list's order.
    pub cursor: Option<i64>,
    /// Page size (1..=[`MAX_PAGE`]).
    pub limit: i64,
}

/// The two tables a job can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `pgfleet.jobs`: blocked, available, running, retryable.
    Hot,
    /// `pgfleet.jobs_finished`: completed, discarded, cancelled.
    Finished,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Hot => "pgfleet.jobs",
            Table::Finished => "pgfleet.jobs_finished",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Table::Hot => HOT_COLUMNS,
            Table::Finished => FINISHED_COLUMNS,
        }
    }

    /// The column the time range applies to.
    fn clock(self) -> &'static str {
        match self {
            Table::Hot => "created_at",
            Table::Finished => "finalized_at",
        }
    }

    fn holds(self, s: JobState) -> bool {
        s.is_final() == (self == Table::Finished)
    }
}

/// `%`, `_` and `\` taken literally inside a `LIKE` pattern.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl JobFilter {
    /// Checks the filter's values.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.text {
            let n = t.chars().count();
            if n == 0 || n > MAX_TEXT {
                return Err(QueueError::invalid(
                    "q",
                    format!("must be 1 to {MAX_TEXT} characters"),
                ));
            }
            if t.contains('\0') {
                return Err(QueueError::invalid("q", "must not contain NUL characters"));
            }
        }
        for (field, v) in [
            ("queue", &self.queue),
            ("kind", &self.kind),
            ("partition_key", &self.partition_key),
        ] {
            if v.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(QueueError::invalid(
                    field,
                    "must not contain NUL characters",
                ));
            }
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f > t {
                return Err(QueueError::invalid("from", "must not be after `to`"));
            }
        }
        Ok(())
    }

    /// A time window closed on both ends and at most [`NARROW_WINDOW_HOURS`] wide: few
    /// finished jobs, all found by the BRIN index on `finalized_at`.
    fn narrow_window(&self) -> bool {
        matches!((self.from, self.to), (Some(f), Some(t))
            if t - f <= chrono::Duration::hours(NARROW_WINDOW_HOURS))
    }

    /// Whether any job of `table` can match the state filter.
    pub(crate) fn touches(&self, table: Table) -> bool {
        self.states.is_empty() || self.states.iter().any(|s| s.in_table(table))
    }

    /// Appends ` WHERE ...` for `table` (call only when [`JobFilter::touches`] it); later
    /// conditions follow with ` AND `.
    pub(crate) fn push_where(&self, qb: &mut QueryBuilder<'_, Postgres>, table: Table) {
        qb.push(" WHERE true");
        let states: Vec<&StateFilter> = self.states.iter().filter(|s| s.in_table(table)).collect();
        if !states.is_empty() {
            qb.push(" AND (");
            for (i, s) in states.iter().enumerate() {
                if i > 0 {
                    qb.push(" OR ");
                }
                match s {
                    StateFilter::Is(s) => {
                        qb.push("state = ")
                            .push_bind(*s)
                            .push("::pgfleet.job_state");
                    }
                    StateFilter::Scheduled => {
                        qb.push("(state IN ('available', 'retryable') AND run_at > now())");
                    }
                }
            }
            qb.push(")");
        }
        if let Some(q) = &self.queue {
            qb.push(" AND queue = ").push_bind(q.clone());
        }
        if let Some(k) = &self.kind {
            qb.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(k) = &self.partition_key {
            qb.push(" AND partition_key = ").push_bind(k.clone());
        }
        if let Some(f) = self.from {
            qb.push(format!(" AND {} >= ", table.clock())).push_bind(f);
        }
        if let Some(t) = self.to {
            qb.push(format!(" AND {} < ", table.clock())).push_bind(t);
        }
        if let Some(t) = &self.text {
            let p = like_pattern(t);
            qb.push(" AND (payload::text LIKE ")
                .push_bind(p.clone())
                .push(" OR errors::text LIKE ")
                .push_bind(p)
                .push(")");
        }
    }
}

/// The list statement (after `prefix`, e.g. `EXPLAIN`): each table's page by the filter,
/// merged.
pub(crate) fn list_query<'a>(
    prefix: &str,
    f: &JobFilter,
    page: &PageRequest,
) -> QueryBuilder<'a, Postgres> {
    let (cmp, dir) = if page.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let tables: Vec<Table> = [Table::Hot, Table::Finished]
        .into_iter()
        .filter(|t| f.touches(*t))
        .collect();
    let mut qb = QueryBuilder::new(prefix);
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        // A closed window of finished jobs is found through the BRIN index on finalized_at
        // and then sorted: the planner, assuming matches spread evenly over the ids, would
        // walk the primary key from the newest job through every job finished after `to`.
        // (`OFFSET 0` keeps it from pulling the ORDER BY into the range scan.)
        let fenced = *t == Table::Finished && f.narrow_window();
        if fenced {
            qb.push(format!(
                "(SELECT * FROM (SELECT {} FROM {}",
                t.columns(),
                t.name()
            ));
        } else {
            qb.push(format!("(SELECT {} FROM {}", t.columns(), t.name()));
        }
        f.push_where(&mut qb, *t);
        if let Some(c) = page.cursor {
            qb.push(format!(" AND id {cmp} ")).push_bind(c);
        }
        if fenced {
            qb.push(" OFFSET 0) w");
        }
        qb.push(format!(" ORDER BY id {dir} LIMIT "))
            .push_bind(page.limit)
            .push(")");
    }
    if tables.len() > 1 {
        qb.push(format!(" ORDER BY id {dir} LIMIT "))
            .push_bind(page.limit);
    }
    qb
}

impl Queue {
    /// Jobs matching `filter`, one page of them (keyset pagination on id).
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad limit or filter, [`QueueError::Database`].
    pub async fn search_jobs(&self, filter: &JobFilter, page: &PageRequest) -> Result<Vec<Job>> {
        if !(1..=MAX_PAGE).contains(&page.limit) {
            return Err(QueueError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        filter.validate()?;
        if ![Table::Hot, Table::Finished]
            .into_iter()
            .any(|t| filter.touches(t))
        {
            return Ok(Vec::new());
        }
        // Not prepared: each search gets a plan for its own values (a cached generic plan
        // cannot tell a one-hour window from a week).
        let rows = list_query("", filter, page)
            .build()
            .persistent(false)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(Job::from_row_lossy)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The plan PostgreSQL ran [`Queue::search_jobs`]'s statement with (`EXPLAIN (ANALYZE,
    /// BUFFERS)`: the statement runs), one line per plan line.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad limit or filter, [`QueueError::Database`].
    pub async fn explain_search(
        &self,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Vec<String>> {
        filter.validate()?;
        let rows = list_query("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ", filter, page)
            .build()
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// How many jobs match `filter`.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad filter, [`QueueError::Database`].
    pub async fn count_jobs(&self, filter: &JobFilter) -> Result<i64> {
        filter.validate()?;
        let mut total = 0;
        for t in [Table::Hot, Table::Finished] {
            if !filter.touches(t) {
                continue;
            }
            let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {}", t.name()));
            filter.push_where(&mut qb, t);
            let row = qb.build().persistent(false).fetch_one(self.pool()).await?;
            total += row.try_get::<i64, _>(0)?;
        }
        Ok(total)
    }

    /// Up to `limit` ids of `table` matching `filter` and `extra` (a condition on the
    /// table's columns), greater than `after`, ascending: one batch of a bulk action.
    pub(crate) async fn matching_ids(
        &self,
        filter: &JobFilter,
        table: Table,
        extra: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let mut qb = QueryBuilder::new(format!("SELECT id FROM {}", table.name()));
        filter.push_where(&mut qb, table);
        qb.push(format!(" AND ({extra}) AND id > "))
            .push_bind(after)
            .push(" ORDER BY id LIMIT ")
            .push_bind(limit);
        let rows = qb.build().persistent(false).fetch_all(self.pool()).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(f: &JobFilter, p: &PageRequest) -> String {
        list_query("", f, p).sql().to_owned()
    }

    #[test]
    fn only_the_tables_that_can_hold_the_states_are_searched() {
        let page = PageRequest {
            newest_first: true,
            cursor: Some(10),
            limit: 50,
        };
        let failed = JobFilter {
            states: vec![StateFilter::Is(JobState::Discarded)],
            ..Default::default()
        };
        let s = sql(&failed, &page);
        assert!(
            s.contains("pgfleet.jobs_finished") && !s.contains("pgfleet.jobs "),
            "{s}"
        );
        assert!(s.contains("id < $2 ORDER BY id DESC"), "{s}");
        let scheduled = JobFilter {
            states: vec![StateFilter::Scheduled],
            kind: Some("k".into()),
            ..Default::default()
        };
        let s = sql(&scheduled, &page);
        assert!(
            s.contains("FROM pgfleet.jobs WHERE") && !s.contains("jobs_finished"),
            "{s}"
        );
        assert!(
            s.contains("run_at > now()") && s.contains("kind = $1"),
            "{s}"
        );
        let all = sql(&JobFilter::default(), &PageRequest { limit: 5, ..page });
        assert!(
            all.contains("UNION ALL") && all.ends_with("ORDER BY id DESC LIMIT $5"),
            "{all}"
        );
        assert!(
            !all.contains("state ="),
            "no state condition without a state filter: {all}"
        );
    }

    #[test]
    fn the_time_range_uses_each_tables_clock() {
        let f = JobFilter {
            from: Some(Utc::now()),
            ..Default::default()
        };
        let s = sql(
            &f,
            &PageRequest {
                limit: 1,
                ..Default::default()
            },
        );
        assert!(
            s.contains("created_at >= $1") && s.contains("finalized_at >= $3"),
            "{s}"
        );
        assert!(s.contains("id ASC"), "oldest first by default: {s}");
    }

    #[test]
    fn a_closed_narrow_window_of_finished_jobs_is_fenced() {
        let now = Utc::now();
        let window = JobFilter {
            from: Some(now - chrono::Duration::hours(2)),
            to: Some(now - chrono::Duration::hours(1)),
            ..Default::default()
        };
        let s = sql(
            &window,
            &PageRequest {
                limit: 50,
                ..Default::default()
            },
        );
        assert!(
            s.contains("FROM pgfleet.jobs_finished WHERE") && s.contains("OFFSET 0) w ORDER BY id"),
            "{s}"
        );
        assert_eq!(
            s.matches("OFFSET 0").count(),
            1,
            "the hot table is not fenced: {s}"
        );
        let open = JobFilter {
            from: Some(now - chrono::Duration::hours(2)),
            ..Default::default()
        };
        assert!(!sql(
            &open,
            &PageRequest {
                limit: 50,
                ..Default::default()
            }
        )
        .contains("OFFSET 0"));
        let wide = JobFilter {
            from: Some(now - chrono::Duration::days(3)),
            to: Some(now),
            ..Default::default()
        };
        assert!(!sql(
            &wide,
            &PageRequest {
                limit: 50,
                ..Default::default()
            }
        )
        .contains("OFFSET 0"));
    }

    #[test]
    fn search_text_is_literal() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        let bad = JobFilter {
            text: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(QueueError::Invalid { field: "q", .. })
        ));
        let long = JobFilter {
            text: Some("x".repeat(MAX_TEXT + 1)),
            ..Default::default()
        };
        assert!(long.validate().is_err());
        let backwards = JobFilter {
            from: Some(Utc::now()),
            to: Some(Utc::now() - chrono::Duration::hours(1)),
            ..Default::default()
        };
        assert!(matches!(
            backwards.validate(),
            Err(QueueError::Invalid { field: "from", .. })
        ));
    }

    #[test]
    fn states_parse_with_scheduled() {
        assert_eq!(
            "scheduled".parse::<StateFilter>().unwrap(),
            StateFilter::Scheduled
        );
        assert_eq!(
            "discarded".parse::<StateFilter>().unwrap(),
            StateFilter::Is(JobState::Discarded)
        );
        assert!("failed".parse::<StateFilter>().is_err());
    }
}
