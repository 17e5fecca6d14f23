//! Failures grouped the way an operator reads them: by job kind and error message (digits
//! masked, so "timeout after 31 s" and "after 30 s" are one group), with a count and the
//! latest example. Counts jobs whose last error falls in the window: discarded jobs and
//! jobs waiting to retry.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{QueueError, Result};
use crate::Queue;

/// One group of failures.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorGroup {
    /// Job kind.
    pub kind: String,
    /// The message with every run of digits shown as `#`.
    pub pattern: String,
    /// Jobs in the group.
    pub count: i64,
    /// Of which discarded (the rest wait to retry).
    pub discarded: i64,
    /// The latest example's id.
    pub latest_id: i64,
    /// The latest example's queue.
    pub latest_queue: String,
    /// The latest example's message, as it was.
    pub latest_message: String,
    /// When the latest example failed.
    pub latest_at: DateTime<Utc>,
}

/// The most groups one call returns.
pub const MAX_GROUPS: i64 = 200;

const GROUPS_SQL: &str = r#"
WITH failed AS (
    SELECT id, queue, kind, state, errors -> -1 AS e FROM pgfleet.jobs_finished
    WHERE state = 'discarded' AND finalized_at >= $1 AND ($2::text IS NULL OR queue = $2)
    UNION ALL
    SELECT id, queue, kind, state, errors -> -1 FROM pgfleet.jobs
    WHERE state = 'retryable' AND ($2::text IS NULL OR queue = $2)
), msgs AS (
    SELECT id, queue, kind, state, coalesce(e ->> 'error', '') AS message,
           coalesce((e ->> 'at')::timestamptz, '-infinity') AS at
    FROM failed WHERE e IS NOT NULL
)
SELECT kind, regexp_replace(left(message, 500), '[0-9]+', '#', 'g') AS pattern,
       count(*) AS count, count(*) FILTER (WHERE state = 'discarded') AS discarded,
       (array_agg(id ORDER BY at DESC, id DESC))[1] AS latest_id,
       (array_agg(queue ORDER BY at DESC, id DESC))[1] AS latest_queue,
       (array_agg(message ORDER BY at DESC, id DESC))[1] AS latest_message,
       max(at) AS latest_at
FROM msgs WHERE at >= $1
GROUP BY 1, 2 ORDER BY count DESC, latest_at DESC LIMIT $3
"#;

impl Queue {
    /// Failures since `since` (optionally of one queue) grouped by kind and message, the
    /// largest groups first, at most `limit` (1..=[`MAX_GROUPS`]) groups.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] for a bad limit, [`QueueError::Database`].
    pub async fn error_groups(
        &self,
        since: DateTime<Utc>,
        queue: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ErrorGroup>> {
        if !(1..=MAX_GROUPS).contains(&limit) {
            return Err(QueueError::invalid(
                "limit",
                format!("must be between 1 and {MAX_GROUPS}"),
            ));
        }
        Ok(sqlx::query_as(GROUPS_SQL)
            .bind(since)
            .bind(queue)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }
}
