//! Across a sweep: load–latency and load–throughput curves, their knees, the highest load that
//! meets every objective, and the throughput plateau.
//!
//! The x axis is the swept load parameter (a rate, a number of users, an in-flight cap, ...):
//! among the parameters that take at least three numeric values, the first that names a load
//! (`*.load.rate`, `*.load.users`, `*concurrency*`, `*max_in_flight*`), else the first. Trials
//! that share the values of every other swept parameter form one curve. Repeats of a point
//! (`repeat: N`) share its parameters; the repeat with the median throughput stands for it.

use std::str::FromStr;

use indexmap::IndexMap;

use crate::knee::{self, Shape};
use crate::model::{
    Knee, KneePair, Plateau, SaturationPoint, SloMaxLoad, SweepPoint, SweepReport, TrialReport,
};

/// Throughput within this share of its maximum is on the plateau.
pub const PLATEAU_TOLERANCE: f64 = 0.05;

/// A parameter value as a number: `16`, `"16"`, `"16/s"`, `"250ms"` (seconds).
pub fn numeric(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .or_else(|| {
                aibench_results::units::Rate::from_str(s)
                    .ok()
                    .map(|r| r.per_second())
            })
            .or_else(|| {
                aibench_results::units::Duration::from_str(s)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

const LOAD_HINTS: [&str; 6] = [
    ".load.rate",
    ".load.users",
    "concurrency",
    "max_in_flight",
    "rate",
    "users",
];

/// The unit of a swept parameter, from its name.
pub fn unit_of(param: &str) -> &'static str {
    let p = param.to_ascii_lowercase();
    if p.ends_with("rate") {
        "requests/s"
    } else if p.ends_with("users") {
        "users"
    } else if p.contains("concurrency") || p.contains("in_flight") {
        "requests in flight"
    } else {
        ""
    }
}

/// A load value with its unit, for reading.
pub fn show_x(x: f64, unit: &str) -> String {
    let n = if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    match unit {
        "requests/s" => format!("{n}/s"),
        "" => n,
        u => format!("{n} {u}"),
    }
}

fn choose_parameter(trials: &[&TrialReport], others: &[&str]) -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    for t in trials {
        for k in t.params.keys() {
            // Another workload's parameter is not this workload's load.
            let owner = k.split('.').next().unwrap_or("");
            if !candidates.contains(k) && !others.contains(&owner) {
                candidates.push(k.clone());
            }
        }
    }
    candidates.retain(|k| {
        let mut vals: Vec<f64> = trials
            .iter()
            .filter_map(|t| t.params.get(k).and_then(numeric))
            .collect();
        vals.sort_by(|a, b| a.total_cmp(b));
        vals.dedup();
        vals.len() >= 3
    });
    for hint in LOAD_HINTS {
        if let Some(k) = candidates
            .iter()
            .find(|k| k.ends_with(hint) || k.contains(hint))
        {
            return Some(k.clone());
        }
    }
    candidates.into_iter().next()
}

fn point(x: f64, t: &TrialReport, metric: LatencyMetric) -> SweepPoint {
    let h = &t.headline;
    SweepPoint {
        x,
        trial: t.id.clone(),
        requests_per_s: h.requests_per_s,
        output_tokens_per_s: h.output_tokens_per_s,
        goodput_per_s: h.goodput_per_s,
        success_rate: h.success_rate,
        ttft_p50_ms: h.ttft_p50_ms,
        ttft_p99_ms: h.ttft_p99_ms,
        tpot_p99_ms: h.tpot_p99_ms,
        e2e_p50_ms: h.e2e_p50_ms,
        e2e_p99_ms: h.e2e_p99_ms,
        e2e_from_intended_p99_ms: h.e2e_from_intended_p99_ms,
        latency_ms: metric.of(t),
        slo_passed: t.slo.evaluated.then_some(t.slo.passed),
    }
}

#[derive(Debug, Clone, Copy)]
enum LatencyMetric {
    E2eFromIntendedP99,
    E2eP99,
    TtftP99,
}

impl LatencyMetric {
    fn name(self) -> &'static str {
        match self {
            LatencyMetric::E2eFromIntendedP99 => "e2e_from_intended_p99_ms",
            LatencyMetric::E2eP99 => "e2e_p99_ms",
            LatencyMetric::TtftP99 => "ttft_p99_ms",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LatencyMetric::E2eFromIntendedP99 => "E2E p99 from intended send",
            LatencyMetric::E2eP99 => "E2E p99",
            LatencyMetric::TtftP99 => "TTFT p99",
        }
    }

    fn of(self, t: &TrialReport) -> Option<f64> {
        let h = &t.headline;
        match self {
            LatencyMetric::E2eFromIntendedP99 => h.e2e_from_intended_p99_ms,
            LatencyMetric::E2eP99 => h.e2e_p99_ms,
            LatencyMetric::TtftP99 => h.ttft_p99_ms,
        }
    }
}

