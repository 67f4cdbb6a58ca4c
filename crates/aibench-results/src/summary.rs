//! `summary.json`: the aggregates of one trial's measure window.
//!
//! Produced by [`Accumulator::summary`](crate::Accumulator::summary); the JSON Schema in
//! `schema/summary.schema.json` is generated from these types by [`summary_schema`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::record::ErrorClass;

/// Version of the `summary.json` layout. Bump it on any incompatible change; adding a field is
/// compatible (readers ignore fields they do not know).
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// Aggregates of the requests whose intended send time fell in the measure window.
///
/// Latencies count successful requests only; failed requests are counted by class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Layout version of this file.
    pub schema_version: u32,
    /// The run stopped early (cancelled, or its error budget was spent); the figures cover
    /// what completed before that.
    pub interrupted: bool,
    /// Why the load stopped.
    pub stop_reason: Option<StopReason>,
    /// Length of the measure window in seconds: from the earliest intended send to the last
    /// response end among measured requests. Rates are per second of this window.
    pub duration_s: f64,
    /// The measure window, in milliseconds from the run's start.
    pub window: Option<Window>,
    pub counts: Counts,
    pub latency: Latencies,
    pub throughput: Throughput,
    pub tokens: Tokens,
    /// The per-request thresholds goodput was judged against (absent: no SLO was given).
    pub slo: Option<SloMs>,
    /// A request counts as late when it was sent more than this many milliseconds after its
    /// intended time.
    pub late_after_ms: f64,
    /// Per-second series over the measure window, for plots.
    pub timeline: Vec<TimelineBucket>,
    /// Per operation, for protocols that have several (Redis `GET`/`SET`, S3 `PUT`/`GET`,
    /// vector `insert`/`query`, PostgreSQL statements); absent for LLM and plain HTTP runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operations: BTreeMap<String, OperationStats>,
}

/// What one kind of operation did over the measure window. A pipelined batch of commands is
/// one request and `batch` operations: rates here count operations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct OperationStats {
    /// Operations (commands) measured, failed ones included.
    pub operations: u64,
    /// Operations that succeeded.
    pub successes: u64,
    /// Operations that failed (every class except `dropped` and `cancelled`).
    pub errors: u64,
    /// Successful operations per second of the measure window.
    pub per_s: f64,
    /// Latency of a successful request carrying the operation: from the send to the end of
    /// its response (the whole object, the last reply of a pipelined batch).
    pub latency: Option<LatencyStats>,
    /// Time to first byte of the response, where it differs from `latency` (S3 GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb: Option<LatencyStats>,
    /// Payload bytes sent by successful operations.
    pub bytes_out: u64,
    /// Payload bytes received by successful operations.
    pub bytes_in: u64,
    /// `bytes_out` per second, in MiB/s.
    pub out_mib_per_s: f64,
    /// `bytes_in` per second, in MiB/s.
    pub in_mib_per_s: f64,
    /// Reads that found their key (hits) over all successful reads that said; absent when
    /// the operation is not a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
    /// Mean recall@k of nearest-neighbour queries: true neighbours returned over neighbours
    /// asked for, against exact brute-force ground truth computed before the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// The lowest recall of any one query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_min: Option<f64>,
}

/// Why the load stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The configured duration elapsed.
    Duration,
    /// The configured number of requests was sent.
    Requests,
    /// The arrival schedule (a trace, a list of steps) ran out.
    ScheduleEnd,
    /// Too many consecutive errors, or the error rate passed its threshold.
    ErrorBudget,
    /// Cancelled from outside (Ctrl-C, SIGTERM, the caller).
    Cancelled,
    /// aibench itself failed (a panic in its scheduler or a user task); every record up to
    /// then is kept.
    InternalError,
    /// The hard deadline passed (`stop.max_duration`, or the measurement plus one request
    /// timeout): what was in flight got the grace period, then was cancelled.
    Deadline,
    /// Requests were in flight but none of them received a byte, and none ended, for
    /// `stop.stall` (a hung server): what was in flight got the grace period, then was
    /// cancelled.
    Stalled,
}

impl StopReason {
    /// Whether the run ended before its plan did.
    pub fn is_interruption(self) -> bool {
        matches!(
            self,
            StopReason::ErrorBudget
                | StopReason::Cancelled
                | StopReason::InternalError
                | StopReason::Stalled
        )
    }
}

/// Start and end of the measure window, in milliseconds from the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    pub start_ms: f64,
    pub end_ms: f64,
}

