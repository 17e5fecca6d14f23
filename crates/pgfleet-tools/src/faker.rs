//! `pgfleet faker`: bulk test data (seed 004's faker) — unsent outbound messages, each with
//! its `messages.deliver` job, inserted in batches with a progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use pgfleet_messages::NewMessage;
use pgfleet_queue::Queue;
use rand::Rng;

/// `pgfleet faker`.
#[derive(Debug, clap::Args)]
pub struct FakerArgs {
    /// PostgreSQL URL (falls back to DATABASE_URL, then to a running `pgfleet dev`).
    #[arg(
        long = "database-url",
        env = "PGFLEET_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// How many unsent messages to insert.
    #[arg(long)]
    messages: u64,
    /// Where the fake messages are to be POSTed (default: the worker's
    /// PGFLEET_MESSAGES_WEBHOOK_URL).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Queue of their delivery jobs.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Rows per transaction.
    #[arg(long, default_value_t = 5000)]
    batch: u64,
}

const WORDS: &[&str] = &[
    "order",
    "shipped",
    "your",
    "code",
    "is",
    "ready",
    "payment",
    "received",
    "reminder",
    "appointment",
    "tomorrow",
    "at",
    "thanks",
    "welcome",
    "back",
    "invoice",
    "due",
];

fn fake_message(rng: &mut impl Rng, url: Option<&String>) -> NewMessage {
    let words = rng.gen_range(4..12);
    let content: Vec<&str> = (0..words)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect();
    NewMessage {
        recipient: format!("+1555{:07}", rng.gen_range(0..10_000_000u32)),
        content: content.join(" "),
        webhook_url: url.cloned(),
    }
}

/// Runs `pgfleet faker`.
///
/// # Errors
/// Database failures or an invalid URL (nothing of the failing batch is written).
pub async fn run(args: FakerArgs) -> anyhow::Result<()> {
    let url = pgfleet_app::database::resolve_url(args.database_url.as_deref())?;
    let pool =
        pgfleet_app::database::connect_pool(pgfleet_app::database::options(&url)?, 10).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;
    let bar = ProgressBar::new(args.messages);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages ({per_sec}, eta {eta})",
    )?);
    let batch = args.batch.clamp(1, 10_000);
    let mut left = args.messages;
    let mut rng = rand::thread_rng();
    while left > 0 {
        let n = left.min(batch);
        let msgs: Vec<NewMessage> = (0..n)
            .map(|_| fake_message(&mut rng, args.webhook_url.as_ref()))
            .collect();
        let mut tx = pool.begin().await?;
        let (_, wakeups) =
            pgfleet_messages::store::create_in(&queue, &mut tx, &args.queue, &msgs).await?;
        queue.commit_and_wake(tx, wakeups).await?;
        bar.inc(n);
        left -= n;
    }
    bar.finish();
    queue.close().await;
    eprintln!("inserted {} unsent messages", args.messages);
    Ok(())
}
