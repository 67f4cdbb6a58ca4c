//! `report.json`: every figure the Markdown and HTML reports show, with the evidence behind each
//! conclusion. Its JSON Schema, generated from these types by [`report_schema`], is committed as
//! `schema/report.schema.json`.
//!
//! Units are in the field names: `_ms` milliseconds, `_s` seconds, `_per_s` per second; shares
//! are fractions (0.25 is 25 %).

use std::collections::BTreeMap;

use aibench_results::{SloMs, Status, Summary};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the `report.json` layout. Bump it on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The whole report of one run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Layout version of this file.
    pub schema_version: u32,
    /// The aibench version that wrote this report.
    pub generated_by: String,
    pub run: RunReport,
    /// The recipe's service-level objectives (absent: the recipe gave none).
    pub slo: Option<SloSpec>,
    /// One entry per trial and workload, in the order they ran.
    pub trials: Vec<TrialReport>,
    /// Trials the run planned but never measured (it stopped before them, or they failed
    /// before any summary), so that they do not vanish from the report.
    #[serde(default)]
    pub not_run: Vec<NotRun>,
    /// Trials run.json calls completed whose summaries are missing or unreadable: the run
    /// directory is damaged (`aibench run --resume` runs them again).
    #[serde(default)]
    pub damaged: Vec<String>,
    /// One entry per curve of a sweep (a workload, and the values of every other swept
    /// parameter); empty when fewer than three trials vary a numeric parameter.
    pub sweeps: Vec<SweepReport>,
    /// What limits the service, from the client's measurements and, where present, the
    /// monitoring data; one entry per kind of verdict, naming the trials it was found in.
    pub bottlenecks: Vec<Verdict>,
    /// The plots written under `plots/`.
    pub plots: Vec<PlotRef>,
    /// Things the reader should know: missing files, clocks that could not be aligned, ...
    pub notes: Vec<String>,
}

/// A trial of the plan with no summary.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NotRun {
    pub id: String,
    pub params: IndexMap<String, serde_json::Value>,
    /// Its status in run.json (`pending`: never started).
    pub status: Option<Status>,
}

/// What ran, where and when (from `run.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    pub run_id: String,
    /// The recipe's name.
    pub name: String,
    /// How the run ended (`null`: its run.json is missing).
    pub status: Option<Status>,
    /// Why the run failed or stopped early.
    pub reason: Option<String>,
    pub platform: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_at: f64,
    pub started_at_utc: String,
    pub finished_at: Option<f64>,
    pub hostname: String,
    pub cpu_model: String,
    pub cpus: u64,
    pub memory_bytes: u64,
    pub aibench_version: String,
    pub aibench_git: String,
    /// The services the recipe deployed.
    pub services: Vec<ServiceReport>,
    /// This machine's measuring error, when `run --calibrate` measured it before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<aibench_results::Calibration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceReport {
    pub name: String,
    /// `vllm`, `ollama`, `sim`, ...
    pub kind: String,
    pub model: Option<String>,
}

/// The recipe's objectives in milliseconds, fractions and rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloSpec {
    /// Per-request thresholds: a request is good when it meets all of them.
    pub per_request: SloMs,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// Largest share of failed or dropped requests.
    pub error_rate: Option<f64>,
    /// Smallest successful request rate.
    pub min_throughput_per_s: Option<f64>,
    /// Smallest share of requests meeting every per-request threshold.
    pub min_goodput: Option<f64>,
}

/// One workload of one trial.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TrialReport {
    /// The trial id (`03_rate=16/s`).
    pub id: String,
    pub workload: String,
    /// The swept values of this trial.
    pub params: IndexMap<String, serde_json::Value>,
    /// How the trial ended (`null`: run.json does not list it).
    pub status: Option<Status>,
    /// The folder holding its `summary.json` and `requests.jsonl`, relative to the run directory.
    pub dir: String,
    pub headline: Headline,
    pub slo: SloOutcome,
    /// Requests meeting every per-request threshold (absent: no per-request threshold).
    pub goodput: Option<Goodput>,
    /// Per-second series from `requests.jsonl`, warm-up and cool-down included and marked
    /// (empty when the records were not kept).
    pub timeseries: Vec<SecondBucket>,
    /// Summaries of the monitoring series of the trial (empty without `metrics/`).
    pub metrics: Vec<MetricSummary>,
    /// GPU energy over the measure window (absent without GPU power samples).
    pub energy: Option<Energy>,
    /// Verdicts for this trial alone.
    pub bottlenecks: Vec<Verdict>,
    /// The full `summary.json`.
    pub summary: Summary,
}

