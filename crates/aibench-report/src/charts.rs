//! The report's figures, built from the analysis.

use crate::bottleneck::{
    host_cpu_series, is_gpu_utilisation, KV_CACHE_METRICS, MEMORY_TOTAL_METRIC, MEMORY_USED_METRIC,
    RUNNING_METRIC, WAITING_METRIC,
};
use crate::model::{BucketPhase, SweepReport};
use crate::plot::{thin, Band, Figure, Line, LineStyle, Marker, Panel};
use crate::sweep::{latency_label, show_x};
use crate::Analysis;

const WIDTH: u32 = 960;
/// Most points per line in distributions.
const MAX_POINTS: usize = 400;
/// Bins of the TTFT and ITL histograms.
const BINS: usize = 40;

/// A file-name-safe form of a trial id.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn line(name: &str, points: Vec<(f64, f64)>, color: usize, style: LineStyle) -> Line {
    Line {
        name: name.to_string(),
        points,
        color,
        style,
    }
}

/// Every figure of the report, in reading order.
pub fn figures(a: &Analysis) -> Vec<Figure> {
    let mut out = Vec::new();
    let many_sweeps = a.report.sweeps.len() > 1;
    for (i, s) in a.report.sweeps.iter().enumerate() {
        let n = if many_sweeps { Some(i + 1) } else { None };
        out.push(sweep_figure(s, n));
        out.extend(operations_figure(a, s, n));
    }
    if let Some(f) = cdf_figure(a) {
        out.push(f);
    }
    if let Some(f) = distribution_figure(a) {
        out.push(f);
    }
    for i in 0..a.report.trials.len() {
        if let Some(f) = timeline_figure(a, i) {
            out.push(f);
        }
    }
    out
}

fn trial_label(a: &Analysis, i: usize) -> String {
    let t = &a.report.trials[i];
    let multi = a
        .report
        .trials
        .iter()
        .any(|o| o.id == t.id && o.workload != t.workload);
    if multi {
        format!("{} {}", t.id, t.workload)
    } else {
        t.id.clone()
    }
}

/// Vertical markers at a curve's knees, by both methods.
fn knee_markers(k: &crate::model::KneePair, show: &dyn Fn(f64) -> String) -> Vec<Marker> {
    [
        (&k.kneedle, "Kneedle", 3),
        (&k.max_curvature, "max curvature", 5),
    ]
    .into_iter()
    .filter_map(|(knee, method, color)| {
        knee.as_ref().map(|k| Marker {
            x: k.x,
            label: format!("knee ({method}) {}", show(k.x)),
            color,
        })
    })
    .collect()
}

fn sweep_figure(s: &SweepReport, n: Option<usize>) -> Figure {
    let show = |x: f64| show_x(x, &s.unit);
    let xs = |f: fn(&crate::model::SweepPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        s.points.iter().filter_map(|p| Some((p.x, f(p)?))).collect()
    };
    let mut lat = Panel {
        title: "Latency against load".into(),
        x_label: format!("{} ({})", s.parameter, s.unit),
        y_label: "milliseconds".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    lat.lines.push(line(
        "TTFT p99",
        xs(|p| p.ttft_p99_ms),
        1,
        LineStyle::LinePoints,
    ));
    lat.lines.push(line(
        "E2E p50",
        xs(|p| p.e2e_p50_ms),
        2,
        LineStyle::LinePoints,
    ));
    lat.lines.push(line(
        "E2E p99",
        xs(|p| p.e2e_p99_ms),
        0,
        LineStyle::LinePoints,
    ));
    if s.latency_metric == "e2e_from_intended_p99_ms" {
        lat.lines.push(line(
            "E2E p99 from intended send",
            xs(|p| p.e2e_from_intended_p99_ms),
            4,
            LineStyle::LinePoints,
        ));
    }
    lat.markers.extend(knee_markers(&s.latency_knee, &show));
    if let Some(x) = s.slo_max_load.x {
        lat.markers.push(Marker {
            x,
            label: format!("highest load meeting the SLOs {}", show(x)),
            color: 2,
        });
    }
    let mut thr = Panel {
        title: "Throughput against load".into(),
        x_label: format!("{} ({})", s.parameter, s.unit),
        y_label: "requests per second".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    thr.lines.push(line(
        "completed req/s",
        xs(|p| Some(p.requests_per_s)),
        0,
        LineStyle::LinePoints,
    ));
    let good = xs(|p| p.goodput_per_s);
    if !good.is_empty() {
        thr.lines
            .push(line("goodput req/s", good, 2, LineStyle::LinePoints));
    }
    if s.unit == "requests/s" {
        let (a, b) = (s.points[0].x, s.points[s.points.len() - 1].x);
        thr.lines.push(line(
            "offered load",
            vec![(a, a), (b, b)],
            7,
            LineStyle::Line,
        ));
    }
    thr.markers.extend(knee_markers(&s.throughput_knee, &show));
    if let Some(p) = s.plateau.as_ref().filter(|p| p.reached) {
        thr.markers.push(Marker {
            x: p.from_x,
            label: format!(
                "plateau {:.1} req/s from {}",
                p.max_requests_per_s,
                show(p.from_x)
            ),
            color: 4,
        });
    }
    let fixed: Vec<String> = s.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Figure {
        id: match n {
            Some(n) => format!("sweep-{n}"),
            None => "sweep".into(),
        },
        title: format!(
            "{}: {} against {}{}",
            s.workload,
            latency_label(&s.latency_metric),
            s.parameter,
            if fixed.is_empty() {
                String::new()
            } else {
                format!(" ({})", fixed.join(", "))
            }
        ),
        width: WIDTH,
        panel_height: 330,
        panels: vec![lat, thr],
        trial: None,
    }
}

fn cdf(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len() as f64;
    let pts: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, (i + 1) as f64 / n))
        .collect();
    thin(&pts, MAX_POINTS)
}

