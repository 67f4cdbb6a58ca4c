//! aibench's analysis and report stage: it turns a run directory into answers.
//!
//! ```text
//! run dir --rundir--> RunData (run.json, resolved.yaml, summaries)
//!         --series--> per-second series and latency distributions (requests.jsonl)
//!         --metrics-> monitoring series on the workload's clock (metrics/*.csv)
//!         --slo, sweep, knee, bottleneck--> Report (report.json)
//!         --charts, plot--> plots/*.svg, plots/*.png
//!         --markdown, html--> report.md, report.html (self-contained, plots inline)
//! ```
//!
//! - [`write_reports`] regenerates every report of a run directory.
//! - [`compare`] compares runs and decides whether one regressed.
//! - [`catalog`] keeps the SQLite catalog of runs under a results root.

pub mod block;
pub mod bottleneck;
pub mod catalog;
pub mod charts;
pub mod compare;
pub mod error;
mod headline;
pub mod html;
pub mod knee;
pub mod markdown;
pub mod metrics;
pub mod model;
pub mod noise;
pub mod operations;
pub mod plot;
mod raster;
pub mod rundir;
pub mod sections;
pub mod series;
pub mod slo;
pub mod sweep;

use std::path::{Path, PathBuf};

pub use catalog::{
    catalog_add, catalog_find, catalog_list, catalog_path, catalog_sync, CatalogEntry, RunFilter,
};
pub use error::{ReportError, Result};
pub use model::{report_schema, Report, REPORT_SCHEMA_VERSION};

use model::TrialReport;
use rundir::RunData;

/// The files [`write_reports`] wrote.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// Every SVG and PNG under `plots/`.
    pub plots: Vec<PathBuf>,
}

/// What the analysis keeps besides `report.json`: the inputs of the plots.
#[derive(Debug, Clone, Default)]
pub struct TrialExtras {
    pub dists: series::Distributions,
    pub metrics: Option<metrics::TrialMetrics>,
}

/// A run analysed: the report and, per trial (same order), what its plots need.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub report: Report,
    pub extras: Vec<TrialExtras>,
    pub host_memory_bytes: u64,
}

/// Read and analyse a run directory (no file is written).
pub fn analyse(run_dir: &Path) -> Result<Analysis> {
    let data = RunData::read(run_dir)?;
    Ok(analyse_data(&data))
}

