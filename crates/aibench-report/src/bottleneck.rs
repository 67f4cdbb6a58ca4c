//! Bottleneck attribution: what limits the service, with the numbers that say so.
//!
//! Each verdict comes from signals with fixed thresholds (the constants below); one signal makes
//! a `possible` verdict, two or more independent ones a `likely` verdict. Client-side signals
//! (send lag, in-flight growth, tail latency, sweep curves) need nothing but the records;
//! monitoring data (`metrics/*.csv`) adds the server's queue and KV cache, host CPU and memory,
//! and GPU utilisation.

use crate::metrics::{Series, TrialMetrics};
use crate::model::{
    BottleneckKind, BucketPhase, Confidence, Evidence, SweepReport, TrialReport, Verdict,
};
use crate::series::slope;
use std::fmt::Write as _;

/// The client is late when its send lag p99 exceeds this many milliseconds ...
pub const CLIENT_LAG_P99_MS: f64 = 10.0;
/// ... and this share of the median end-to-end latency.
pub const CLIENT_LAG_SHARE_OF_E2E: f64 = 0.05;
/// More than this share of requests sent late supports the verdict.
pub const CLIENT_LATE_SHARE: f64 = 0.05;
/// A queue exists when the server's mean number of waiting requests is at least this ...
pub const QUEUE_MEAN_WAITING: f64 = 1.0;
/// ... and it grows when it gains at least this many requests over the window.
pub const QUEUE_GROWTH: f64 = 2.0;
/// In-flight requests (open loop) grow when their peak, late in the window, is this many times
/// the first measured second's.
pub const IN_FLIGHT_GROWTH: f64 = 1.5;
/// Tail latency explodes when p99 is this many times p50 ...
pub const TAIL_RATIO: f64 = 3.0;
/// ... or when per-second p99 ends this many times higher than it started.
pub const TAIL_GROWTH: f64 = 2.0;
/// KV cache usage (fraction) whose 95th percentile marks a full cache.
pub const KV_CACHE_FULL: f64 = 0.9;
/// Mean utilisation (fraction) of a busy GPU or CPU.
pub const BUSY: f64 = 0.9;
/// Share of host memory in use that marks memory pressure.
pub const MEMORY_FULL: f64 = 0.9;
/// Along a sweep: latency growth over the throughput plateau that marks queueing.
pub const SWEEP_LATENCY_GROWTH: f64 = 2.0;

/// vLLM's KV cache usage gauge, current and older name.
pub const KV_CACHE_METRICS: [&str; 2] = ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"];
pub const WAITING_METRIC: &str = "vllm:num_requests_waiting";
pub const RUNNING_METRIC: &str = "vllm:num_requests_running";
pub const PREEMPTIONS_METRIC: &str = "vllm:num_preemptions_total";
/// Host CPU utilisation, as aibench's monitor names it (`cpu=total` and one series per core)
/// and as plain samplers may.
pub const CPU_METRICS: [&str; 2] = ["host_cpu_utilisation_ratio", "host_cpu_utilisation"];
pub const MEMORY_USED_METRIC: &str = "host_memory_used_bytes";
/// PostgreSQL client backends by what they wait on (`pg_stat_activity`), as the monitor
/// names them.
pub const PG_WAIT_METRIC: &str = "pg_stat_activity_wait_count";
/// Backends waiting on locks, on average over the window, that mark lock contention.
pub const PG_LOCK_WAITERS: f64 = 1.0;
/// Redis's CPU counters from `INFO cpu` (seconds), as the monitor names them.
pub const REDIS_CPU_METRICS: [&str; 2] = ["redis_used_cpu_sys", "redis_used_cpu_user"];
pub const MEMORY_TOTAL_METRIC: &str = "host_memory_total_bytes";

/// The whole-host CPU series: `cpu=total`, or any series without a `cpu` label (per-core series
/// are left out: one busy core is not a busy host).
pub fn host_cpu_series(m: &TrialMetrics) -> Vec<&Series> {
    let Some(name) = m.first_of(&CPU_METRICS) else {
        return Vec::new();
    };
    let all: Vec<&Series> = m.named(name).collect();
    let has_cpu = |s: &Series| s.labels.split(';').any(|kv| kv.starts_with("cpu="));
    let total: Vec<&Series> = all
        .iter()
        .copied()
        .filter(|s| s.labels.split(';').any(|kv| kv == "cpu=total"))
        .collect();
    if !total.is_empty() {
        return total;
    }
    all.into_iter().filter(|s| !has_cpu(s)).collect()
}

