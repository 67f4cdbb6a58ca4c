//! The recipe's objectives, judged against a trial's summary.

use aibench_results::{LatencyStats, SloMs, Summary};

use crate::model::{Goodput, SloOutcome, SloSpec};

fn ms(d: Option<aibench_results::units::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

/// The recipe's objectives in report units.
pub fn spec(slo: &aibench_results::objectives::Slo) -> SloSpec {
    SloSpec {
        per_request: SloMs {
            ttft_ms: ms(slo.ttft),
            tpot_ms: ms(slo.tpot),
            itl_ms: ms(slo.itl),
            e2e_ms: ms(slo.e2e),
        },
        ttft_p50_ms: ms(slo.ttft_p50),
        ttft_p90_ms: ms(slo.ttft_p90),
        ttft_p99_ms: ms(slo.ttft_p99),
        tpot_p99_ms: ms(slo.tpot_p99),
        itl_p99_ms: ms(slo.itl_p99),
        e2e_p50_ms: ms(slo.e2e_p50),
        e2e_p99_ms: ms(slo.e2e_p99),
        error_rate: slo.error_rate.map(|p| p.fraction()),
        min_throughput_per_s: slo.min_throughput.map(|r| r.per_second()),
        min_goodput: slo.min_goodput.map(|p| p.fraction()),
    }
}

/// Whether the spec sets any objective at all.
pub fn is_empty(spec: &SloSpec) -> bool {
    *spec == SloSpec::default()
}

/// Every objective the summary misses, as readable reasons (empty: all met).
pub fn failures(spec: &SloSpec, s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let l = &s.latency;
    let mut gate = |name: &str, limit: Option<f64>, got: Option<f64>| {
        if let (Some(limit), Some(got)) = (limit, got) {
            if got > limit {
                out.push(format!("{name} {got:.1} ms > {limit:.1} ms"));
            }
        }
    };
    let p = |x: &Option<LatencyStats>, f: fn(&LatencyStats) -> f64| x.as_ref().map(f);
    gate("TTFT p50", spec.ttft_p50_ms, p(&l.ttft, |x| x.p50_ms));
    gate("TTFT p90", spec.ttft_p90_ms, p(&l.ttft, |x| x.p90_ms));
    gate("TTFT p99", spec.ttft_p99_ms, p(&l.ttft, |x| x.p99_ms));
    gate("TPOT p99", spec.tpot_p99_ms, p(&l.tpot, |x| x.p99_ms));
    gate("ITL p99", spec.itl_p99_ms, p(&l.itl, |x| x.p99_ms));
    gate("E2E p50", spec.e2e_p50_ms, p(&l.e2e, |x| x.p50_ms));
    gate("E2E p99", spec.e2e_p99_ms, p(&l.e2e, |x| x.p99_ms));
    let total = s.counts.total.max(1) as f64;
    if let Some(limit) = spec.error_rate {
        let rate = (s.counts.errors + s.counts.dropped) as f64 / total;
        if rate > limit {
            out.push(format!(
                "error rate {:.2}% > {:.2}%",
                rate * 100.0,
                limit * 100.0
            ));
        }
    }
    if let Some(min) = spec.min_throughput_per_s {
        if s.throughput.requests_per_s < min {
            out.push(format!(
                "throughput {:.2}/s < {min:.2}/s",
                s.throughput.requests_per_s
            ));
        }
    }
    if let (Some(min), Some(good)) = (spec.min_goodput, s.throughput.good_requests) {
        let share = good as f64 / total;
        if share < min {
            out.push(format!(
                "goodput {:.1}% < {:.1}%",
                share * 100.0,
                min * 100.0
            ));
        }
    }
    if s.counts.total == 0 {
        out.push("no request was measured".into());
    }
    out
}

/// The trial's SLO outcome.
pub fn outcome(spec: Option<&SloSpec>, s: &Summary) -> SloOutcome {
    match spec {
        Some(spec) if !is_empty(spec) => {
            let failures = failures(spec, s);
            SloOutcome {
                evaluated: true,
                passed: failures.is_empty(),
                failures,
            }
        }
        _ => SloOutcome::default(),
    }
}

/// Goodput against the per-request thresholds the summary was judged with.
pub fn goodput(s: &Summary) -> Option<Goodput> {
    let thresholds = s.slo?;
    let goodput_per_s = s.throughput.goodput_per_s?;
    let good_requests = s.throughput.good_requests?;
    Some(Goodput {
        goodput_per_s,
        good_requests,
        share: if s.counts.total == 0 {
            0.0
        } else {
            good_requests as f64 / s.counts.total as f64
        },
        thresholds,
    })
}
