//! Per-second series and latency distributions from `requests.jsonl`.
//!
//! One pass over the records. Each request falls in the second it ended in (a failure: the
//! second it was given up in; a dropped request: its intended send). Seconds are counted from
//! the workload's start, the zero of every record time. A second is marked warm-up when it ends
//! before the summary's measure window starts, cool-down when it starts after the window ends.

use std::path::Path;

use aibench_results::{Phase, RequestRecord, Summary};

use crate::model::{BucketPhase, SecondBucket};

/// Latency samples of the measured, successful requests, in milliseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Distributions {
    pub ttft_ms: Vec<f64>,
    pub e2e_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    /// Every inter-token gap; beyond [`MAX_ITL_SAMPLES`], every second, fourth, ... gap.
    pub itl_ms: Vec<f64>,
    pub send_lag_ms: Vec<f64>,
}

/// At most this many inter-token gaps are kept for the ITL distribution.
pub const MAX_ITL_SAMPLES: usize = 2_000_000;

/// What the records of one workload show.
#[derive(Debug, Clone, Default)]
pub struct RecordsAnalysis {
    pub buckets: Vec<SecondBucket>,
    pub dists: Distributions,
    pub records: u64,
    /// Lines that could not be read.
    pub bad_lines: u64,
}

#[derive(Default)]
struct Acc {
    completed: u64,
    errors: u64,
    output_tokens: u64,
    busy_us: f64,
    ttft: Vec<f64>,
    e2e: Vec<f64>,
    lag: Vec<f64>,
    warmup: u64,
    measure: u64,
    cooldown: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.total_cmp(b));
}

/// Read `requests.jsonl` (absent: `None`).
pub fn analyse_records(path: &Path, summary: &Summary) -> Option<RecordsAnalysis> {
    let iter = aibench_results::read_records(path).ok()?;
    let mut out = RecordsAnalysis::default();
    let mut secs: Vec<Acc> = Vec::new();
    let mut itl_seen: u64 = 0;
    let mut itl_stride: u64 = 1;
    let at = |secs: &mut Vec<Acc>, us: u64| -> usize {
        let i = (us / 1_000_000) as usize;
        if secs.len() <= i {
            secs.resize_with(i + 1, Acc::default);
        }
        i
    };
    for rec in iter {
        let r: RequestRecord = match rec {
            Ok(r) => r,
            Err(_) => {
                out.bad_lines += 1;
                continue;
            }
        };
        out.records += 1;
        let us_ms = |us: u64| us as f64 / 1000.0;
        // In flight: from the actual send to the end of the response (or the failure).
        if let (Some(s), Some(d)) = (r.sent_us, r.done_us.or(r.end_us)) {
            let (mut t, end) = (s, d.max(s));
            while t < end {
                let i = at(&mut secs, t);
                let sec_end = (i as u64 + 1) * 1_000_000;
                let upto = end.min(sec_end);
                secs[i].busy_us += (upto - t) as f64;
                t = upto;
            }
        }
        let when = if r.is_success() {
            r.end_us
        } else {
            r.done_us.or(r.end_us).or(r.sent_us)
        }
        .unwrap_or(r.intended_us);
        let i = at(&mut secs, when);
        let b = &mut secs[i];
        match r.phase {
            Phase::Warmup => b.warmup += 1,
            Phase::Measure => b.measure += 1,
            Phase::Cooldown => b.cooldown += 1,
        }
        if r.is_success() {
            b.completed += 1;
            b.output_tokens += u64::from(r.output_tokens.unwrap_or(0));
            if let Some(t) = r.ttft_us() {
                b.ttft.push(us_ms(t));
            }
            if let Some(t) = r.e2e_us() {
                b.e2e.push(us_ms(t));
            }
        } else {
            b.errors += 1;
        }
        if let Some(l) = r.send_lag_us() {
            b.lag.push(us_ms(l));
        }
        if r.phase == Phase::Measure {
            let d = &mut out.dists;
            if let Some(l) = r.send_lag_us() {
                d.send_lag_ms.push(us_ms(l));
            }
            if r.is_success() {
                if let Some(t) = r.ttft_us() {
                    d.ttft_ms.push(us_ms(t));
                }
                if let Some(t) = r.e2e_us() {
                    d.e2e_ms.push(us_ms(t));
                }
                if let Some(t) = r.tpot_us() {
                    d.tpot_ms.push(us_ms(t));
                }
                for &g in &r.itl_us {
                    itl_seen += 1;
                    if itl_seen % itl_stride == 0 {
                        d.itl_ms.push(f64::from(g) / 1000.0);
                        if d.itl_ms.len() >= MAX_ITL_SAMPLES {
                            // Keep every other sample, and from now on every other gap.
                            let mut k = 0;
                            d.itl_ms.retain(|_| {
                                k += 1;
                                k % 2 == 0
                            });
                            itl_stride *= 2;
                        }
                    }
                }
            }
        }
    }
    let d = &mut out.dists;
    for v in [
        &mut d.ttft_ms,
        &mut d.e2e_ms,
        &mut d.tpot_ms,
        &mut d.itl_ms,
        &mut d.send_lag_ms,
    ] {
        sort(v);
    }
    let window = summary
        .window
        .map(|w| (w.start_ms / 1000.0, w.end_ms / 1000.0));
    out.buckets = secs
        .into_iter()
        .enumerate()
        .map(|(i, mut a)| {
            let t = i as f64;
            let phase = match window {
                Some((start, _)) if t + 1.0 <= start => BucketPhase::Warmup,
                Some((_, end)) if t >= end => BucketPhase::Cooldown,
                Some(_) => BucketPhase::Measure,
                None if a.warmup > a.measure.max(a.cooldown) => BucketPhase::Warmup,
                None if a.cooldown > a.measure => BucketPhase::Cooldown,
                None => BucketPhase::Measure,
            };
            sort(&mut a.ttft);
            sort(&mut a.e2e);
            sort(&mut a.lag);
            SecondBucket {
                t_s: i as u64,
                phase,
                completed: a.completed,
                errors: a.errors,
                output_tokens: a.output_tokens,
                in_flight: a.busy_us / 1_000_000.0,
                ttft_p50_ms: percentile(&a.ttft, 0.5),
                ttft_p99_ms: percentile(&a.ttft, 0.99),
                e2e_p50_ms: percentile(&a.e2e, 0.5),
                e2e_p99_ms: percentile(&a.e2e, 0.99),
                send_lag_p99_ms: percentile(&a.lag, 0.99),
            }
        })
        .collect();
    Some(out)
}

/// Least-squares slope of y over x (0 with fewer than two distinct x).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return 0.0;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 + 2.0 * f64::from(i)))
            .collect();
        assert!((slope(&pts) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }
}