/// Whether a metric name is a GPU utilisation gauge.
pub fn is_gpu_utilisation(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("gpu") && n.contains("util") && !n.contains("mem")
}

/// Utilisation as a fraction, whether the series is in fractions or percent.
fn fraction_scale(s: &[(f64, f64)]) -> f64 {
    if s.iter().any(|p| p.1 > 1.5) {
        0.01
    } else {
        1.0
    }
}

fn ev(metric: &str, value: f64, unit: &str, threshold: Option<f64>, source: &str) -> Evidence {
    Evidence {
        metric: metric.into(),
        value,
        unit: unit.into(),
        threshold,
        source: source.into(),
    }
}

fn verdict(
    kind: BottleneckKind,
    trial: &str,
    signals: usize,
    summary: String,
    evidence: Vec<Evidence>,
    recommendation: &str,
) -> Verdict {
    Verdict {
        kind,
        confidence: if signals >= 2 {
            Confidence::Likely
        } else {
            Confidence::Possible
        },
        trials: vec![trial.to_string()],
        summary,
        evidence,
        recommendation: recommendation.into(),
    }
}

/// What one trial had to work with.
pub struct TrialInput<'a> {
    pub trial: &'a TrialReport,
    pub metrics: Option<&'a TrialMetrics>,
    /// Requests arrive on a schedule (open loop), so in-flight counts can grow.
    pub open_loop: bool,
    /// The host's memory, from `run.json`, when no total is sampled.
    pub host_memory_bytes: u64,
}

