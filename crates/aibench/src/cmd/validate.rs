//! `aibench validate`: check recipes and report every problem at once.

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
Every problem is reported in one pass as `file:line:col: message (at path.to.key)`, with the
source line, a caret, and a fix. Errors go to stderr; exit code 0 means every recipe is valid,
2 means at least one is not.

Examples:
  aibench validate examples/quickstart.yaml
  aibench validate examples/*.yaml
  HF_TOKEN=... aibench validate recipes/vllm.yaml --json";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ValidateArgs {
    /// Recipe files to check.
    #[arg(required = true, value_name = "RECIPE")]
    pub recipes: Vec<PathBuf>,
    /// Print one JSON object per recipe on stdout (problems included) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<Outcome> {
    let mut ok = true;
    let mut reports = Vec::new();
    for path in &args.recipes {
        let result = if args.json {
            aibench_recipe::load_file(path)
        } else {
            super::load_recipe(path)
        };
        match result {
            Ok(loaded) => {
                let warnings = loaded.warnings.warning_count();
                let valid = !(args.deny_warnings && warnings > 0);
                ok &= valid;
                if args.json {
                    reports.push(json!({
                        "file": path.display().to_string(),
                        "valid": valid,
                        "name": loaded.recipe.name,
                        "trials": loaded.trials.len(),
                        "problems": problems(&loaded.warnings),
                    }));
                } else {
                    let trials = loaded.trials.len();
                    println!(
                        "{}: valid ({} service{}, {} workload{}, {trials} trial{}{})",
                        path.display(),
                        loaded.recipe.services.len(),
                        plural(loaded.recipe.services.len()),
                        loaded.recipe.workloads.len(),
                        plural(loaded.recipe.workloads.len()),
                        plural(trials),
                        if warnings > 0 {
                            format!(", {warnings} warning{}", plural(warnings))
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Err(e) => {
                ok = false;
                if args.json {
                    reports.push(json!({
                        "file": path.display().to_string(),
                        "valid": false,
                        "problems": problems(&e.diagnostics),
                    }));
                }
            }
        }
    }
    if args.json {
        let out = if reports.len() == 1 {
            reports.remove(0)
        } else {
            serde_json::Value::Array(reports)
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if !ok {
        return Err(exit::shown_input());
    }
    Ok(Outcome::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn problems(d: &aibench_recipe::Diagnostics) -> serde_json::Value {
    d.items
        .iter()
        .map(|d| {
            json!({
                "severity": if d.is_error() { "error" } else { "warning" },
                "line": d.pos.line,
                "column": d.pos.col,
                "path": d.path,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect()
}
