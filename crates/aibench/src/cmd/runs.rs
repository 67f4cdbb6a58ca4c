//! `aibench runs`: list the runs in the catalog under a results root.

use std::path::PathBuf;

use aibench_results::Status;
use clap::builder::TypedValueParser as _;

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
The catalog is <results root>/catalog.sqlite; each `aibench run` adds its run when it ends.
Before listing, run directories under the root that the catalog is missing (copied in, or
interrupted before the end) are indexed, and runs whose directory is gone are dropped.
A run's id works wherever `aibench compare` takes a run directory.

Examples:
  aibench runs
  aibench runs --recipe 'vllm-*' --since 7d --status completed
  aibench runs --service vllm --root /scratch/results --json";

/// `--status`: the statuses a run ends with (or `running`), listed in `--help`.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = Status> {
    clap::builder::PossibleValuesParser::new(["running", "completed", "failed", "interrupted"])
        .try_map(|s| s.parse::<Status>())
}

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct RunsArgs {
    /// The results root holding the run directories and catalog.sqlite.
    #[arg(
        long,
        value_name = "DIR",
        env = "AIBENCH_RESULTS",
        default_value = "results"
    )]
    pub root: PathBuf,
    /// Only runs of this recipe (its `name`; `*` matches anything).
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<String>,
    /// Only runs started since this UTC date or time (`2026-11-23`, `2026-11-23T14:00`) or
    /// within this age (`12h`, `7d`).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only runs that ended so (or are still running).
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub status: Option<Status>,
    /// Only runs that deployed a service of this kind (`vllm`) or name (`llm`).
    #[arg(long, value_name = "KIND")]
    pub service: Option<String>,
    /// Print the runs as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs) -> anyhow::Result<Outcome> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let since = match &args.since {
        Some(s) => match aibench_report::catalog::parse_since(s, now) {
            Ok(t) => Some(t),
            Err(e) => return Err(exit::bad_input(format!("--since {e}"))),
        },
        None => None,
    };
    if !args.root.is_dir() {
        return Err(exit::bad_input(format!(
            "the results root {} does not exist; give the folder runs are written to with \
             --root (or AIBENCH_RESULTS)",
            args.root.display()
        )));
    }
    aibench_report::catalog_sync(&args.root)?;
    let filter = aibench_report::RunFilter {
        recipe: args.recipe.clone(),
        since,
        status: args.status,
        service: args.service.clone(),
    };
    let mut runs = aibench_report::catalog_list(&args.root, &filter)?;
    // A run still marked running whose aibench process is gone was abandoned (SIGKILL, a lost
    // node): say so rather than "running" forever.
    for r in runs.iter_mut().filter(|r| r.status == "running") {
        if crate::cmd::services::abandoned(&r.path).is_some() {
            r.status = "abandoned".into();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Outcome::Success);
    }
    if runs.is_empty() {
        eprintln!("no run matches under {}", args.root.display());
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.recipe.clone(),
                r.status.clone(),
                r.started_at_utc.clone(),
                r.services.join(" "),
                r.trials.to_string(),
                r.requests.to_string(),
                r.max_requests_per_s
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "–".into()),
                r.path.display().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(
            &[
                "id",
                "recipe",
                "status",
                "started (UTC)",
                "services",
                "trials",
                "requests",
                "best req/s",
                "path"
            ],
            &rows
        )
    );
    Ok(Outcome::Success)
}