/// The measure window on the workload's clock, in seconds.
fn window(t: &TrialReport) -> (f64, f64) {
    match t.summary.window {
        Some(w) => (w.start_ms / 1000.0, w.end_ms / 1000.0),
        None => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

fn in_window(s: &Series, from: f64, to: f64) -> Vec<(f64, f64)> {
    s.window(from, to)
}

/// Every verdict for one trial.
pub fn trial_verdicts(input: &TrialInput) -> Vec<Verdict> {
    let mut out = Vec::new();
    let t = input.trial;
    out.extend(client(t));
    out.extend(queueing(t, input.metrics, input.open_loop));
    if let Some(m) = input.metrics {
        out.extend(kv_cache(t, m));
        out.extend(memory(t, m, input.host_memory_bytes));
        out.extend(gpu(t, m));
        out.extend(cpu(t, m));
        out.extend(redis_thread(t, m));
        out.extend(postgres_locks(t, m));
    }
    out
}

/// The rate of a counter over the measure window: its change between the last sample at or
/// before the window's start (else the first) and the last at or before its end, per second.
fn counter_rate(s: &Series, from: f64, to: f64) -> Option<f64> {
    let first = s
        .points
        .iter()
        .rev()
        .find(|p| p.0 <= from)
        .or_else(|| s.points.first())?;
    let last = s.points.iter().rev().find(|p| p.0 <= to)?;
    let dt = last.0 - first.0;
    (dt > 0.0 && last.1 >= first.1).then(|| (last.1 - first.1) / dt)
}

/// The E2E tail as supporting evidence: its p99/p50 ratio, and 1 when the tail is long.
fn tail_signal(t: &TrialReport, evidence: &mut Vec<Evidence>) -> usize {
    let (Some(p50), Some(p99)) = (t.headline.e2e_p50_ms, t.headline.e2e_p99_ms) else {
        return 0;
    };
    evidence.push(ev(
        "E2E p99 / p50",
        p99 / p50.max(1e-9),
        "ratio",
        Some(TAIL_RATIO),
        "summary",
    ));
    usize::from(p99 > TAIL_RATIO * p50)
}

/// PostgreSQL transactions that queue behind each other's row locks (TPC-B with more clients
/// than branches does): backends waiting on `Lock` events, from `pg_stat_activity`.
fn postgres_locks(t: &TrialReport, m: &TrialMetrics) -> Option<Verdict> {
    let (from, to) = window(t);
    let waits = m
        .named(PG_WAIT_METRIC)
        .find(|s| s.labels.split(';').any(|kv| kv == "wait_event_type=Lock"))?;
    let mean = mean_in(&in_window(waits, from, to))?;
    if mean < PG_LOCK_WAITERS {
        return None;
    }
    let mut signals = 1;
    let mut evidence = vec![ev(
        "pg_stat_activity_wait_count{wait_event_type=Lock} mean",
        mean,
        "backends",
        Some(PG_LOCK_WAITERS),
        "metrics",
    )];
    signals += tail_signal(t, &mut evidence);
    Some(verdict(
        BottleneckKind::Queueing,
        &t.id,
        signals,
        format!("{mean:.1} PostgreSQL backends on average waited for locks held by others"),
        evidence,
        "Transactions queue on the same rows: spread the hot rows (a larger TPC-B scale, more \
         branches than clients), shorten transactions, or lower the number of clients to what \
         the contended rows allow.",
    ))
}

/// Redis runs every command on one thread: a server that used about one core of CPU while the
/// host had cores to spare is bound by that thread, which no host-wide figure shows.
fn redis_thread(t: &TrialReport, m: &TrialMetrics) -> Option<Verdict> {
    let (from, to) = window(t);
    let mut cores = 0.0;
    for name in REDIS_CPU_METRICS {
        cores += m
            .named(name)
            .next()
            .and_then(|s| counter_rate(s, from, to))?;
    }
    if cores < BUSY {
        return None;
    }
    let mut signals = 1;
    let mut evidence = vec![ev(
        "redis_used_cpu_sys + redis_used_cpu_user rate",
        cores,
        "cores",
        Some(BUSY),
        "metrics",
    )];
    signals += tail_signal(t, &mut evidence);
    Some(verdict(
        BottleneckKind::Cpu,
        &t.id,
        signals,
        format!("Redis used {cores:.2} cores: its single command thread was saturated"),
        evidence,
        "Redis executes commands on one thread: more clients only queue. Pipeline commands, \
         enable `io-threads` for network-heavy loads, spread keys over more instances (Redis \
         Cluster) or serve reads from replicas.",
    ))
}

fn client(t: &TrialReport) -> Option<Verdict> {
    let h = &t.headline;
    let s = &t.summary;
    let mut evidence = Vec::new();
    let mut signals = 0;
    let lag = h.send_lag_p99_ms?;
    let e2e50 = h.e2e_p50_ms.unwrap_or(0.0);
    let lag_limit = CLIENT_LAG_P99_MS.max(CLIENT_LAG_SHARE_OF_E2E * e2e50);
    if lag > lag_limit {
        signals += 1;
        evidence.push(ev("send lag p99", lag, "ms", Some(lag_limit), "summary"));
        if e2e50 > 0.0 {
            evidence.push(ev("E2E p50", e2e50, "ms", None, "summary"));
        }
    }
    let sent = s.counts.total.saturating_sub(s.counts.dropped).max(1);
    let late_share = s.counts.late as f64 / sent as f64;
    // Lateness supports the verdict only when the lag itself matters next to the latency.
    if signals > 0 && late_share > CLIENT_LATE_SHARE {
        signals += 1;
        evidence.push(ev(
            "requests sent late",
            late_share,
            "share",
            Some(CLIENT_LATE_SHARE),
            "summary",
        ));
    }
    if signals == 0 {
        return None;
    }
    Some(verdict(
        BottleneckKind::Client,
        &t.id,
        signals,
        format!(
            "aibench itself sent requests late (send lag p99 {lag:.1} ms, {:.1}% of requests \
             late), so the load the service saw was lower than planned",
            late_share * 100.0
        ),
        evidence,
        "Spread the load over more client processes or nodes (`clients.processes`, \
         `clients.nodes`), keep the client off the service's host, or lower the rate; the \
         results of this trial understate what the service can do.",
    ))
}

fn queueing(t: &TrialReport, m: Option<&TrialMetrics>, open_loop: bool) -> Option<Verdict> {
    let (from, to) = window(t);
    let mut evidence = Vec::new();
    let mut signals = 0;
    let mut server_queue = false;
    // The server's own queue.
    if let Some(w) = m.and_then(|m| m.summed(WAITING_METRIC)) {
        let pts = in_window(&w, from, to);
        if pts.len() >= 2 {
            let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
            let span = pts[pts.len() - 1].0 - pts[0].0;
            let growth = slope(&pts) * span;
            if mean >= QUEUE_MEAN_WAITING && growth >= QUEUE_GROWTH {
                signals += 1;
                server_queue = true;
                evidence.push(ev(
                    &format!("{WAITING_METRIC} mean"),
                    mean,
                    "requests",
                    Some(QUEUE_MEAN_WAITING),
                    "metrics",
                ));
                evidence.push(ev(
                    &format!("{WAITING_METRIC} growth over the window"),
                    growth,
                    "requests",
                    Some(QUEUE_GROWTH),
                    "metrics",
                ));
            }
        }
    }
    // In-flight growth on the client (open loop: the schedule does not wait for the server).
    let measured: Vec<_> = t
        .timeseries
        .iter()
        .filter(|b| b.phase == BucketPhase::Measure)
        .collect();
    if open_loop && measured.len() >= 3 {
        let a = measured[0].in_flight;
        let (peak_at, peak) = measured
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.in_flight))
            .fold((0, f64::NEG_INFINITY), |m, x| if x.1 > m.1 { x } else { m });
        let done_mean =
            measured.iter().map(|b| b.completed as f64).sum::<f64>() / measured.len() as f64;
        // The backlog builds through the window (a peak at the very start is a burst, not a queue).
        if a > 0.0
            && peak >= IN_FLIGHT_GROWTH * a
            && peak - a >= 2.0
            && peak_at * 3 >= measured.len()
        {
            signals += 1;
            evidence.push(ev(
                "in flight, first measured second",
                a,
                "requests",
                None,
                "requests.jsonl",
            ));
            evidence.push(ev(
                "in flight, peak",
                peak,
                "requests",
                Some(IN_FLIGHT_GROWTH * a),
                "requests.jsonl",
            ));
            evidence.push(ev(
                "completions per second (mean)",
                done_mean,
                "requests/s",
                None,
                "requests.jsonl",
            ));
        }
    }
    // Tail latency.
    let h = &t.headline;
    if let (Some(p50), Some(p99)) = (h.e2e_p50_ms, h.e2e_p99_ms) {
        let late: Vec<f64> = measured.iter().filter_map(|b| b.e2e_p99_ms).collect();
        let growth = match (late.first(), late.last()) {
            (Some(&a), Some(&b)) if a > 0.0 && late.len() >= 3 => b / a,
            _ => 1.0,
        };
        if p50 > 0.0
            && (p99 / p50 >= TAIL_RATIO || growth >= TAIL_GROWTH)
            && (signals > 0 || growth >= TAIL_GROWTH)
        {
            signals += 1;
            evidence.push(ev(
                "E2E p99 / p50",
                p99 / p50,
                "ratio",
                Some(TAIL_RATIO),
                "summary",
            ));
            evidence.push(ev(
                "per-second E2E p99, last / first",
                growth,
                "ratio",
                Some(TAIL_GROWTH),
                "requests.jsonl",
            ));
        }
    }
    if t.summary.counts.dropped > 0 {
        signals += 1;
        evidence.push(ev(
            "requests dropped at the in-flight cap",
            t.summary.counts.dropped as f64,
            "requests",
            Some(0.0),
            "summary",
        ));
    }
    if let (Some(a), Some(b)) = (h.e2e_from_intended_p99_ms, h.e2e_p99_ms) {
        if open_loop && b > 0.0 && a >= 2.0 * b {
            signals += 1;
            evidence.push(ev(
                "E2E p99 from intended / from actual send",
                a / b,
                "ratio",
                Some(2.0),
                "summary",
            ));
        }
    }
    // Growth of the queue is the defining sign; tail latency alone is not enough.
    let growing = server_queue
        || evidence.iter().any(|e| {
            e.metric.starts_with("in flight, peak")
                || e.metric.starts_with("requests dropped")
                || e.metric.starts_with("E2E p99 from intended")
        });
    if !growing {
        return None;
    }
    Some(verdict(
        BottleneckKind::Queueing,
        &t.id,
        signals,
        format!(
            "requests queue faster than the service completes them: {:.2} req/s completed \
             while the backlog grows{}",
            h.requests_per_s,
            if server_queue {
                " in the server's queue"
            } else {
                ""
            }
        ),
        evidence,
        "The service is saturated at this load: run at or below the sweep's knee, add replicas \
         behind a load balancer, or raise the batch size (vLLM `--max-num-seqs`, \
         `--max-num-batched-tokens`) if memory allows.",
    ))
}