/// The label of a latency metric name used in [`SweepReport::latency_metric`].
pub fn latency_label(name: &str) -> &'static str {
    match name {
        "e2e_from_intended_p99_ms" => LatencyMetric::E2eFromIntendedP99.label(),
        "ttft_p99_ms" => LatencyMetric::TtftP99.label(),
        _ => LatencyMetric::E2eP99.label(),
    }
}

/// Every curve of the run's sweep.
pub fn analyse(trials: &[TrialReport]) -> Vec<SweepReport> {
    let mut workloads: Vec<&str> = Vec::new();
    for t in trials {
        if !workloads.contains(&t.workload.as_str()) {
            workloads.push(&t.workload);
        }
    }
    let mut out = Vec::new();
    for &w in &workloads {
        let ts: Vec<&TrialReport> = trials.iter().filter(|t| t.workload == w).collect();
        let others: Vec<&str> = workloads.iter().copied().filter(|o| *o != w).collect();
        let Some(param) = choose_parameter(&ts, &others) else {
            continue;
        };
        // Curves: trials sharing every other parameter.
        let mut groups: Vec<(IndexMap<String, serde_json::Value>, Vec<&TrialReport>)> = Vec::new();
        for t in &ts {
            let fixed: IndexMap<String, serde_json::Value> = t
                .params
                .iter()
                .filter(|(k, _)| **k != param)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match groups.iter_mut().find(|(f, _)| *f == fixed) {
                Some((_, g)) => g.push(t),
                None => groups.push((fixed, vec![t])),
            }
        }
        for (fixed, group) in groups {
            if let Some(s) = curve(&param, w, fixed, &group) {
                out.push(s);
            }
        }
    }
    out
}