fn cdf_figure(a: &Analysis) -> Option<Figure> {
    let span = |f: fn(&crate::series::Distributions) -> &Vec<f64>| {
        let lo = a
            .extras
            .iter()
            .filter_map(|x| f(&x.dists).first().copied())
            .fold(f64::INFINITY, f64::min);
        let hi = a
            .extras
            .iter()
            .filter_map(|x| f(&x.dists).last().copied())
            .fold(0.0, f64::max);
        wide(lo, hi)
    };
    let (ttft_log, e2e_log) = (span(|d| &d.ttft_ms), span(|d| &d.e2e_ms));
    let unit = |log: bool| {
        if log {
            "milliseconds (log scale)"
        } else {
            "milliseconds"
        }
    };
    let mut ttft = Panel {
        title: "TTFT, cumulative distribution".into(),
        x_label: unit(ttft_log).into(),
        y_label: "share of requests".into(),
        y_from_zero: true,
        x_log: ttft_log,
        ..Panel::default()
    };
    let mut e2e = Panel {
        title: "End-to-end latency, cumulative distribution".into(),
        x_label: unit(e2e_log).into(),
        y_label: "share of requests".into(),
        y_from_zero: true,
        x_log: e2e_log,
        ..Panel::default()
    };
    for (i, x) in a.extras.iter().enumerate() {
        let name = trial_label(a, i);
        if !x.dists.ttft_ms.is_empty() {
            ttft.lines
                .push(line(&name, cdf(&x.dists.ttft_ms), i, LineStyle::Line));
        }
        if !x.dists.e2e_ms.is_empty() {
            e2e.lines
                .push(line(&name, cdf(&x.dists.e2e_ms), i, LineStyle::Line));
        }
    }
    let panels: Vec<Panel> = [ttft, e2e]
        .into_iter()
        .filter(|p| !p.lines.is_empty())
        .collect();
    (!panels.is_empty()).then(|| Figure {
        id: "latency-cdf".into(),
        title: "Latency distributions (measured requests)".into(),
        width: WIDTH,
        panel_height: 300,
        panels,
        trial: None,
    })
}

/// Whether values spread over so many orders of magnitude that a log axis reads better.
fn wide(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi / lo > 10.0
}