fn kv_cache(t: &TrialReport, m: &TrialMetrics) -> Option<Verdict> {
    let (from, to) = window(t);
    let mut evidence = Vec::new();
    let mut signals = 0;
    let mut full = false;
    if let Some(name) = m.first_of(&KV_CACHE_METRICS) {
        // The fullest cache among the label sets (one per engine).
        let best = m
            .named(name)
            .filter_map(|s| {
                let pts = in_window(s, from, to);
                let scale = fraction_scale(&pts);
                let mut v: Vec<f64> = pts.iter().map(|p| p.1 * scale).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                crate::series::percentile(&v, 0.95)
            })
            .fold(f64::NEG_INFINITY, f64::max);
        if best >= KV_CACHE_FULL {
            signals += 1;
            full = true;
            evidence.push(ev(
                &format!("{name} p95"),
                best,
                "fraction",
                Some(KV_CACHE_FULL),
                "metrics",
            ));
        }
    }
    let preempted: f64 = m
        .named(PREEMPTIONS_METRIC)
        .map(|s| {
            let pts = in_window(s, from, to);
            match (pts.first(), pts.last()) {
                (Some(a), Some(b)) => (b.1 - a.1).max(0.0),
                _ => 0.0,
            }
        })
        .sum();
    if preempted > 0.0 {
        signals += 1;
        evidence.push(ev(
            &format!("{PREEMPTIONS_METRIC} increase"),
            preempted,
            "sequences",
            Some(0.0),
            "metrics",
        ));
    }
    if signals == 0 {
        return None;
    }
    if let Some(w) = m.summed(WAITING_METRIC) {
        let pts = in_window(&w, from, to);
        if !pts.is_empty() {
            let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
            evidence.push(ev(
                &format!("{WAITING_METRIC} mean"),
                mean,
                "requests",
                None,
                "metrics",
            ));
            if mean >= QUEUE_MEAN_WAITING && full {
                signals += 1;
            }
        }
    }
    Some(verdict(
        BottleneckKind::KvCache,
        &t.id,
        signals,
        if full {
            "the KV cache is full: new sequences wait for room in it".to_string()
        } else {
            format!("the server preempted {preempted:.0} sequences for lack of KV-cache room")
        },
        evidence,
        "Give the KV cache more room: raise vLLM's `--gpu-memory-utilization`, lower \
         `--max-model-len`, use an FP8 KV cache (`--kv-cache-dtype fp8`) or prefix caching, or \
         spread the model over more GPUs (`--tensor-parallel-size`).",
    ))
}

