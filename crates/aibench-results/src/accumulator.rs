//! The summary accumulator: HDR histograms, exact counters and a 1-second series, fed one
//! [`RequestRecord`] at a time, mergeable across client processes without loss.
//!
//! Merging accumulators gives exactly the accumulator one process fed every record would hold:
//! histograms add bucket by bucket, sums and counts are integers, and nothing is an average of
//! percentiles. Memory is independent of the number of requests (it grows by one bucket per
//! second of run time).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::record::{ErrorClass, Phase, RequestRecord, TokenSource};
use crate::summary::{
    Counts, Latencies, LatencyStats, OperationStats, SloMs, StopReason, Summary, Throughput,
    TimelineBucket, TokenSourceTally, Tokens, Window, SUMMARY_SCHEMA_VERSION,
};

/// Significant digits of every histogram (relative error at most 0.1 %).
pub const HISTOGRAM_SIGFIG: u8 = 3;
/// Initial highest trackable value of every histogram (µs); histograms grow past it on demand.
const HISTOGRAM_INITIAL_MAX_US: u64 = 60_000_000;
/// Default threshold above which a request counts as late.
pub const DEFAULT_LATE_AFTER_US: u64 = 1_000;
const SHARD_FORMAT: &str = "aibench-accumulator";
const SHARD_VERSION: u32 = 1;
const US_PER_S: u64 = 1_000_000;

/// Per-request SLO thresholds, in microseconds. A request is *good* when it succeeded and met
/// every threshold given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// TTFT must be within this (a non-streaming request uses its E2E, when the first token
    /// reached the client).
    pub ttft_us: Option<u64>,
    /// TPOT must be within this (met trivially with fewer than two output tokens).
    pub tpot_us: Option<u64>,
    /// Every gap between content chunks must be within this.
    pub itl_us: Option<u64>,
    /// E2E must be within this.
    pub e2e_us: Option<u64>,
}

impl Slo {
    /// Whether no threshold is set.
    pub fn is_empty(&self) -> bool {
        self.ttft_us.is_none()
            && self.tpot_us.is_none()
            && self.itl_us.is_none()
            && self.e2e_us.is_none()
    }

    fn to_ms(self) -> SloMs {
        let ms = |v: Option<u64>| v.map(us_to_ms);
        SloMs {
            ttft_ms: ms(self.ttft_us),
            tpot_ms: ms(self.tpot_us),
            itl_ms: ms(self.itl_us),
            e2e_ms: ms(self.e2e_us),
        }
    }
}

/// What the accumulator judges requests against. Accumulators merge only when these agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccumulatorConfig {
    pub slo: Slo,
    /// A request sent more than this after its intended time counts as late.
    pub late_after_us: u64,
    /// The measure window as planned, `[start, end)` in microseconds of the run's clock (a
    /// duration-bounded measurement). Throughput is the completions inside it over its length;
    /// measured requests that finish after it count as drained and never stretch it. `None`
    /// (a request-count stop): the window runs from the first measured request to the last
    /// completion.
    #[serde(default)]
    pub window_us: Option<[u64; 2]>,
}

impl Default for AccumulatorConfig {
    fn default() -> Self {
        AccumulatorConfig {
            slo: Slo::default(),
            late_after_us: DEFAULT_LATE_AFTER_US,
            window_us: None,
        }
    }
}

/// Why two accumulators could not be merged, or a shard file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AccumulatorError {
    #[error("cannot merge accumulators with different settings: {0:?} vs {1:?}")]
    ConfigMismatch(Box<AccumulatorConfig>, Box<AccumulatorConfig>),
    #[error("histogram merge failed: {0}")]
    Histogram(String),
    #[error("not an aibench accumulator shard (format {format:?}, version {version})")]
    Format { format: String, version: u32 },
    #[error("invalid shard file: {0}")]
    Invalid(String),
    #[error("shard file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("shard JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One latency metric: an HDR histogram (µs) plus exact count, sum, sum of squares, min, max.
#[derive(Debug, Clone)]
struct Metric {
    hist: Histogram<u64>,
    count: u64,
    sum: u128,
    sumsq: u128,
    min: u64,
    max: u64,
}

impl Metric {
    fn new() -> Self {
        let mut hist = Histogram::new_with_bounds(1, HISTOGRAM_INITIAL_MAX_US, HISTOGRAM_SIGFIG)
            .expect("valid histogram bounds");
        hist.auto(true);
        Metric {
            hist,
            count: 0,
            sum: 0,
            sumsq: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Record `v` as `n` values (the operations of a pipelined batch share its latency).
    fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        if self.hist.record_n(v, n).is_err() {
            for _ in 0..n {
                self.hist.saturating_record(v);
            }
        }
        self.count += n;
        self.sum += u128::from(v) * u128::from(n);
        self.sumsq += u128::from(v) * u128::from(v) * u128::from(n);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Metric) -> Result<(), AccumulatorError> {
        self.hist
            .add(&other.hist)
            .map_err(|e| AccumulatorError::Histogram(format!("{e:?}")))?;
        self.count += other.count;
        self.sum += other.sum;
        self.sumsq += other.sumsq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    fn quantile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q).clamp(self.min, self.max)
    }

