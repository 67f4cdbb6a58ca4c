//! Run events: written to `logs/events.jsonl` (what `aibench watch` follows) and shown to the
//! user — a live line on a terminal, timestamped lines otherwise, nothing with `--quiet`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Something that happened during a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        recipe: String,
        run_dir: String,
        trials: usize,
    },
    Phase {
        phase: String,
        trial: Option<String>,
    },
    ServiceStarted {
        name: String,
        pid: Option<u32>,
        address: String,
        log: String,
    },
    ServiceHealthy {
        name: String,
        after_s: f64,
    },
    ServicesStopped {
        count: usize,
    },
    JobSubmitted {
        name: String,
        job_id: String,
        script: String,
    },
    JobState {
        name: String,
        job_id: String,
        description: String,
    },
    ServiceCrashed {
        name: String,
        message: String,
    },
    TrialStarted {
        trial: String,
        index: usize,
        total: usize,
        params: serde_json::Value,
    },
    TrialSkipped {
        trial: String,
        reason: String,
    },
    Progress(ProgressEvent),
    WorkloadFinished(WorkloadResult),
    Warning {
        message: String,
    },
    RunFinished {
        status: aibench_results::Status,
        report: Option<String>,
        exit_code: u8,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub trial: String,
    pub workload: String,
    pub phase: String,
    pub elapsed_s: f64,
    pub planned_s: Option<f64>,
    pub sent: u64,
    pub succeeded: u64,
    pub errors: u64,
    pub dropped: u64,
    pub in_flight: u64,
    pub rate_rps: f64,
    pub ttft_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub trial: String,
    pub workload: String,
    pub status: aibench_results::Status,
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
}

/// One line of `events.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped {
    /// Seconds since the run started.
    pub t: f64,
    /// Seconds since the Unix epoch.
    pub ts: f64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live line redrawn in place, on a terminal.
    Live,
    /// Timestamped lines, for logs and pipes.
    Plain,
    /// Only problems and the final line.
    Quiet,
}

