//! `pgfleet workflow ...`: enqueue a workflow from a JSON file, show one, cancel one.

use std::path::PathBuf;

use anyhow::Context;
use pgfleet_queue::workflow::{Dep, NewWorkflow, Workflow, WorkflowJob};
use pgfleet_queue::{DependencyFailure, NewJob, Queue};
use serde::Deserialize;
use serde_json::Value;

use crate::database::DbArgs;

/// `pgfleet workflow`.
#[derive(Debug, clap::Args)]
pub struct WorkflowArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: WorkflowCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WorkflowCommand {
    /// Enqueue a workflow from a JSON file: `{"name", "jobs": [{"key", "kind", "queue",
    /// "payload", "depends_on": [keys or ids], "on_dependency_failure"}]}` (the body of
    /// `POST /v1/workflows`).
    Create {
        /// The file.
        file: PathBuf,
    },
    /// A workflow's state and jobs.
    Show {
        /// Workflow id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel what has not finished.
    Cancel {
        /// Workflow id.
        id: i64,
    },
}

/// A workflow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    jobs: Vec<FileJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJob {
    key: String,
    kind: String,
    #[serde(default = "default_queue")]
    queue: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    depends_on: Vec<Dep>,
    #[serde(default)]
    on_dependency_failure: DependencyFailure,
}

fn default_queue() -> String {
    "default".into()
}

/// Runs `pgfleet workflow`.
///
/// # Errors
/// A bad file (named field), an unknown workflow, or an unreachable database.
pub async fn run(args: WorkflowArgs) -> anyhow::Result<()> {
    let pool = args.db.connect().await?;
    let queue = Queue::new(pool).await?;
    match args.command {
        WorkflowCommand::Create { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let f: File = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a workflow", file.display()))?;
            let jobs = f
                .jobs
                .into_iter()
                .map(|j| {
                    let mut job =
                        NewJob::new(j.queue, j.kind).on_dependency_failure(j.on_dependency_failure);
                    if let Some(p) = j.payload {
                        job = job.payload(p);
                    }
                    WorkflowJob {
                        key: j.key,
                        job,
                        after: j.depends_on,
                    }
                })
                .collect();
            let out = queue
                .enqueue_workflow(&NewWorkflow { name: f.name, jobs })
                .await?;
            println!("workflow {}", out.id);
            for m in out.jobs {
                println!("  {:<24} job {:<10} {}", m.key, m.id, m.state);
            }
        }
        WorkflowCommand::Show { id, json } => {
            let wf = queue.workflow(id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&wf)?);
            } else {
                print(&wf);
            }
        }
        WorkflowCommand::Cancel { id } => print(&queue.cancel_workflow(id).await?),
    }
    Ok(())
}

fn print(wf: &Workflow) {
    println!("workflow {} {:?} {:?}", wf.id, wf.name, wf.state);
    for j in &wf.jobs {
        let deps: Vec<String> = j.depends_on.iter().map(i64::to_string).collect();
        println!(
            "  job {:<10} {:<24} {:<10} after [{}]",
            j.id,
            j.kind,
            j.state,
            deps.join(", ")
        );
    }
}