    fn stats(&self) -> Option<LatencyStats> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        // Population variance from exact integers: (n·Σx² − (Σx)²) / n².
        let spread = u128::from(self.count)
            .checked_mul(self.sumsq)
            .and_then(|a| a.checked_sub(self.sum * self.sum))
            .map(|v| v as f64)
            .unwrap_or_else(|| {
                let mean = self.sum as f64 / n;
                ((self.sumsq as f64 / n - mean * mean).max(0.0)) * n * n
            });
        Some(LatencyStats {
            count: self.count,
            mean_ms: self.sum as f64 / n / 1000.0,
            min_ms: us_to_ms(self.min),
            max_ms: us_to_ms(self.max),
            stddev_ms: spread.sqrt() / n / 1000.0,
            p50_ms: us_to_ms(self.quantile_us(0.50)),
            p90_ms: us_to_ms(self.quantile_us(0.90)),
            p95_ms: us_to_ms(self.quantile_us(0.95)),
            p99_ms: us_to_ms(self.quantile_us(0.99)),
            p999_ms: us_to_ms(self.quantile_us(0.999)),
        })
    }

    fn to_file(&self) -> Result<MetricFile, AccumulatorError> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut buf)
            .map_err(|e| AccumulatorError::Histogram(format!("{e:?}")))?;
        Ok(MetricFile {
            count: self.count,
            sum: self.sum.to_string(),
            sumsq: self.sumsq.to_string(),
            min: if self.count == 0 {
                None
            } else {
                Some(self.min)
            },
            max: self.max,
            hdr: base64::engine::general_purpose::STANDARD.encode(buf),
        })
    }

    fn from_file(f: &MetricFile) -> Result<Metric, AccumulatorError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&f.hdr)
            .map_err(|e| AccumulatorError::Invalid(format!("histogram base64: {e}")))?;
        let mut hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| AccumulatorError::Invalid(format!("histogram: {e:?}")))?;
        hist.auto(true);
        let parse = |s: &str| {
            s.parse::<u128>()
                .map_err(|e| AccumulatorError::Invalid(format!("sum {s:?}: {e}")))
        };
        if hist.len() != f.count {
            return Err(AccumulatorError::Invalid(format!(
                "histogram holds {} values but count is {}",
                hist.len(),
                f.count
            )));
        }
        Ok(Metric {
            hist,
            count: f.count,
            sum: parse(&f.sum)?,
            sumsq: parse(&f.sumsq)?,
            min: f.min.unwrap_or(u64::MAX),
            max: f.max,
        })
    }
}

/// Serialized form of one metric inside a shard file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    count: u64,
    /// Exact sum of values (µs), as a decimal string (it may exceed 64 bits).
    sum: String,
    /// Exact sum of squares (µs²), as a decimal string.
    sumsq: String,
    min: Option<u64>,
    max: u64,
    /// The histogram, HdrHistogram V2 compressed encoding, base64.
    hdr: String,
}

/// Integer counters; every field adds on merge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCounts {
    total: u64,
    successes: u64,
    errors: u64,
    dropped: u64,
    cancelled: u64,
    late: u64,
    warmup: u64,
    cooldown: u64,
    by_class: [u64; ErrorClass::ALL.len()],
    good: u64,
    input_tokens: u64,
    output_tokens: u64,
    chunks: u64,
    /// usage, tokenizer, estimate, unknown.
    sources: [u64; 4],
    /// Successful requests of any phase that finished inside the planned window, with their
    /// tokens and how many met every objective: the throughput's numerators.
    #[serde(default)]
    in_window: [u64; 4],
    /// Measured requests that finished after the planned window closed.
    #[serde(default)]
    drained: u64,
    /// Measured requests sent again after the server closed their kept-alive connection.
    #[serde(default)]
    reconnects: u64,
}

impl RawCounts {
    fn merge(&mut self, o: &RawCounts) {
        self.total += o.total;
        self.successes += o.successes;
        self.errors += o.errors;
        self.dropped += o.dropped;
        self.cancelled += o.cancelled;
        self.late += o.late;
        self.warmup += o.warmup;
        self.cooldown += o.cooldown;
        for (a, b) in self.by_class.iter_mut().zip(o.by_class) {
            *a += b;
        }
        self.good += o.good;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.chunks += o.chunks;
        for (a, b) in self.sources.iter_mut().zip(o.sources) {
            *a += b;
        }
        for (a, b) in self.in_window.iter_mut().zip(o.in_window) {
            *a += b;
        }
        self.drained += o.drained;
        self.reconnects += o.reconnects;
    }
}

/// One second of the run (indexed from the run's start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    completed: u64,
    errors: u64,
    output_tokens: u64,
    /// Request-microseconds in flight during this second (mean concurrency × 10⁶).
    busy_us: u64,
}

/// Accumulates [`RequestRecord`]s into a [`Summary`]; see the module documentation.
#[derive(Debug, Clone)]
pub struct Accumulator {
    config: AccumulatorConfig,
    ttft: Metric,
    itl: Metric,
    tpot: Metric,
    e2e: Metric,
    e2e_from_intended: Metric,
    ttft_from_intended: Metric,
    send_lag: Metric,
    counts: RawCounts,
    window_start_us: Option<u64>,
    window_end_us: Option<u64>,
    buckets: Vec<Bucket>,
    stop_reason: Option<StopReason>,
    /// Per operation name (records that carry one).
    ops: BTreeMap<String, OpAcc>,
}