fn curve(
    param: &str,
    workload: &str,
    fixed: IndexMap<String, serde_json::Value>,
    group: &[&TrialReport],
) -> Option<SweepReport> {
    let mut pts: Vec<(f64, &TrialReport)> = group
        .iter()
        .filter_map(|t| Some((t.params.get(param).and_then(numeric)?, *t)))
        .filter(|(_, t)| t.headline.requests > 0)
        .collect();
    pts.sort_by(|a, b| {
        a.0.total_cmp(&b.0).then(
            a.1.headline
                .requests_per_s
                .total_cmp(&b.1.headline.requests_per_s),
        )
    });
    // Repeats of a point (`repeat: N`): the one with the median throughput stands for it.
    let mut medians: Vec<(f64, &TrialReport)> = Vec::new();
    for chunk in pts.chunk_by(|a, b| a.0 == b.0) {
        medians.push(chunk[(chunk.len() - 1) / 2]);
    }
    let pts = medians;
    if pts.len() < 3 {
        return None;
    }
    let metric = [
        LatencyMetric::E2eFromIntendedP99,
        LatencyMetric::E2eP99,
        LatencyMetric::TtftP99,
    ]
    .into_iter()
    .find(|m| pts.iter().all(|(_, t)| m.of(t).is_some()))
    .unwrap_or(LatencyMetric::E2eP99);
    let unit = unit_of(param);
    let points: Vec<SweepPoint> = pts.iter().map(|(x, t)| point(*x, t, metric)).collect();
    let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    let show = |x: f64| show_x(x, unit);

    let lat: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((p.x, p.latency_ms?)))
        .collect();
    let (lx, ly): (Vec<f64>, Vec<f64>) = lat.iter().copied().unzip();
    let thr: Vec<f64> = points.iter().map(|p| p.requests_per_s).collect();
    let trial_at = |x: f64| {
        points
            .iter()
            .find(|p| p.x == x)
            .map(|p| p.trial.clone())
            .unwrap_or_default()
    };

    let latency_knee = KneePair {
        max_curvature: knee::max_curvature(&lx, &ly, Shape::ConvexIncreasing).map(|k| {
            let (x, y) = (lx[k.index], ly[k.index]);
            Knee {
                x,
                trial: trial_at(x),
                y,
                score: k.score,
                scores: k.scores.clone(),
                confirmed: k.confirmed,
                evidence: format!(
                    "{} bends upward most sharply at {} ({y:.1} ms; normalised curvature {:.2}{})",
                    metric.label(),
                    show(x),
                    k.score,
                    neighbours(&lx, &ly, k.index, &show, "ms"),
                ),
            }
        }),
        kneedle: knee::kneedle(&lx, &ly, Shape::ConvexIncreasing, knee::DEFAULT_SENSITIVITY).map(
            |k| {
                let (x, y) = (lx[k.index], ly[k.index]);
                Knee {
                    x,
                    trial: trial_at(x),
                    y,
                    score: k.score,
                    scores: k.scores.clone(),
                    confirmed: k.confirmed,
                    evidence: format!(
                        "{} lies farthest below the chord at {} ({y:.1} ms; distance {:.2} in \
                         normalised units){}",
                        metric.label(),
                        show(x),
                        k.score,
                        if k.confirmed {
                            ", confirmed by the loads after it"
                        } else {
                            "; not confirmed: the sweep may end before the bend completes"
                        }
                    ),
                }
            },
        ),
    };
    let throughput_knee = KneePair {
        max_curvature: knee::max_curvature(&xs, &thr, Shape::ConcaveIncreasing).map(|k| {
            let (x, y) = (xs[k.index], thr[k.index]);
            Knee {
                x,
                trial: trial_at(x),
                y,
                score: k.score,
                scores: k.scores.clone(),
                confirmed: k.confirmed,
                evidence: format!(
                    "throughput bends downward most sharply at {} ({y:.2} req/s; normalised \
                     curvature {:.2}{})",
                    show(x),
                    k.score,
                    neighbours(&xs, &thr, k.index, &show, "req/s"),
                ),
            }
        }),
        kneedle: knee::kneedle(
            &xs,
            &thr,
            Shape::ConcaveIncreasing,
            knee::DEFAULT_SENSITIVITY,
        )
        .map(|k| {
            let (x, y) = (xs[k.index], thr[k.index]);
            Knee {
                x,
                trial: trial_at(x),
                y,
                score: k.score,
                scores: k.scores.clone(),
                confirmed: k.confirmed,
                evidence: format!(
                    "throughput lies farthest above the chord at {} ({y:.2} req/s; distance \
                         {:.2} in normalised units){}",
                    show(x),
                    k.score,
                    if k.confirmed {
                        ", confirmed by the loads after it"
                    } else {
                        "; not confirmed"
                    }
                ),
            }
        }),
    };
    let saturation = [
        (latency_knee.kneedle.as_ref(), "latency_kneedle"),
        (latency_knee.max_curvature.as_ref(), "latency_max_curvature"),
        (throughput_knee.kneedle.as_ref(), "throughput_kneedle"),
    ]
    .into_iter()
    .find_map(|(k, m)| {
        k.map(|k| SaturationPoint {
            x: k.x,
            trial: k.trial.clone(),
            method: m.into(),
            evidence: k.evidence.clone(),
        })
    });
    let slo_max_load = slo_max_load(&points, group, &show);
    let plateau = plateau(&points, &show);
    Some(SweepReport {
        parameter: param.to_string(),
        unit: unit.to_string(),
        workload: workload.to_string(),
        fixed,
        latency_metric: metric.name().to_string(),
        points,
        latency_knee,
        throughput_knee,
        saturation,
        slo_max_load,
        plateau,
    })
}

fn neighbours(
    xs: &[f64],
    ys: &[f64],
    i: usize,
    show: &dyn Fn(f64) -> String,
    unit: &str,
) -> String {
    if i == 0 || i + 1 >= xs.len() {
        return String::new();
    }
    format!(
        "; {} {:.1} {unit} before, {} {:.1} {unit} after",
        show(xs[i - 1]),
        ys[i - 1],
        show(xs[i + 1]),
        ys[i + 1]
    )
}

