//! The headline figures of a summary.

use aibench_results::{LatencyStats, Summary};

use crate::model::Headline;

impl Headline {
    pub fn from_summary(s: &Summary) -> Headline {
        let l = &s.latency;
        let p = |x: &Option<LatencyStats>, f: fn(&LatencyStats) -> f64| x.as_ref().map(f);
        Headline {
            requests: s.counts.total,
            successes: s.counts.successes,
            errors: s.counts.errors,
            dropped: s.counts.dropped,
            success_rate: if s.counts.total == 0 {
                1.0
            } else {
                s.counts.successes as f64 / s.counts.total as f64
            },
            requests_per_s: s.throughput.requests_per_s,
            output_tokens_per_s: s.throughput.output_tokens_per_s,
            goodput_per_s: s.throughput.goodput_per_s,
            ttft_p50_ms: p(&l.ttft, |x| x.p50_ms),
            ttft_p99_ms: p(&l.ttft, |x| x.p99_ms),
            tpot_p50_ms: p(&l.tpot, |x| x.p50_ms),
            tpot_p99_ms: p(&l.tpot, |x| x.p99_ms),
            itl_p50_ms: p(&l.itl, |x| x.p50_ms),
            itl_p99_ms: p(&l.itl, |x| x.p99_ms),
            e2e_p50_ms: p(&l.e2e, |x| x.p50_ms),
            e2e_p99_ms: p(&l.e2e, |x| x.p99_ms),
            e2e_from_intended_p99_ms: p(&l.e2e_from_intended, |x| x.p99_ms),
            send_lag_p99_ms: p(&l.send_lag, |x| x.p99_ms),
            mean_concurrency: s.throughput.mean_concurrency,
            errors_by_class: s
                .counts
                .errors_by_class
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
        }
    }
}