/// The figures a reader looks at first, and that `aibench compare` compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Headline {
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    pub dropped: u64,
    /// Successes over requests (1 when there were none).
    pub success_rate: f64,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub goodput_per_s: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// E2E p99 measured from the intended send time (coordinated-omission-free).
    pub e2e_from_intended_p99_ms: Option<f64>,
    /// The client's own scheduling lag.
    pub send_lag_p99_ms: Option<f64>,
    pub mean_concurrency: f64,
    /// Failed and dropped requests by error class.
    pub errors_by_class: BTreeMap<String, u64>,
}

/// Whether a trial met the recipe's objectives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloOutcome {
    /// False when the recipe has no objective.
    pub evaluated: bool,
    pub passed: bool,
    /// Each objective missed, with the figure and the limit.
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Goodput {
    pub goodput_per_s: f64,
    pub good_requests: u64,
    /// Good requests over all measured requests.
    pub share: f64,
    pub thresholds: SloMs,
}

/// The part of the run a second belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BucketPhase {
    Warmup,
    Measure,
    Cooldown,
}

/// One second of a trial. Requests fall in the second they ended in (failures: the second they
/// were given up in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecondBucket {
    /// Start of the second, in seconds from the workload's start.
    pub t_s: u64,
    pub phase: BucketPhase,
    /// Successful requests that ended in this second (a rate per second).
    pub completed: u64,
    /// Failed, dropped or cancelled requests in this second.
    pub errors: u64,
    pub output_tokens: u64,
    /// Mean number of requests in flight during this second.
    pub in_flight: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub send_lag_p99_ms: Option<f64>,
}

/// GPU energy over a trial's measure window, from the monitor's power samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Energy {
    pub joules: f64,
    pub mean_power_watts: f64,
    /// Energy per output token of the measured requests (absent without tokens).
    pub joules_per_output_token: Option<f64>,
}

/// One monitoring series over the trial's measure window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricSummary {
    /// The metric's name (`vllm:num_requests_waiting`, `host_cpu_utilisation`, ...).
    pub name: String,
    /// Its labels, `k=v;k2=v2`.
    pub labels: String,
    /// Samples inside the measure window.
    pub samples: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
    pub first: f64,
    pub last: f64,
    /// Least-squares slope over the window, per second.
    pub slope_per_s: f64,
}

/// The curves of one sweep and what they show.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SweepReport {
    /// The swept load parameter on the x axis (`chat.load.rate`, `chat.load.users`, ...).
    pub parameter: String,
    /// Its unit (`requests/s`, `users`, ...).
    pub unit: String,
    pub workload: String,
    /// The other swept parameters, fixed along this curve.
    pub fixed: IndexMap<String, serde_json::Value>,
    /// The latency the knee and the plateau are judged on (`e2e_from_intended_p99_ms`, ...).
    pub latency_metric: String,
    /// One point per trial, by increasing load.
    pub points: Vec<SweepPoint>,
    /// Where latency turns upward (a convex curve).
    pub latency_knee: KneePair,
    /// Where throughput stops growing (a concave curve).
    pub throughput_knee: KneePair,
    /// The sweep's answer to "where does it saturate": the load of the latency knee found by
    /// Kneedle, else by maximum curvature, else the throughput knee.
    pub saturation: Option<SaturationPoint>,
    /// The highest load at which the trial met every objective.
    pub slo_max_load: SloMaxLoad,
    /// The highest throughput reached, and from which load it stopped growing.
    pub plateau: Option<Plateau>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SweepPoint {
    /// The load (value of the swept parameter).
    pub x: f64,
    pub trial: String,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub goodput_per_s: Option<f64>,
    pub success_rate: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_from_intended_p99_ms: Option<f64>,
    /// The value of `latency_metric` at this point.
    pub latency_ms: Option<f64>,
    /// Whether the trial met every objective (absent without objectives).
    pub slo_passed: Option<bool>,
}

