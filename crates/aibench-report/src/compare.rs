//! Comparing runs: every headline metric side by side, with deltas, and a regression verdict.
//!
//! The first input is the baseline; every other one is compared with it. An input is a run
//! directory, a `report.json` or a `summary.json`. Trials are paired by id and workload; when
//! either side has a single trial, the two are paired whatever their ids.
//!
//! A candidate regresses when, against the baseline (defaults in [`Thresholds::default`]):
//! a p99 latency (TTFT, TPOT, ITL, E2E, E2E from the intended send) grew by more than
//! `latency_p99_pct` %; throughput (requests or output tokens per second) fell by more than
//! `throughput_pct` %; the success rate fell by more than `success_rate_pct` percentage points;
//! or, with `new_error_class`, an error class appeared that the baseline did not have.
//!
//! When both sides are run directories with their `requests.jsonl`, each of those changes is
//! judged with its noise ([`crate::noise`]): a change is a regression only when its whole 95 %
//! interval lies beyond the limit; a change beyond the limit whose interval reaches back inside
//! it is reported as within the noise. Repeats of a trial (`repeat: N`) are pooled, and the
//! spread between them counts as noise. Without samples, changes are judged on their values.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aibench_results::Summary;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Headline;
use crate::noise::{self, Samples, Stat};
use crate::rundir::RunData;

/// Why an input could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("the recipe's `regression` section: {0}")]
    Recipe(String),
}

fn input_err(path: &Path, message: impl Into<String>) -> CompareError {
    CompareError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// When a candidate counts as a regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Thresholds {
    /// Largest allowed growth of a p99 latency, in percent.
    pub latency_p99_pct: f64,
    /// Largest allowed fall of throughput, in percent.
    pub throughput_pct: f64,
    /// Largest allowed fall of the success rate, in percentage points.
    pub success_rate_pct: f64,
    /// Whether an error class the baseline did not have is a regression.
    pub new_error_class: bool,
    /// Latency growth smaller than this many milliseconds is never a regression (noise floor).
    pub min_latency_delta_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            latency_p99_pct: 10.0,
            throughput_pct: 10.0,
            success_rate_pct: 1.0,
            new_error_class: true,
            min_latency_delta_ms: 0.0,
        }
    }
}

/// Thresholds given in part (by flags or by a recipe); unset fields keep their value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdOverrides {
    pub latency_p99_pct: Option<f64>,
    pub throughput_pct: Option<f64>,
    pub success_rate_pct: Option<f64>,
    pub new_error_class: Option<bool>,
    pub min_latency_delta_ms: Option<f64>,
}

impl Thresholds {
    pub fn apply(mut self, o: &ThresholdOverrides) -> Thresholds {
        if let Some(v) = o.latency_p99_pct {
            self.latency_p99_pct = v;
        }
        if let Some(v) = o.throughput_pct {
            self.throughput_pct = v;
        }
        if let Some(v) = o.success_rate_pct {
            self.success_rate_pct = v;
        }
        if let Some(v) = o.new_error_class {
            self.new_error_class = v;
        }
        if let Some(v) = o.min_latency_delta_ms {
            self.min_latency_delta_ms = v;
        }
        self
    }
}

/// A percentage given as `10%`, `"10"` or `10`.
fn percent(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => aibench_results::units::Percent::from_str(s)
            .ok()
            .map(|p| p.0)
            .or_else(|| s.trim().parse().ok()),
        _ => None,
    }
}

