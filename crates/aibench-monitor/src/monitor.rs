//! The monitor of one trial: a task per scrape target and one for the host and its GPUs, each
//! writing its long-format CSV into the trial's `metrics/` folder on the run's clock.
//!
//! ```text
//! metrics/
//!   clock.json       the epoch of t = 0
//!   <service>.csv    t_s,name,labels,value — one file per target
//!   host.csv         CPU, memory, network, disk, load
//!   gpu.csv          NVML samples (when there is a driver)
//!   monitor.json     the MonitorReport: scrapes tried and failed per target, notes
//! ```
//!
//! A scrape that fails is counted and the monitor goes on; nothing here stops a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::RunClock;
use crate::csv::{encode_labels, CsvWriter};
use crate::gpu::{energy_joules, GpuInfo, GpuSampler};
use crate::host::HostSampler;
use crate::live::LiveMetrics;
use crate::scrape::Collector;
use crate::target::{Filter, Target, TargetKind};

/// Names the monitor's own files take; a service with one of them writes `<name>-service.csv`.
const RESERVED: [&str; 4] = ["host", "gpu", "monitor", "clock"];

/// What to watch, where to write, and which clock to use.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// How often to scrape and sample.
    pub interval: Duration,
    /// How long one scrape may take (default: the interval, within 1 to 10 seconds). Stopping
    /// waits at most this long for the last scrapes.
    pub scrape_timeout: Option<Duration>,
    pub targets: Vec<Target>,
    /// Sample this host's CPU, memory, network, disk and load.
    pub system: bool,
    /// With `system`, also these processes of this host, each under its name (`process_*`
    /// series).
    pub processes: Vec<(String, crate::host::Watch)>,
    /// Sample GPUs through NVML where present.
    pub gpu: bool,
    /// Where NVML is when the loader cannot find `libnvidia-ml.so.1` by itself.
    pub nvml_library: Option<PathBuf>,
    /// The trial's `metrics/` folder (created if missing).
    pub out_dir: PathBuf,
    /// The run's zero on the monotonic clock …
    pub clock_zero: Instant,
    /// … and on the wall clock.
    pub epoch_zero: SystemTime,
    /// Keep every metric a service exposes, not only those its kind's filter keeps.
    pub keep_all: bool,
    /// Also publish the latest host and GPU samples and the scrape counts here.
    pub live: Option<LiveMetrics>,
    /// Tell the caller when a target stops or starts answering.
    pub events: Option<mpsc::UnboundedSender<MonitorEvent>>,
}

impl MonitorConfig {
    /// Defaults: every 5 s, host and GPU sampling on, kind filters on, no targets.
    pub fn new(
        out_dir: impl Into<PathBuf>,
        clock_zero: Instant,
        epoch_zero: SystemTime,
    ) -> MonitorConfig {
        MonitorConfig {
            interval: Duration::from_secs(5),
            scrape_timeout: None,
            targets: Vec::new(),
            system: true,
            processes: Vec::new(),
            gpu: true,
            nvml_library: None,
            out_dir: out_dir.into(),
            clock_zero,
            epoch_zero,
            keep_all: false,
            live: None,
            events: None,
        }
    }
}

/// A change in a target's health, for the run's event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MonitorEvent {
    /// The first failure after a success (or at the start).
    TargetDown {
        target: String,
        t_s: f64,
        error: String,
    },
    /// A success after failures.
    TargetUp {
        target: String,
        t_s: f64,
        failed_scrapes: u64,
    },
}

/// Scrapes of one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub name: String,
    pub kind: String,
    pub address: String,
    /// The CSV's file name inside `metrics/`.
    pub file: String,
    pub attempts: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// When the last failure happened, on the run's clock.
    pub last_error_t_s: Option<f64>,
    /// Rows written to the CSV.
    pub rows: u64,
    /// Parts of otherwise good scrapes that failed, over all scrapes: exposition lines that
    /// could not be read, PostgreSQL queries that were refused.
    pub partial_failures: u64,
    pub first_partial_failure: Option<String>,
    /// The CSV could not be written (disk full, ...).
    pub write_error: Option<String>,
}

/// Samples of the host or of its GPUs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplerReport {
    pub file: String,
    pub samples: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub rows: u64,
}