fn mean_in(pts: &[(f64, f64)]) -> Option<f64> {
    (!pts.is_empty()).then(|| pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64)
}

fn memory(t: &TrialReport, m: &TrialMetrics, host_memory_bytes: u64) -> Option<Verdict> {
    let (from, to) = window(t);
    // The fullest host.
    let mut worst: Option<(f64, String)> = None;
    for used in m.named(MEMORY_USED_METRIC) {
        let Some(u) = in_window(used, from, to)
            .iter()
            .map(|p| p.1)
            .reduce(f64::max)
        else {
            continue;
        };
        let total = m
            .named(MEMORY_TOTAL_METRIC)
            .find(|s| s.labels == used.labels)
            .and_then(|s| s.points.last().map(|p| p.1))
            .or((host_memory_bytes > 0).then_some(host_memory_bytes as f64));
        if let Some(total) = total.filter(|t| *t > 0.0) {
            let share = u / total;
            if worst.as_ref().is_none_or(|w| share > w.0) {
                worst = Some((share, used.labels.clone()));
            }
        }
    }
    let (share, labels) = worst?;
    if share < MEMORY_FULL {
        return None;
    }
    Some(verdict(
        BottleneckKind::Memory,
        &t.id,
        1,
        format!(
            "host memory was {:.0}% used{}",
            share * 100.0,
            if labels.is_empty() {
                String::new()
            } else {
                format!(" ({labels})")
            }
        ),
        vec![ev(
            "host memory used, peak share",
            share,
            "fraction",
            Some(MEMORY_FULL),
            "metrics",
        )],
        "Host memory is nearly exhausted: lower concurrency or batch size, reduce CPU swap or \
         offload space (vLLM `--swap-space`, `--cpu-offload-gb`), or use a node with more \
         memory.",
    ))
}