/// The recipe's optional `regression:` section (`latency_p99`, `throughput`, `success_rate`
/// as percentages, `new_errors` as a boolean, `min_latency_delta` as a duration).
pub fn recipe_overrides(recipe: &serde_json::Value) -> Result<ThresholdOverrides, CompareError> {
    let Some(sec) = recipe.get("regression").filter(|v| !v.is_null()) else {
        return Ok(ThresholdOverrides::default());
    };
    let obj = sec
        .as_object()
        .ok_or_else(|| CompareError::Recipe("expected a mapping".into()))?;
    let mut o = ThresholdOverrides::default();
    for (k, v) in obj {
        let bad = || CompareError::Recipe(format!("`{k}`: cannot read {v}"));
        match k.as_str() {
            "latency_p99" => o.latency_p99_pct = Some(percent(v).ok_or_else(bad)?),
            "throughput" => o.throughput_pct = Some(percent(v).ok_or_else(bad)?),
            "success_rate" => o.success_rate_pct = Some(percent(v).ok_or_else(bad)?),
            "new_errors" => o.new_error_class = Some(v.as_bool().ok_or_else(bad)?),
            "min_latency_delta" => {
                let d = v
                    .as_str()
                    .and_then(|s| aibench_results::units::Duration::from_str(s).ok())
                    .ok_or_else(bad)?;
                o.min_latency_delta_ms = Some(d.as_secs_f64() * 1000.0);
            }
            other => {
                return Err(CompareError::Recipe(format!(
                    "unknown key `{other}` (expected latency_p99, throughput, success_rate, \
                     new_errors, min_latency_delta)"
                )))
            }
        }
    }
    Ok(o)
}

/// One trial (and workload) of a compared input, with all its repeats.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The sweep point: the trial id without its `_repeat=<n>` suffix.
    pub trial: String,
    pub workload: String,
    /// One per repeat (one without repeats).
    pub headlines: Vec<Headline>,
    /// The repeats' records in blocks, when every repeat has its `requests.jsonl`.
    pub samples: Option<Samples>,
}

impl Entry {
    pub fn key(&self) -> String {
        if self.workload.is_empty() {
            self.trial.clone()
        } else {
            format!("{}/{}", self.trial, self.workload)
        }
    }
}

/// One compared input.
#[derive(Debug, Clone)]
pub struct Side {
    /// A short name: the run id, or the file name.
    pub label: String,
    pub source: PathBuf,
    pub entries: Vec<Entry>,
    /// The recipe (`resolved.yaml`) when the input is a run directory.
    pub recipe: Option<serde_json::Value>,
}

fn from_summary(trial: &str, workload: &str, s: &Summary) -> Entry {
    Entry {
        trial: trial.to_string(),
        workload: workload.to_string(),
        headlines: vec![Headline::from_summary(s)],
        samples: None,
    }
}

/// The entries of a run directory: repeats of one point and workload grouped, with samples.
fn run_entries(data: &RunData) -> Vec<Entry> {
    let mut groups: Vec<(String, &str, Vec<&crate::rundir::TrialData>)> = Vec::new();
    for t in &data.trials {
        let point = if t.repeat.is_some() {
            aibench_results::point_of(&t.id)
        } else {
            &t.id
        };
        match groups
            .iter_mut()
            .find(|(p, w, _)| p == point && *w == t.workload)
        {
            Some((_, _, g)) => g.push(t),
            None => groups.push((point.to_string(), &t.workload, vec![t])),
        }
    }
    groups
        .into_iter()
        .map(|(point, workload, ts)| {
            let repeats: Vec<(&Path, &Summary)> =
                ts.iter().map(|t| (t.dir.as_path(), &t.summary)).collect();
            Entry {
                trial: point,
                workload: workload.to_string(),
                headlines: ts
                    .iter()
                    .map(|t| Headline::from_summary(&t.summary))
                    .collect(),
                samples: Samples::read(&repeats),
            }
        })
        .collect()
}