/// What the monitor did; written to `metrics/monitor.json` when it stops.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub interval_s: f64,
    /// The run's t = 0, seconds since the Unix epoch.
    pub epoch_s: f64,
    pub targets: Vec<TargetReport>,
    pub host: Option<SamplerReport>,
    pub gpu: Option<SamplerReport>,
    /// Why GPUs were not sampled ("no NVIDIA driver ..."), when they were asked for.
    pub gpu_note: Option<String>,
    pub gpus: Vec<GpuInfo>,
    /// Total GPU power over time: `(t_s, watts)`.
    pub power: Vec<(f64, f64)>,
}

impl MonitorReport {
    /// Targets with at least one failed scrape.
    pub fn failed_targets(&self) -> impl Iterator<Item = &TargetReport> {
        self.targets.iter().filter(|t| t.failures > 0)
    }

    /// GPU energy in joules, from the power samples, within `[from, to]` on the run's clock
    /// (the whole monitoring time without a window).
    pub fn energy_joules(&self, window: Option<(f64, f64)>) -> Option<f64> {
        energy_joules(&self.power, window)
    }

    /// GPU energy per output token (J/token) over a window in which `output_tokens` were
    /// produced. `None` without power samples or tokens.
    pub fn joules_per_output_token(
        &self,
        output_tokens: u64,
        window: Option<(f64, f64)>,
    ) -> Option<f64> {
        if output_tokens == 0 {
            return None;
        }
        Some(self.energy_joules(window)? / output_tokens as f64)
    }