/// One operation's exact counters and histograms.
#[derive(Debug, Clone)]
struct OpAcc {
    counts: OpCounts,
    latency: Metric,
    ttfb: Metric,
}

/// Integer counters of one operation; every field adds on merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpCounts {
    operations: u64,
    successes: u64,
    errors: u64,
    bytes_out: u64,
    bytes_in: u64,
    hits: u64,
    misses: u64,
    queries_judged: u64,
    found: u64,
    expected: u64,
    /// Lowest single-query recall in parts per million (u64::MAX: none yet).
    recall_min_ppm: u64,
}

impl OpAcc {
    fn new() -> OpAcc {
        OpAcc {
            counts: OpCounts {
                recall_min_ppm: u64::MAX,
                ..OpCounts::default()
            },
            latency: Metric::new(),
            ttfb: Metric::new(),
        }
    }

    fn add(&mut self, r: &RequestRecord, error: Option<ErrorClass>) {
        let n = u64::from(r.batch.unwrap_or(1).max(1));
        let c = &mut self.counts;
        match error {
            Some(e) if !e.is_failure() => return,
            Some(_) => {
                c.operations += n;
                c.errors += n;
                return;
            }
            None => {
                c.operations += n;
                c.successes += n;
            }
        }
        c.bytes_out += r.bytes_out.unwrap_or(0);
        c.bytes_in += r.bytes_in.unwrap_or(0);
        if let Some(h) = r.hits {
            let h = u64::from(h).min(n);
            c.hits += h;
            c.misses += n - h;
        }
        if let (Some(found), Some(expected)) = (r.neighbours_found, r.neighbours_expected) {
            if expected > 0 {
                c.queries_judged += 1;
                c.found += u64::from(found.min(expected));
                c.expected += u64::from(expected);
                let ppm = u64::from(found.min(expected)) * 1_000_000 / u64::from(expected);
                c.recall_min_ppm = c.recall_min_ppm.min(ppm);
            }
        }
        if let Some(v) = r.e2e_us() {
            self.latency.record_n(v, n);
        }
        if let (Some(fb), Some(sent)) = (r.first_byte_us, r.sent_us) {
            if r.end_us != Some(fb) {
                self.ttfb.record(fb.saturating_sub(sent));
            }
        }
    }

    /// A successful part of a compound operation, with its own latency.
    fn add_step(&mut self, latency_us: u64) {
        self.counts.operations += 1;
        self.counts.successes += 1;
        self.latency.record(latency_us);
    }

    fn merge(&mut self, o: &OpAcc) -> Result<(), AccumulatorError> {
        let (a, b) = (&mut self.counts, &o.counts);
        a.operations += b.operations;
        a.successes += b.successes;
        a.errors += b.errors;
        a.bytes_out += b.bytes_out;
        a.bytes_in += b.bytes_in;
        a.hits += b.hits;
        a.misses += b.misses;
        a.queries_judged += b.queries_judged;
        a.found += b.found;
        a.expected += b.expected;
        a.recall_min_ppm = a.recall_min_ppm.min(b.recall_min_ppm);
        self.latency.merge(&o.latency)?;
        self.ttfb.merge(&o.ttfb)
    }

    fn stats(&self, duration_s: f64) -> OperationStats {
        let c = &self.counts;
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        const MIB: f64 = 1024.0 * 1024.0;
        OperationStats {
            operations: c.operations,
            successes: c.successes,
            errors: c.errors,
            per_s: per_s(c.successes),
            latency: self.latency.stats(),
            ttfb: self.ttfb.stats(),
            bytes_out: c.bytes_out,
            bytes_in: c.bytes_in,
            out_mib_per_s: per_s(c.bytes_out) / MIB,
            in_mib_per_s: per_s(c.bytes_in) / MIB,
            hit_ratio: (c.hits + c.misses > 0).then(|| c.hits as f64 / (c.hits + c.misses) as f64),
            recall: (c.expected > 0).then(|| c.found as f64 / c.expected as f64),
            recall_min: (c.queries_judged > 0).then(|| c.recall_min_ppm as f64 / 1e6),
        }
    }

    fn to_file(&self) -> Result<OpFile, AccumulatorError> {
        Ok(OpFile {
            counts: self.counts,
            latency: self.latency.to_file()?,
            ttfb: self.ttfb.to_file()?,
        })
    }

    fn from_file(f: &OpFile) -> Result<OpAcc, AccumulatorError> {
        Ok(OpAcc {
            counts: f.counts,
            latency: Metric::from_file(&f.latency)?,
            ttfb: Metric::from_file(&f.ttfb)?,
        })
    }
}

/// The accumulator of operation `name`, made on first use.
fn op_entry<'a>(ops: &'a mut BTreeMap<String, OpAcc>, name: &str) -> &'a mut OpAcc {
    if !ops.contains_key(name) {
        ops.insert(name.to_string(), OpAcc::new());
    }
    ops.get_mut(name).expect("just inserted")
}

/// Serialized form of one operation inside a shard file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpFile {
    counts: OpCounts,
    latency: MetricFile,
    ttfb: MetricFile,
}