/// Read a run directory, a `report.json` or a `summary.json`.
pub fn load(input: &Path) -> Result<Side, CompareError> {
    if input.is_dir() {
        let data = RunData::read(input).map_err(|e| input_err(input, format!("{e:#}")))?;
        if data.trials.is_empty() {
            return Err(input_err(
                input,
                "no trial with a summary.json: nothing to compare",
            ));
        }
        let entries = run_entries(&data);
        return Ok(Side {
            label: if data.run.run_id.is_empty() {
                input.display().to_string()
            } else {
                data.run.run_id.clone()
            },
            source: input.to_path_buf(),
            entries,
            recipe: (!data.recipe.json.is_null()).then_some(data.recipe.json),
        });
    }
    let bytes = std::fs::read(input).map_err(|e| input_err(input, e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| input_err(input, format!("not JSON: {e}")))?;
    let label = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(trials) = v.get("trials").and_then(|t| t.as_array()) {
        // report.json
        let mut entries = Vec::new();
        for t in trials {
            let summary: Summary = serde_json::from_value(
                t.get("summary").cloned().unwrap_or_default(),
            )
            .map_err(|e| input_err(input, format!("a trial's summary is unreadable: {e}")))?;
            let s = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            entries.push(from_summary(&s("id"), &s("workload"), &summary));
        }
        if entries.is_empty() {
            return Err(input_err(input, "the report has no trial"));
        }
        let run_id = v
            .pointer("/run/run_id")
            .and_then(|x| x.as_str())
            .map(String::from);
        return Ok(Side {
            label: run_id.unwrap_or(label),
            source: input.to_path_buf(),
            entries,
            recipe: None,
        });
    }
    if v.get("counts").is_some() && v.get("latency").is_some() {
        let summary: Summary = serde_json::from_value(v)
            .map_err(|e| input_err(input, format!("not a readable summary.json: {e}")))?;
        return Ok(Side {
            label,
            source: input.to_path_buf(),
            entries: vec![from_summary("", "", &summary)],
            recipe: None,
        });
    }
    Err(input_err(
        input,
        "neither a report.json (with `trials`) nor a summary.json (with `counts` and `latency`)",
    ))
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// One metric of one pair of trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricDelta {
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub delta: Option<f64>,
    /// Relative change in percent (absent when the baseline is zero or missing).
    pub delta_pct: Option<f64>,
    /// The threshold this metric is gated on, in percent (or percentage points for the
    /// success rate); absent: shown, not gated.
    pub gate_pct: Option<f64>,
    /// The 95 % interval of `delta_pct` (of `delta`, in points, for the success rate), from
    /// the per-request samples; absent without them.
    pub interval: Option<[f64; 2]>,
    /// Beyond the threshold, but the interval reaches back inside it: not a regression.
    pub within_noise: bool,
    pub regression: bool,
}

/// A trial of the baseline against a trial of a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PairResult {
    pub baseline: String,
    pub candidate: String,
    pub metrics: Vec<MetricDelta>,
    pub new_error_classes: Vec<String>,
    /// Each regression in words.
    pub regressions: Vec<String>,
    /// Each change beyond a threshold but within the noise, in words.
    pub within_noise: Vec<String>,
    /// Repeats of the trial on each side.
    pub repeats: [usize; 2],
    /// Whether the changes were judged with their noise (both sides had per-request samples).
    pub noise_judged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateResult {
    pub label: String,
    pub source: String,
    pub pairs: Vec<PairResult>,
    /// Trials of either side without a partner.
    pub unmatched: Vec<String>,
    pub regression: bool,
}

/// The outcome of `aibench compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    pub baseline: String,
    pub baseline_source: String,
    pub thresholds: Thresholds,
    pub candidates: Vec<CandidateResult>,
    /// Whether any candidate regressed.
    pub regression: bool,
}

struct Spec {
    name: &'static str,
    unit: &'static str,
    better: Better,
    gate: Gate,
    get: fn(&Headline) -> Option<f64>,
    /// The statistic the samples give for it, if any.
    stat: Option<Stat>,
}

#[derive(Clone, Copy, PartialEq)]
enum Gate {
    None,
    Latency,
    Throughput,
    SuccessRate,
}

