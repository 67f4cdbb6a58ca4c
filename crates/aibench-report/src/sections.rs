//! The report's sections as format-neutral blocks (see `block`), built once from the report and
//! drawn by both `markdown` and `html`.

use crate::block::{Cell, Table};
use crate::markdown::{ms, opt_rate, pct, rate};
use crate::model::{status_text, Report};

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
        .collect();
    Table {
        header,
        right,
        rows,
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