fn gpu(t: &TrialReport, m: &TrialMetrics) -> Option<Verdict> {
    let (from, to) = window(t);
    let mut busiest: Option<(f64, &Series)> = None;
    for s in m.matching(is_gpu_utilisation) {
        let pts = in_window(s, from, to);
        let scale = fraction_scale(&pts);
        if let Some(mean) = mean_in(&pts) {
            let mean = mean * scale;
            if busiest.is_none_or(|b| mean > b.0) {
                busiest = Some((mean, s));
            }
        }
    }
    let (mean, s) = busiest?;
    if mean < BUSY {
        return None;
    }
    let mut signals = 1;
    let mut evidence = vec![ev(
        &format!("{} mean{}", s.name, label_suffix(&s.labels)),
        mean,
        "fraction",
        Some(BUSY),
        "metrics",
    )];
    if let Some(w) = m.summed(WAITING_METRIC) {
        if let Some(wm) = mean_in(&in_window(&w, from, to)) {
            if wm >= QUEUE_MEAN_WAITING {
                signals += 1;
                evidence.push(ev(
                    &format!("{WAITING_METRIC} mean"),
                    wm,
                    "requests",
                    Some(QUEUE_MEAN_WAITING),
                    "metrics",
                ));
            }
        }
    }
    Some(verdict(
        BottleneckKind::Gpu,
        &t.id,
        signals,
        format!("the GPU was busy {:.0}% of the time", mean * 100.0),
        evidence,
        "The GPUs are the limit: add GPUs (tensor parallelism or more replicas), use a faster \
         GPU, a smaller or quantised model, or speculative decoding.",
    ))
}

fn label_suffix(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!(" ({labels})")
    }
}

fn cpu(t: &TrialReport, m: &TrialMetrics) -> Option<Verdict> {
    let (from, to) = window(t);
    let mut busiest: Option<(f64, f64, &Series)> = None;
    for s in host_cpu_series(m) {
        let pts = in_window(s, from, to);
        let scale = fraction_scale(&pts);
        let mut v: Vec<f64> = pts.iter().map(|p| p.1 * scale).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        if let (Some(mean), Some(p95)) = (
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64),
            crate::series::percentile(&v, 0.95),
        ) {
            if busiest.is_none_or(|b| mean > b.0) {
                busiest = Some((mean, p95, s));
            }
        }
    }
    let (mean, p95, s) = busiest?;
    if mean < BUSY {
        return None;
    }
    let mut signals = 1;
    let mut evidence = vec![
        ev(
            &format!("{} mean{}", s.name, label_suffix(&s.labels)),
            mean,
            "fraction",
            Some(BUSY),
            "metrics",
        ),
        ev(&format!("{} p95", s.name), p95, "fraction", None, "metrics"),
    ];
    if let Some(lag) = t.headline.send_lag_p99_ms {
        evidence.push(ev("send lag p99", lag, "ms", None, "summary"));
        if lag > CLIENT_LAG_P99_MS {
            signals += 1;
        }
    }
    let mut summary = format!("the host CPUs were {:.0}% busy on average", mean * 100.0);
    let mut advice = String::from(
        "The host CPUs are saturated: give a CPU-served model more cores (`resources.cpus`) or \
         threads, move the load client to another node, or, for a GPU server, check that \
         tokenisation and scheduling threads are not starved.",
    );
    // Who kept them busy: the services, aibench (the load client), or something else.
    let cores = m
        .named(CPU_METRICS[0])
        .filter(|s| s.labels.starts_with("cpu=") && s.labels != "cpu=total")
        .count();
    let used = process_cores(m, from, to);
    if let (true, Some((client, services))) = (cores > 0, used) {
        let busy = mean * cores as f64;
        let other = (busy - client - services).max(0.0);
        evidence.push(ev("aibench CPU (cores)", client, "cores", None, "metrics"));
        evidence.push(ev(
            "services' CPU (cores)",
            services,
            "cores",
            None,
            "metrics",
        ));
        evidence.push(ev(
            "other processes' CPU (cores)",
            other,
            "cores",
            None,
            "metrics",
        ));
        if other > OTHER_SHARE * busy && other > 0.2 {
            let _ = write!(
                summary,
                ", {:.0}% of it by other processes than the services and aibench",
                100.0 * other / busy
            );
            advice = format!(
                "Other processes kept the CPUs busy ({other:.1} of {cores} cores): measure on a \
                 node of your own, or stop them, before reading these results as the service's. \
                 {advice}"
            );
        } else if client > services && client > OTHER_SHARE * busy {
            let _ = write!(
                summary,
                ", most of it by aibench itself ({client:.1} cores)"
            );
            advice = format!(
                "The load client took more CPU than the services: run it on other nodes \
                 (`clients.nodes`) or in more processes (`clients.processes`). {advice}"
            );
        }
    }
    Some(verdict(
        BottleneckKind::Cpu,
        &t.id,
        signals,
        summary,
        evidence,
        &advice,
    ))
}

