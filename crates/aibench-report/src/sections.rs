//! The report's sections as format-neutral blocks (see `block`), built once from the report and
//! drawn by both `markdown` and `html`.

use crate::block::{Cell, Table};
use crate::markdown::{ms, opt_rate, pct, rate};
use crate::model::{status_text, Report, SweepReport, TrialReport};
use crate::sweep::show_x;

/// What the trials table's columns mean.
pub const TRIALS_ABOUT: &str = "Latencies in milliseconds from the actual send; `E2E* p99` is \
measured from the intended send time, so client-side queueing cannot hide. TPOT and ITL follow \
vLLM's definitions. `lag p99` is the client's own send lag.";

/// One row per trial and workload: counts, rates, latency percentiles and, when the recipe has
/// SLOs, goodput and the verdict.
pub fn trials(r: &Report) -> Table {
    let has_slo = r.trials.iter().any(|t| t.slo.evaluated);
    let mut header = vec![
        "trial",
        "workload",
        "status",
        "requests",
        "success",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "ITL p99",
        "E2E p50",
        "E2E p99",
        "E2E* p99",
        "lag p99",
    ];
    if has_slo {
        header.extend(["goodput/s", "SLO"]);
    }
    let right = header
        .iter()
        .map(|h| !matches!(*h, "trial" | "workload" | "status" | "SLO"))
        .collect();
    let rows = r
        .trials
        .iter()
        .map(|t| {
            let h = &t.headline;
            let text = Cell::Text;
            let mut row = vec![
                Cell::Code(t.id.clone()),
                text(t.workload.clone()),
                Cell::Status(status_text(t.status)),
                text(h.requests.to_string()),
                text(pct(h.success_rate)),
                text(rate(h.requests_per_s)),
                text(rate(h.output_tokens_per_s)),
                text(ms(h.ttft_p50_ms)),
                text(ms(h.ttft_p99_ms)),
                text(ms(h.tpot_p50_ms)),
                text(ms(h.tpot_p99_ms)),
                text(ms(h.itl_p99_ms)),
                text(ms(h.e2e_p50_ms)),
                text(ms(h.e2e_p99_ms)),
                text(ms(h.e2e_from_intended_p99_ms)),
                text(ms(h.send_lag_p99_ms)),
            ];
            if has_slo {
                row.push(text(opt_rate(h.goodput_per_s)));
                row.push(if t.slo.evaluated {
                    Cell::Verdict {
                        passed: t.slo.passed,
                        detail: t.slo.failures.join("; "),
                    }
                } else {
                    text("–".into())
                });
            }
            row
        })
        .chain(r.not_run.iter().map(|t| {
            let mut row = vec![
                Cell::Code(t.id.clone()),
                Cell::Text("–".into()),
                Cell::Status("not run"),
            ];
            row.resize_with(header.len(), || Cell::Text("–".into()));
            row
        }))
        .collect();
    Table {
        header,
        right,
        rows,
        marked: None,
    }
}

/// Errors by class, per trial that had any: the trial's name and `class count, ...`.
pub fn errors_by_class(r: &Report) -> Vec<(String, String)> {
    r.trials
        .iter()
        .filter(|t| !t.headline.errors_by_class.is_empty())
        .map(|t| {
            let classes: Vec<String> = t
                .headline
                .errors_by_class
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            (crate::markdown::trial_name(r, t), classes.join(", "))
        })
        .collect()
}

/// One headline figure: a card in HTML, a bold bullet in Markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub key: &'static str,
    pub value: String,
    pub explain: String,
}

