//! `pgfleet enqueue`: enqueue one job, or `--count N` copies in one statement.

use pgfleet_queue::{NewJob, Queue};

use crate::database::DbArgs;

/// `pgfleet enqueue`.
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Job kind (the built-in worker runs noop, sleep and fail).
    kind: String,
    #[command(flatten)]
    job: JobFlags,
    /// Unique key: enqueue is idempotent on it.
    #[arg(long)]
    unique_key: Option<String>,
    /// Run no earlier than this many seconds from now.
    #[arg(long)]
    delay_secs: Option<u64>,
    /// Enqueue this many copies (one statement per 10,000).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Wait for these jobs (ids, comma-separated or repeated): the job is blocked until
    /// each has finished.
    #[arg(long, value_delimiter = ',')]
    depends_on: Vec<i64>,
    /// When a dependency is discarded or cancelled: cancel this job too, or run it anyway.
    #[arg(long, default_value = "cancel", value_parser = ["cancel", "run"])]
    on_dependency_failure: String,
}

/// The flags that describe a job, shared by `pgfleet enqueue` and `pgfleet schedule put`.
#[derive(Debug, clap::Args)]
pub struct JobFlags {
    /// JSON payload.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Queue.
    #[arg(long, short, default_value = "default")]
    pub queue: String,
    /// Priority, 0 (highest) to 9.
    #[arg(long, allow_negative_numbers = true, default_value_t = pgfleet_queue::job::PRIORITY_DEFAULT)]
    pub priority: i16,
    /// Attempts before the job is discarded.
    #[arg(long, allow_negative_numbers = true, default_value_t = pgfleet_queue::job::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// Partition key (user id, event id...).
    #[arg(long)]
    pub partition_key: Option<String>,
}

impl JobFlags {
    /// A job of `kind` with these flags (not yet validated).
    ///
    /// # Errors
    /// A payload that is not JSON.
    pub fn job(&self, kind: &str) -> anyhow::Result<NewJob> {
        let mut job = NewJob::new(&self.queue, kind)
            .payload_json(&self.payload)?
            .priority(self.priority)
            .max_attempts(self.max_attempts);
        job.partition_key = self.partition_key.clone();
        Ok(job)
    }
}

/// Runs `pgfleet enqueue`.
///
/// # Errors
/// Invalid input (named field) or an unreachable database.
pub async fn run(args: EnqueueArgs) -> anyhow::Result<()> {
    let mut job = args.job.job(&args.kind)?;
    job.unique_key = args.unique_key.clone();
    job.depends_on = args.depends_on.clone();
    job.on_dependency_failure = args.on_dependency_failure.parse()?;
    if let Some(d) = args.delay_secs {
        job.run_at = Some(chrono::Utc::now() + chrono::Duration::seconds(d as i64));
    }
    job.validate()?;
    let pool = args.db.connect().await?;
    let queue = Queue::new(pool).await?;
    if args.count <= 1 {
        let e = queue.enqueue(job).await?;
        let note = if e.duplicate {
            " (already existed)"
        } else {
            ""
        };
        println!("job {} in partition {}{note}", e.id, e.partition);
    } else {
        let mut done = 0;
        while done < args.count {
            let n = (args.count - done).min(10_000);
            queue.enqueue_many(&vec![job.clone(); n]).await?;
            done += n;
        }
        println!("enqueued {done} jobs on {}", args.job.queue);
    }
    queue.close().await;
    Ok(())
}