/// Share of values per bin over `[lo, hi]` with log-spaced bins, as (bin start, share) points.
fn log_histogram(sorted: &[f64], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    if sorted.is_empty() || lo <= 0.0 || hi <= lo {
        return Vec::new();
    }
    let (a, b) = (lo.ln(), hi.ln());
    let w = (b - a) / BINS as f64;
    let mut bins = vec![0u64; BINS];
    for &v in sorted {
        let i = if v <= lo {
            0
        } else {
            (((v.ln() - a) / w) as usize).min(BINS - 1)
        };
        bins[i] += 1;
    }
    let n = sorted.len() as f64;
    let mut pts: Vec<(f64, f64)> = bins
        .iter()
        .enumerate()
        .map(|(i, &c)| ((a + i as f64 * w).exp(), c as f64 / n))
        .collect();
    pts.push((hi, pts.last().map(|p| p.1).unwrap_or(0.0)));
    pts
}

/// Share of values per bin over `[0, hi]`, as (bin centre, share) points.
fn histogram(sorted: &[f64], hi: f64) -> Vec<(f64, f64)> {
    if sorted.is_empty() || hi <= 0.0 {
        return Vec::new();
    }
    let w = hi / BINS as f64;
    let mut bins = vec![0u64; BINS];
    for &v in sorted {
        let i = ((v / w) as usize).min(BINS - 1);
        bins[i] += 1;
    }
    let n = sorted.len() as f64;
    let mut pts: Vec<(f64, f64)> = bins
        .iter()
        .enumerate()
        .map(|(i, &c)| (i as f64 * w, c as f64 / n))
        .collect();
    pts.push((hi, pts.last().map(|p| p.1).unwrap_or(0.0)));
    pts
}