/// A knee found by both methods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KneePair {
    pub max_curvature: Option<Knee>,
    pub kneedle: Option<Knee>,
}

/// A knee and the numbers that place it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Knee {
    /// The load at the knee.
    pub x: f64,
    pub trial: String,
    /// The curve's value there (milliseconds or requests per second).
    pub y: f64,
    /// Maximum curvature: the signed curvature of the normalised curve at the knee. Kneedle:
    /// the largest distance between the normalised curve and the diagonal.
    pub score: f64,
    /// The same measure at every point, in order of load.
    pub scores: Vec<f64>,
    /// Kneedle only: whether the difference curve fell below Kneedle's threshold after the
    /// knee (with sensitivity 1); an unconfirmed knee may just be the end of the sweep.
    pub confirmed: bool,
    /// The reasoning in words.
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SaturationPoint {
    pub x: f64,
    pub trial: String,
    /// `latency_kneedle`, `latency_max_curvature` or `throughput_kneedle`.
    pub method: String,
    pub evidence: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloMaxLoad {
    /// The highest load meeting every objective (absent: none met them, or no objectives).
    pub x: Option<f64>,
    pub trial: Option<String>,
    /// The first higher load that missed, and why.
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plateau {
    /// The highest successful request rate of the sweep.
    pub max_requests_per_s: f64,
    pub max_output_tokens_per_s: f64,
    /// The lowest load from which throughput stays within `tolerance` of its maximum.
    pub from_x: f64,
    pub from_trial: String,
    pub tolerance: f64,
    /// Whether at least two loads reached the plateau (else the sweep may have stopped short
    /// of saturation).
    pub reached: bool,
    pub evidence: String,
}

/// What limits a service.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckKind {
    /// The client (aibench itself) could not send on time.
    Client,
    /// Requests wait in a queue: waiting requests grow, throughput is flat, tail latency grows.
    Queueing,
    /// The KV cache is full: sequences wait for room or are preempted.
    KvCache,
    /// Host memory is nearly exhausted.
    Memory,
    /// The GPUs are busy all the time.
    Gpu,
    /// The host CPUs are busy all the time.
    Cpu,
}

impl BottleneckKind {
    pub fn label(self) -> &'static str {
        match self {
            BottleneckKind::Client => "client-bound",
            BottleneckKind::Queueing => "queueing",
            BottleneckKind::KvCache => "KV-cache-bound",
            BottleneckKind::Memory => "memory-bound",
            BottleneckKind::Gpu => "GPU-bound",
            BottleneckKind::Cpu => "CPU-bound",
        }
    }
}

/// How sure a verdict is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// One signal points this way.
    Possible,
    /// Several independent signals agree.
    Likely,
}

/// A bottleneck verdict with the numbers that support it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    pub kind: BottleneckKind,
    pub confidence: Confidence,
    /// The trials it was found in (run-level verdicts) or this trial.
    pub trials: Vec<String>,
    /// One sentence.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What to try.
    pub recommendation: String,
}

/// One number behind a verdict, with the threshold it crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// What was measured (`send lag p99`, `vllm:num_requests_waiting slope`, ...).
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// The threshold, when the evidence is a comparison.
    pub threshold: Option<f64>,
    /// Where the number comes from (`summary`, `requests.jsonl`, `metrics`, `sweep`).
    pub source: String,
}

/// A plot under `plots/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlotRef {
    pub id: String,
    pub title: String,
    /// Relative to the run directory.
    pub svg: String,
    pub png: String,
    /// The trial it belongs to (absent: the whole run).
    pub trial: Option<String>,
    /// The workload of that trial.
    pub workload: Option<String>,
}

/// The JSON Schema (draft 2020-12) of `report.json`, generated from [`Report`].
pub fn report_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Report);
    serde_json::to_value(&schema).expect("a JSON Schema always serializes")
}

/// A status as the report writes it; `unknown` when run.json does not say.
pub fn status_text(status: Option<Status>) -> &'static str {
    status.map_or("unknown", Status::as_str)
}