    /// One line per problem, for the run's report ("scrapes of `llm` failed 12 of 40 times,
    /// last at t=31.0 s: could not connect ...").
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .failed_targets()
            .map(|t| {
                let when = t
                    .last_error_t_s
                    .map(|s| format!(" last at t={s:.1} s"))
                    .unwrap_or_default();
                format!(
                    "scrapes of `{}` ({}) failed {} of {} times;{when}: {}",
                    t.name,
                    t.kind,
                    t.failures,
                    t.attempts,
                    t.last_error.as_deref().unwrap_or("unknown error")
                )
            })
            .collect();
        for t in self.targets.iter().filter(|t| t.partial_failures > 0) {
            out.push(format!(
                "{} part(s) of `{}`'s metrics could not be read; first: {}",
                t.partial_failures,
                t.name,
                t.first_partial_failure.as_deref().unwrap_or("unknown")
            ));
        }
        for t in &self.targets {
            if let Some(e) = &t.write_error {
                out.push(format!("metrics of `{}` could not be written: {e}", t.name));
            }
        }
        for (what, r) in [("host", &self.host), ("GPU", &self.gpu)] {
            if let Some(r) = r.as_ref().filter(|r| r.failures > 0) {
                out.push(format!(
                    "{what} sampling failed {} of {} times: {}",
                    r.failures,
                    r.samples,
                    r.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("could not create the metrics folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not create {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("two scrape targets are named `{0}`; target names must be unique")]
    Duplicate(String),
    #[error("the monitor must be started inside a tokio runtime")]
    NoRuntime,
}

/// Starts monitors.
pub struct Monitor;

impl Monitor {
    /// Create `out_dir`, write `clock.json`, and start scraping and sampling at once (the first
    /// scrape of each target happens immediately). Must be called inside a tokio runtime.
    pub fn start(config: MonitorConfig) -> Result<MonitorHandle, MonitorError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MonitorError::NoRuntime);
        }
        std::fs::create_dir_all(&config.out_dir).map_err(|source| MonitorError::OutDir {
            path: config.out_dir.clone(),
            source,
        })?;
        let clock = RunClock::new(config.clock_zero, config.epoch_zero);
        clock
            .write(&config.out_dir)
            .map_err(|source| MonitorError::File {
                path: config.out_dir.join("clock.json"),
                source,
            })?;
        let (stop, _) = watch::channel(false);
        let mut handle = MonitorHandle {
            config: config.clone(),
            clock,
            stop,
            targets: BTreeMap::new(),
            removed: Vec::new(),
            system: None,
            gpu_note: None,
            gpus: Vec::new(),
        };
        for t in config.targets {
            handle.add_target(t)?;
        }
        if config.system || config.gpu {
            let gpu = if config.gpu {
                let opened = match &config.nvml_library {
                    Some(path) => GpuSampler::open_library(path),
                    None => GpuSampler::open(),
                };
                match opened {
                    Ok(g) => {
                        handle.gpus = g.gpus();
                        Some(g)
                    }
                    Err(note) => {
                        handle.gpu_note = Some(note);
                        None
                    }
                }
            } else {
                None
            };
            let host = config
                .system
                .then(|| HostSampler::new().watching(config.processes.clone()));
            handle.system = Some(handle.spawn_system(host, gpu)?);
        }
        Ok(handle)
    }
}

struct TargetTask {
    report: Arc<Mutex<TargetReport>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct SystemTask {
    host: Option<Arc<Mutex<SamplerReport>>>,
    gpu: Option<Arc<Mutex<SamplerReport>>>,
    power: Arc<Mutex<Vec<(f64, f64)>>>,
    task: Option<JoinHandle<()>>,
}

/// A running monitor. Dropping it stops every task without the final samples; call
/// [`MonitorHandle::stop`] to finish properly.
pub struct MonitorHandle {
    config: MonitorConfig,
    clock: RunClock,
    /// Stops the system sampler.
    stop: watch::Sender<bool>,
    targets: BTreeMap<String, TargetTask>,
    removed: Vec<TargetReport>,
    system: Option<SystemTask>,
    gpu_note: Option<String>,
    gpus: Vec<GpuInfo>,
}

fn snapshot<T: Clone + Default>(m: &Mutex<T>) -> T {
    m.lock().map(|g| g.clone()).unwrap_or_default()
}

impl MonitorHandle {
    /// The run's clock.
    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Start scraping one more target (a service that started after the monitor).
    pub fn add_target(&mut self, target: Target) -> Result<(), MonitorError> {
        if self.targets.contains_key(&target.name) {
            return Err(MonitorError::Duplicate(target.name));
        }
        let mut stem = target.file_stem();
        if RESERVED.contains(&stem.as_str()) {
            stem.push_str("-service");
        }
        // Two running targets whose names make the same file name (`a/b`, `a_b`) get distinct
        // files; a target added again after its removal appends to its old file.
        let taken: Vec<String> = self
            .targets
            .values()
            .map(|t| snapshot(&t.report).file)
            .collect();
        let mut file = format!("{stem}.csv");
        let mut n = 2;
        while taken.contains(&file) {
            file = format!("{stem}-{n}.csv");
            n += 1;
        }
        let path = self.config.out_dir.join(&file);
        let csv = CsvWriter::append(&path).map_err(|source| MonitorError::File { path, source })?;
        let report = Arc::new(Mutex::new(TargetReport {
            name: target.name.clone(),
            kind: target.kind.to_string(),
            address: match target.kind {
                TargetKind::Redis | TargetKind::Postgres => target.address(),
                _ => format!("http://{}{}", target.address(), target.http_path()),
            },
            file,
            ..TargetReport::default()
        }));
        let filter = if self.config.keep_all {
            Filter::All
        } else {
            target.kind.default_filter()
        };
        let (stop, stop_rx) = watch::channel(false);
        let job = TargetJob {
            target: target.clone(),
            filter,
            interval: self.config.interval,
            timeout: self
                .config
                .scrape_timeout
                .unwrap_or_else(|| scrape_timeout(self.config.interval)),
            clock: self.clock,
            csv,
            report: report.clone(),
            live: self.config.live.clone(),
            events: self.config.events.clone(),
            down: None,
        };
        let task = tokio::spawn(job.run(stop_rx));
        self.targets.insert(
            target.name,
            TargetTask {
                report,
                stop,
                task: Some(task),
            },
        );
        Ok(())
    }

    /// Stop scraping a target (its service stopped); its counts stay in the report.
    pub async fn remove_target(&mut self, name: &str) -> Option<TargetReport> {
        let mut t = self.targets.remove(name)?;
        let _ = t.stop.send(true);
        if let Some(task) = t.task.take() {
            let _ = task.await;
        }
        let r = snapshot(&t.report);
        self.removed.push(r.clone());
        Some(r)
    }

    /// The counts so far.
    pub fn report(&self) -> MonitorReport {
        let mut targets: Vec<TargetReport> = self.removed.clone();
        targets.extend(self.targets.values().map(|t| snapshot(&t.report)));
        MonitorReport {
            interval_s: self.config.interval.as_secs_f64(),
            epoch_s: self.clock.epoch_s(),
            targets,
            host: self
                .system
                .as_ref()
                .and_then(|s| s.host.as_deref().map(snapshot)),
            gpu: self
                .system
                .as_ref()
                .and_then(|s| s.gpu.as_deref().map(snapshot)),
            gpu_note: self.gpu_note.clone(),
            gpus: self.gpus.clone(),
            power: self
                .system
                .as_ref()
                .map(|s| snapshot(&s.power))
                .unwrap_or_default(),
        }
    }

    /// Take a last sample of everything, stop, write `monitor.json`, and return the report.
    pub async fn stop(mut self) -> MonitorReport {
        let _ = self.stop.send(true);
        for t in self.targets.values() {
            let _ = t.stop.send(true);
        }
        for t in self.targets.values_mut() {
            if let Some(task) = t.task.take() {
                let _ = task.await;
            }
        }
        if let Some(task) = self.system.as_mut().and_then(|s| s.task.take()) {
            let _ = task.await;
        }
        let report = self.report();
        if let Ok(text) = serde_json::to_vec_pretty(&report) {
            let _ = crate::clock::write_atomic(&self.config.out_dir.join("monitor.json"), &text);
        }
        report
    }

    fn spawn_system(
        &self,
        host: Option<HostSampler>,
        gpu: Option<GpuSampler>,
    ) -> Result<SystemTask, MonitorError> {
        let dir = &self.config.out_dir;
        let open = |name: &str| -> Result<(CsvWriter, Arc<Mutex<SamplerReport>>), MonitorError> {
            let path = dir.join(name);
            let csv =
                CsvWriter::append(&path).map_err(|source| MonitorError::File { path, source })?;
            let report = Arc::new(Mutex::new(SamplerReport {
                file: name.to_string(),
                ..SamplerReport::default()
            }));
            Ok((csv, report))
        };
        let host = match host {
            Some(h) => Some((h, open("host.csv")?)),
            None => None,
        };
        let gpu = match gpu {
            Some(g) => Some((g, open("gpu.csv")?)),
            None => None,
        };
        let power = Arc::new(Mutex::new(Vec::new()));
        let job = SystemJob {
            interval: self.config.interval,
            clock: self.clock,
            live: self.config.live.clone(),
            power: power.clone(),
        };
        let reports = (
            host.as_ref().map(|(_, (_, r))| r.clone()),
            gpu.as_ref().map(|(_, (_, r))| r.clone()),
        );
        let task = tokio::spawn(job.run(host, gpu, self.stop.subscribe()));
        Ok(SystemTask {
            host: reports.0,
            gpu: reports.1,
            power,
            task: Some(task),
        })
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        for t in self.targets.values() {
            if let Some(task) = &t.task {
                task.abort();
            }
        }
        if let Some(task) = self.system.as_ref().and_then(|s| s.task.as_ref()) {
            task.abort();
        }
    }
}

/// How long one scrape may take: the interval, within 1 to 10 seconds.
fn scrape_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(10))
}

struct TargetJob {
    target: Target,
    filter: Filter,
    interval: Duration,
    timeout: Duration,
    clock: RunClock,
    csv: CsvWriter,
    report: Arc<Mutex<TargetReport>>,
    live: Option<LiveMetrics>,
    events: Option<mpsc::UnboundedSender<MonitorEvent>>,
    /// Failures since the target last answered (None: it has not failed).
    down: Option<u64>,
}

impl TargetJob {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut collector = Collector::for_kind(self.target.kind);
        let timeout = self.timeout;
        let mut tick = tokio::time::interval(self.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = tick.tick() => {}
            }
            let stopped = tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => true,
                _ = self.scrape(&mut collector, timeout) => false,
            };
            if stopped {
                break;
            }
        }
        self.scrape(&mut collector, timeout).await;
        let _ = self.csv.flush();
    }

    async fn scrape(&mut self, collector: &mut Collector, timeout: Duration) {
        let started = Instant::now();
        let t_s = self.clock.t_s(started);
        let result = collector.collect(&self.target, self.filter, timeout).await;
        let ok = result.is_ok();
        let mut write_error = None;
        let mut unreadable = (0, None);
        if let Ok(scraped) = &result {
            for s in &scraped.samples {
                let at = s
                    .timestamp
                    .map(|ts| self.clock.from_epoch_s(ts))
                    .unwrap_or(t_s);
                if let Err(e) = self
                    .csv
                    .row(at, &s.name, &encode_labels(&s.labels), s.value)
                {
                    write_error = Some(e.to_string());
                    break;
                }
            }
            if let Err(e) = self.csv.flush() {
                write_error = Some(e.to_string());
            }
            unreadable = (
                scraped.partial_failures as u64,
                scraped.first_partial_failure.clone(),
            );
        }
        if let Some(live) = &self.live {
            live.observe_scrape(&self.target.name, ok);
        }
        let mut event = None;
        if let Ok(mut r) = self.report.lock() {
            r.attempts += 1;
            r.rows = self.csv.rows();
            r.partial_failures += unreadable.0;
            if r.first_partial_failure.is_none() {
                r.first_partial_failure = unreadable.1;
            }
            if write_error.is_some() {
                r.write_error = write_error;
            }
            match &result {
                Ok(_) => {
                    if let Some(failed) = self.down.take() {
                        event = Some(MonitorEvent::TargetUp {
                            target: self.target.name.clone(),
                            t_s,
                            failed_scrapes: failed,
                        });
                    }
                }
                Err(e) => {
                    r.failures += 1;
                    r.last_error = Some(e.clone());
                    r.last_error_t_s = Some(t_s);
                    match &mut self.down {
                        Some(n) => *n += 1,
                        None => {
                            self.down = Some(1);
                            event = Some(MonitorEvent::TargetDown {
                                target: self.target.name.clone(),
                                t_s,
                                error: e.clone(),
                            });
                        }
                    }
                }
            }
        }
        if let (Some(tx), Some(ev)) = (&self.events, event) {
            let _ = tx.send(ev);
        }
    }
}