/// A sweep's answers: where it saturates, the highest load within the SLOs, and its peak
/// throughput (called a plateau only when the sweep reached one).
pub fn sweep_findings(s: &SweepReport) -> Vec<Finding> {
    let show = |x: f64| show_x(x, &s.unit);
    let mut out = vec![match &s.saturation {
        Some(p) => Finding {
            key: "Saturation knee",
            value: show(p.x),
            explain: format!("{}: {}", p.method.replace('_', " "), p.evidence),
        },
        None => Finding {
            key: "Saturation knee",
            value: "none".into(),
            explain: "the curves do not bend within the sweep".into(),
        },
    }];
    out.push(Finding {
        key: "Highest load meeting every SLO",
        value: s.slo_max_load.x.map_or_else(|| "none".into(), show),
        explain: s.slo_max_load.evidence.clone(),
    });
    if let Some(p) = &s.plateau {
        // Token rates mean nothing to a protocol without tokens.
        let tokens = if p.max_output_tokens_per_s > 0.0 {
            format!(" ({:.0} output tokens/s)", p.max_output_tokens_per_s)
        } else {
            String::new()
        };
        out.push(Finding {
            key: if p.reached {
                "Throughput plateau"
            } else {
                "Peak throughput"
            },
            value: format!("{:.2} req/s{tokens}", p.max_requests_per_s),
            explain: p.evidence.clone(),
        });
    }
    out
}

/// A single trial's headline figures (a run without a sweep).
pub fn trial_findings(t: &TrialReport) -> Vec<Finding> {
    let h = &t.headline;
    vec![
        Finding {
            key: "Throughput",
            value: format!("{} req/s", rate(h.requests_per_s)),
            explain: format!("{} output tokens/s", rate(h.output_tokens_per_s)),
        },
        Finding {
            key: "TTFT p99",
            value: format!("{} ms", ms(h.ttft_p99_ms)),
            explain: format!("p50 {} ms", ms(h.ttft_p50_ms)),
        },
        Finding {
            key: "E2E p99",
            value: format!("{} ms", ms(h.e2e_p99_ms)),
            explain: format!("p50 {} ms", ms(h.e2e_p50_ms)),
        },
        Finding {
            key: "Success rate",
            value: pct(h.success_rate),
            explain: format!("{} of {} requests", h.successes, h.requests),
        },
    ]
}

/// A sweep's points: one row per load, the saturation knee's row marked, with the knee
/// detectors' scores.
pub fn sweep_points(s: &SweepReport) -> Table {
    let show = |x: f64| show_x(x, &s.unit);
    let header = vec![
        "load",
        "trial",
        "req/s",
        "out tok/s",
        "goodput/s",
        "TTFT p99",
        "E2E p50",
        "E2E p99",
        short_latency_label(&s.latency_metric),
        "curvature",
        "Kneedle",
        "SLO",
    ];
    let right = header
        .iter()
        .map(|h| !matches!(*h, "trial" | "SLO"))
        .collect();
    let curvature = s.latency_knee.max_curvature.as_ref().map(|k| &k.scores);
    let kneedle = s.latency_knee.kneedle.as_ref().map(|k| &k.scores);
    let knee_x = s.saturation.as_ref().map(|p| p.x);
    let text = Cell::Text;
    let mut marked = None;
    let rows = s
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if Some(p.x) == knee_x {
                marked = Some(i);
            }
            let score = |v: Option<&Vec<f64>>| {
                text(
                    v.and_then(|v| v.get(i))
                        .map_or_else(|| "–".into(), |x| format!("{x:.2}")),
                )
            };
            vec![
                text(show(p.x)),
                Cell::Code(p.trial.clone()),
                text(rate(p.requests_per_s)),
                text(rate(p.output_tokens_per_s)),
                text(opt_rate(p.goodput_per_s)),
                text(ms(p.ttft_p99_ms)),
                text(ms(p.e2e_p50_ms)),
                text(ms(p.e2e_p99_ms)),
                text(ms(p.latency_ms)),
                score(curvature),
                score(kneedle),
                match p.slo_passed {
                    Some(passed) => Cell::Verdict {
                        passed,
                        detail: String::new(),
                    },
                    None => text("–".into()),
                },
            ]
        })
        .collect();
    Table {
        header,
        right,
        rows,
        marked,
    }
}

/// The short column name of a sweep's latency metric.
pub fn short_latency_label(metric: &str) -> &'static str {
    match metric {
        "e2e_from_intended_p99_ms" => "E2E* p99",
        "ttft_p99_ms" => "TTFT p99",
        _ => "E2E p99",
    }
}