impl Mode {
    pub fn pick(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
        {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

pub struct Events {
    log: Option<BufWriter<File>>,
    started: Instant,
    mode: Mode,
    live_line: bool,
    /// When each workload of each trial last printed a plain progress line (its own clock).
    last_plain_progress: std::collections::HashMap<(String, String), f64>,
    /// The time of the event read back from a log that is being shown (`aibench watch`).
    replay_t: Option<f64>,
}

impl Events {
    pub fn new(mode: Mode) -> Self {
        Events {
            log: None,
            started: Instant::now(),
            mode,
            live_line: false,
            last_plain_progress: Default::default(),
            replay_t: None,
        }
    }

    /// Start writing events to `path` (appending, so a resumed run keeps its history).
    pub fn open_log(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.log = Some(BufWriter::new(f));
        Ok(())
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn emit(&mut self, event: Event) {
        let t = self.elapsed();
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let stamped = Stamped { t, ts, event };
        if let Some(log) = self.log.as_mut() {
            if let Ok(line) = serde_json::to_string(&stamped) {
                let _ = writeln!(log, "{line}");
                let _ = log.flush();
            }
        }
        self.show(&stamped);
    }

    fn clear_live(&mut self) {
        if self.live_line {
            eprint!("\r\x1b[2K");
            self.live_line = false;
        }
    }

    /// Print a line for the user (through the live line, if one is drawn).
    pub fn say(&mut self, text: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        self.clear_live();
        if self.mode == Mode::Plain {
            let t = self.replay_t.unwrap_or_else(|| self.elapsed());
            eprintln!("[{t:>7.1}s] {text}");
        } else {
            eprintln!("{text}");
        }
    }

    /// Print a line stamped with a time of the run (an event read back from its log).
    pub fn say_at(&mut self, t: f64, text: &str) {
        self.replay_t = Some(t);
        self.say(text);
        self.replay_t = None;
    }

    /// Problems are shown even with `--quiet`.
    pub fn problem(&mut self, text: &str) {
        self.clear_live();
        eprintln!("{text}");
    }

    /// Show an event read back from a log (`aibench watch`).
    pub fn show_stamped(&mut self, s: &Stamped) {
        // The run's time of the event, not the time of reading it.
        self.replay_t = Some(s.t);
        self.show(s);
        self.replay_t = None;
    }

    fn show(&mut self, s: &Stamped) {
        match &s.event {
            Event::RunStarted {
                run_id,
                recipe,
                trials,
                run_dir,
            } => self.say(&format!(
                "run {run_id}: {recipe}, {trials} trial{} -> {run_dir}",
                if *trials == 1 { "" } else { "s" }
            )),
            Event::Phase { phase, trial } => match trial {
                Some(t) => self.say(&format!("{phase} ({t})")),
                None => self.say(phase),
            },
            Event::ServiceStarted {
                name, pid, address, ..
            } => self.say(&format!(
                "  started {name} at {address}{}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            )),
            Event::JobSubmitted {
                name,
                job_id,
                script,
            } => self.say(&format!("  submitted {name} as job {job_id} ({script})")),
            Event::JobState {
                name,
                job_id,
                description,
            } => self.say(&format!("  {name} (job {job_id}): {description}")),
            Event::ServiceHealthy { name, after_s } => {
                self.say(&format!("  {name} is ready after {after_s:.1}s"))
            }
            Event::ServicesStopped { count } => self.say(&format!(
                "  stopped {count} service{}",
                if *count == 1 { "" } else { "s" }
            )),
            Event::ServiceCrashed { name, message } => {
                self.problem(&format!("error: service `{name}` failed: {message}"))
            }
            Event::TrialStarted {
                trial,
                index,
                total,
                ..
            } => self.say(&format!("trial {}/{total}: {trial}", index + 1)),
            Event::TrialSkipped { trial, reason } => {
                self.say(&format!("trial {trial}: skipped ({reason})"))
            }
            Event::Progress(p) => self.progress(p),
            Event::WorkloadFinished(w) => {
                let ttft = w
                    .ttft_p99_ms
                    .map(|v| format!(", TTFT p99 {v:.1} ms"))
                    .unwrap_or_default();
                let e2e = w
                    .e2e_p99_ms
                    .map(|v| format!(", E2E p99 {v:.1} ms"))
                    .unwrap_or_default();
                self.say(&format!(
                    "  {}: {} requests, {} errors, {:.1} req/s, {:.0} tok/s{ttft}{e2e}{}",
                    w.workload,
                    w.requests,
                    w.errors,
                    w.requests_per_s,
                    w.output_tokens_per_s,
                    if w.status == aibench_results::Status::Completed {
                        String::new()
                    } else {
                        format!(" [{}]", w.status)
                    }
                ))
            }
            Event::Warning { message } => self.problem(&format!("warning: {message}")),
            Event::RunFinished { .. } => {}
        }
    }

    fn progress(&mut self, p: &ProgressEvent) {
        let p99 = p
            .ttft_p99_ms
            .or(p.e2e_p99_ms)
            .map(|v| {
                format!(
                    "  p99 {}{v:.0} ms",
                    if p.ttft_p99_ms.is_some() { "TTFT " } else { "" }
                )
            })
            .unwrap_or_default();
        let stats = format!(
            "{:>7.1} req/s  {} done  {} err  {} in flight{p99}",
            p.rate_rps, p.succeeded, p.errors, p.in_flight
        );
        match self.mode {
            Mode::Quiet => {}
            Mode::Live => {
                let bar = match p.planned_s {
                    Some(total) if total > 0.0 => {
                        let frac = (p.elapsed_s / total).clamp(0.0, 1.0);
                        let filled = (frac * 20.0).round() as usize;
                        format!(
                            "[{}{}] {:>5.1}/{:.0}s",
                            "#".repeat(filled),
                            "-".repeat(20 - filled),
                            p.elapsed_s,
                            total
                        )
                    }
                    _ => format!("{:>6.1}s", p.elapsed_s),
                };
                eprint!("\r\x1b[2K  {} {:<7} {bar}  {stats}", p.workload, p.phase);
                let _ = std::io::stderr().flush();
                self.live_line = true;
            }
            Mode::Plain => {
                let last = self
                    .last_plain_progress
                    .entry((p.trial.clone(), p.workload.clone()))
                    .or_insert(-10.0);
                if p.elapsed_s - *last >= 5.0 {
                    *last = p.elapsed_s;
                    self.say(&format!(
                        "  {} {} {:.0}s: {stats}",
                        p.workload, p.phase, p.elapsed_s
                    ));
                }
            }
        }
    }

    pub fn finish(&mut self) {
        self.clear_live();
        if let Some(log) = self.log.as_mut() {
            let _ = log.flush();
        }
    }
}
