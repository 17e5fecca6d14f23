//! `pgfleet-tools`: the developer tools, kept out of the production binary.
//!
//! `bench` (throughput and latency against a baseline measured in the same run), `chaos`
//! (nothing acknowledged is lost, whatever breaks), `loadsim` (signed webhooks at a fixed
//! rate) and `faker` (bulk test data). `pgfleet bench ...` and the others run this binary
//! when it sits next to `pgfleet` (as `cargo build` leaves them); the tools that start
//! worker or gateway processes run that `pgfleet`.

mod bench;
mod bench_console;
mod bench_fleet;
mod bench_flow;
mod bench_long_tx;
mod bench_push;
mod bench_workflow;
mod chaos;
mod faker;
mod loadsim;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// pgfleet's developer tools.
#[derive(Debug, Parser)]
#[command(name = "pgfleet-tools", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure throughput and latency against a baseline measured in the same run.
    Bench(bench::BenchArgs),
    /// Send signed webhooks while killing workers, cutting listeners and restarting
    /// PostgreSQL and the gateway; check nothing acknowledged was lost or duplicated.
    Chaos(chaos::ChaosArgs),
    /// Send signed random payment webhooks at a fixed rate and summarise the answers.
    Loadsim(loadsim::LoadsimArgs),
    /// Insert bulk test data (unsent outbound messages with their jobs).
    Faker(faker::FakerArgs),
}

/// The `pgfleet` binary the tools start worker and gateway processes from: `$PGFLEET_BIN`,
/// else the `pgfleet` next to this executable.
///
/// # Errors
/// When there is none (build it: `cargo build -p pgfleet`).
pub fn pgfleet_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PGFLEET_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("current executable")?;
    let bin = me.with_file_name(format!("pgfleet{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it next to pgfleet-tools (cargo build -p pgfleet) or set PGFLEET_BIN",
        bin.display()
    );
    Ok(bin)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry = pgfleet_telemetry::init("pgfleet-tools");
    let result = match cli.command {
        Command::Bench(a) => bench::run(a).await,
        Command::Chaos(a) => chaos::run(a).await,
        Command::Loadsim(a) => loadsim::run(a).await,
        Command::Faker(a) => faker::run(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