/// What happened to the measured requests. `total = successes + errors + dropped + cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    pub total: u64,
    pub successes: u64,
    /// Failed requests (every class except `dropped` and `cancelled`).
    pub errors: u64,
    /// Open loop: never sent because the in-flight cap was reached at their intended time.
    pub dropped: u64,
    /// Still in flight when an interrupted run's grace period ran out.
    pub cancelled: u64,
    /// Sent later than `late_after_ms` after their intended time.
    pub late: u64,
    /// Number of requests per error class (every class with at least one).
    pub errors_by_class: BTreeMap<ErrorClass, u64>,
    /// Requests recorded in the warm-up phase (not in any other figure).
    pub warmup: u64,
    /// Requests recorded in the cool-down phase (not in any other figure).
    pub cooldown: u64,
    /// Measured requests that finished after the measure window closed (a duration-bounded
    /// measurement): their latencies count, but not their completions, so that a queue
    /// draining after the window never stretches it or lowers throughput.
    #[serde(default)]
    pub drained: u64,
    /// Measured requests sent again on a fresh connection because the server closed the
    /// kept-alive one before any byte of an answer (the race of a server closing an idle
    /// connection as a request arrives); not errors.
    #[serde(default)]
    pub reconnects: u64,
}

/// Latency distributions in milliseconds. Absent when no request produced the metric.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Latencies {
    /// Time to first token: first chunk with non-empty content minus actual send.
    pub ttft: Option<LatencyStats>,
    /// Inter-token latency: every gap between consecutive content chunks.
    pub itl: Option<LatencyStats>,
    /// Time per output token: (E2E − TTFT) / (output tokens − 1), one value per request.
    pub tpot: Option<LatencyStats>,
    /// End to end: last content chunk (end of body when not streaming) minus actual send.
    pub e2e: Option<LatencyStats>,
    /// E2E measured from the intended send time (coordinated-omission-free).
    pub e2e_from_intended: Option<LatencyStats>,
    /// TTFT measured from the intended send time (coordinated-omission-free).
    pub ttft_from_intended: Option<LatencyStats>,
    /// The client's own scheduling lag: actual minus intended send, over every sent request.
    pub send_lag: Option<LatencyStats>,
}

/// One latency distribution, in milliseconds. Percentiles come from an HDR histogram with three
/// significant digits (relative error at most 0.1 %), clamped to the exact min and max; mean,
/// min, max and stddev are exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatencyStats {
    pub count: u64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Population standard deviation.
    pub stddev_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// Rates over the measure window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Throughput {
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Output tokens of successful requests per second.
    pub output_tokens_per_s: f64,
    /// Input plus output tokens of successful requests per second.
    pub total_tokens_per_s: f64,
    /// The highest number of output tokens that arrived within one 1-second bucket.
    pub peak_output_tokens_per_s: f64,
    /// The highest mean number of requests in flight over one 1-second bucket (over the part
    /// of the bucket inside the window).
    pub peak_concurrency: f64,
    /// Mean number of requests in flight over the window.
    pub mean_concurrency: f64,
    /// Requests per second that succeeded and met every SLO given (absent without an SLO).
    pub goodput_per_s: Option<f64>,
    /// Number of requests that met every SLO (absent without an SLO).
    pub good_requests: Option<u64>,
}

/// Token totals over successful measured requests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Chunks that carried content (compare with `output` to see how tokens were batched).
    pub chunks: u64,
    /// How many requests took their token counts from each source.
    pub source: TokenSourceTally,
}

/// How many requests took their token counts from each source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TokenSourceTally {
    pub usage: u64,
    pub tokenizer: u64,
    pub estimate: u64,
    /// Successful requests with no output token count at all.
    pub unknown: u64,
}

/// Per-request SLO thresholds in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SloMs {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    /// Every gap between content chunks of the request must be within this.
    pub itl_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

/// One second of the measure window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineBucket {
    /// Start of the bucket in seconds from the run's start.
    pub t_s: u64,
    /// Successful requests that ended in this second.
    pub completed: u64,
    /// Failed requests that ended in this second.
    pub errors: u64,
    /// Output tokens that arrived in this second.
    pub output_tokens: u64,
    /// Mean number of requests in flight during this second (during the part of it inside the
    /// window).
    pub concurrency: f64,
}

/// The JSON Schema (draft 2020-12) of `summary.json`, generated from [`Summary`].
pub fn summary_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Summary);
    serde_json::to_value(&schema).expect("a JSON Schema always serializes")
}