const METRICS: [Spec; 15] = [
    Spec {
        name: "requests/s",
        unit: "req/s",
        better: Better::Higher,
        gate: Gate::Throughput,
        get: |h| Some(h.requests_per_s),
        stat: Some(Stat::RequestsPerS),
    },
    Spec {
        name: "output tokens/s",
        unit: "tok/s",
        better: Better::Higher,
        gate: Gate::Throughput,
        get: |h| Some(h.output_tokens_per_s),
        stat: Some(Stat::OutputTokensPerS),
    },
    Spec {
        name: "goodput/s",
        unit: "req/s",
        better: Better::Higher,
        gate: Gate::None,
        get: |h| h.goodput_per_s,
        stat: None,
    },
    Spec {
        name: "success rate",
        unit: "%",
        better: Better::Higher,
        gate: Gate::SuccessRate,
        get: |h| Some(h.success_rate * 100.0),
        stat: Some(Stat::SuccessRate),
    },
    Spec {
        name: "TTFT p50",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::None,
        get: |h| h.ttft_p50_ms,
        stat: None,
    },
    Spec {
        name: "TTFT p99",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::Latency,
        get: |h| h.ttft_p99_ms,
        stat: Some(Stat::TtftP99),
    },
    Spec {
        name: "TPOT p50",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::None,
        get: |h| h.tpot_p50_ms,
        stat: None,
    },
    Spec {
        name: "TPOT p99",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::Latency,
        get: |h| h.tpot_p99_ms,
        stat: Some(Stat::TpotP99),
    },
    Spec {
        name: "ITL p50",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::None,
        get: |h| h.itl_p50_ms,
        stat: None,
    },
    Spec {
        name: "ITL p99",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::Latency,
        get: |h| h.itl_p99_ms,
        stat: Some(Stat::ItlP99),
    },
    Spec {
        name: "E2E p50",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::None,
        get: |h| h.e2e_p50_ms,
        stat: None,
    },
    Spec {
        name: "E2E p99",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::Latency,
        get: |h| h.e2e_p99_ms,
        stat: Some(Stat::E2eP99),
    },
    Spec {
        name: "E2E p99 from intended send",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::Latency,
        get: |h| h.e2e_from_intended_p99_ms,
        stat: Some(Stat::E2eFromIntendedP99),
    },
    Spec {
        name: "send lag p99",
        unit: "ms",
        better: Better::Lower,
        gate: Gate::None,
        get: |h| h.send_lag_p99_ms,
        stat: None,
    },
    Spec {
        name: "requests",
        unit: "",
        better: Better::Higher,
        gate: Gate::None,
        get: |h| Some(h.requests as f64),
        stat: None,
    },
];

/// The median of the repeats' values (the value itself without repeats).
fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `[low, high]` for reading: `[−3.0, +27.5]`.
fn show_interval(i: [f64; 2], unit: &str) -> String {
    format!("[{:+.1}, {:+.1}]{unit}", i[0], i[1])
}

