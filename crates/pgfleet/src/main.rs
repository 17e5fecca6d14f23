//! `pgfleet`: one binary for every pgfleet component.
//!
//! Subcommands: `dev` (everything on a laptop, on an embedded PostgreSQL by default),
//! `migrate`, `enqueue`, `worker`, `gateway`, `status`, `vapid`, `controller`, `crd`, `pools`;
//! `bench`, `loadsim`, `faker` and `chaos` run the `pgfleet-tools` binary next to this one
//! (not shipped in the production image). The components are assembled by `pgfleet-app`;
//! this crate is its command line. Settings come from flags or from
//! `PGFLEET_*` environment variables; the database from `--database-url`,
//! `PGFLEET_DATABASE_URL` or `DATABASE_URL`.

mod controller;
mod database;
mod delivery;
mod dev;
mod enqueue;
mod gateway;
mod queues;
mod schedule;
mod status;
mod tools;
mod worker;
mod workflow;

use clap::{Parser, Subcommand};

/// pgfleet: background jobs on PostgreSQL, operated the Kubernetes way.
#[derive(Debug, Parser)]
#[command(name = "pgfleet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run pgfleet locally: a private PostgreSQL (unless DATABASE_URL is set), migrations and
    /// a worker serving the default queues.
    Dev(dev::DevArgs),
    /// Apply database migrations (idempotent, safe to run concurrently).
    Migrate(migrate::MigrateArgs),
    /// Enqueue jobs.
    Enqueue(enqueue::EnqueueArgs),
    /// Run a worker.
    Worker(worker::WorkerArgs),
    /// Run the HTTP gateway (webhooks, jobs API, OpenAPI at /docs).
    Gateway(gateway::GatewayArgs),
    /// Show queue statistics, limits, schedules, workers and partition ownership.
    Status(status::StatusArgs),
    /// Periodic jobs: list, put, pause, resume, delete, apply a file.
    Schedule(schedule::ScheduleArgs),
    /// A queue's flow control: concurrency and rate limits, fairness.
    Queue(queues::QueueArgs),
    /// Workflows: create from a file, show, cancel.
    Workflow(workflow::WorkflowArgs),
    /// Measure throughput and latency against a baseline measured in the same run
    /// (runs pgfleet-tools).
    #[command(disable_help_flag = true)]
    Bench(tools::ToolArgs),
    /// Send signed random payment webhooks at a fixed rate and summarise the answers
    /// (runs pgfleet-tools).
    #[command(disable_help_flag = true)]
    Loadsim(tools::ToolArgs),
    /// VAPID keys for Web Push.
    Vapid(delivery::VapidArgs),
    /// Insert bulk test data (unsent outbound messages with their jobs; runs pgfleet-tools).
    #[command(disable_help_flag = true)]
    Faker(tools::ToolArgs),
    /// Run the WorkerPool controller (Kubernetes operator) with leader election.
    Controller(controller::ControllerArgs),
    /// Print the WorkerPool CustomResourceDefinition as YAML (`--apply`: install or upgrade it
    /// in the cluster with server-side apply).
    Crd(controller::CrdArgs),
    /// Manage WorkerPools through the Kubernetes API (the chart's uninstall hook).
    Pools(controller::PoolsArgs),
    /// Send signed webhooks while killing workers, cutting listeners and restarting
    /// PostgreSQL and the gateway; check nothing acknowledged was lost or duplicated
    /// (runs pgfleet-tools).
    #[command(disable_help_flag = true)]
    Chaos(tools::ToolArgs),
}

mod migrate {
    use crate::database::DbArgs;

    /// `pgfleet migrate`.
    #[derive(Debug, clap::Args)]
    pub struct MigrateArgs {
        #[command(flatten)]
        pub db: DbArgs,
        /// Partition count for a new install (fixed afterwards).
        #[arg(long, env = "PGFLEET_PARTITIONS")]
        pub partitions: Option<u16>,
    }

    pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
        let pool = args.db.connect().await?;
        let p = pgfleet_queue::migrate::migrate(&pool, args.partitions).await?;
        println!("pgfleet schema is up to date ({} partitions)", p.get());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let component = match &cli.command {
        Command::Dev(_) => "pgfleet-dev",
        Command::Gateway(_) => "pgfleet-gateway",
        Command::Worker(_) => "pgfleet-worker",
        Command::Controller(_) => "pgfleet-controller",
        _ => "pgfleet-cli",
    };
    let _telemetry = pgfleet_telemetry::init(component);
    let result = match cli.command {
        Command::Dev(a) => dev::run(a).await,
        Command::Migrate(a) => migrate::run(a).await,
        Command::Enqueue(a) => enqueue::run(a).await,
        Command::Worker(a) => worker::run(a).await,
        Command::Gateway(a) => gateway::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Schedule(a) => schedule::run(a).await,
        Command::Queue(a) => queues::run(a).await,
        Command::Workflow(a) => workflow::run(a).await,
        Command::Bench(a) => tools::run("bench", a),
        Command::Loadsim(a) => tools::run("loadsim", a),
        Command::Vapid(a) => delivery::run(a),
        Command::Faker(a) => tools::run("faker", a),
        Command::Controller(a) => controller::run(a).await,
        Command::Crd(a) => controller::crd(a).await,
        Command::Pools(a) => controller::pools(a).await,
        Command::Chaos(a) => tools::run("chaos", a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A token cancelled when SIGINT or SIGTERM arrives.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
