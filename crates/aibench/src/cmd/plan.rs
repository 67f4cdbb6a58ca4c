//! `aibench plan`: expand a recipe into its trials and show what would run where.

use std::path::PathBuf;

use crate::exit::{self, Outcome};
use crate::table;

const AFTER_HELP: &str = "\
Each trial gets a stable id derived from its position and parameters, such as
`03_users=8_prompt_tokens=128`; results of the trial live under `trials/<id>/`.
Nothing is started.

Examples:
  aibench plan examples/quickstart.yaml
  aibench plan examples/sweep-saturation.yaml --json | jq '.trials[].id'";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct PlanArgs {
    /// The recipe to plan.
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Print the plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    let Ok(loaded) = super::load_recipe(&args.recipe) else {
        return Err(exit::shown_input());
    };
    let plan = aibench_plan::plan(&loaded);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(Outcome::Success);
    }
    println!(
        "{}: {} trial{} on the {} platform\n",
        plan.name,
        plan.trials.len(),
        if plan.trials.len() == 1 { "" } else { "s" },
        plan.platform
    );
    let keys: Vec<String> = plan
        .trials
        .first()
        .map(|t| t.params.keys().cloned().collect())
        .unwrap_or_default();
    let mut header: Vec<&str> = vec!["trial"];
    header.extend(keys.iter().map(String::as_str));
    header.push("services");
    let rows: Vec<Vec<String>> = plan
        .trials
        .iter()
        .map(|t| {
            let mut row = vec![t.id.clone()];
            row.extend(t.params.values().map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }));
            row.push(if t.restart_services {
                "start".into()
            } else {
                "keep".into()
            });
            row
        })
        .collect();
    print!("{}", table::render(&header, &rows));
    if let Some(first) = plan.trials.first() {
        if !first.services.is_empty() {
            println!("\nservices (first trial):");
            for s in &first.services {
                let cmd = if s.shell {
                    s.argv.join(" ")
                } else {
                    shell_words(&s.argv)
                };
                let health = match &s.health.path {
                    Some(p) => format!("{} {p}", s.health.check),
                    None => s.health.check.to_string(),
                };
                println!(
                    "  {} ({}, {} replica{}, health: {health})",
                    s.name,
                    s.kind,
                    s.replicas,
                    if s.replicas == 1 { "" } else { "s" }
                );
                for step in &s.setup {
                    println!("    setup: {}", shell_words(step));
                }
                println!("    $ {cmd}");
            }
        }
        if !first.workloads.is_empty() {
            println!("\nworkloads (first trial):");
            for w in &first.workloads {
                println!(
                    "  {} -> {} ({}): {}; {}",
                    w.name, w.target, w.protocol, w.load, w.stop
                );
            }
        }
    }
    Ok(Outcome::Success)
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() {
                "''".to_string()
            } else if a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=${}@%+,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
