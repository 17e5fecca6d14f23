//! The queue's error type. Callers match on the variant to decide what to do: invalid
//! input is the caller's fault and nothing was written; database errors may be retried.

use thiserror::Error;

/// Everything that can go wrong in the queue library.
#[derive(Debug, Error)]
pub enum QueueError {
    /// A field of a request was invalid; nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, named as the API names it (`queue`, `max_attempts`, ...).
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A field deep in a request was invalid (`jobs[3].depends_on`); nothing was written.
    #[error("invalid {path}: {reason}")]
    InvalidAt {
        /// Where, as the API names it.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The job does not exist (or no longer exists).
    #[error("job {0} not found")]
    NotFound(i64),
    /// The job is in a state that does not allow the operation.
    #[error("job {id} is {state}: cannot {action}")]
    WrongState {
        /// The job.
        id: i64,
        /// Its current state.
        state: String,
        /// What was attempted.
        action: &'static str,
    },
    /// The worker no longer holds the job's attempt (its lease expired and it was rescued,
    /// or it was cancelled): whatever the handler wrote with it must roll back.
    #[error("job {0} is no longer held by this worker")]
    LeaseLost(i64),
    /// The install-time partition count differs from the one requested.
    #[error("partition count is fixed at install to {installed}; {requested} was requested")]
    PartitionCountMismatch {
        /// What the database was installed with.
        installed: u16,
        /// What this process asked for.
        requested: u16,
    },
    /// The schema has not been migrated yet.
    #[error("the pgfleet schema is not installed: run `pgfleet migrate`")]
    NotMigrated,
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The component is shutting down.
    #[error("shutting down")]
    Shutdown,
}

impl QueueError {
    /// Shorthand for [`QueueError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        QueueError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`QueueError::InvalidAt`].
    pub fn invalid_at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        QueueError::InvalidAt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A database error, or — when it is a refusal raised by pgfleet's SQL functions
    /// (`pgfleet.enqueue` and friends: SQLSTATE 22023, the field's path as DETAIL) —
    /// [`QueueError::InvalidAt`] naming the field.
    pub fn from_sql(e: sqlx::Error) -> Self {
        if let Some(db) = e
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        {
            if db.code() == "22023" {
                if let Some(rest) = db.message().strip_prefix("pgfleet.enqueue: ") {
                    let path = db.detail().unwrap_or("").to_owned();
                    let reason = rest
                        .strip_prefix(&format!("{path}: "))
                        .unwrap_or(rest)
                        .to_owned();
                    return QueueError::InvalidAt { path, reason };
                }
            }
        }
        QueueError::Database(e)
    }

    /// A short, bounded label for metrics (`invalid`, `not_found`, `database`, ...).
    pub fn metric_label(&self) -> &'static str {
        match self {
            QueueError::Invalid { .. } | QueueError::InvalidAt { .. } => "invalid",
            QueueError::NotFound(_) => "not_found",
            QueueError::WrongState { .. } => "wrong_state",
            QueueError::LeaseLost(_) => "lease_lost",
            QueueError::PartitionCountMismatch { .. } => "partition_count",
            QueueError::NotMigrated => "not_migrated",
            QueueError::Migrate(_) => "migrate",
            QueueError::Database(_) => "database",
            QueueError::Shutdown => "shutdown",
        }
    }
}

/// Result alias for the queue library.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
