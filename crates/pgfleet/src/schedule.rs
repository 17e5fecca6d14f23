//! `pgfleet schedule ...`: periodic jobs (list, put, pause, resume, delete, apply a file).

use std::path::PathBuf;

use pgfleet_app::declared::Declared;
use pgfleet_queue::schedule::{Misfire, NewSchedule, Schedule, DEFAULT_CATCH_UP};
use pgfleet_queue::Queue;

use crate::database::DbArgs;
use crate::enqueue::JobFlags;

/// `pgfleet schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ScheduleCommand {
    /// Every schedule with its next and last run and its last job's state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a schedule.
    Put(PutArgs),
    /// Stop a schedule's ticks until it is resumed.
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Resume a paused schedule (missed ticks follow its misfire policy).
    Resume {
        /// Schedule name.
        name: String,
    },
    /// Delete a schedule (the jobs it enqueued stay).
    Delete {
        /// Schedule name.
        name: String,
    },
    /// Create or replace every schedule and queue limit of a YAML file.
    Apply {
        /// The file (`schedules:` and `limits:`; see samples/schedules/dev.yaml).
        file: PathBuf,
        /// Also delete schedules the file does not name.
        #[arg(long)]
        prune: bool,
    },
}

/// `pgfleet schedule put`.
#[derive(Debug, clap::Args)]
struct PutArgs {
    /// Schedule name.
    name: String,
    /// Cron expression (5 fields, or 6 with seconds first; `@daily`...) or `@every 30s`.
    #[arg(long)]
    cron: String,
    /// IANA time zone the expression is evaluated in.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Job kind.
    #[arg(long)]
    kind: String,
    #[command(flatten)]
    job: JobFlags,
    /// Missed ticks: skip, run-once or catch-up (with --catch-up N).
    #[arg(long, default_value = "run-once", value_parser = ["skip", "run-once", "catch-up"])]
    misfire: String,
    /// With --misfire catch-up: run at most this many missed ticks.
    #[arg(long, default_value_t = DEFAULT_CATCH_UP)]
    catch_up: u32,
}

impl PutArgs {
    fn schedule(&self) -> anyhow::Result<NewSchedule> {
        let job = self.job.job(&self.kind)?;
        let mut s = NewSchedule::new(&self.name, &self.cron, job);
        s.timezone = self.timezone.clone();
        s.misfire = match self.misfire.as_str() {
            "skip" => Misfire::Skip,
            "catch-up" => Misfire::CatchUp(self.catch_up),
            _ => Misfire::RunOnce,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Runs `pgfleet schedule ...`.
///
/// # Errors
/// Invalid input (named field), an unknown schedule, or an unreachable database.
pub async fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    // Check what can be checked before connecting.
    let mut put = None;
    let mut declared = None;
    match &args.command {
        ScheduleCommand::Put(p) => put = Some(p.schedule()?),
        ScheduleCommand::Apply { file, .. } => declared = Some(Declared::load(file)?),
        _ => {}
    }
    let queue = Queue::new(args.db.connect().await?).await?;
    let result = async {
        match args.command {
            ScheduleCommand::List { json } => {
                let all = queue.schedules().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    print_table(&all);
                }
            }
            ScheduleCommand::Put(_) => {
                if let Some(s) = put {
                    let stored = queue.put_schedule(&s).await?;
                    println!(
                        "schedule {} next runs at {}",
                        stored.name, stored.next_run_at
                    );
                }
            }
            ScheduleCommand::Pause { name } => switch(&queue, &name, true).await?,
            ScheduleCommand::Resume { name } => switch(&queue, &name, false).await?,
            ScheduleCommand::Delete { name } => {
                anyhow::ensure!(queue.delete_schedule(&name).await?, "no schedule {name:?}");
                println!("schedule {name} deleted");
            }
            ScheduleCommand::Apply { file, prune } => {
                let a = declared.unwrap_or_default().apply(&queue, prune).await?;
                println!(
                    "{}: {} schedules, limits of {} queues applied{}",
                    file.display(),
                    a.schedules,
                    a.limits,
                    if a.pruned.is_empty() {
                        String::new()
                    } else {
                        format!("; deleted {}", a.pruned.join(", "))
                    }
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    queue.close().await;
    result
}

async fn switch(queue: &Queue, name: &str, paused: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        queue.set_schedule_paused(name, paused).await?,
        "no schedule {name:?}"
    );
    println!(
        "schedule {name} {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}

/// The schedules as a table (also part of `pgfleet status`).
pub fn print_table(all: &[Schedule]) {
    println!(
        "{:<24} {:<18} {:<16} {:<20} {:<26} {:<26} LAST JOB",
        "SCHEDULE", "CRON", "ZONE", "QUEUE/KIND", "NEXT RUN", "LAST RUN"
    );
    for s in all {
        let next = if s.paused {
            "paused".to_owned()
        } else {
            s.next_run_at
                .format("%Y-%m-%d %H:%M:%S%.3f UTC")
                .to_string()
        };
        let last = s.last_run_at.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
        });
        let job = match (s.last_job_id, &s.last_job_state) {
            (Some(id), Some(state)) => format!("{id} {state}"),
            (Some(id), None) => format!("{id} (pruned)"),
            _ => "-".to_owned(),
        };
        println!(
            "{:<24} {:<18} {:<16} {:<20} {:<26} {:<26} {}",
            s.name,
            s.spec,
            s.timezone,
            format!("{}/{}", s.queue, s.kind),
            next,
            last,
            job
        );
    }
}