fn compare_pair(b: &Entry, c: &Entry, t: &Thresholds) -> PairResult {
    let noise = match (&b.samples, &c.samples) {
        (Some(bs), Some(cs)) => {
            let stats: Vec<Stat> = METRICS.iter().filter_map(|m| m.stat).collect();
            let changes = noise::changes(bs, cs, &stats);
            Some(
                stats
                    .into_iter()
                    .zip(changes)
                    .collect::<Vec<(Stat, Option<noise::Change>)>>(),
            )
        }
        _ => None,
    };
    let mut metrics = Vec::new();
    let mut regressions = Vec::new();
    let mut within_noise = Vec::new();
    for m in &METRICS {
        let judged = m.stat.and_then(|st| {
            noise
                .as_ref()?
                .iter()
                .find(|(s, _)| *s == st)
                .and_then(|(_, c)| c.clone())
        });
        let (bv, cv) = match &judged {
            Some(ch) => (Some(ch.baseline), Some(ch.candidate)),
            None => (
                median(b.headlines.iter().map(m.get)),
                median(c.headlines.iter().map(m.get)),
            ),
        };
        let delta = match (bv, cv) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        };
        let delta_pct = match (&judged, bv, delta) {
            (Some(ch), ..) if m.gate != Gate::SuccessRate => Some(ch.change),
            (_, Some(x), Some(d)) if x.abs() > f64::EPSILON => Some(100.0 * d / x),
            _ => None,
        };
        let interval = judged.as_ref().map(|ch| [ch.low, ch.high]);
        // Beyond the threshold on the values; beyond it with the whole interval.
        let (gate_pct, worse, beyond_noise) = match (m.gate, bv, cv) {
            (Gate::Latency, Some(x), Some(y)) => {
                let limit = t.latency_p99_pct;
                (
                    Some(limit),
                    y > x * (1.0 + limit / 100.0) && y - x > t.min_latency_delta_ms,
                    interval.is_none_or(|i| i[0] > limit),
                )
            }
            (Gate::Throughput, Some(x), Some(y)) => {
                let limit = t.throughput_pct;
                (
                    Some(limit),
                    y < x * (1.0 - limit / 100.0),
                    interval.is_none_or(|i| i[1] < -limit),
                )
            }
            (Gate::SuccessRate, Some(x), Some(y)) => {
                let limit = t.success_rate_pct;
                (
                    Some(limit),
                    x - y > limit,
                    interval.is_none_or(|i| i[1] < -limit),
                )
            }
            (Gate::Latency, ..) => (Some(t.latency_p99_pct), false, false),
            (Gate::Throughput, ..) => (Some(t.throughput_pct), false, false),
            (Gate::SuccessRate, ..) => (Some(t.success_rate_pct), false, false),
            (Gate::None, ..) => (None, false, false),
        };
        let regression = worse && beyond_noise;
        if worse {
            let (x, y) = (bv.unwrap_or(0.0), cv.unwrap_or(0.0));
            let limit = gate_pct.unwrap_or(0.0);
            let what = match m.gate {
                Gate::SuccessRate => format!(
                    "{} fell from {x:.2}% to {y:.2}% (more than {limit} points",
                    m.name
                ),
                Gate::Throughput => format!(
                    "{} fell {:.1}% ({x:.2} → {y:.2} {}; limit −{limit}%",
                    m.name,
                    -delta_pct.unwrap_or(0.0),
                    m.unit,
                ),
                _ => format!(
                    "{} grew {:.1}% ({x:.1} → {y:.1} {}; limit +{limit}%",
                    m.name,
                    delta_pct.unwrap_or(0.0),
                    m.unit,
                ),
            };
            let unit = if m.gate == Gate::SuccessRate {
                " points"
            } else {
                "%"
            };
            match interval {
                Some(i) if regression => regressions.push(format!(
                    "{what}; 95% interval {} beyond the limit)",
                    show_interval(i, unit)
                )),
                Some(i) => within_noise.push(format!(
                    "{what}; 95% interval {} reaches back inside the limit)",
                    show_interval(i, unit)
                )),
                None => regressions.push(format!("{what})")),
            }
        }
        metrics.push(MetricDelta {
            metric: m.name.into(),
            unit: m.unit.into(),
            better: m.better,
            baseline: bv,
            candidate: cv,
            delta,
            delta_pct,
            gate_pct,
            interval,
            within_noise: worse && !regression,
            regression,
        });
    }
    let classes = |e: &Entry| -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for h in &e.headlines {
            for (k, n) in &h.errors_by_class {
                *out.entry(k.clone()).or_insert(0) += n;
            }
        }
        out
    };
    let before: BTreeSet<String> = classes(b)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, _)| k)
        .collect();
    let new_error_classes: Vec<String> = classes(c)
        .into_iter()
        .filter(|(k, n)| *n > 0 && !before.contains(k))
        .map(|(k, n)| format!("{k} ({n})"))
        .collect();
    if t.new_error_class && !new_error_classes.is_empty() {
        regressions.push(format!(
            "new error class{}: {}",
            if new_error_classes.len() == 1 {
                ""
            } else {
                "es"
            },
            new_error_classes.join(", ")
        ));
    }
    PairResult {
        baseline: b.key(),
        candidate: c.key(),
        metrics,
        new_error_classes,
        regressions,
        within_noise,
        repeats: [b.headlines.len(), c.headlines.len()],
        noise_judged: noise.is_some(),
    }
}