impl Default for Accumulator {
    fn default() -> Self {
        Accumulator::new(AccumulatorConfig::default())
    }
}

impl Accumulator {
    pub fn new(config: AccumulatorConfig) -> Self {
        Accumulator {
            config,
            ttft: Metric::new(),
            itl: Metric::new(),
            tpot: Metric::new(),
            e2e: Metric::new(),
            e2e_from_intended: Metric::new(),
            ttft_from_intended: Metric::new(),
            send_lag: Metric::new(),
            counts: RawCounts::default(),
            window_start_us: None,
            window_end_us: None,
            buckets: Vec::new(),
            stop_reason: None,
            ops: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &AccumulatorConfig {
        &self.config
    }

    /// Number of measured requests added so far.
    pub fn total(&self) -> u64 {
        self.counts.total
    }

    /// Record why the load stopped (merging keeps the most severe reason).
    pub fn set_stop_reason(&mut self, reason: StopReason) {
        self.stop_reason = Some(merge_stop(self.stop_reason, Some(reason)).unwrap_or(reason));
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Add one request. Warm-up and cool-down requests are only counted.
    pub fn add(&mut self, r: &RequestRecord) {
        self.count_in_window(r);
        match r.phase {
            Phase::Warmup => {
                self.counts.warmup += 1;
                return;
            }
            Phase::Cooldown => {
                self.counts.cooldown += 1;
                return;
            }
            Phase::Measure => {}
        }
        let c = &mut self.counts;
        c.total += 1;
        c.reconnects += u64::from(r.reconnected);
        let finished = r
            .done_us
            .or(r.end_us)
            .or(r.sent_us)
            .unwrap_or(r.intended_us)
            .max(r.intended_us);
        self.window_start_us = Some(
            self.window_start_us
                .map_or(r.intended_us, |s| s.min(r.intended_us)),
        );
        self.window_end_us = Some(self.window_end_us.map_or(finished, |e| e.max(finished)));

        if let Some(lag) = r.send_lag_us() {
            self.send_lag.record(lag);
            if lag > self.config.late_after_us {
                c.late += 1;
            }
        }
        if let Some(sent) = r.sent_us {
            add_busy(&mut self.buckets, sent, finished);
        }

        let error = match r.error {
            Some(e) => Some(e),
            None if !r.is_success() => Some(ErrorClass::Other),
            None => None,
        };
        if let Some(op) = &r.op {
            op_entry(&mut self.ops, op).add(r, error);
        }
        if error.is_none() {
            for step in &r.steps {
                op_entry(&mut self.ops, &step.op).add_step(step.latency_us);
            }
        }
        if let Some(class) = error {
            c.by_class[class.index()] += 1;
            match class {
                ErrorClass::Dropped => c.dropped += 1,
                ErrorClass::Cancelled => c.cancelled += 1,
                _ => {
                    c.errors += 1;
                    bucket(&mut self.buckets, finished).errors += 1;
                }
            }
            return;
        }

        c.successes += 1;
        let end = r.end_us.unwrap_or(finished);
        bucket(&mut self.buckets, end).completed += 1;
        if let Some(v) = r.ttft_us() {
            self.ttft.record(v);
        }
        if let Some(v) = r.ttft_from_intended_us() {
            self.ttft_from_intended.record(v);
        }
        if let Some(v) = r.e2e_us() {
            self.e2e.record(v);
        }
        if let Some(v) = r.e2e_from_intended_us() {
            self.e2e_from_intended.record(v);
        }
        if let Some(v) = r.tpot_us() {
            self.tpot.record(v);
        }
        for &gap in &r.itl_us {
            self.itl.record(u64::from(gap));
        }
        c.input_tokens += u64::from(r.input_tokens.unwrap_or(0));
        c.output_tokens += u64::from(r.output_tokens.unwrap_or(0));
        c.chunks += u64::from(r.chunks);
        let source = match (r.output_tokens, r.token_source) {
            (None, _) => 3,
            (Some(_), Some(s)) => s.index(),
            (Some(_), None) => TokenSource::Estimate.index(),
        };
        c.sources[source] += 1;
        if !self.config.slo.is_empty() && meets_slo(&self.config.slo, r) {
            c.good += 1;
        }
        if let Some(n) = r.output_tokens {
            spread_tokens(&mut self.buckets, r, u64::from(n), end);
        }
    }

    /// Fold another accumulator into this one. The result is exactly what one accumulator fed
    /// both sets of records would hold.
    pub fn merge(&mut self, other: &Accumulator) -> Result<(), AccumulatorError> {
        if self.config != other.config {
            return Err(AccumulatorError::ConfigMismatch(
                Box::new(self.config),
                Box::new(other.config),
            ));
        }
        self.ttft.merge(&other.ttft)?;
        self.itl.merge(&other.itl)?;
        self.tpot.merge(&other.tpot)?;
        self.e2e.merge(&other.e2e)?;
        self.e2e_from_intended.merge(&other.e2e_from_intended)?;
        self.ttft_from_intended.merge(&other.ttft_from_intended)?;
        self.send_lag.merge(&other.send_lag)?;
        self.counts.merge(&other.counts);
        self.window_start_us = min_opt(self.window_start_us, other.window_start_us);
        self.window_end_us = self.window_end_us.max(other.window_end_us);
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), Bucket::default());
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.completed += b.completed;
            a.errors += b.errors;
            a.output_tokens += b.output_tokens;
            a.busy_us += b.busy_us;
        }
        self.stop_reason = merge_stop(self.stop_reason, other.stop_reason);
        for (name, o) in &other.ops {
            match self.ops.get_mut(name) {
                Some(mine) => mine.merge(o)?,
                None => {
                    self.ops.insert(name.clone(), o.clone());
                }
            }
        }
        Ok(())
    }

