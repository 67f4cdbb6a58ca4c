//! Live exposition: aibench's own load metrics in the Prometheus text format, served on
//! `/metrics` during a run (and pushed to a Pushgateway, see [`crate::push`]).
//!
//! [`LiveMetrics`] is a cheap handle (clone it freely) fed from two sources:
//!
//! - [`LiveMetrics::observe_progress`] with each [`aibench_results::Progress`] snapshot (every
//!   250 ms per workload): request counters, requests in flight, the request rate, the phase,
//!   the measure window's p99 TTFT and E2E, and the output token rate;
//! - [`LiveMetrics::observe_record`] with each finished [`RequestRecord`], when the caller has
//!   them: errors by class, token counters and the latency histograms.
//!
//! The two never count the same thing, so feeding both is right. The monitor adds the latest
//! host and GPU samples (`aibench_host_*`, `aibench_gpu_*`) and its scrape counts.
//!
//! | series | type | source |
//! |---|---|---|
//! | `aibench_info{run,version}` | gauge | always 1 |
//! | `aibench_requests_sent_total{workload}` | counter | progress |
//! | `aibench_requests_succeeded_total{workload}` | counter | progress |
//! | `aibench_requests_failed_total{workload}` | counter | progress |
//! | `aibench_requests_dropped_total{workload}` | counter | progress |
//! | `aibench_requests_in_flight{workload}` | gauge | progress |
//! | `aibench_requests_per_second{workload}` | gauge | progress (successes over the last interval) |
//! | `aibench_phase{workload,phase}` | gauge | progress (1 for the current phase) |
//! | `aibench_elapsed_seconds{workload}` | gauge | progress |
//! | `aibench_ttft_p99_seconds{workload}`, `aibench_e2e_p99_seconds{workload}` | gauge | progress (measure window) |
//! | `aibench_output_tokens_per_second{workload}` | gauge | records, per progress interval |
//! | `aibench_request_errors_total{workload,class}` | counter | records |
//! | `aibench_input_tokens_total{workload}`, `aibench_output_tokens_total{workload}` | counter | records |
//! | `aibench_ttft_seconds`, `aibench_itl_seconds`, `aibench_tpot_seconds`, `aibench_e2e_seconds` `{workload}` | histogram | records (successes) |
//! | `aibench_host_*`, `aibench_gpu_*` | gauge | monitor |
//! | `aibench_scrape_attempts_total{target}`, `aibench_scrape_failures_total{target}`, `aibench_scrape_up{target}` | counter, counter, gauge | monitor |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use aibench_results::Progress;
use aibench_results::{Phase, RequestRecord};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::expo::{MetricType, Sample, TextWriter};

/// The content type of the text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets (seconds) of the TTFT, E2E and TPOT histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0,
];
/// Buckets (seconds) of the inter-token latency histogram.
pub const ITL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            if let Some(c) = self.counts.get_mut(i) {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, w: &mut TextWriter, name: &str, workload: &str) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let le = crate::expo::format_value(*b);
            w.sample(
                &bucket,
                &[("workload", workload), ("le", &le)],
                cumulative as f64,
            );
        }
        w.sample(
            &bucket,
            &[("workload", workload), ("le", "+Inf")],
            self.count as f64,
        );
        w.sample(&format!("{name}_sum"), &[("workload", workload)], self.sum);
        w.sample(
            &format!("{name}_count"),
            &[("workload", workload)],
            self.count as f64,
        );
    }
}

#[derive(Clone, Debug)]
struct Workload {
    sent: u64,
    succeeded: u64,
    failed: u64,
    dropped: u64,
    in_flight: u64,
    rate_rps: f64,
    phase: Phase,
    elapsed_s: f64,
    ttft_p99_s: Option<f64>,
    e2e_p99_s: Option<f64>,
    errors: BTreeMap<&'static str, u64>,
    input_tokens: u64,
    output_tokens: u64,
    records: u64,
    tokens_per_s: Option<f64>,
    /// (elapsed, output tokens) at the previous progress snapshot.
    last_tokens: Option<(f64, u64)>,
    ttft: Histogram,
    itl: Histogram,
    tpot: Histogram,
    e2e: Histogram,
}