fn analyse_data(data: &RunData) -> Analysis {
    let mut notes = data.notes.clone();
    let spec = data.slo_spec();
    let mut trials = Vec::new();
    let mut extras = Vec::new();
    let mut missing_clock = Vec::new();
    let mut no_records = Vec::new();
    for t in &data.trials {
        let summary = t.summary.clone();
        if summary.stop_reason == Some(aibench_results::StopReason::Deadline) {
            notes.push(format!(
                "trial `{}` ({}): its hard deadline (`stop.max_duration`) passed before its plan \
                 ended; {} requests in flight were cancelled",
                t.id, t.workload, summary.counts.cancelled
            ));
        }
        if summary.stop_reason == Some(aibench_results::StopReason::Stalled) {
            notes.push(format!(
                "trial `{}` ({}): stopped because the service stalled: requests were in flight \
                 and none received a byte for `stop.stall`; {} requests in flight were \
                 cancelled",
                t.id, t.workload, summary.counts.cancelled
            ));
        }
        let records = series::analyse_records(&t.dir.join("requests.jsonl"), &summary);
        if records.is_none() {
            no_records.push(t.id.clone());
        }
        if let Some(r) = &records {
            if r.bad_lines > 0 {
                notes.push(format!(
                    "trial `{}`: {} unreadable lines in requests.jsonl were skipped",
                    t.id, r.bad_lines
                ));
            }
        }
        let start = data.trial_starts.get(&t.id).copied();
        let clock = metrics::Clock {
            run_started_at: data.run.started_at,
            workload_started_at: start.unwrap_or(data.run.started_at),
        };
        let m = metrics::read_dir(&t.trial_dir.join("metrics"), clock);
        if m.is_some() && start.is_none() {
            missing_clock.push(t.id.clone());
        }
        let (from, to) = summary
            .window
            .map(|w| (w.start_ms / 1000.0, w.end_ms / 1000.0))
            .unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let metric_summaries = m
            .as_ref()
            .map(|m| {
                m.series
                    .iter()
                    .filter_map(|s| s.summarise(from, to))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(m) = &m {
            for p in &m.problems {
                notes.push(format!("trial `{}`: {p}", t.id));
            }
        }
        let energy = m
            .as_ref()
            .and_then(|m| energy(&m.power, from, to, summary.tokens.output));
        let (timeseries, dists) = records.map(|r| (r.buckets, r.dists)).unwrap_or_default();
        trials.push(TrialReport {
            id: t.id.clone(),
            workload: t.workload.clone(),
            params: t.params.clone(),
            status: t.status,
            dir: t
                .dir
                .strip_prefix(&data.root)
                .unwrap_or(&t.dir)
                .display()
                .to_string(),
            headline: model::Headline::from_summary(&summary),
            slo: slo::outcome(spec.as_ref(), &summary),
            goodput: slo::goodput(&summary),
            timeseries,
            metrics: metric_summaries,
            energy,
            bottlenecks: Vec::new(),
            summary,
        });
        extras.push(TrialExtras { dists, metrics: m });
    }
    if !no_records.is_empty() {
        notes.push(format!(
            "no requests.jsonl for {}: per-second series and distributions are missing there \
             (`output.requests: false`?)",
            no_records.join(", ")
        ));
    }
    if !missing_clock.is_empty() {
        notes.push(format!(
            "the start of {} is not in logs/events.jsonl: its metrics are aligned to the run's \
             start and may be shifted against client latency",
            missing_clock.join(", ")
        ));
    }
    if data.trials.is_empty() {
        notes.push("no trial has a summary yet: the run produced no measurement".into());
    }
    if extras.iter().all(|x| x.metrics.is_none()) && !data.trials.is_empty() {
        notes.push(
            "no monitoring data (trials/<id>/metrics/*.csv): bottleneck verdicts rest on the \
             client's measurements alone"
                .into(),
        );
    }

    // Bottlenecks per trial, then along the sweep, then merged for the run.
    let mut all = Vec::new();
    for (i, t) in trials.iter_mut().enumerate() {
        let pattern = data.recipe.patterns.get(&t.workload).map(String::as_str);
        let open_loop = match pattern {
            Some(p) => p == "open-loop",
            // Without the recipe: a schedule that ran ahead of completions.
            None => t.summary.latency.send_lag.is_some() && t.summary.counts.dropped > 0,
        };
        let verdicts = bottleneck::trial_verdicts(&bottleneck::TrialInput {
            trial: t,
            metrics: extras[i].metrics.as_ref(),
            open_loop,
            host_memory_bytes: data.run.host.memory_bytes,
        });
        all.extend(verdicts.iter().cloned());
        t.bottlenecks = verdicts;
    }
    let sweeps = sweep::analyse(&trials);
    for s in &sweeps {
        all.extend(bottleneck::sweep_verdict(s));
    }
    let mut bottlenecks = bottleneck::merge(all);
    for v in &mut bottlenecks {
        v.trials.sort_by_key(|id| {
            trials
                .iter()
                .position(|t| &t.id == id)
                .unwrap_or(usize::MAX)
        });
    }
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        generated_by: format!("aibench {}", env!("CARGO_PKG_VERSION")),
        run: data.run_report(),
        slo: spec.filter(|s| !slo::is_empty(s)),
        trials,
        not_run: data.not_run.clone(),
        damaged: data.damaged.clone(),
        sweeps,
        bottlenecks,
        plots: Vec::new(),
        notes,
    };
    Analysis {
        report,
        extras,
        host_memory_bytes: data.run.host.memory_bytes,
    }
}

/// Energy from power samples over `[from, to]` (trapezoids between samples inside it).
fn energy(power: &[(f64, f64)], from: f64, to: f64, output_tokens: u64) -> Option<model::Energy> {
    let pts: Vec<(f64, f64)> = power
        .iter()
        .copied()
        .filter(|(t, w)| *t >= from && *t <= to && w.is_finite())
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let joules: f64 = pts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    let span = pts[pts.len() - 1].0 - pts[0].0;
    Some(model::Energy {
        joules,
        mean_power_watts: if span > 0.0 { joules / span } else { pts[0].1 },
        joules_per_output_token: (output_tokens > 0).then(|| joules / output_tokens as f64),
    })
}

pub(crate) use aibench_results::write_atomic;

/// Analyse a run directory and write `report.json`, `report.md`, `report.html` and
/// `plots/*.{svg,png}` into it, replacing earlier ones.
pub fn write_reports(run_dir: &Path) -> Result<ReportPaths> {
    let mut a = analyse(run_dir)?;
    let plots_dir = run_dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(ReportError::io("create", &plots_dir))?;
    let mut svgs = Vec::new();
    let mut paths = Vec::new();
    for fig in charts::figures(&a) {
        let svg = match fig.svg() {
            Ok(s) => s,
            Err(e) => {
                a.report
                    .notes
                    .push(format!("plot `{}` could not be drawn: {e}", fig.id));
                continue;
            }
        };
        let svg_path = plots_dir.join(format!("{}.svg", fig.id));
        let png_path = plots_dir.join(format!("{}.png", fig.id));
        write_atomic(&svg_path, svg.as_bytes()).map_err(ReportError::io("write", &svg_path))?;
        match fig.png() {
            Ok(png) => {
                write_atomic(&png_path, &png).map_err(ReportError::io("write", &png_path))?
            }
            Err(e) => a
                .report
                .notes
                .push(format!("plot `{}`: no PNG ({e})", fig.id)),
        }
        a.report.plots.push(model::PlotRef {
            id: fig.id.clone(),
            title: fig.title.clone(),
            svg: format!("plots/{}.svg", fig.id),
            png: format!("plots/{}.png", fig.id),
            trial: fig.trial.as_ref().map(|t| t.0.clone()),
            workload: fig.trial.as_ref().map(|t| t.1.clone()),
        });
        paths.push(svg_path);
        paths.push(png_path);
        svgs.push(svg);
    }
    // Plots of an earlier report may name trials that are gone. Removed after this report's
    // are written (each atomically), so that a report made at the same time never loses one.
    if let Ok(rd) = std::fs::read_dir(&plots_dir) {
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "svg" || x == "png") && !paths.contains(&p) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let json_path = run_dir.join("report.json");
    let md_path = run_dir.join("report.md");
    let html_path = run_dir.join("report.html");
    let json = serde_json::to_string_pretty(&a.report)
        .map_err(|e| ReportError::io("write", &json_path)(e.into()))?
        + "\n";
    write_atomic(&json_path, json.as_bytes()).map_err(ReportError::io("write", &json_path))?;
    write_atomic(&md_path, markdown::render(&a.report).as_bytes())
        .map_err(ReportError::io("write", &md_path))?;
    write_atomic(&html_path, html::render(&a.report, &svgs).as_bytes())
        .map_err(ReportError::io("write", &html_path))?;
    Ok(ReportPaths {
        json: json_path,
        markdown: md_path,
        html: html_path,
        plots: paths,
    })
}