fn distribution_figure(a: &Analysis) -> Option<Figure> {
    let bound = |f: fn(&crate::series::Distributions) -> &Vec<f64>, q: f64, max: bool| {
        let vals = a
            .extras
            .iter()
            .filter_map(|x| crate::series::percentile(f(&x.dists), q));
        if max {
            vals.fold(0.0, f64::max)
        } else {
            vals.fold(f64::INFINITY, f64::min)
        }
    };
    let ttft_hi = bound(|d| &d.ttft_ms, 0.995, true);
    let ttft_lo = bound(|d| &d.ttft_ms, 0.005, false);
    let itl_hi = bound(|d| &d.itl_ms, 0.995, true);
    let ttft_log = wide(ttft_lo, ttft_hi);
    let mut ttft = Panel {
        title: if ttft_log {
            format!("TTFT distribution ({BINS} log-spaced bins; the last holds the slowest 0.5 %)")
        } else {
            format!(
                "TTFT distribution (bins of {:.1} ms; the last holds the slowest 0.5 %)",
                ttft_hi / BINS as f64
            )
        },
        x_label: if ttft_log {
            "milliseconds (log scale)".into()
        } else {
            "milliseconds".into()
        },
        y_label: "share of requests".into(),
        y_from_zero: true,
        x_log: ttft_log,
        ..Panel::default()
    };
    let mut itl = Panel {
        title: format!(
            "Inter-token latency distribution (bins of {:.2} ms; the last holds the slowest 0.5 %)",
            itl_hi / BINS as f64
        ),
        x_label: "milliseconds".into(),
        y_label: "share of gaps".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    for (i, x) in a.extras.iter().enumerate() {
        let name = trial_label(a, i);
        if !x.dists.ttft_ms.is_empty() {
            let h = if ttft_log {
                log_histogram(&x.dists.ttft_ms, ttft_lo, ttft_hi)
            } else {
                histogram(&x.dists.ttft_ms, ttft_hi)
            };
            ttft.lines.push(line(&name, h, i, LineStyle::Step));
        }
        if !x.dists.itl_ms.is_empty() {
            itl.lines.push(line(
                &name,
                histogram(&x.dists.itl_ms, itl_hi),
                i,
                LineStyle::Step,
            ));
        }
    }
    let panels: Vec<Panel> = [ttft, itl]
        .into_iter()
        .filter(|p| !p.lines.is_empty())
        .collect();
    (!panels.is_empty()).then(|| Figure {
        id: "ttft-itl-distribution".into(),
        title: "TTFT and inter-token latency (measured requests)".into(),
        width: WIDTH,
        panel_height: 300,
        panels,
        trial: None,
    })
}

fn timeline_figure(a: &Analysis, i: usize) -> Option<Figure> {
    let t = &a.report.trials[i];
    let x = &a.extras[i];
    if t.timeseries.is_empty() {
        return None;
    }
    let end = t.timeseries.len() as f64;
    let mut bands = Vec::new();
    let phase_band = |phase: BucketPhase, label: &str| {
        let secs: Vec<f64> = t
            .timeseries
            .iter()
            .filter(|b| b.phase == phase)
            .map(|b| b.t_s as f64)
            .collect();
        match (secs.first(), secs.last()) {
            (Some(&a), Some(&b)) => Some(Band {
                from: a,
                to: b + 1.0,
                label: label.into(),
            }),
            _ => None,
        }
    };
    bands.extend(phase_band(BucketPhase::Warmup, "warm-up"));
    bands.extend(phase_band(BucketPhase::Cooldown, "cool-down"));
    let panel = |title: &str, y: &str| Panel {
        title: title.into(),
        x_label: "seconds from the workload's start".into(),
        y_label: y.into(),
        bands: bands.clone(),
        y_from_zero: true,
        x_range: Some((0.0, end)),
        ..Panel::default()
    };
    let per_s = |f: fn(&crate::model::SecondBucket) -> Option<f64>| -> Vec<(f64, f64)> {
        t.timeseries
            .iter()
            .filter_map(|b| Some((b.t_s as f64 + 0.5, f(b)?)))
            .collect()
    };
    let mut panels = Vec::new();
    let mut thr = panel("Throughput per second", "requests per second");
    thr.lines.push(line(
        "completed",
        per_s(|b| Some(b.completed as f64)),
        0,
        LineStyle::Line,
    ));
    if t.timeseries.iter().any(|b| b.errors > 0) {
        thr.lines.push(line(
            "failed",
            per_s(|b| Some(b.errors as f64)),
            3,
            LineStyle::Line,
        ));
    }
    panels.push(thr);
    let mut tok = panel("Output tokens per second", "tokens per second");
    tok.lines.push(line(
        "output tokens",
        per_s(|b| Some(b.output_tokens as f64)),
        1,
        LineStyle::Line,
    ));
    panels.push(tok);
    let mut lat = panel(
        "Latency of the requests ending in each second",
        "milliseconds",
    );
    lat.lines.push(line(
        "TTFT p99",
        per_s(|b| b.ttft_p99_ms),
        1,
        LineStyle::Line,
    ));
    lat.lines
        .push(line("E2E p50", per_s(|b| b.e2e_p50_ms), 2, LineStyle::Line));
    lat.lines
        .push(line("E2E p99", per_s(|b| b.e2e_p99_ms), 0, LineStyle::Line));
    panels.push(lat);
    let mut queue = panel("Requests in flight (client) and in the server", "requests");
    queue.lines.push(line(
        "in flight (client)",
        per_s(|b| Some(b.in_flight)),
        0,
        LineStyle::Line,
    ));
    if let Some(m) = &x.metrics {
        if let Some(s) = m.summed(WAITING_METRIC) {
            queue.lines.push(line(
                "waiting (server)",
                s.points.clone(),
                3,
                LineStyle::Line,
            ));
        }
        if let Some(s) = m.summed(RUNNING_METRIC) {
            queue.lines.push(line(
                "running (server)",
                s.points.clone(),
                2,
                LineStyle::Line,
            ));
        }
    }
    panels.push(queue);
    if let Some(m) = &x.metrics {
        let pct = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
            let scale = if pts.iter().any(|p| p.1 > 1.5) {
                1.0
            } else {
                100.0
            };
            pts.iter().map(|&(t, v)| (t, v * scale)).collect()
        };
        if let Some(name) = m.first_of(&KV_CACHE_METRICS) {
            let mut kv = panel("KV cache usage", "percent");
            for (k, s) in m.named(name).enumerate() {
                kv.lines.push(line(
                    &format!("KV cache {}", s.labels),
                    pct(&s.points),
                    4 + k,
                    LineStyle::Line,
                ));
            }
            panels.push(kv);
        }
        let mut host = panel("Host and GPU utilisation", "percent");
        let mut c = 0;
        for s in host_cpu_series(m) {
            host.lines.push(line(
                &format!("CPU {}", s.labels),
                pct(&s.points),
                c,
                LineStyle::Line,
            ));
            c += 1;
        }
        for used in m.named(MEMORY_USED_METRIC) {
            let total = m
                .named(MEMORY_TOTAL_METRIC)
                .find(|s| s.labels == used.labels)
                .and_then(|s| s.points.last().map(|p| p.1))
                .or((a.host_memory_bytes > 0).then_some(a.host_memory_bytes as f64));
            if let Some(total) = total.filter(|t| *t > 0.0) {
                host.lines.push(line(
                    &format!("memory {}", used.labels),
                    used.points
                        .iter()
                        .map(|&(t, v)| (t, 100.0 * v / total))
                        .collect(),
                    c,
                    LineStyle::Line,
                ));
                c += 1;
            }
        }
        for s in m.matching(is_gpu_utilisation) {
            host.lines.push(line(
                &format!("GPU {}", s.labels),
                pct(&s.points),
                c,
                LineStyle::Line,
            ));
            c += 1;
        }
        if !host.lines.is_empty() {
            panels.push(host);
        }
    }
    for p in &mut panels {
        for l in &mut p.lines {
            l.name = l.name.trim().to_string();
        }
    }
    Some(Figure {
        id: format!("trial-{:02}-{}", i + 1, slug(&trial_label(a, i))),
        title: format!("Trial {} over time", trial_label(a, i)),
        width: WIDTH,
        panel_height: 220,
        panels,
        trial: Some((t.id.clone(), t.workload.clone())),
    })
}

