//! `aibench compare`: headline metrics of runs side by side, and a regression gate for CI.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use aibench_report::compare::{self, Side, ThresholdOverrides, Thresholds};

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
The first input is the baseline and every other is compared with it; with --baseline, every
input is. An input is a run directory, a report.json or summary.json, or a run id from the
catalog (`aibench runs`; a unique prefix is enough). Trials are paired by id and workload.

A candidate regresses when a p99 latency grows more than --latency-p99 (10%), throughput falls
more than --throughput (10%), the success rate falls more than --success-rate (1 point), or an
error class appears that the baseline did not have. Thresholds come from these flags, else
from the candidate recipe's `regression:` section, else the defaults.

Noise: when both inputs are run directories, each gated change gets a 95% interval [low, high]
by block bootstrap over the per-request records (a second's requests resampled together). A
change is a REGRESSION only when its whole interval lies beyond the threshold; beyond the
threshold with an interval reaching back inside, it is marked `noise` and does not fail.
Repeats of a trial (`repeat: N` in the recipe) are pooled and resampled too, so the spread
between runs counts: with one run per side, only the noise within a run is known.

Exit codes: 0 no regression, 1 regression, 2 bad input.

Examples:
  aibench compare results/run-a results/run-b
  aibench compare quickstart-20261123-140502 quickstart-20261124-090000 --json
  aibench compare --baseline baseline/report.json results/ci-slo-gate-20261123-150000
  aibench compare old new --latency-p99 5% --throughput 5% --min-latency-delta 2ms";

fn percent(s: &str) -> Result<f64, String> {
    aibench_recipe::Percent::from_str(s)
        .map(|p| p.0)
        .or_else(|_| s.trim().parse::<f64>())
        .map_err(|_| format!("`{s}` is not a percentage; write e.g. `10%` or `10`"))
        .and_then(|v| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(format!("`{s}` must be zero or more"))
            }
        })
}

fn millis(s: &str) -> Result<f64, String> {
    aibench_recipe::Duration::from_str(s).map(|d| d.as_secs_f64() * 1000.0)
}

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct CompareArgs {
    /// Run directories, report.json or summary.json files, or catalog run ids.
    #[arg(required = true, value_name = "RUN")]
    pub inputs: Vec<String>,
    /// Compare every input with this baseline (a run directory, report.json or summary.json).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<String>,
    /// The results root whose catalog resolves run ids.
    #[arg(
        long,
        value_name = "DIR",
        env = "AIBENCH_RESULTS",
        default_value = "results"
    )]
    pub root: PathBuf,
    /// Largest allowed growth of any p99 latency.
    #[arg(long, value_name = "PCT", value_parser = percent)]
    pub latency_p99: Option<f64>,
    /// Largest allowed fall of requests/s or output tokens/s.
    #[arg(long, value_name = "PCT", value_parser = percent)]
    pub throughput: Option<f64>,
    /// Largest allowed fall of the success rate, in percentage points.
    #[arg(long, value_name = "PCT", value_parser = percent)]
    pub success_rate: Option<f64>,
    /// Do not count an error class new in the candidate as a regression.
    #[arg(long)]
    pub allow_new_errors: bool,
    /// Ignore latency growth smaller than this (e.g. `2ms`), however large in percent.
    #[arg(long, value_name = "DURATION", value_parser = millis)]
    pub min_latency_delta: Option<f64>,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An input as a path: itself when it exists, else a catalog id.
fn resolve(input: &str, root: &Path) -> Result<PathBuf, String> {
    let p = PathBuf::from(input);
    if p.exists() {
        return Ok(p);
    }
    match aibench_report::catalog_find(root, input) {
        Ok(Some(dir)) => Ok(dir),
        Ok(None) => Err(format!(
            "`{input}` is neither a file, a run directory, nor a run id in {} (see `aibench runs --root {}`)",
            aibench_report::catalog_path(root).display(),
            root.display()
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let mut names: Vec<&str> = Vec::new();
    if let Some(b) = &args.baseline {
        names.push(b);
    }
    names.extend(args.inputs.iter().map(String::as_str));
    if names.len() < 2 {
        return Err(exit::bad_input(
            "give at least two runs to compare, or one with --baseline FILE",
        ));
    }
    let mut sides: Vec<Side> = Vec::new();
    for n in names {
        let loaded =
            resolve(n, &args.root).and_then(|p| compare::load(&p).map_err(|e| e.to_string()));
        sides.push(loaded.map_err(exit::bad_input)?);
    }
    let baseline = sides.remove(0);
    // Thresholds: defaults, then the candidate's (or baseline's) recipe, then flags.
    let recipe = sides
        .iter()
        .rev()
        .chain(std::iter::once(&baseline))
        .find_map(|s| s.recipe.as_ref());
    let from_recipe = match recipe.map(compare::recipe_overrides).transpose() {
        Ok(o) => o.unwrap_or_default(),
        Err(e) => return Err(exit::bad_input(e.to_string())),
    };
    let flags = ThresholdOverrides {
        latency_p99_pct: args.latency_p99,
        throughput_pct: args.throughput,
        success_rate_pct: args.success_rate,
        new_error_class: args.allow_new_errors.then_some(false),
        min_latency_delta_ms: args.min_latency_delta,
    };
    let thresholds = Thresholds::default().apply(&from_recipe).apply(&flags);
    let result = compare::compare(&baseline, &sides, &thresholds);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", compare::render_text(&result));
    }
    Ok(if result.regression {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