/// Each knee detector's answer for a sweep: its name, and the load with the evidence (None:
/// no knee).
pub fn knees(s: &SweepReport) -> Vec<(&'static str, Option<(String, String)>)> {
    [
        ("Latency knee, Kneedle", &s.latency_knee.kneedle),
        (
            "Latency knee, maximum curvature",
            &s.latency_knee.max_curvature,
        ),
        ("Throughput knee, Kneedle", &s.throughput_knee.kneedle),
        (
            "Throughput knee, maximum curvature",
            &s.throughput_knee.max_curvature,
        ),
    ]
    .into_iter()
    .map(|(name, k)| {
        (
            name,
            k.as_ref()
                .map(|k| (show_x(k.x, &s.unit), k.evidence.clone())),
        )
    })
    .collect()
}

/// A trial's GPU energy over the measure window, as a sentence.
pub fn energy(t: &TrialReport) -> Option<String> {
    let e = t.energy.as_ref()?;
    Some(format!(
        "{:.0} J at {:.0} W on average{}",
        e.joules,
        e.mean_power_watts,
        e.joules_per_output_token
            .map(|j| format!(", {j:.3} J per output token"))
            .unwrap_or_default()
    ))
}

/// A trial's scraped service metrics over the measure window.
pub fn metrics(t: &TrialReport) -> Option<Table> {
    if t.metrics.is_empty() {
        return None;
    }
    let header = vec![
        "metric (measure window)",
        "labels",
        "samples",
        "mean",
        "p95",
        "max",
        "first",
        "last",
        "slope/s",
    ];
    let right = header
        .iter()
        .map(|h| !matches!(*h, "metric (measure window)" | "labels"))
        .collect();
    let n = crate::plot::short_number;
    let rows = t
        .metrics
        .iter()
        .map(|m| {
            vec![
                Cell::Code(m.name.clone()),
                Cell::Text(m.labels.clone()),
                Cell::Text(m.samples.to_string()),
                Cell::Text(n(m.mean)),
                Cell::Text(n(m.p95)),
                Cell::Text(n(m.max)),
                Cell::Text(n(m.first)),
                Cell::Text(n(m.last)),
                Cell::Text(n(m.slope_per_s)),
            ]
        })
        .collect();
    Some(Table {
        header,
        right,
        rows,
        marked: None,
    })
}

/// What to say when no bottleneck verdict fired. That the service kept up is said only of a run
/// that completed every trial; otherwise the absence of a verdict is not evidence of anything.
pub fn no_bottleneck(r: &Report) -> String {
    use aibench_results::Status;
    let completed = r.run.status == Some(Status::Completed)
        && !r.trials.is_empty()
        && r.trials.iter().all(|t| t.status == Some(Status::Completed));
    if completed {
        "No bottleneck found: in every trial the service kept up with the load it was offered, \
         and the client sent on time."
            .into()
    } else {
        format!(
            "No bottleneck verdict: the run is {}, so what was measured may not show what limits \
             the service.",
            status_text(r.run.status)
        )
    }
}

/// The calibration `run --calibrate` measured, in one sentence (Markdown: `code` spans).
pub fn calibration(c: &aibench_results::Calibration) -> String {
    let load = match (c.users, c.rate_per_s) {
        (_, Some(r)) => format!("open loop at {r}/s"),
        (Some(u), None) => format!("{u} users"),
        _ => "its load".into(),
    };
    format!(
        "Measurement resolution: {:.2} ms. Before the run, `aibench selfcheck` on `{}` ({load}, \
         {} requests against the fixed-timing simulator) measured TTFT error p99 {:.2} ms, ITL \
         error p99 {:.2} ms, send lag p99 {:.2} ms and client CPU {:.0} % of one core; latency \
         differences smaller than the resolution are below what this machine measures.",
        c.resolution_ms,
        c.hostname,
        c.requests,
        c.ttft_error.p99_ms,
        c.itl_error.p99_ms,
        c.send_lag.p99_ms,
        c.client_cpu_pct,
    )
}
