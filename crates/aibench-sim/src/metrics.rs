//! Prometheus metrics with vLLM's names, updated with atomics only (no lock on the token path).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a sequence finished; the values of vLLM's `finished_reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// An end-of-sequence token (drawn with `--eos-probability`).
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The client went away before the end.
    Abort,
}

impl FinishReason {
    pub(crate) const ALL: [FinishReason; 3] = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::Abort,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// vLLM's buckets for time to first token.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's buckets for inter-token latency.
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's buckets for whole-request phases.
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Token lateness: 1-2-5 steps from 10µs to 1s.
const LATENESS_BUCKETS: &[f64] = &[
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2, 0.5, 1.0,
];

/// A Prometheus histogram of integers (nanoseconds or token counts) built from atomics.
pub(crate) struct Histogram {
    /// Upper bounds, inclusive, in the integer unit.
    bounds: Vec<u64>,
    /// The bounds as printed in `le`.
    labels: Vec<String>,
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    /// Multiplies the integer sum into the printed unit (1e-9 for seconds).
    scale: f64,
}

impl Histogram {
    fn seconds(bounds: &[f64]) -> Histogram {
        let ints = bounds.iter().map(|b| (b * 1e9).round() as u64).collect();
        Histogram::new(ints, bounds.iter().map(|b| prom_float(*b)).collect(), 1e-9)
    }

    fn counts(bounds: Vec<u64>) -> Histogram {
        let labels = bounds.iter().map(|b| prom_float(*b as f64)).collect();
        Histogram::new(bounds, labels, 1.0)
    }

    fn new(bounds: Vec<u64>, labels: Vec<String>, scale: f64) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            labels,
            counts,
            sum: AtomicU64::new(0),
            scale,
        }
    }

    pub(crate) fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (le, count) in self.labels.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                prom_float(cumulative as f64)
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let count = prom_float(cumulative as f64);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum.load(Relaxed) as f64 * self.scale;
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", prom_float(sum));
    }
}

/// Every metric the simulator exports.
pub(crate) struct Metrics {
    /// `model_name="..."`, escaped.
    labels: String,
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    /// KV-cache usage as `f64` bits.
    kv_usage: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    success: [AtomicU64; 3],
    pub preemptions: AtomicU64,
    pub injected_failures: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
    pub inference: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
    pub prompt_len: Histogram,
    pub output_len: Histogram,
    pub lateness: Histogram,
}

impl Metrics {
    pub(crate) fn new(model: &str, max_model_len: u32) -> Metrics {
        let escaped = model
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let lengths = one_two_five(u64::from(max_model_len));
        Metrics {
            labels: format!("model_name=\"{escaped}\""),
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            kv_usage: AtomicU64::new(0f64.to_bits()),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            success: Default::default(),
            preemptions: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            ttft: Histogram::seconds(TTFT_BUCKETS),
            itl: Histogram::seconds(ITL_BUCKETS),
            e2e: Histogram::seconds(REQUEST_BUCKETS),
            queue: Histogram::seconds(REQUEST_BUCKETS),
            inference: Histogram::seconds(REQUEST_BUCKETS),
            prefill: Histogram::seconds(REQUEST_BUCKETS),
            decode: Histogram::seconds(REQUEST_BUCKETS),
            prompt_len: Histogram::counts(lengths.clone()),
            output_len: Histogram::counts(lengths),
            lateness: Histogram::seconds(LATENESS_BUCKETS),
        }
    }

    pub(crate) fn set_kv_usage(&self, fraction: f64) {
        self.kv_usage.store(fraction.to_bits(), Relaxed);
    }

    pub(crate) fn count_finished(&self, reason: FinishReason) {
        self.success[reason.index()].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let l = self.labels.as_str();
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {}",
                prom_float(value)
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name}_total {help}\n# TYPE {name}_total counter\n{name}_total{{{l}}} {}",
                prom_float(value.load(Relaxed) as f64)
            );
        };
        let kv = f64::from_bits(self.kv_usage.load(Relaxed));
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            self.running.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            self.waiting.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            kv,
        );
        gauge(
            &mut out,
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
            kv,
        );
        counter(
            &mut out,
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            &self.preemptions,
        );
        counter(
            &mut out,
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            &self.prompt_tokens,
        );
        counter(
            &mut out,
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            &self.generation_tokens,
        );
        let name = "vllm:request_success_total";
        let _ = writeln!(
            out,
            "# HELP {name} Count of successfully processed requests.\n# TYPE {name} counter"
        );
        for reason in FinishReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{{l},finished_reason=\"{}\"}} {}",
                reason.as_str(),
                prom_float(self.success[reason.index()].load(Relaxed) as f64)
            );
        }
        let histograms: [(&Histogram, &str, &str); 11] = [
            (
                &self.prompt_len,
                "vllm:request_prompt_tokens",
                "Number of prefill tokens processed.",
            ),
            (
                &self.output_len,
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
            ),
            (
                &self.ttft,
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
            ),
            (
                &self.itl,
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
            ),
            (
                &self.itl,
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
            ),
            (
                &self.e2e,
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
            ),
            (
                &self.queue,
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
            ),
            (
                &self.inference,
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
            ),
            (
                &self.prefill,
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
            ),
            (
                &self.decode,
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
            ),
            (
                &self.lateness,
                "aibench_sim:token_lateness_seconds",
                "How late each token was sent relative to its scheduled time, in seconds.",
            ),
        ];
        for (histogram, name, help) in histograms {
            histogram.render(&mut out, name, help, l);
        }
        counter(
            &mut out,
            "aibench_sim:injected_failures",
            "Requests answered with HTTP 500 on purpose (--failure-rate).",
            &self.injected_failures,
        );
        out
    }
}

/// 1, 2, 5, 10, 20, 50, ... up to `max` (vLLM's buckets for token counts).
fn one_two_five(max: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut scale = 1u64;
    loop {
        for m in [1, 2, 5] {
            let value = m * scale;
            if value > max {
                return out;
            }
            out.push(value);
        }
        scale = match scale.checked_mul(10) {
            Some(s) => s,
            None => return out,
        };
    }
}

/// A float as Prometheus' Python client prints it: `1.0`, `0.005`, `2560.0`.
fn prom_float(value: f64) -> String {
    let text = format!("{value}");
    if text.contains(['.', 'e', 'E', 'N', 'n']) {
        text
    } else {
        format!("{text}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::seconds(&[0.01, 0.1]);
        h.observe_duration(Duration::from_millis(10));
        h.observe_duration(Duration::from_millis(50));
        h.observe_duration(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "x", "help", "model_name=\"m\"");
        assert!(
            out.contains("x_bucket{model_name=\"m\",le=\"0.01\"} 1.0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{model_name=\"m\",le=\"0.1\"} 2.0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{model_name=\"m\",le=\"+Inf\"} 3.0\n"),
            "{out}"
        );
        assert!(out.contains("x_count{model_name=\"m\"} 3.0\n"), "{out}");
        assert!(out.contains("x_sum{model_name=\"m\"} 3.06"), "{out}");
    }

    #[test]
    fn token_buckets_follow_vllm() {
        assert_eq!(one_two_five(100), vec![1, 2, 5, 10, 20, 50, 100]);
        assert_eq!(prom_float(1.0), "1.0");
        assert_eq!(prom_float(0.005), "0.005");
    }

    #[test]
    fn render_has_help_and_type_for_every_family() {
        let m = Metrics::new("a\"b", 4096);
        let text = m.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
        }
        assert!(text.contains("model_name=\"a\\\"b\""));
    }
}