struct SystemJob {
    interval: Duration,
    clock: RunClock,
    live: Option<LiveMetrics>,
    power: Arc<Mutex<Vec<(f64, f64)>>>,
}

type Sink = (CsvWriter, Arc<Mutex<SamplerReport>>);

impl SystemJob {
    async fn run(
        self,
        mut host: Option<(HostSampler, Sink)>,
        mut gpu: Option<(GpuSampler, Sink)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => true,
                _ = tick.tick() => false,
            };
            let now = Instant::now();
            let t_s = self.clock.t_s(now);
            if let Some((sampler, (csv, report))) = host.as_mut() {
                let result = sampler
                    .sample(now)
                    .map_err(|e| format!("could not read /proc: {e}"));
                if let Ok(samples) = &result {
                    if let Some(live) = &self.live {
                        live.set_gauges("host", samples.clone());
                    }
                }
                record(csv, report, t_s, result);
            }
            if let Some((sampler, (csv, report))) = gpu.as_mut() {
                let s = sampler.sample();
                if let Some(w) = s.power_watts {
                    if let Ok(mut p) = self.power.lock() {
                        p.push((t_s, w));
                    }
                }
                if let Some(live) = &self.live {
                    live.set_gauges("gpu", s.samples.clone());
                }
                record(csv, report, t_s, Ok(s.samples));
            }
            if stopping {
                break;
            }
        }
    }
}

fn record(
    csv: &mut CsvWriter,
    report: &Mutex<SamplerReport>,
    t_s: f64,
    result: Result<Vec<crate::expo::Sample>, String>,
) {
    let mut error = None;
    match &result {
        Ok(samples) => {
            for s in samples {
                if let Err(e) = csv.row(t_s, &s.name, &encode_labels(&s.labels), s.value) {
                    error = Some(e.to_string());
                    break;
                }
            }
            if let Err(e) = csv.flush() {
                error = Some(e.to_string());
            }
        }
        Err(e) => error = Some(e.clone()),
    }
    if let Ok(mut r) = report.lock() {
        r.samples += 1;
        r.rows = csv.rows();
        if let Some(e) = error {
            r.failures += 1;
            r.last_error = Some(e);
        }
    }
}

/// The files a monitor writes into `dir`, for listings.
pub fn metrics_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
