//! `pgfleet queue limits`: show or set a queue's flow control at run time.

use pgfleet_queue::flow::{FlowStatus, Limits, Rate};
use pgfleet_queue::Queue;

use crate::database::DbArgs;

/// `pgfleet queue`.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Debug, clap::Subcommand)]
enum QueueCommand {
    /// Show a queue's limits, or set them (all at once: a flag left out is removed).
    Limits(LimitArgs),
}

/// `pgfleet queue limits`.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Queue name.
    name: String,
    /// At most this many of the queue's jobs running at once, across the fleet.
    #[arg(long, allow_negative_numbers = true)]
    concurrency: Option<i32>,
    /// At most this many jobs per partition key running at once.
    #[arg(long, allow_negative_numbers = true)]
    key_concurrency: Option<i32>,
    /// Jobs of the queue started per second (fleet-wide).
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Jobs that may start at once under --rate (default: one second's worth).
    #[arg(long, allow_negative_numbers = true, requires = "rate")]
    burst: Option<i32>,
    /// Jobs per partition key started per second.
    #[arg(long, allow_negative_numbers = true)]
    key_rate: Option<f64>,
    /// Burst of --key-rate.
    #[arg(long, allow_negative_numbers = true, requires = "key_rate")]
    key_burst: Option<i32>,
    /// Claim round-robin across partition keys.
    #[arg(long)]
    fair: bool,
    /// Lift every limit.
    #[arg(long, conflicts_with_all = ["concurrency", "key_concurrency", "rate", "key_rate", "fair"])]
    none: bool,
}

impl LimitArgs {
    /// The limits the flags ask for, or `None` when they only ask to show them.
    fn limits(&self) -> Option<Limits> {
        let rate = |r: Option<f64>, burst| r.map(|per_second| Rate { per_second, burst });
        let l = Limits {
            concurrency: self.concurrency,
            key_concurrency: self.key_concurrency,
            rate: rate(self.rate, self.burst),
            key_rate: rate(self.key_rate, self.key_burst),
            fair: self.fair,
        };
        (self.none || l.is_flow()).then_some(l)
    }
}

/// Runs `pgfleet queue ...`.
///
/// # Errors
/// Invalid limits (named field) or an unreachable database.
pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let QueueCommand::Limits(l) = args.command;
    pgfleet_queue::job::validate_queue_name(&l.name)?;
    let wanted = l.limits();
    if let Some(w) = &wanted {
        w.validate()?;
    }
    let queue = Queue::new(args.db.connect().await?).await?;
    let status = match wanted {
        Some(w) => queue.set_limits(&l.name, &w).await,
        None => queue.limits(&l.name).await,
    };
    queue.close().await;
    println!("{}", describe(&status?));
    Ok(())
}

/// One line: a queue's limits and what they hold now.
pub fn describe(s: &FlowStatus) -> String {
    let l = &s.limits;
    if !l.is_flow() {
        return format!("{}: no limits", s.queue);
    }
    let mut parts = Vec::new();
    if let Some(c) = l.concurrency {
        parts.push(format!("concurrency {}/{c}", s.running));
    } else {
        parts.push(format!("running {}", s.running));
    }
    if let Some(c) = l.key_concurrency {
        parts.push(format!("per key {c}"));
    }
    if let Some(r) = &l.rate {
        let tokens = s.tokens.map_or(String::new(), |t| format!(", {t} tokens"));
        parts.push(format!(
            "rate {}/s burst {}{tokens}",
            r.per_second,
            r.burst()
        ));
    }
    if let Some(r) = &l.key_rate {
        parts.push(format!(
            "per key rate {}/s burst {}",
            r.per_second,
            r.burst()
        ));
    }
    if l.fair {
        parts.push("fair".into());
    }
    format!("{}: {}", s.queue, parts.join(", "))
}
