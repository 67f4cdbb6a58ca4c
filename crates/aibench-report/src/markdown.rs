//! `report.md`: the report as Markdown, plots linked from `plots/`.

use std::fmt::Write as _;

use crate::model::{status_text, Evidence, Report, SloSpec, SweepReport, TrialReport, Verdict};
use crate::sweep::latency_label;

/// A latency in milliseconds, or a dash.
pub(crate) fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

pub(crate) fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn opt_rate(v: Option<f64>) -> String {
    v.map(rate).unwrap_or_else(|| "–".into())
}

pub(crate) fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p >= 99.95 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.2}%")
    }
}

/// The objectives in words.
pub(crate) fn slo_text(s: &SloSpec) -> String {
    let mut per = Vec::new();
    let r = &s.per_request;
    for (n, v) in [
        ("TTFT", r.ttft_ms),
        ("TPOT", r.tpot_ms),
        ("ITL", r.itl_ms),
        ("E2E", r.e2e_ms),
    ] {
        if let Some(v) = v {
            per.push(format!("{n} ≤ {} ms", ms(Some(v))));
        }
    }
    let mut gates = Vec::new();
    for (n, v) in [
        ("TTFT p50", s.ttft_p50_ms),
        ("TTFT p90", s.ttft_p90_ms),
        ("TTFT p99", s.ttft_p99_ms),
        ("TPOT p99", s.tpot_p99_ms),
        ("ITL p99", s.itl_p99_ms),
        ("E2E p50", s.e2e_p50_ms),
        ("E2E p99", s.e2e_p99_ms),
    ] {
        if let Some(v) = v {
            gates.push(format!("{n} ≤ {} ms", ms(Some(v))));
        }
    }
    if let Some(e) = s.error_rate {
        gates.push(format!("error rate ≤ {}", pct(e)));
    }
    if let Some(t) = s.min_throughput_per_s {
        gates.push(format!("throughput ≥ {}/s", rate(t)));
    }
    if let Some(g) = s.min_goodput {
        gates.push(format!("goodput ≥ {}", pct(g)));
    }
    let mut out = Vec::new();
    if !per.is_empty() {
        out.push(format!("per request {}", per.join(", ")));
    }
    if !gates.is_empty() {
        out.push(format!("per trial {}", gates.join(", ")));
    }
    out.join("; ")
}

/// An evidence value with its unit, for reading.
pub(crate) fn evidence_value(e: &Evidence) -> String {
    let num = |v: f64| {
        if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let show = |v: f64| match e.unit.as_str() {
        "fraction" | "share" => pct(v),
        "ratio" => format!("×{v:.2}"),
        "" => num(v),
        u => format!("{} {u}", num(v)),
    };
    match e.threshold {
        Some(t) => format!("{} (threshold {})", show(e.value), show(t)),
        None => show(e.value),
    }
}

pub(crate) fn trial_name(r: &Report, t: &TrialReport) -> String {
    if r.trials
        .iter()
        .any(|o| o.id == t.id && o.workload != t.workload)
    {
        format!("{} / {}", t.id, t.workload)
    } else {
        t.id.clone()
    }
}

pub(crate) fn sweep_title(s: &SweepReport) -> String {
    let fixed: Vec<String> = s.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "`{}` swept{}{}",
        s.parameter,
        if s.workload.is_empty() {
            String::new()
        } else {
            format!(" for workload `{}`", s.workload)
        },
        if fixed.is_empty() {
            String::new()
        } else {
            format!(" ({})", fixed.join(", "))
        }
    )
}

fn verdict_md(md: &mut String, v: &Verdict) {
    let _ = writeln!(
        md,
        "- **{}** ({:?}; {}): {}.",
        v.kind.label(),
        v.confidence,
        v.trials
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", "),
        v.summary
    );
    for e in &v.evidence {
        let _ = writeln!(md, "  - {}: {} [{}]", e.metric, evidence_value(e), e.source);
    }
    let _ = writeln!(md, "  - *What to do*: {}", v.recommendation);
}