fn slo_max_load(
    points: &[SweepPoint],
    group: &[&TrialReport],
    show: &dyn Fn(f64) -> String,
) -> SloMaxLoad {
    if points.iter().all(|p| p.slo_passed.is_none()) {
        return SloMaxLoad {
            x: None,
            trial: None,
            evidence: "the recipe sets no objective (`slo:`)".into(),
        };
    }
    let best = points.iter().rev().find(|p| p.slo_passed == Some(true));
    let failures_of = |trial: &str| {
        group
            .iter()
            .find(|t| t.id == trial)
            .map(|t| t.slo.failures.join("; "))
            .unwrap_or_default()
    };
    let Some(best) = best else {
        let first = &points[0];
        return SloMaxLoad {
            x: None,
            trial: None,
            evidence: format!(
                "no load met every objective; even {} missed: {}",
                show(first.x),
                failures_of(&first.trial)
            ),
        };
    };
    let mut evidence = match points.iter().find(|p| p.x > best.x) {
        Some(next) => format!(
            "{} meets every objective; the next load, {}, missed: {}",
            show(best.x),
            show(next.x),
            failures_of(&next.trial)
        ),
        None => format!(
            "{} meets every objective and is the highest load swept; the limit lies higher",
            show(best.x)
        ),
    };
    let lower_misses: Vec<String> = points
        .iter()
        .filter(|p| p.x < best.x && p.slo_passed == Some(false))
        .map(|p| show(p.x))
        .collect();
    if !lower_misses.is_empty() {
        evidence.push_str(&format!(
            " (not monotonic: lower loads {} missed)",
            lower_misses.join(", ")
        ));
    }
    SloMaxLoad {
        x: Some(best.x),
        trial: Some(best.trial.clone()),
        evidence,
    }
}

fn plateau(points: &[SweepPoint], show: &dyn Fn(f64) -> String) -> Option<Plateau> {
    let max = points
        .iter()
        .map(|p| p.requests_per_s)
        .fold(f64::NEG_INFINITY, f64::max);
    if max.is_nan() || max <= 0.0 {
        return None;
    }
    let floor = (1.0 - PLATEAU_TOLERANCE) * max;
    // The lowest load from which every higher load stays on the plateau; if throughput later
    // collapses, the first load that reached it.
    let from = (0..points.len())
        .find(|&i| points[i..].iter().all(|p| p.requests_per_s >= floor))
        .or_else(|| points.iter().position(|p| p.requests_per_s >= floor))?;
    let on: Vec<&SweepPoint> = points[from..]
        .iter()
        .filter(|p| p.requests_per_s >= floor)
        .collect();
    let reached = on.len() >= 2;
    let p0 = &points[from];
    let last = on.last().copied().unwrap_or(p0);
    let max_tok = points
        .iter()
        .map(|p| p.output_tokens_per_s)
        .fold(0.0, f64::max);
    let lat = |p: &SweepPoint| {
        p.latency_ms
            .map(|v| format!("{v:.0} ms"))
            .unwrap_or("–".into())
    };
    let evidence = if reached {
        let growth = match (p0.latency_ms, last.latency_ms) {
            (Some(a), Some(b)) if a > 0.0 => format!(" (×{:.1})", b / a),
            _ => String::new(),
        };
        format!(
            "throughput stays within {:.0}% of its maximum {max:.2} req/s from {} to {} \
             (load ×{:.2}) while latency goes from {} to {}{growth}",
            PLATEAU_TOLERANCE * 100.0,
            show(p0.x),
            show(last.x),
            last.x / p0.x,
            lat(p0),
            lat(last),
        )
    } else {
        format!(
            "throughput peaks at {max:.2} req/s at {}, the {} load swept; no plateau was reached, \
             the sweep may stop short of saturation",
            show(p0.x),
            if from + 1 == points.len() {
                "highest"
            } else {
                "only such"
            }
        )
    };
    Some(Plateau {
        max_requests_per_s: max,
        max_output_tokens_per_s: max_tok,
        from_x: p0.x,
        from_trial: p0.trial.clone(),
        tolerance: PLATEAU_TOLERANCE,
        reached,
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_values_as_numbers() {
        assert_eq!(numeric(&json!(16)), Some(16.0));
        assert_eq!(numeric(&json!("16/s")), Some(16.0));
        assert_eq!(numeric(&json!("120/min")), Some(2.0));
        assert_eq!(numeric(&json!("250ms")), Some(0.25));
        assert_eq!(numeric(&json!("x")), None);
        assert_eq!(show_x(16.0, "requests/s"), "16/s");
        assert_eq!(show_x(2.5, "users"), "2.5 users");
    }
}
