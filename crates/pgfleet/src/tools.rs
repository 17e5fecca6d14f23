//! `pgfleet bench | chaos | loadsim | faker`: run by the `pgfleet-tools` binary, which is
//! built next to this one but not shipped in the production image.

use std::path::PathBuf;

use anyhow::Context;

/// Everything after the subcommand, passed through to `pgfleet-tools`.
#[derive(Debug, clap::Args)]
pub struct ToolArgs {
    /// The tool's arguments (`pgfleet <tool> --help` shows them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `$PGFLEET_TOOLS_BIN`, else the `pgfleet-tools` next to this executable.
fn tools_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PGFLEET_TOOLS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("current executable")?;
    Ok(me.with_file_name(format!("pgfleet-tools{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs `pgfleet-tools <tool> <args>` and exits with its status.
///
/// # Errors
/// When `pgfleet-tools` is missing or cannot start.
pub fn run(tool: &str, args: ToolArgs) -> anyhow::Result<()> {
    let bin = tools_bin()?;
    anyhow::ensure!(
        bin.exists(),
        "`pgfleet {tool}` needs the pgfleet-tools binary, not found at {} (build it: \
         cargo build -p pgfleet-tools; the production image does not ship it)",
        bin.display()
    );
    let status = std::process::Command::new(&bin)
        .arg(tool)
        .args(&args.args)
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if status.success() {
        Ok(())
    } else {
        std::process::exit(status.code().unwrap_or(1))
    }
}