/// The report as Markdown.
pub fn render(r: &Report) -> String {
    let mut md = String::new();
    let run = &r.run;
    let _ = writeln!(md, "# {}: {}\n", run.name, run.run_id);
    let _ = writeln!(
        md,
        "Status: **{}**{}. Started {} on `{}` ({}, {} CPUs). aibench {} ({}).{}\n",
        status_text(run.status),
        run.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        run.started_at_utc,
        run.hostname,
        run.cpu_model,
        run.cpus,
        run.aibench_version,
        run.aibench_git,
        if run.services.is_empty() {
            String::new()
        } else {
            format!(
                " Services: {}.",
                run.services
                    .iter()
                    .map(|s| format!(
                        "`{}` ({}{})",
                        s.name,
                        s.kind,
                        s.model
                            .as_ref()
                            .map(|m| format!(", {m}"))
                            .unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );

    if let Some(c) = &run.calibration {
        let _ = writeln!(md, "{}\n", crate::sections::calibration(c));
    }

    // Answers first.
    let _ = writeln!(md, "## Findings\n");
    let finding = |md: &mut String, f: &crate::sections::Finding| {
        let _ = writeln!(md, "- **{}: {}**: {}.", f.key, f.value, f.explain);
    };
    for s in &r.sweeps {
        let _ = writeln!(md, "**{}**\n", sweep_title(s));
        for f in crate::sections::sweep_findings(s) {
            finding(&mut md, &f);
        }
        let _ = writeln!(md);
    }
    if let ([], [t]) = (r.sweeps.as_slice(), r.trials.as_slice()) {
        for f in crate::sections::trial_findings(t) {
            finding(&mut md, &f);
        }
        let _ = writeln!(md);
    }
    if r.bottlenecks.is_empty() {
        let _ = writeln!(md, "{}\n", crate::sections::no_bottleneck(r));
    } else {
        let _ = writeln!(md, "**Bottlenecks**\n");
        for v in &r.bottlenecks {
            verdict_md(&mut md, v);
        }
        let _ = writeln!(md);
    }

    // The per-trial table.
    let _ = writeln!(md, "## Trials\n");
    if let Some(slo) = &r.slo {
        let _ = writeln!(md, "Objectives: {}.\n", slo_text(slo));
    }
    let _ = writeln!(
        md,
        "{}\n\n{}",
        crate::sections::TRIALS_ABOUT,
        crate::sections::trials(r).markdown().trim_end()
    );
    let errors: Vec<String> = crate::sections::errors_by_class(r)
        .into_iter()
        .map(|(trial, classes)| format!("- `{trial}`: {classes}"))
        .collect();
    if let Some(table) = crate::operations::table(r) {
        let _ = writeln!(
            md,
            "\n## Operations\n\n{}\n\n{}",
            crate::operations::ABOUT,
            table.markdown()
        );
    }
    if !errors.is_empty() {
        let _ = writeln!(md, "\n## Errors by class\n\n{}", errors.join("\n"));
    }

    for s in &r.sweeps {
        let _ = writeln!(
            md,
            "\n## Sweep: {}\n\nThe knee is judged on {}.\n\n{}",
            sweep_title(s),
            latency_label(&s.latency_metric),
            crate::sections::sweep_points(s).markdown().trim_end()
        );
        for (name, k) in crate::sections::knees(s) {
            let _ = match k {
                Some((x, evidence)) => writeln!(md, "\n- {name}: {x}: {evidence}."),
                None => writeln!(md, "\n- {name}: none."),
            };
        }
    }

    let energy: Vec<String> = r
        .trials
        .iter()
        .filter_map(|t| {
            let e = crate::sections::energy(t)?;
            Some(format!("- `{}`: {e}", trial_name(r, t)))
        })
        .collect();
    if !energy.is_empty() {
        let _ = writeln!(
            md,
            "\n## GPU energy (measure window)\n\n{}",
            energy.join("\n")
        );
    }

    let trial_verdicts: Vec<&TrialReport> = r
        .trials
        .iter()
        .filter(|t| !t.bottlenecks.is_empty())
        .collect();
    if !trial_verdicts.is_empty() {
        let _ = writeln!(md, "\n## Bottlenecks by trial\n");
        for t in trial_verdicts {
            let _ = writeln!(md, "**`{}`**\n", trial_name(r, t));
            for v in &t.bottlenecks {
                verdict_md(&mut md, v);
            }
            let _ = writeln!(md);
        }
    }

    if !r.plots.is_empty() {
        let _ = writeln!(md, "\n## Plots\n");
        for p in &r.plots {
            let _ = writeln!(md, "![{}]({})\n", p.title, p.svg);
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(
        md,
        "\n## Files\n\n- `report.html`: this report with its plots inline, readable offline\n- `report.json`: every figure here, schema in `schema/report.schema.json`\n- `summary.csv`: one row per trial and workload\n- `trials/<trial>/summary.json`: every statistic, schema in `schema/summary.schema.json`\n- `trials/<trial>/requests.jsonl`: one line per request\n- `plots/`: each plot as SVG and PNG\n- `logs/`: service output and `events.jsonl`"
    );
    md
}
