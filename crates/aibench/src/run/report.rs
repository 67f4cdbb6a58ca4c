//! The first report: `summary.csv` (one row per trial and workload) and `report.md` with the
//! per-trial table. Plots, HTML and analysis build on these.

use std::fmt::Write as _;
use std::path::Path;

use aibench_results::Summary;

use super::rundir::RunInfo;

/// One finished (or partly finished) workload of one trial.
#[derive(Clone, Debug)]
pub struct Row {
    pub trial: String,
    pub params: serde_json::Value,
    pub workload: String,
    pub status: aibench_results::Status,
    pub summary: Summary,
    pub slo_failures: Vec<String>,
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_default()
}

const CSV_HEADER: &str = "trial,workload,status,params,requests,successes,errors,dropped,duration_s,requests_per_s,output_tokens_per_s,total_tokens_per_s,peak_concurrency,goodput_per_s,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,tpot_p50_ms,tpot_p99_ms,itl_p50_ms,itl_p99_ms,e2e_p50_ms,e2e_p99_ms,e2e_from_intended_p99_ms,send_lag_p99_ms,slo";

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn write_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let s = &r.summary;
        let l = &s.latency;
        let p =
            |x: &Option<aibench_results::LatencyStats>,
             f: fn(&aibench_results::LatencyStats) -> f64| ms(x.as_ref().map(f));
        let cells = [
            csv_escape(&r.trial),
            csv_escape(&r.workload),
            r.status.to_string(),
            csv_escape(&r.params.to_string()),
            s.counts.total.to_string(),
            s.counts.successes.to_string(),
            s.counts.errors.to_string(),
            s.counts.dropped.to_string(),
            format!("{:.3}", s.duration_s),
            format!("{:.3}", s.throughput.requests_per_s),
            format!("{:.2}", s.throughput.output_tokens_per_s),
            format!("{:.2}", s.throughput.total_tokens_per_s),
            format!("{:.1}", s.throughput.peak_concurrency),
            s.throughput
                .goodput_per_s
                .map(|g| format!("{g:.3}"))
                .unwrap_or_default(),
            p(&l.ttft, |x| x.p50_ms),
            p(&l.ttft, |x| x.p90_ms),
            p(&l.ttft, |x| x.p99_ms),
            p(&l.tpot, |x| x.p50_ms),
            p(&l.tpot, |x| x.p99_ms),
            p(&l.itl, |x| x.p50_ms),
            p(&l.itl, |x| x.p99_ms),
            p(&l.e2e, |x| x.p50_ms),
            p(&l.e2e, |x| x.p99_ms),
            p(&l.e2e_from_intended, |x| x.p99_ms),
            p(&l.send_lag, |x| x.p99_ms),
            if r.slo_failures.is_empty() {
                "pass".into()
            } else {
                csv_escape(&r.slo_failures.join("; "))
            },
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    aibench_platform::registry::write_atomic(path, out.as_bytes())
}

pub fn write_markdown(
    path: &Path,
    info: &RunInfo,
    rows: &[Row],
    has_slo: bool,
) -> std::io::Result<()> {
    let mut md = String::new();
    let _ = writeln!(md, "# {}: {}\n", info.name, info.run_id);
    let _ = writeln!(
        md,
        "Status: **{}**{}. Started {} on `{}` ({}, {} CPUs). aibench {} ({}).\n",
        info.status,
        info.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        info.started_at_utc,
        info.host.hostname,
        info.host.cpu_model,
        info.host.cpus,
        info.aibench_version,
        info.aibench_git
    );
    let _ = writeln!(md, "## Trials\n");
    let _ = writeln!(
        md,
        "Latencies in milliseconds, measured from the actual send; `E2E* p99` is measured from the \
         intended send time, so client-side queueing cannot hide. TPOT and ITL follow vLLM's definitions.\n"
    );
    let mut header = "| trial | workload | status | requests | errors | req/s | out tok/s | TTFT p50 | TTFT p99 | TPOT p50 | ITL p99 | E2E p99 | E2E* p99 |".to_string();
    let mut rule = "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_string();
    if has_slo {
        header.push_str(" goodput/s | SLO |");
        rule.push_str("---:|---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for r in rows {
        let s = &r.summary;
        let l = &s.latency;
        let g = |x: &Option<aibench_results::LatencyStats>,
                 f: fn(&aibench_results::LatencyStats) -> f64| {
            x.as_ref()
                .map(f)
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "–".into())
        };
        let _ = write!(
            md,
            "| `{}` | {} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.trial,
            r.workload,
            r.status,
            s.counts.total,
            s.counts.errors + s.counts.dropped,
            s.throughput.requests_per_s,
            s.throughput.output_tokens_per_s,
            g(&l.ttft, |x| x.p50_ms),
            g(&l.ttft, |x| x.p99_ms),
            g(&l.tpot, |x| x.p50_ms),
            g(&l.itl, |x| x.p99_ms),
            g(&l.e2e, |x| x.p99_ms),
            g(&l.e2e_from_intended, |x| x.p99_ms),
        );
        if has_slo {
            let _ = write!(
                md,
                " {} | {} |",
                s.throughput
                    .goodput_per_s
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "–".into()),
                if r.slo_failures.is_empty() {
                    "pass".to_string()
                } else {
                    format!("**fail**: {}", r.slo_failures.join("; "))
                }
            );
        }
        let _ = writeln!(md);
    }
    let errors: Vec<String> = rows
        .iter()
        .filter(|r| !r.summary.counts.errors_by_class.is_empty())
        .map(|r| {
            let classes: Vec<String> = r
                .summary
                .counts
                .errors_by_class
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{} {v}",
                        serde_json::to_value(k)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("- `{}` {}: {}", r.trial, r.workload, classes.join(", "))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "\n## Errors by class\n\n{}", errors.join("\n"));
    }
    let _ = writeln!(
        md,
        "\n## Files\n\n- `summary.csv`: one row per trial and workload\n- `trials/<trial>/summary.json`: every statistic, with its schema in `schema/summary.schema.json`\n- `trials/<trial>/requests.jsonl`: one line per request\n- `logs/`: service output and `events.jsonl`"
    );
    aibench_platform::registry::write_atomic(path, md.as_bytes())
}

/// The recipe's percentile and rate gates that this summary misses, as readable reasons.
pub fn slo_failures(slo: Option<&aibench_recipe::Slo>, s: &Summary) -> Vec<String> {
    // The report's judge, so that the exit code and the report always agree.
    let spec = slo.map(aibench_report::slo::spec);
    aibench_report::slo::outcome(spec.as_ref(), s).failures
}
