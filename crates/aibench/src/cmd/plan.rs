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
    println!("\n{}", estimate(&loaded, &plan));
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

/// How long the run will take: the load of every trial (its longest workload, as a trial's
/// workloads run at once), and how many times services start.
fn estimate(loaded: &aibench_recipe::Loaded, plan: &aibench_plan::Plan) -> String {
    let mut total = std::time::Duration::ZERO;
    let mut open_ended = 0;
    for t in &loaded.trials {
        let times: Vec<_> = t.recipe.workloads.iter().map(|w| w.load_time()).collect();
        if times.iter().any(Option::is_none) {
            open_ended += 1;
        }
        total += times.into_iter().flatten().max().unwrap_or_default();
    }
    let starts = plan
        .trials
        .iter()
        .filter(|t| t.restart_services && !t.services.is_empty())
        .count();
    let secs = total.as_secs();
    let mut text = format!(
        "time: about {} of load{}",
        if secs >= 60 {
            format!("{}m {:02}s", secs / 60, secs % 60)
        } else {
            format!("{secs}s")
        },
        if open_ended > 0 {
            format!(
                ", plus {open_ended} trial{} that stop{} after a number of requests",
                if open_ended == 1 { "" } else { "s" },
                if open_ended == 1 { "s" } else { "" }
            )
        } else {
            String::new()
        }
    );
    if starts > 0 {
        text.push_str(&format!(
            ", and {starts} service start{} (each until healthy)",
            if starts == 1 { "" } else { "s" }
        ));
    }
    text
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| aibench_plan::kinds::shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}