impl Workload {
    fn new() -> Workload {
        Workload {
            sent: 0,
            succeeded: 0,
            failed: 0,
            dropped: 0,
            in_flight: 0,
            rate_rps: 0.0,
            phase: Phase::Warmup,
            elapsed_s: 0.0,
            ttft_p99_s: None,
            e2e_p99_s: None,
            errors: BTreeMap::new(),
            input_tokens: 0,
            output_tokens: 0,
            records: 0,
            tokens_per_s: None,
            last_tokens: None,
            ttft: Histogram::new(LATENCY_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            tpot: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct TargetCounts {
    attempts: u64,
    failures: u64,
    up: bool,
}

#[derive(Debug, Default)]
struct State {
    run: String,
    workloads: BTreeMap<String, Workload>,
    /// Gauges by group (`host`, `gpu`), replaced whole on each update.
    gauges: BTreeMap<String, Vec<Sample>>,
    targets: BTreeMap<String, TargetCounts>,
}

/// aibench's own metrics, shared between the load, the monitor and the `/metrics` server.
#[derive(Clone, Debug, Default)]
pub struct LiveMetrics {
    inner: Arc<Mutex<State>>,
}

impl LiveMetrics {
    /// Metrics of one run (the `run` label of `aibench_info`).
    pub fn new(run: impl Into<String>) -> LiveMetrics {
        let m = LiveMetrics::default();
        m.lock().run = run.into();
        m
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain numbers: keep serving them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a progress snapshot of one workload.
    pub fn observe_progress(&self, workload: &str, p: &Progress) {
        let mut st = self.lock();
        let w = st
            .workloads
            .entry(workload.to_string())
            .or_insert_with(Workload::new);
        w.sent = w.sent.max(p.sent);
        w.succeeded = w.succeeded.max(p.succeeded);
        w.failed = w.failed.max(p.errors);
        w.dropped = w.dropped.max(p.dropped);
        w.in_flight = p.in_flight;
        w.rate_rps = p.rate_rps;
        w.phase = p.phase;
        let elapsed = p.elapsed.as_secs_f64();
        w.elapsed_s = elapsed;
        w.ttft_p99_s = p.ttft_p99_ms.map(|ms| ms / 1000.0);
        w.e2e_p99_s = p.e2e_p99_ms.map(|ms| ms / 1000.0);
        if w.records > 0 {
            if let Some((t0, n0)) = w.last_tokens {
                let dt = elapsed - t0;
                if dt > 0.0 {
                    w.tokens_per_s = Some(w.output_tokens.saturating_sub(n0) as f64 / dt);
                }
            }
            w.last_tokens = Some((elapsed, w.output_tokens));
        }
        if p.done {
            w.in_flight = 0;
        }
    }

    /// Take one finished request of one workload.
    pub fn observe_record(&self, workload: &str, r: &RequestRecord) {
        let mut st = self.lock();
        let w = st
            .workloads
            .entry(workload.to_string())
            .or_insert_with(Workload::new);
        if w.records == 0 {
            w.last_tokens = Some((w.elapsed_s, 0));
        }
        w.records += 1;
        if let Some(class) = r.error {
            *w.errors.entry(class.as_str()).or_insert(0) += 1;
            return;
        }
        w.input_tokens += u64::from(r.input_tokens.unwrap_or(0));
        w.output_tokens += u64::from(r.output_tokens.unwrap_or(0));
        if !r.is_success() {
            return;
        }
        let s = |us: u64| us as f64 / 1e6;
        if let Some(v) = r.ttft_us() {
            w.ttft.observe(s(v));
        }
        if let Some(v) = r.e2e_us() {
            w.e2e.observe(s(v));
        }
        if let Some(v) = r.tpot_us() {
            w.tpot.observe(s(v));
        }
        for gap in &r.itl_us {
            w.itl.observe(f64::from(*gap) / 1e6);
        }
    }

    /// Replace the gauges of a group (`host`, `gpu`); names get the `aibench_` prefix.
    pub fn set_gauges(&self, group: &str, samples: Vec<Sample>) {
        self.lock().gauges.insert(group.to_string(), samples);
    }

    /// Count one scrape of a target.
    pub fn observe_scrape(&self, target: &str, ok: bool) {
        let mut st = self.lock();
        let t = st.targets.entry(target.to_string()).or_default();
        t.attempts += 1;
        if !ok {
            t.failures += 1;
        }
        t.up = ok;
    }

    /// The exposition, in the Prometheus text format.
    pub fn render(&self) -> String {
        let st = self.lock();
        let mut w = TextWriter::new();
        w.family("aibench_info", MetricType::Gauge, "The run being measured.");
        w.sample(
            "aibench_info",
            &[("run", &st.run), ("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        type Get = fn(&Workload) -> Option<f64>;
        let scalars: [(&str, MetricType, &str, Get); 10] = [
            (
                "aibench_requests_sent_total",
                MetricType::Counter,
                "Requests written to a connection.",
                |w| Some(w.sent as f64),
            ),
            (
                "aibench_requests_succeeded_total",
                MetricType::Counter,
                "Requests that succeeded.",
                |w| Some(w.succeeded as f64),
            ),
            (
                "aibench_requests_failed_total",
                MetricType::Counter,
                "Requests that failed (any error class).",
                |w| Some(w.failed as f64),
            ),
            (
                "aibench_requests_dropped_total",
                MetricType::Counter,
                "Open-loop requests never sent because the in-flight cap was reached.",
                |w| Some(w.dropped as f64),
            ),
            (
                "aibench_requests_in_flight",
                MetricType::Gauge,
                "Requests sent and not yet answered.",
                |w| Some(w.in_flight as f64),
            ),
            (
                "aibench_requests_per_second",
                MetricType::Gauge,
                "Successful requests per second over the last progress interval.",
                |w| Some(w.rate_rps),
            ),
            (
                "aibench_elapsed_seconds",
                MetricType::Gauge,
                "Seconds since the workload started.",
                |w| Some(w.elapsed_s),
            ),
            (
                "aibench_ttft_p99_seconds",
                MetricType::Gauge,
                "99th percentile time to first token in the measure window so far.",
                |w| w.ttft_p99_s,
            ),
            (
                "aibench_e2e_p99_seconds",
                MetricType::Gauge,
                "99th percentile end-to-end latency in the measure window so far.",
                |w| w.e2e_p99_s,
            ),
            (
                "aibench_output_tokens_per_second",
                MetricType::Gauge,
                "Output tokens per second over the last progress interval.",
                |w| w.tokens_per_s,
            ),
        ];
        for (name, kind, help, get) in scalars {
            let values: Vec<(&str, f64)> = st
                .workloads
                .iter()
                .filter_map(|(n, wl)| Some((n.as_str(), get(wl)?)))
                .collect();
            if values.is_empty() {
                continue;
            }
            w.family(name, kind, help);
            for (n, v) in values {
                w.sample(name, &[("workload", n)], v);
            }
        }
        if !st.workloads.is_empty() {
            w.family(
                "aibench_phase",
                MetricType::Gauge,
                "1 for the phase the workload is in.",
            );
            for (n, wl) in &st.workloads {
                for (phase, name) in [
                    (Phase::Warmup, "warmup"),
                    (Phase::Measure, "measure"),
                    (Phase::Cooldown, "cooldown"),
                ] {
                    let v = if wl.phase == phase { 1.0 } else { 0.0 };
                    w.sample("aibench_phase", &[("workload", n), ("phase", name)], v);
                }
            }
        }
        let with_records: Vec<(&String, &Workload)> = st
            .workloads
            .iter()
            .filter(|(_, wl)| wl.records > 0)
            .collect();
        if !with_records.is_empty() {
            w.family(
                "aibench_request_errors_total",
                MetricType::Counter,
                "Failed requests by error class.",
            );
            for (n, wl) in &with_records {
                for (class, count) in &wl.errors {
                    w.sample(
                        "aibench_request_errors_total",
                        &[("workload", n), ("class", class)],
                        *count as f64,
                    );
                }
            }
            w.family(
                "aibench_input_tokens_total",
                MetricType::Counter,
                "Prompt tokens of finished requests.",
            );
            for (n, wl) in &with_records {
                w.sample(
                    "aibench_input_tokens_total",
                    &[("workload", n)],
                    wl.input_tokens as f64,
                );
            }
            w.family(
                "aibench_output_tokens_total",
                MetricType::Counter,
                "Output tokens of finished requests.",
            );
            for (n, wl) in &with_records {
                w.sample(
                    "aibench_output_tokens_total",
                    &[("workload", n)],
                    wl.output_tokens as f64,
                );
            }
            type H = fn(&Workload) -> &Histogram;
            let histograms: [(&str, &str, H); 4] = [
                (
                    "aibench_ttft_seconds",
                    "Time to first token of successful requests.",
                    |w| &w.ttft,
                ),
                (
                    "aibench_itl_seconds",
                    "Gaps between consecutive content chunks.",
                    |w| &w.itl,
                ),
                (
                    "aibench_tpot_seconds",
                    "Time per output token after the first.",
                    |w| &w.tpot,
                ),
                (
                    "aibench_e2e_seconds",
                    "End-to-end latency of successful requests.",
                    |w| &w.e2e,
                ),
            ];
            for (name, help, get) in histograms {
                w.family(name, MetricType::Histogram, help);
                for (n, wl) in &with_records {
                    get(wl).write(&mut w, name, n);
                }
            }
        }
        let mut by_name: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
        for s in st.gauges.values().flatten() {
            by_name
                .entry(format!("aibench_{}", s.name))
                .or_default()
                .push(s);
        }
        for (name, samples) in by_name {
            w.family(&name, MetricType::Gauge, gauge_help(&name));
            for s in samples {
                let labels: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                w.sample(&name, &labels, s.value);
            }
        }
        if !st.targets.is_empty() {
            type Get = fn(&TargetCounts) -> f64;
            let rows: [(&str, MetricType, &str, Get); 3] = [
                (
                    "aibench_scrape_attempts_total",
                    MetricType::Counter,
                    "Scrapes of a service's metrics tried.",
                    |t| t.attempts as f64,
                ),
                (
                    "aibench_scrape_failures_total",
                    MetricType::Counter,
                    "Scrapes of a service's metrics that failed.",
                    |t| t.failures as f64,
                ),
                (
                    "aibench_scrape_up",
                    MetricType::Gauge,
                    "1 if the last scrape of the service succeeded.",
                    |t| if t.up { 1.0 } else { 0.0 },
                ),
            ];
            for (name, kind, help, get) in rows {
                w.family(name, kind, help);
                for (t, c) in &st.targets {
                    w.sample(name, &[("target", t)], get(c));
                }
            }
        }
        w.finish()
    }
}

fn gauge_help(name: &str) -> &'static str {
    match name {
        "aibench_host_cpu_utilisation_ratio" => "CPU busy fraction (cpu=total or a core index).",
        "aibench_host_cpu_mode_ratio" => "Fraction of all CPU time in a mode.",
        "aibench_host_memory_total_bytes" => "Physical memory.",
        "aibench_host_memory_available_bytes" => "Memory available to new programs.",
        "aibench_host_memory_used_bytes" => "Memory in use (total minus available).",
        "aibench_host_swap_used_bytes" => "Swap in use.",
        "aibench_host_network_receive_bytes_per_second" => "Bytes received per second.",
        "aibench_host_network_transmit_bytes_per_second" => "Bytes sent per second.",
        "aibench_host_disk_read_bytes_per_second" => "Bytes read from disk per second.",
        "aibench_host_disk_write_bytes_per_second" => "Bytes written to disk per second.",
        "aibench_host_load1" | "aibench_host_load5" | "aibench_host_load15" => "Load average.",
        "aibench_gpu_utilisation_ratio" => "Fraction of time a kernel was running on the GPU.",
        "aibench_gpu_memory_utilisation_ratio" => {
            "Fraction of time GPU memory was read or written."
        }
        "aibench_gpu_memory_used_bytes" => "GPU memory in use.",
        "aibench_gpu_memory_total_bytes" => "GPU memory.",
        "aibench_gpu_power_watts" => "GPU power draw.",
        "aibench_gpu_temperature_celsius" => "GPU temperature.",
        "aibench_gpu_sm_clock_hertz" => "GPU SM clock.",
        "aibench_gpu_memory_clock_hertz" => "GPU memory clock.",
        "aibench_gpu_energy_joules" => "GPU energy since monitoring started.",
        _ => "Sampled by the aibench monitor.",
    }
}

/// The `/metrics` server.
pub struct LiveServer {
    addr: SocketAddr,
    metrics: LiveMetrics,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl LiveServer {
    /// Serve `metrics` on `bind` (port 0: any free port) until stopped or dropped.
    pub async fn start(bind: SocketAddr, metrics: LiveMetrics) -> std::io::Result<LiveServer> {
        let listener = TcpListener::bind(bind).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("could not serve live metrics on {bind}: {e}; is another program on that port? set `monitor.expose_port` to a free one, or 0"),
            )
        })?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let served = metrics.clone();
        let task = tokio::spawn(serve(listener, served, stop_rx));
        Ok(LiveServer {
            addr,
            metrics,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &LiveMetrics {
        &self.metrics
    }

    /// Stop accepting and close every connection.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, metrics: LiveMetrics, mut stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let conn_stop = stop.clone();
        tokio::select! {
            _ = crate::stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                };
                let metrics = metrics.clone();
                let mut stop = conn_stop;
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(answer(&metrics, &req)) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = crate::stopped(&mut stop) => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

fn answer<B>(metrics: &LiveMetrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, TEXT_FORMAT, metrics.render()),
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "aibench live metrics: GET /metrics\n".to_string(),
        ),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expo::{parse, Format};
    use aibench_results::ErrorClass;
    use std::time::Duration;

    fn progress(elapsed_ms: u64, sent: u64, ok: u64) -> Progress {
        Progress {
            elapsed: Duration::from_millis(elapsed_ms),
            phase: Phase::Measure,
            sent,
            succeeded: ok,
            errors: sent - ok,
            dropped: 0,
            in_flight: 2,
            rate_rps: 4.0,
            ttft_p99_ms: Some(120.0),
            e2e_p99_ms: None,
            done: false,
        }
    }

    fn record(ok: bool) -> RequestRecord {
        let mut r = RequestRecord::new(1, Phase::Measure, 0);
        r.sent_us = Some(10);
        if ok {
            r.first_token_us = Some(50_010);
            r.end_us = Some(150_010);
            r.itl_us = vec![20_000, 30_000];
            r.output_tokens = Some(11);
            r.input_tokens = Some(7);
        } else {
            r.error = Some(ErrorClass::Http5xx);
        }
        r
    }

    #[test]
    fn progress_and_records_render_as_valid_exposition() {
        let m = LiveMetrics::new("run-1");
        m.observe_progress("chat", &progress(1000, 10, 9));
        m.observe_record("chat", &record(true));
        m.observe_record("chat", &record(false));
        m.observe_progress("chat", &progress(2000, 12, 11));
        m.set_gauges("host", vec![Sample::new("host_load1", vec![], 0.5)]);
        m.observe_scrape("llm", true);
        m.observe_scrape("llm", false);
        let text = m.render();
        let e = parse(&text, Format::Prometheus);
        assert!(e.errors.is_empty(), "{:?}\n{text}", e.errors);
        let v = |name: &str, labels: &[(&str, &str)]| e.find(name, labels).map(|s| s.value);
        assert_eq!(v("aibench_info", &[("run", "run-1")]), Some(1.0));
        assert_eq!(
            v("aibench_requests_sent_total", &[("workload", "chat")]),
            Some(12.0)
        );
        assert_eq!(v("aibench_requests_in_flight", &[]), Some(2.0));
        assert_eq!(v("aibench_ttft_p99_seconds", &[]), Some(0.12));
        assert_eq!(
            v("aibench_request_errors_total", &[("class", "http_5xx")]),
            Some(1.0)
        );
        assert_eq!(v("aibench_output_tokens_total", &[]), Some(11.0));
        assert_eq!(v("aibench_output_tokens_per_second", &[]), Some(11.0));
        assert_eq!(
            v("aibench_ttft_seconds_bucket", &[("le", "0.06")]),
            Some(1.0)
        );
        assert_eq!(
            v("aibench_ttft_seconds_bucket", &[("le", "0.04")]),
            Some(0.0)
        );
        assert_eq!(v("aibench_itl_seconds_count", &[]), Some(2.0));
        assert_eq!(v("aibench_phase", &[("phase", "measure")]), Some(1.0));
        assert_eq!(v("aibench_host_load1", &[]), Some(0.5));
        assert_eq!(
            v("aibench_scrape_failures_total", &[("target", "llm")]),
            Some(1.0)
        );
        assert_eq!(v("aibench_scrape_up", &[("target", "llm")]), Some(0.0));
        // Every family declared once.
        let mut names: Vec<&str> = e.families.iter().map(|f| f.name.as_str()).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn counters_never_go_back() {
        let m = LiveMetrics::new("r");
        m.observe_progress("w", &progress(1000, 10, 9));
        m.observe_progress("w", &progress(900, 5, 5));
        let e = parse(&m.render(), Format::Prometheus);
        assert_eq!(
            e.find("aibench_requests_sent_total", &[]).map(|s| s.value),
            Some(10.0)
        );
    }
}