/// Share of the busy CPU time beyond which other processes are named in the CPU verdict.
const OTHER_SHARE: f64 = 0.25;

/// Mean cores used over `[from, to]` by aibench and by the services (`process_cpu_cores`).
fn process_cores(m: &TrialMetrics, from: f64, to: f64) -> Option<(f64, f64)> {
    let mut client = None;
    let mut services = 0.0;
    for s in m.named("process_cpu_cores") {
        let pts = in_window(s, from, to);
        if pts.is_empty() {
            continue;
        }
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
        if s.labels == "process=aibench" {
            client = Some(mean);
        } else {
            services += mean;
        }
    }
    Some((client?, services))
}

/// Queueing seen along a sweep: throughput flat on its plateau while latency keeps growing.
pub fn sweep_verdict(s: &SweepReport) -> Option<Verdict> {
    let p = s.plateau.as_ref().filter(|p| p.reached)?;
    let on: Vec<_> = s
        .points
        .iter()
        .filter(|pt| {
            pt.x >= p.from_x && pt.requests_per_s >= (1.0 - p.tolerance) * p.max_requests_per_s
        })
        .collect();
    let (first, last) = (on.first()?, on.last()?);
    let (a, b) = (first.latency_ms?, last.latency_ms?);
    if a <= 0.0 || b / a < SWEEP_LATENCY_GROWTH {
        return None;
    }
    let label = crate::sweep::latency_label(&s.latency_metric);
    let show = |x: f64| crate::sweep::show_x(x, &s.unit);
    Some(Verdict {
        kind: BottleneckKind::Queueing,
        confidence: Confidence::Likely,
        trials: on.iter().map(|p| p.trial.clone()).collect(),
        summary: format!(
            "throughput stays at about {:.2} req/s from {} to {} while {label} grows ×{:.1}: \
             extra load only waits in a queue",
            p.max_requests_per_s,
            show(first.x),
            show(last.x),
            b / a
        ),
        evidence: vec![
            ev(
                "plateau throughput",
                p.max_requests_per_s,
                "requests/s",
                None,
                "sweep",
            ),
            ev(
                &format!("{label} at {}", show(first.x)),
                a,
                "ms",
                None,
                "sweep",
            ),
            ev(
                &format!("{label} at {}", show(last.x)),
                b,
                "ms",
                None,
                "sweep",
            ),
            ev(
                "latency growth over the plateau",
                b / a,
                "ratio",
                Some(SWEEP_LATENCY_GROWTH),
                "sweep",
            ),
        ],
        recommendation: format!(
            "Beyond {} the service is saturated: size capacity from the plateau \
             ({:.2} req/s), add replicas for more, and keep the offered load at or below the knee.",
            show(first.x),
            p.max_requests_per_s
        ),
    })
}

/// One verdict per kind for the whole run: the most confident instance, naming every trial.
pub fn merge(all: Vec<Verdict>) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    for v in all {
        match out.iter_mut().find(|o| o.kind == v.kind) {
            Some(o) => {
                for t in &v.trials {
                    if !o.trials.contains(t) {
                        o.trials.push(t.clone());
                    }
                }
                if v.confidence > o.confidence {
                    let trials = std::mem::take(&mut o.trials);
                    *o = v;
                    o.trials = trials;
                }
            }
            None => out.push(v),
        }
    }
    out.sort_by_key(|v| (std::cmp::Reverse(v.confidence), v.kind));
    out
}