    /// A quantile (0..=1) of E2E so far, in milliseconds (for progress displays).
    pub fn e2e_quantile_ms(&self, q: f64) -> Option<f64> {
        (self.e2e.count > 0).then(|| us_to_ms(self.e2e.quantile_us(q)))
    }

    /// A quantile (0..=1) of TTFT so far, in milliseconds (for progress displays).
    pub fn ttft_quantile_ms(&self, q: f64) -> Option<f64> {
        (self.ttft.count > 0).then(|| us_to_ms(self.ttft.quantile_us(q)))
    }

    /// Throughput's numerators: a success of any phase (a warm-up request finishing inside the
    /// window is server work inside it) that finished inside the planned window; and measured
    /// requests that finished after it.
    fn count_in_window(&mut self, r: &RequestRecord) {
        let Some([start, end]) = self.config.window_us else {
            return;
        };
        let finished = r.done_us.or(r.end_us).unwrap_or(r.intended_us);
        if finished >= end {
            if r.phase == Phase::Measure && r.sent_us.is_some() {
                self.counts.drained += 1;
            }
            return;
        }
        if finished < start || r.error.is_some() || !r.is_success() {
            return;
        }
        let w = &mut self.counts.in_window;
        w[0] += 1;
        w[1] += u64::from(r.output_tokens.unwrap_or(0));
        w[2] += u64::from(r.input_tokens.unwrap_or(0));
        if !self.config.slo.is_empty() && meets_slo(&self.config.slo, r) {
            w[3] += 1;
        }
    }

    /// The summary of everything added so far.
    pub fn summary(&self) -> Summary {
        let c = &self.counts;
        let (start, end) = match (self.window_start_us, self.window_end_us) {
            (Some(s), Some(e)) => (s, e.max(s)),
            _ => (0, 0),
        };
        let span_us = end - start;
        // Throughput: completions inside the planned window over its length (cut short when
        // the run ended early), or, without a planned window, every measured success over the
        // span from the first measured request to the last completion.
        let (rate_start, rate_end, done) = match self.config.window_us {
            Some([ws, we]) if self.window_start_us.is_some() => {
                let w = &c.in_window;
                (ws, we.min(end.max(ws)), [w[0], w[1], w[2], w[3]])
            }
            _ => (
                start,
                end,
                [c.successes, c.output_tokens, c.input_tokens, c.good],
            ),
        };
        let rate_span_us = rate_end - rate_start;
        let duration_s = rate_span_us as f64 / US_PER_S as f64;
        let per_s = |n: u64| {
            if rate_span_us == 0 {
                0.0
            } else {
                n as f64 / duration_s
            }
        };

        let (first, last) = ((start / US_PER_S) as usize, (end / US_PER_S) as usize);
        let window_buckets: &[Bucket] =
            if self.window_start_us.is_none() || first >= self.buckets.len() {
                &[]
            } else {
                &self.buckets[first..=last.min(self.buckets.len() - 1)]
            };
        // Mean concurrency over the part of each second inside the window, so that a window
        // shorter than a second, or its first and last seconds, are not diluted.
        let concurrency = |i: usize, b: &Bucket| {
            let (lo, hi) = (
                (first + i) as u64 * US_PER_S,
                (first + i + 1) as u64 * US_PER_S,
            );
            let covered = hi.min(end).saturating_sub(lo.max(start));
            if covered == 0 {
                0.0
            } else {
                b.busy_us as f64 / covered as f64
            }
        };
        let timeline: Vec<TimelineBucket> = window_buckets
            .iter()
            .enumerate()
            .map(|(i, b)| TimelineBucket {
                t_s: (first + i) as u64,
                completed: b.completed,
                errors: b.errors,
                output_tokens: b.output_tokens,
                concurrency: concurrency(i, b),
            })
            .collect();
        let busy_total: u64 = window_buckets.iter().map(|b| b.busy_us).sum();
        let has_slo = !self.config.slo.is_empty();

        Summary {
            schema_version: SUMMARY_SCHEMA_VERSION,
            interrupted: self.stop_reason.is_some_and(StopReason::is_interruption),
            stop_reason: self.stop_reason,
            duration_s,
            window: self.window_start_us.map(|_| Window {
                start_ms: us_to_ms(rate_start),
                end_ms: us_to_ms(rate_end),
            }),
            counts: Counts {
                total: c.total,
                successes: c.successes,
                errors: c.errors,
                dropped: c.dropped,
                cancelled: c.cancelled,
                late: c.late,
                errors_by_class: ErrorClass::ALL
                    .iter()
                    .zip(c.by_class)
                    .filter(|(_, n)| *n > 0)
                    .map(|(class, n)| (*class, n))
                    .collect(),
                warmup: c.warmup,
                cooldown: c.cooldown,
                drained: c.drained,
                reconnects: c.reconnects,
            },
            latency: Latencies {
                ttft: self.ttft.stats(),
                itl: self.itl.stats(),
                tpot: self.tpot.stats(),
                e2e: self.e2e.stats(),
                e2e_from_intended: self.e2e_from_intended.stats(),
                ttft_from_intended: self.ttft_from_intended.stats(),
                send_lag: self.send_lag.stats(),
            },
            throughput: Throughput {
                requests_per_s: per_s(done[0]),
                output_tokens_per_s: per_s(done[1]),
                total_tokens_per_s: per_s(done[1] + done[2]),
                peak_output_tokens_per_s: window_buckets
                    .iter()
                    .map(|b| b.output_tokens)
                    .max()
                    .unwrap_or(0) as f64,
                peak_concurrency: timeline.iter().map(|b| b.concurrency).fold(0.0, f64::max),
                mean_concurrency: if span_us == 0 {
                    0.0
                } else {
                    busy_total as f64 / span_us as f64
                },
                goodput_per_s: has_slo.then(|| per_s(done[3])),
                good_requests: has_slo.then_some(c.good),
            },
            tokens: Tokens {
                input: c.input_tokens,
                output: c.output_tokens,
                chunks: c.chunks,
                source: TokenSourceTally {
                    usage: c.sources[0],
                    tokenizer: c.sources[1],
                    estimate: c.sources[2],
                    unknown: c.sources[3],
                },
            },
            slo: has_slo.then(|| self.config.slo.to_ms()),
            late_after_ms: us_to_ms(self.config.late_after_us),
            timeline,
            operations: self
                .ops
                .iter()
                .map(|(name, o)| (name.clone(), o.stats(duration_s)))
                .collect(),
        }
    }