/// Per-operation rates, tails and bandwidth along a sweep, for protocols with operations
/// (Redis GET/SET, S3 PUT/GET, vector queries, SQL transactions and statements).
fn operations_figure(a: &Analysis, s: &SweepReport, n: Option<usize>) -> Option<Figure> {
    let trial = |id: &str| {
        a.report
            .trials
            .iter()
            .find(|t| t.id == id && t.workload == s.workload)
    };
    let mut names: Vec<&String> = Vec::new();
    for p in &s.points {
        for name in trial(&p.trial)
            .map(|t| t.summary.operations.keys())
            .into_iter()
            .flatten()
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let x_label = format!("{} ({})", s.parameter, s.unit);
    let series = |name: &str, f: &dyn Fn(&aibench_results::OperationStats) -> Option<f64>| {
        s.points
            .iter()
            .filter_map(|p| {
                let o = trial(&p.trial)?.summary.operations.get(name)?;
                Some((p.x, f(o)?))
            })
            .collect::<Vec<_>>()
    };
    let mut rate = Panel {
        title: "Operations per second against load".into(),
        x_label: x_label.clone(),
        y_label: "operations per second".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    let mut tail = Panel {
        title: "p99 latency per operation".into(),
        x_label: x_label.clone(),
        y_label: "milliseconds".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    let mut bytes = Panel {
        title: "Payload per second (sent + received)".into(),
        x_label,
        y_label: "MiB per second".into(),
        y_from_zero: true,
        ..Panel::default()
    };
    for (i, name) in names.iter().enumerate() {
        rate.lines.push(line(
            name,
            series(name, &|o| Some(o.per_s)),
            i,
            LineStyle::LinePoints,
        ));
        tail.lines.push(line(
            name,
            series(name, &|o| o.latency.as_ref().map(|l| l.p99_ms)),
            i,
            LineStyle::LinePoints,
        ));
        let mib = series(name, &|o| Some(o.in_mib_per_s + o.out_mib_per_s));
        if mib.iter().any(|p| p.1 > 0.0) {
            bytes.lines.push(line(name, mib, i, LineStyle::LinePoints));
        }
    }
    let mut panels = vec![rate, tail];
    if !bytes.lines.is_empty() {
        panels.push(bytes);
    }
    let fixed: Vec<String> = s.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(Figure {
        id: match n {
            Some(n) => format!("sweep-{n}-operations"),
            None => "sweep-operations".into(),
        },
        title: format!(
            "{}: operations against {}{}",
            s.workload,
            s.parameter,
            if fixed.is_empty() {
                String::new()
            } else {
                format!(" ({})", fixed.join(", "))
            }
        ),
        width: WIDTH,
        panel_height: 300,
        panels,
        trial: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("03_rate=16/s"), "03_rate-16-s");
        assert_eq!(slug("01_users=1 chat"), "01_users-1-chat");
    }

    #[test]
    fn histogram_shares_sum_to_one() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        let h = histogram(&v, 100.0);
        let total: f64 = h[..BINS].iter().map(|p| p.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}