/// Pair the trials of two sides: a single trial pairs with a single trial; otherwise by key.
fn pairs<'a>(b: &'a Side, c: &'a Side) -> (Vec<(&'a Entry, &'a Entry)>, Vec<String>) {
    if b.entries.len() == 1 && c.entries.len() == 1 {
        return (vec![(&b.entries[0], &c.entries[0])], Vec::new());
    }
    let mut out = Vec::new();
    let mut unmatched = Vec::new();
    for e in &b.entries {
        match c.entries.iter().find(|o| o.key() == e.key()) {
            Some(o) => out.push((e, o)),
            None => unmatched.push(format!("{} (only in {})", e.key(), b.label)),
        }
    }
    for e in &c.entries {
        if !b.entries.iter().any(|o| o.key() == e.key()) {
            unmatched.push(format!("{} (only in {})", e.key(), c.label));
        }
    }
    (out, unmatched)
}

/// Compare every candidate with the baseline.
pub fn compare(baseline: &Side, candidates: &[Side], t: &Thresholds) -> Comparison {
    let candidates: Vec<CandidateResult> = candidates
        .iter()
        .map(|c| {
            let (ps, unmatched) = pairs(baseline, c);
            let pairs: Vec<PairResult> = ps.iter().map(|(b, c)| compare_pair(b, c, t)).collect();
            let regression = pairs.iter().any(|p| !p.regressions.is_empty());
            CandidateResult {
                label: c.label.clone(),
                source: c.source.display().to_string(),
                pairs,
                unmatched,
                regression,
            }
        })
        .collect();
    Comparison {
        baseline: baseline.label.clone(),
        baseline_source: baseline.source.display().to_string(),
        thresholds: t.clone(),
        regression: candidates.iter().any(|c| c.regression),
        candidates,
    }
}

fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "–".into(),
        Some(v) if unit.is_empty() => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// How the candidate's changes were judged, in words.
fn noise_note(pairs: &[PairResult]) -> String {
    if pairs.is_empty() {
        return "no trial paired: nothing judged".into();
    }
    if !pairs.iter().all(|p| p.noise_judged) {
        return "noise not judged: a side has no per-request samples (a summary.json or \
                report.json, or a run without requests.jsonl); changes are judged on their \
                values alone"
            .into();
    }
    let [b, c] = pairs.iter().fold([usize::MAX; 2], |acc, p| {
        [acc[0].min(p.repeats[0]), acc[1].min(p.repeats[1])]
    });
    let mut note = format!(
        "noise: [low, high] is the 95% interval of each change, by block bootstrap over the \
         per-request samples ({} resamples); a change is a regression only when its whole \
         interval is beyond the limit",
        noise::RESAMPLES
    );
    if b < 2 || c < 2 {
        note.push_str(
            "; with one repeat on a side the spread between runs is unknown: `repeat: 3` in \
             the recipe measures it",
        );
    } else {
        let _ = write!(
            note,
            "; {b} and {c} repeats: the spread between runs counts"
        );
    }
    note
}

