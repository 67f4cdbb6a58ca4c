//! `aibench report`: regenerate a run directory's reports from what it holds.

use std::path::PathBuf;

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
Reads run.json, resolved.yaml, each trial's summary.json, requests.jsonl and metrics/*.csv, and
writes report.json, report.md, report.html (self-contained: plots inline, no network needed)
and plots/*.svg and *.png into the run directory, replacing earlier ones. Nothing else in the
run directory changes, so reports can be regenerated after an upgrade or an interrupted run.

Examples:
  aibench report results/quickstart-20261123-140502
  aibench report results/*/ --quiet
  aibench report results/sweep-20261123-150000 --json | jq .sweeps[0].saturation";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ReportArgs {
    /// Run directories (as `aibench run` printed them).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub run_dirs: Vec<PathBuf>,
    /// Print report.json on stdout (one object per run directory, one per line with several).
    #[arg(long)]
    pub json: bool,
    /// Print only the paths of the reports written.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<Outcome> {
    let mut bad = false;
    for dir in &args.run_dirs {
        if !dir.join("run.json").is_file() && !dir.join("trials").is_dir() {
            eprintln!(
                "error: {} is not a run directory (no run.json, no trials/); give the folder \
                 `aibench run` printed, e.g. results/<recipe>-<time>",
                dir.display()
            );
            bad = true;
            continue;
        }
        let paths = aibench_report::write_reports(dir)?;
        let written: aibench_report::Report = serde_json::from_slice(&std::fs::read(&paths.json)?)?;
        if !written.damaged.is_empty() {
            eprintln!(
                "error: {}: run.json says trial{} {} finished, but {} summaries are missing or \
                 unreadable; the report leaves them out. `aibench run --resume {}` runs them again",
                dir.display(),
                if written.damaged.len() == 1 { "" } else { "s" },
                written.damaged.join(", "),
                if written.damaged.len() == 1 {
                    "its"
                } else {
                    "their"
                },
                dir.display()
            );
            bad = true;
        }
        // Keep the catalog of the results root in step, when there is one.
        if let Some(root) = dir
            .parent()
            .filter(|r| aibench_report::catalog_path(r).is_file())
        {
            if let Err(e) = aibench_report::catalog_add(root, dir) {
                eprintln!(
                    "warning: the catalog in {} was not updated: {e:#}",
                    root.display()
                );
            }
        }
        if args.json {
            let json = std::fs::read_to_string(&paths.json)?;
            let v: serde_json::Value = serde_json::from_str(&json)?;
            println!("{}", serde_json::to_string(&v)?);
            continue;
        }
        if args.quiet {
            println!("{}", paths.html.display());
            continue;
        }
        let report: aibench_report::Report = serde_json::from_slice(&std::fs::read(&paths.json)?)?;
        print!("{}", findings(&report));
        println!("report: {}", paths.html.display());
        println!("        {}", paths.markdown.display());
        println!(
            "        {} ({} plots)",
            paths.json.display(),
            paths.plots.len() / 2
        );
    }
    if bad {
        // Each was shown above; the others were reported.
        return Err(exit::shown_input());
    }
    Ok(Outcome::Success)
}

/// The findings in a few lines, for the terminal.
pub fn findings(r: &aibench_report::Report) -> String {
    use aibench_report::sweep::show_x;
    let mut out = String::new();
    out.push_str(&format!(
        "{}: {} trial{}, {}\n",
        r.run.run_id,
        r.trials.len(),
        if r.trials.len() == 1 { "" } else { "s" },
        aibench_report::model::status_text(r.run.status)
    ));
    for s in &r.sweeps {
        let show = |x: f64| show_x(x, &s.unit);
        out.push_str(&format!("  sweep of {} ({}):\n", s.parameter, s.workload));
        match &s.saturation {
            Some(p) => out.push_str(&format!(
                "    saturation knee   {} ({})\n",
                show(p.x),
                p.method.replace('_', " ")
            )),
            None => out.push_str("    saturation knee   none within the sweep\n"),
        }
        match s.slo_max_load.x {
            Some(x) => out.push_str(&format!("    max load in SLO   {}\n", show(x))),
            None => out.push_str(&format!(
                "    max load in SLO   none ({})\n",
                s.slo_max_load.evidence
            )),
        }
        if let Some(p) = &s.plateau {
            if p.reached {
                out.push_str(&format!(
                    "    plateau           {:.2} req/s from {}\n",
                    p.max_requests_per_s,
                    show(p.from_x)
                ));
            } else {
                out.push_str(&format!(
                    "    plateau           not reached (peak {:.2} req/s at {})\n",
                    p.max_requests_per_s,
                    show(p.from_x)
                ));
            }
        }
    }
    for v in &r.bottlenecks {
        out.push_str(&format!(
            "  {} ({:?}): {}\n",
            v.kind.label(),
            v.confidence,
            v.summary
        ));
    }
    out
}
