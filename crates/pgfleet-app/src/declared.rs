//! Schedules and queue limits declared in a YAML file, applied at start by `pgfleet dev`
//! and on demand by `pgfleet schedule apply`:
//!
//! ```yaml
//! schedules:
//!   - name: nightly-report
//!     cron: "0 3 * * *"
//!     timezone: Europe/Berlin
//!     kind: noop
//!     misfire: { policy: catch_up, max: 3 }
//! limits:
//!   emails: { concurrency: 3, rate: { per_second: 50 } }
//! ```
//!
//! Every entry is checked before anything is written; a bad one is an error naming the
//! entry and its field.

use std::collections::BTreeMap;
use std::path::Path;

use pgfleet_queue::flow::Limits;
use pgfleet_queue::schedule::{NewSchedule, ScheduleDoc};
use pgfleet_queue::{Queue, QueueError};
use serde::Deserialize;

/// Why a declaration file cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    /// Unreadable or not the expected YAML.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry is invalid.
    #[error("{path}: {entry}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// `schedules[2]` or `limits.emails`.
        entry: String,
        /// The field and why.
        source: QueueError,
    },
    /// Writing failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    schedules: Vec<ScheduleDoc>,
    #[serde(default)]
    limits: BTreeMap<String, Limits>,
}

/// A checked declaration file.
#[derive(Debug, Default)]
pub struct Declared {
    /// The schedules, validated.
    pub schedules: Vec<NewSchedule>,
    /// Limits by queue, validated.
    pub limits: BTreeMap<String, Limits>,
}

/// What [`Declared::apply`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Schedules created or replaced.
    pub schedules: usize,
    /// Schedules deleted because the file no longer has them (with `prune`).
    pub pruned: Vec<String>,
    /// Queues whose limits were set.
    pub limits: usize,
}

impl Declared {
    /// Reads and checks `path`; a missing file declares nothing.
    ///
    /// # Errors
    /// [`DeclaredError::File`] or [`DeclaredError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, DeclaredError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(DeclaredError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Parses and checks `text` (named `path` in errors).
    ///
    /// # Errors
    /// [`DeclaredError::File`] or [`DeclaredError::Invalid`].
    pub fn parse(path: &str, text: &str) -> Result<Self, DeclaredError> {
        let file: File = serde_yaml::from_str(text).map_err(|e| DeclaredError::File {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let invalid = |entry: String, source| DeclaredError::Invalid {
            path: path.into(),
            entry,
            source,
        };
        let mut schedules = Vec::with_capacity(file.schedules.len());
        for (i, doc) in file.schedules.into_iter().enumerate() {
            let s = doc
                .into_schedule(None)
                .map_err(|e| invalid(format!("schedules[{i}]"), e))?;
            if schedules.iter().any(|o: &NewSchedule| o.name == s.name) {
                let e = QueueError::invalid("name", format!("{:?} is declared twice", s.name));
                return Err(invalid(format!("schedules[{i}]"), e));
            }
            schedules.push(s);
        }
        for (queue, limits) in &file.limits {
            pgfleet_queue::job::validate_queue_name(queue)
                .and_then(|()| limits.validate())
                .map_err(|e| invalid(format!("limits.{queue}"), e))?;
        }
        Ok(Self {
            schedules,
            limits: file.limits,
        })
    }

    /// Writes every schedule and limit; with `prune`, deletes schedules the file does not
    /// name.
    ///
    /// # Errors
    /// [`DeclaredError::Queue`].
    pub async fn apply(&self, queue: &Queue, prune: bool) -> Result<Applied, DeclaredError> {
        let mut applied = Applied::default();
        for s in &self.schedules {
            queue.put_schedule(s).await?;
            applied.schedules += 1;
        }
        for (name, limits) in &self.limits {
            queue.set_limits(name, limits).await?;
            applied.limits += 1;
        }
        if prune {
            for s in queue.schedules().await? {
                if !self.schedules.iter().any(|d| d.name == s.name) {
                    queue.delete_schedule(&s.name).await?;
                    applied.pruned.push(s.name);
                }
            }
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_declares_schedules_and_limits() {
        let d = Declared::parse(
            "f.yaml",
            "schedules:\n  - name: nightly\n    cron: '0 3 * * *'\n    timezone: Europe/Berlin\n    kind: noop\n    misfire: { policy: catch_up, max: 3 }\nlimits:\n  emails: { concurrency: 3, rate: { per_second: 50 } }\n",
        )
        .unwrap();
        assert_eq!(d.schedules.len(), 1);
        assert_eq!(d.limits["emails"].concurrency, Some(3));
    }

    #[test]
    fn a_bad_entry_is_named_with_its_field() {
        let err = Declared::parse(
            "f.yaml",
            "schedules:\n  - {name: a, cron: '* * *', kind: k}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("f.yaml: schedules[0]: invalid cron"),
            "{err}"
        );
        let err = Declared::parse("f.yaml", "limits:\n  q: { concurrency: -1 }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f.yaml: limits.q: invalid concurrency"),
            "{err}"
        );
        let err = Declared::parse("f.yaml", "schedules:\n  - {cron: '@hourly', kind: k}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
        let twice = "schedules:\n  - {name: a, cron: '@hourly', kind: k}\n  - {name: a, cron: '@daily', kind: k}\n";
        assert!(Declared::parse("f.yaml", twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