/// The comparison as text tables: one per baseline trial, a column per input.
pub fn render_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "baseline: {} ({})", c.baseline, c.baseline_source);
    for (i, cand) in c.candidates.iter().enumerate() {
        let _ = writeln!(out, "candidate {}: {} ({})", i + 1, cand.label, cand.source);
    }
    // Baseline trial keys in order of appearance.
    let mut keys: Vec<&str> = Vec::new();
    for cand in &c.candidates {
        for p in &cand.pairs {
            if !keys.contains(&p.baseline.as_str()) {
                keys.push(&p.baseline);
            }
        }
    }
    for key in keys {
        let cols: Vec<Option<&PairResult>> = c
            .candidates
            .iter()
            .map(|cand| cand.pairs.iter().find(|p| p.baseline == key))
            .collect();
        let Some(first) = cols.iter().flatten().next() else {
            continue;
        };
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut head = vec![
            "metric".to_string(),
            if key.is_empty() {
                "baseline".into()
            } else {
                format!("baseline {key}")
            },
        ];
        for (i, col) in cols.iter().enumerate() {
            let name = match col {
                Some(p) if !p.candidate.is_empty() && p.candidate != key => {
                    format!("#{} {}", i + 1, p.candidate)
                }
                _ => format!("#{}", i + 1),
            };
            head.push(name);
            head.push("Δ".into());
        }
        rows.push(head);
        for (m, base) in first.metrics.iter().enumerate() {
            let mut row = vec![
                if base.unit.is_empty() || base.unit == "%" {
                    base.metric.clone()
                } else {
                    format!("{} ({})", base.metric, base.unit)
                },
                num(base.baseline, &base.unit),
            ];
            for col in &cols {
                match col.and_then(|p| p.metrics.get(m)) {
                    Some(d) => {
                        row.push(num(d.candidate, &d.unit));
                        let delta = match (d.delta_pct, d.delta) {
                            _ if d.unit == "%" => d.delta.map(|x| format!("{x:+.2} pt")),
                            (Some(p), _) => Some(format!("{p:+.1}%")),
                            (None, Some(x)) => Some(format!("{x:+.2}")),
                            _ => None,
                        }
                        .unwrap_or_else(|| "–".into());
                        let delta = match d.interval {
                            Some(i) => format!("{delta} {}", show_interval(i, "")),
                            None => delta,
                        };
                        row.push(if d.regression {
                            format!("{delta} REGRESSION")
                        } else if d.within_noise {
                            format!("{delta} noise")
                        } else {
                            delta
                        });
                    }
                    None => {
                        row.push("–".into());
                        row.push(String::new());
                    }
                }
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|j| {
                rows.iter()
                    .map(|r| r.get(j).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = writeln!(out);
        for (ri, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let pad = widths[j].saturating_sub(s.chars().count());
                    if j == 0 {
                        format!("{s}{}", " ".repeat(pad))
                    } else {
                        format!("{}{s}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
            if ri == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        for (i, col) in cols.iter().enumerate() {
            if let Some(p) = col {
                if !p.new_error_classes.is_empty() {
                    let _ = writeln!(
                        out,
                        "#{}: new error classes: {}",
                        i + 1,
                        p.new_error_classes.join(", ")
                    );
                }
            }
        }
    }
    let _ = writeln!(out);
    for (i, cand) in c.candidates.iter().enumerate() {
        for u in &cand.unmatched {
            let _ = writeln!(out, "#{}: unmatched trial {u}", i + 1);
        }
        if cand.regression {
            let _ = writeln!(out, "#{} {}: REGRESSION", i + 1, cand.label);
        } else {
            let _ = writeln!(out, "#{} {}: no regression", i + 1, cand.label);
        }
        for p in &cand.pairs {
            let at = if p.baseline.is_empty() {
                String::new()
            } else {
                format!("{}: ", p.baseline)
            };
            for r in &p.regressions {
                let _ = writeln!(out, "  - {at}{r}");
            }
            for r in &p.within_noise {
                let _ = writeln!(out, "  ~ {at}within the noise: {r}");
            }
        }
        let _ = writeln!(out, "  {}", noise_note(&cand.pairs));
    }
    let t = &c.thresholds;
    let _ = writeln!(
        out,
        "thresholds: p99 latency +{}%, throughput −{}%, success rate −{} points, new error class {}{}",
        t.latency_p99_pct,
        t.throughput_pct,
        t.success_rate_pct,
        if t.new_error_class { "on" } else { "off" },
        if t.min_latency_delta_ms > 0.0 {
            format!(", latency noise floor {} ms", t.min_latency_delta_ms)
        } else {
            String::new()
        }
    );
    out
}