    /// Serialize to a shard file's JSON (histograms as base64 HdrHistogram V2 compressed).
    pub fn to_json(&self) -> Result<String, AccumulatorError> {
        Ok(serde_json::to_string_pretty(&self.to_file()?)?)
    }

    /// Read back what [`Accumulator::to_json`] wrote.
    pub fn from_json(json: &str) -> Result<Accumulator, AccumulatorError> {
        Accumulator::from_file(serde_json::from_str(json)?)
    }

    /// Write a shard file that another process can [`read_shard`](Self::read_shard) and merge.
    pub fn write_shard(&self, path: &Path) -> Result<(), AccumulatorError> {
        let json = self.to_json()?;
        // Atomically: a reader (the runner merging shards) never sees half a file.
        crate::write_atomic(path, json.as_bytes()).map_err(|source| AccumulatorError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn read_shard(path: &Path) -> Result<Accumulator, AccumulatorError> {
        let json = std::fs::read_to_string(path).map_err(|source| AccumulatorError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Accumulator::from_json(&json)
    }

    fn to_file(&self) -> Result<AccumulatorFile, AccumulatorError> {
        Ok(AccumulatorFile {
            format: SHARD_FORMAT.to_string(),
            version: SHARD_VERSION,
            config: self.config,
            counts: self.counts.clone(),
            window_start_us: self.window_start_us,
            window_end_us: self.window_end_us,
            stop_reason: self.stop_reason,
            metrics: MetricsFile {
                ttft: self.ttft.to_file()?,
                itl: self.itl.to_file()?,
                tpot: self.tpot.to_file()?,
                e2e: self.e2e.to_file()?,
                e2e_from_intended: self.e2e_from_intended.to_file()?,
                ttft_from_intended: self.ttft_from_intended.to_file()?,
                send_lag: self.send_lag.to_file()?,
            },
            buckets: self
                .buckets
                .iter()
                .map(|b| [b.completed, b.errors, b.output_tokens, b.busy_us])
                .collect(),
            operations: self
                .ops
                .iter()
                .map(|(k, o)| Ok((k.clone(), o.to_file()?)))
                .collect::<Result<_, AccumulatorError>>()?,
        })
    }

    fn from_file(f: AccumulatorFile) -> Result<Accumulator, AccumulatorError> {
        if f.format != SHARD_FORMAT || f.version != SHARD_VERSION {
            return Err(AccumulatorError::Format {
                format: f.format,
                version: f.version,
            });
        }
        let m = &f.metrics;
        Ok(Accumulator {
            config: f.config,
            ttft: Metric::from_file(&m.ttft)?,
            itl: Metric::from_file(&m.itl)?,
            tpot: Metric::from_file(&m.tpot)?,
            e2e: Metric::from_file(&m.e2e)?,
            e2e_from_intended: Metric::from_file(&m.e2e_from_intended)?,
            ttft_from_intended: Metric::from_file(&m.ttft_from_intended)?,
            send_lag: Metric::from_file(&m.send_lag)?,
            counts: f.counts,
            window_start_us: f.window_start_us,
            window_end_us: f.window_end_us,
            buckets: f
                .buckets
                .iter()
                .map(|b| Bucket {
                    completed: b[0],
                    errors: b[1],
                    output_tokens: b[2],
                    busy_us: b[3],
                })
                .collect(),
            stop_reason: f.stop_reason,
            ops: f
                .operations
                .iter()
                .map(|(k, o)| Ok((k.clone(), OpAcc::from_file(o)?)))
                .collect::<Result<_, AccumulatorError>>()?,
        })
    }
}

/// The shard file layout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccumulatorFile {
    format: String,
    version: u32,
    config: AccumulatorConfig,
    counts: RawCounts,
    window_start_us: Option<u64>,
    window_end_us: Option<u64>,
    stop_reason: Option<StopReason>,
    metrics: MetricsFile,
    /// Per second from the run's start: [completed, errors, output_tokens, busy_us].
    buckets: Vec<[u64; 4]>,
    /// Per operation (absent in files of runs without operations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    operations: BTreeMap<String, OpFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    ttft: MetricFile,
    itl: MetricFile,
    tpot: MetricFile,
    e2e: MetricFile,
    e2e_from_intended: MetricFile,
    ttft_from_intended: MetricFile,
    send_lag: MetricFile,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn stop_rank(r: StopReason) -> u8 {
    match r {
        StopReason::ScheduleEnd => 0,
        StopReason::Duration => 1,
        StopReason::Requests => 2,
        StopReason::Deadline => 3,
        StopReason::ErrorBudget => 4,
        StopReason::Stalled => 5,
        StopReason::Cancelled => 6,
        StopReason::InternalError => 7,
    }
}

/// The more severe of two stop reasons (commutative, so merge order does not matter).
fn merge_stop(a: Option<StopReason>, b: Option<StopReason>) -> Option<StopReason> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if stop_rank(b) > stop_rank(a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn meets_slo(slo: &Slo, r: &RequestRecord) -> bool {
    let within = |limit: Option<u64>, value: Option<u64>| match (limit, value) {
        (Some(limit), Some(v)) => v <= limit,
        _ => true,
    };
    let e2e = r.e2e_us();
    within(slo.ttft_us, r.ttft_us().or(e2e))
        && within(slo.tpot_us, r.tpot_us())
        && within(slo.itl_us, r.max_itl_us().map(u64::from))
        && within(slo.e2e_us, e2e)
}

fn bucket(buckets: &mut Vec<Bucket>, t_us: u64) -> &mut Bucket {
    let i = (t_us / US_PER_S) as usize;
    if buckets.len() <= i {
        buckets.resize(i + 1, Bucket::default());
    }
    &mut buckets[i]
}

/// Spread the interval [from, to) over the 1-second buckets it covers.
fn add_busy(buckets: &mut Vec<Bucket>, from: u64, to: u64) {
    let mut t = from;
    while t < to {
        let next = (t / US_PER_S + 1) * US_PER_S;
        let piece_end = next.min(to);
        bucket(buckets, t).busy_us += piece_end - t;
        t = piece_end;
    }
}

/// Attribute `n` output tokens to the seconds their content chunks arrived in: evenly per chunk,
/// the remainder to the earliest chunks. Without chunk times, all at `end`.
fn spread_tokens(buckets: &mut Vec<Bucket>, r: &RequestRecord, n: u64, end: u64) {
    let Some(first) = r.first_token_us else {
        bucket(buckets, end).output_tokens += n;
        return;
    };
    let chunks = r.itl_us.len() as u64 + 1;
    let (base, rem) = (n / chunks, n % chunks);
    let mut t = first;
    for i in 0..chunks {
        if i > 0 {
            t += u64::from(r.itl_us[(i - 1) as usize]);
        }
        let share = base + u64::from(i < rem);
        if share > 0 {
            bucket(buckets, t).output_tokens += share;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_record(id: u64, intended: u64, ttft: u64, itl: u32, chunks: u32) -> RequestRecord {
        let mut r = RequestRecord::new(id, Phase::Measure, intended);
        r.sent_us = Some(intended + 5);
        r.first_token_us = Some(intended + 5 + ttft);
        r.itl_us = vec![itl; chunks as usize - 1];
        r.end_us = Some(intended + 5 + ttft + u64::from(itl) * u64::from(chunks - 1));
        r.done_us = r.end_us;
        r.chunks = chunks;
        r.output_tokens = Some(chunks);
        r.input_tokens = Some(10);
        r.token_source = Some(TokenSource::Usage);
        r.status = Some(200);
        r
    }

    /// A server that completes one request every 500 ms whatever the load (a saturated
    /// single-slot server), driven by 1, 8 and 32 closed-loop users for a 10 s window after a
    /// 2 s warm-up: its throughput is 2 req/s at every user count. Requests sent inside the
    /// window that finish after it drain; they never stretch the window.
    #[test]
    fn a_saturated_server_has_flat_throughput_across_users() {
        let (warmup, window) = (2_000_000u64, 10_000_000u64);
        for users in [1u64, 8, 32] {
            let mut acc = Accumulator::new(AccumulatorConfig {
                window_us: Some([warmup, warmup + window]),
                ..AccumulatorConfig::default()
            });
            // Request k finishes at 500 ms x (k + 1) - 250 ms; a user sends its next request
            // when its previous one finishes (the first `users` leave at 0).
            let finish = |k: u64| 500_000 * (k + 1) - 250_000;
            let mut k = 0;
            loop {
                let sent = if k < users { 0 } else { finish(k - users) };
                if sent >= warmup + window {
                    break;
                }
                let phase = if sent < warmup {
                    Phase::Warmup
                } else {
                    Phase::Measure
                };
                let mut r = RequestRecord::new(k, phase, sent);
                r.sent_us = Some(sent);
                r.first_token_us = Some(finish(k));
                r.end_us = Some(finish(k));
                r.done_us = Some(finish(k));
                r.output_tokens = Some(4);
                r.input_tokens = Some(8);
                r.status = Some(200);
                acc.add(&r);
                k += 1;
            }
            let s = acc.summary();
            assert!(
                (s.throughput.requests_per_s - 2.0).abs() < 1e-9,
                "{users} users: {} req/s",
                s.throughput.requests_per_s
            );
            assert!((s.throughput.output_tokens_per_s - 8.0).abs() < 1e-9);
            assert!((s.duration_s - 10.0).abs() < 1e-9, "{}", s.duration_s);
            assert!(
                (1..=users).contains(&s.counts.drained),
                "{users} users: the measured requests in flight at the window's end drain: {}",
                s.counts.drained
            );
        }
    }

    #[test]
    fn summary_of_controlled_records() {
        let mut acc = Accumulator::new(AccumulatorConfig {
            slo: Slo {
                ttft_us: Some(60_000),
                ..Slo::default()
            },
            late_after_us: 1_000,
            window_us: None,
        });
        for i in 0..100u64 {
            acc.add(&ok_record(i, i * 100_000, 50_000 + i * 100, 10_000, 11));
        }
        let mut bad = RequestRecord::new(100, Phase::Measure, 100);
        bad.sent_us = Some(3_000);
        bad.done_us = Some(4_000);
        bad.error = Some(ErrorClass::Http5xx);
        bad.status = Some(503);
        acc.add(&bad);
        let mut drop = RequestRecord::new(101, Phase::Measure, 200);
        drop.error = Some(ErrorClass::Dropped);
        acc.add(&drop);
        acc.add(&RequestRecord::new(102, Phase::Warmup, 0));

        let s = acc.summary();
        assert_eq!(s.counts.total, 102);
        assert_eq!(s.counts.successes, 100);
        assert_eq!(s.counts.errors, 1);
        assert_eq!(s.counts.dropped, 1);
        assert_eq!(s.counts.late, 1);
        assert_eq!(s.counts.warmup, 1);
        assert_eq!(s.counts.errors_by_class.get(&ErrorClass::Http5xx), Some(&1));
        let ttft = s.latency.ttft.unwrap();
        assert_eq!(ttft.count, 100);
        assert_eq!(ttft.min_ms, 50.0);
        assert_eq!(ttft.max_ms, 59.9);
        assert!((ttft.mean_ms - 54.95).abs() < 1e-9);
        assert!((ttft.p50_ms - 54.9).abs() < 0.06, "{}", ttft.p50_ms);
        let itl = s.latency.itl.unwrap();
        assert_eq!(itl.count, 1000);
        assert_eq!(itl.stddev_ms, 0.0);
        assert_eq!(s.latency.tpot.unwrap().mean_ms, 10.0);
        assert_eq!(s.tokens.output, 1100);
        assert_eq!(s.tokens.source.usage, 100);
        assert_eq!(s.throughput.good_requests, Some(100));
        let tokens_in_timeline: u64 = s.timeline.iter().map(|b| b.output_tokens).sum();
        assert_eq!(tokens_in_timeline, 1100);
        assert!(
            s.duration_s > 9.9 && s.duration_s < 10.2,
            "{}",
            s.duration_s
        );
        assert!(!s.interrupted);
    }

    #[test]
    fn concurrency_is_not_diluted_by_a_short_window() {
        let mut acc = Accumulator::default();
        for i in 0..2 {
            let mut r = ok_record(i, 2_300_000, 100_000, 1_000, 3);
            r.sent_us = Some(2_300_000);
            r.done_us = Some(2_800_000);
            r.end_us = Some(2_800_000);
            acc.add(&r);
        }
        let t = acc.summary().throughput;
        assert!((t.peak_concurrency - 2.0).abs() < 1e-9, "{t:?}");
        assert!((t.mean_concurrency - 2.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn busy_time_spreads_over_seconds() {
        let mut b = Vec::new();
        add_busy(&mut b, 500_000, 2_250_000);
        assert_eq!(
            b.iter().map(|b| b.busy_us).collect::<Vec<_>>(),
            vec![500_000, 1_000_000, 250_000]
        );
    }

    #[test]
    fn stop_reason_merge_is_commutative() {
        use StopReason::*;
        let all = [
            Duration,
            Requests,
            ScheduleEnd,
            ErrorBudget,
            Stalled,
            Cancelled,
        ];
        for a in all {
            for b in all {
                assert_eq!(merge_stop(Some(a), Some(b)), merge_stop(Some(b), Some(a)));
            }
        }
    }

    #[test]
    fn mismatched_configs_refuse_to_merge() {
        let mut a = Accumulator::default();
        let b = Accumulator::new(AccumulatorConfig {
            late_after_us: 5,
            ..AccumulatorConfig::default()
        });
        assert!(matches!(
            a.merge(&b),
            Err(AccumulatorError::ConfigMismatch(..))
        ));
    }
}
