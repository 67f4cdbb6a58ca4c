//! `aibench selfcheck`: how far this machine's numbers can be trusted.
//!
//! It drives load at the built-in simulator in fixed-timing mode, where the first token leaves
//! exactly `--ttft` after the request arrives and every later one `--itl` after the previous,
//! through the same runner, client and clock as a real run. Whatever the records show beyond
//! that schedule is the measuring error of this machine at this load: the client's, plus the
//! simulator's own lateness on the same cores, so an upper bound of the client's. `run
//! --calibrate` runs it first at the recipe's heaviest load and records it in run.json: here,
//! or, on Slurm, as a job on a client node (where the load clients will run), through the
//! platform's client launcher.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aibench_results::{Calibration, ErrorStats, Phase, RequestRecord};

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
The simulator runs as a child process on loopback in fixed-timing mode: every response's first
token leaves exactly --ttft after the request arrived, every later token --itl after the one
before. The load goes through the same runner, client and clock as `aibench run`, at the load
you plan (--users or --rate). What the records show beyond the schedule is this machine's
measuring error at that load:

  TTFT error   |measured TTFT - exact TTFT|
  ITL error    |measured gap - exact ITL|
  send lag     how late requests left against their schedule
  client CPU   aibench's own CPU over the measure window, in % of one core

The simulator's own lateness on the same cores counts too, so these bound the client's error
from above. Differences between runs smaller than the resolution (the larger p99 error) are
below what this machine can measure. `aibench run --calibrate` runs this first, at the
recipe's heaviest load, and records it in run.json and the report.

Exit codes: 0 measured, 1 no request succeeded, 3 the simulator did not start.

Examples:
  aibench selfcheck                          16 users, 10 s
  aibench selfcheck --users 256 --duration 20s
  aibench selfcheck --rate 200 --json        open loop at 200 requests/s";

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SelfcheckArgs {
    /// Closed loop: this many users [default: 16 when --rate is not given]
    #[arg(long, short = 'c', value_name = "N", conflicts_with = "rate",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: Option<u32>,
    /// Open loop: requests per second (constant arrivals)
    #[arg(long, short = 'r', value_name = "R")]
    pub rate: Option<f64>,
    /// How long to measure
    #[arg(long, short = 'd', value_parser = crate::cmd::bench::parse_duration,
          default_value = "10s", value_name = "DURATION")]
    pub duration: Duration,
    /// Warm-up before measuring
    #[arg(long, value_parser = crate::cmd::bench::parse_duration, default_value = "2s",
          value_name = "DURATION")]
    pub warmup: Duration,
    /// Tokens per response
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub output_tokens: u32,
    /// The simulator's exact time to first token
    #[arg(long, value_parser = crate::cmd::bench::parse_duration, default_value = "50ms",
          value_name = "DURATION")]
    pub ttft: Duration,
    /// The simulator's exact gap between tokens
    #[arg(long, value_parser = crate::cmd::bench::parse_duration, default_value = "10ms",
          value_name = "DURATION")]
    pub itl: Duration,
    /// Keep the calibration run's directory under this results root (default: a temporary
    /// folder, removed afterwards)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the calibration as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Also write the calibration as JSON to this file (`run --calibrate` on Slurm reads it
    /// back from the client node's job)
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

impl SelfcheckArgs {
    /// The defaults, at a given load.
    pub fn at(users: Option<u32>, rate: Option<f64>) -> SelfcheckArgs {
        SelfcheckArgs {
            users,
            rate,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            output_tokens: 32,
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            out: None,
            json: false,
            write: None,
        }
    }
}

fn text(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

/// The command line of `aibench selfcheck` at this load (for a client node's job).
pub fn argv(a: &SelfcheckArgs) -> Vec<String> {
    let mut v = vec!["selfcheck".to_string()];
    match (a.users, a.rate) {
        (_, Some(r)) => v.extend(["--rate".into(), r.to_string()]),
        (u, None) => v.extend(["--users".into(), u.unwrap_or(16).to_string()]),
    }
    v.extend([
        "--duration".into(),
        text(a.duration),
        "--warmup".into(),
        text(a.warmup),
        "--output-tokens".into(),
        a.output_tokens.to_string(),
    ]);
    if let Some(w) = &a.write {
        v.extend(["--write".into(), w.display().to_string()]);
    }
    v
}

/// The recipe of the calibration run.
fn recipe(a: &SelfcheckArgs) -> serde_json::Value {
    let load = match a.rate {
        Some(r) => {
            serde_json::json!({"pattern": "open-loop", "arrival": "constant", "rate": format!("{r}/s")})
        }
        None => serde_json::json!({"pattern": "closed-loop", "users": a.users.unwrap_or(16)}),
    };
    serde_json::json!({
        "name": "selfcheck",
        "description": "aibench's measuring error on this machine, against the fixed-timing simulator",
        "services": [{
            "name": "sim",
            "kind": "sim",
            "model": "selfcheck",
            "args": {"fixed-ttft": text(a.ttft), "fixed-itl": text(a.itl)},
        }],
        "workloads": [{
            "name": "selfcheck",
            "target": "sim",
            "protocol": "openai-completions",
            "dataset": {"kind": "synthetic", "prompt_tokens": 16, "output_tokens": a.output_tokens},
            "load": load,
            "warmup": text(a.warmup),
            "stop": {"duration": text(a.duration)},
        }],
        "monitor": {"interval": "1s"},
        "output": {"formats": []},
    })
}

/// aibench's own CPU time so far, in seconds.
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Samples of (wall time, own CPU seconds) every 100 ms until stopped.
struct CpuSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(f64, f64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CpuSampler {
    fn start() -> CpuSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut v) = v.lock() {
                    v.push((now_s(), own_cpu_s()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        CpuSampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Own CPU over `[from, to]` (wall seconds), in percent of one core.
    fn finish(mut self, from: f64, to: f64) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let v = self.samples.lock().ok()?;
        let at = |t: f64| v.iter().rev().find(|s| s.0 <= t).or(v.first()).copied();
        let (a, b) = (at(from)?, at(to)?);
        (b.0 > a.0).then(|| 100.0 * (b.1 - a.1) / (b.0 - a.0))
    }
}

/// Wall-clock start and end of the measure phase, from the run's progress events.
fn measure_window(run: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(run.join("logs/events.jsonl")).ok()?;
    let mut first = None;
    let mut last = None;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event"] == "progress" && v["phase"] == "measure" {
            let ts = v["ts"].as_f64()?;
            first.get_or_insert(ts);
            last = Some(ts);
        }
    }
    Some((first?, last?))
}

fn stats(mut v: Vec<f64>) -> ErrorStats {
    if v.is_empty() {
        return ErrorStats::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    ErrorStats {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: v[v.len() - 1],
    }
}

/// The errors the records of a calibration run show against the exact schedule.
fn measure(records: &Path, a: &SelfcheckArgs) -> anyhow::Result<(u64, [ErrorStats; 3])> {
    let (ttft, itl) = (a.ttft.as_secs_f64() * 1e3, a.itl.as_secs_f64() * 1e3);
    let (mut t_err, mut i_err, mut lag) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0;
    for rec in aibench_results::read_records(records)? {
        let r: RequestRecord = rec?;
        if r.phase != Phase::Measure || !r.is_success() {
            continue;
        }
        n += 1;
        if let Some(t) = r.ttft_us() {
            t_err.push((t as f64 / 1e3 - ttft).abs());
        }
        i_err.extend(r.itl_us.iter().map(|&g| (f64::from(g) / 1e3 - itl).abs()));
        if let Some(l) = r.send_lag_us() {
            lag.push(l as f64 / 1e3);
        }
    }
    Ok((n, [stats(t_err), stats(i_err), stats(lag)]))
}

/// Run the calibration; `Ok(None)` when no request succeeded.
pub fn calibrate(a: &SelfcheckArgs, quiet: bool) -> anyhow::Result<Result<Calibration, Outcome>> {
    let temp = a
        .out
        .is_none()
        .then(|| std::env::temp_dir().join(format!("aibench-selfcheck-{}", std::process::id())));
    let root = a.out.clone().or(temp.clone()).unwrap_or_default();
    let text = serde_json::to_string_pretty(&recipe(a))? + "\n";
    let loaded = aibench_recipe::load_str("aibench selfcheck", &text, &aibench_recipe::ProcessEnv)
        .map_err(|e| anyhow::anyhow!("the calibration recipe does not load: {e}"))?;
    let run_args = crate::run::RunArgs {
        recipe: None,
        resume: None,
        out: Some(root.clone()),
        quiet,
        json: false,
        workloads: Vec::new(),
        use_running: false,
        dry_run: false,
        server_nodes: None,
        client_nodes: None,
        calibrate: false,
        calibration: None,
    };
    let generated = crate::run::Generated {
        loaded,
        command: aibench_results::Command::Selfcheck,
    };
    let sampler = CpuSampler::start();
    let (code, dir) = crate::run::run_request(run_args, Some(generated))?;
    let result = (|| {
        let Some(dir) = dir else {
            return Ok(Err(code));
        };
        let window = measure_window(&dir);
        let cpu = window.and_then(|(from, to)| sampler.finish(from, to));
        let (requests, [ttft_error, itl_error, send_lag]) =
            measure(&dir.join("trials/01/requests.jsonl"), a)?;
        if requests == 0 {
            return Ok(Err(if code == Outcome::Success {
                Outcome::Failed
            } else {
                code
            }));
        }
        Ok(Ok(Calibration {
            hostname: aibench_results::Host::here().hostname,
            users: a.rate.is_none().then(|| a.users.unwrap_or(16)),
            rate_per_s: a.rate,
            duration_s: a.duration.as_secs_f64(),
            output_tokens: a.output_tokens,
            ttft_ms: a.ttft.as_secs_f64() * 1e3,
            itl_ms: a.itl.as_secs_f64() * 1e3,
            requests,
            resolution_ms: ttft_error.p99_ms.max(itl_error.p99_ms),
            ttft_error,
            itl_error,
            send_lag,
            client_cpu_pct: cpu.unwrap_or(0.0),
        }))
    })();
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    result
}

/// The calibration for reading.
pub fn render(c: &Calibration) -> String {
    let load = match (c.users, c.rate_per_s) {
        (_, Some(r)) => format!("open loop at {r}/s"),
        (Some(u), None) => format!("{u} users, closed loop"),
        _ => String::new(),
    };
    let row = |name: &str, s: &ErrorStats| {
        format!(
            "{name:<12}{:>10.3}{:>10.3}{:>10.3}\n",
            s.p50_ms, s.p99_ms, s.max_ms
        )
    };
    format!(
        "selfcheck on {}: {load}, {} requests of {} tokens over {:.0} s, against the simulator's \
         exact {:.0} ms TTFT and {:.0} ms ITL\n\n{:<12}{:>10}{:>10}{:>10}\n{}{}{}client CPU  \
         {:.0} % of one core\n\nresolution: {:.3} ms. Differences smaller than this (p99 error \
         of TTFT or ITL) are below what this machine measures at this load.\n",
        c.hostname,
        c.requests,
        c.output_tokens,
        c.duration_s,
        c.ttft_ms,
        c.itl_ms,
        "error (ms)",
        "p50",
        "p99",
        "max",
        row("TTFT", &c.ttft_error),
        row("ITL", &c.itl_error),
        row("send lag", &c.send_lag),
        c.client_cpu_pct,
        c.resolution_ms,
    )
}

pub fn run(args: SelfcheckArgs) -> anyhow::Result<Outcome> {
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0 && r <= 1e6) {
            return Err(exit::bad_input(format!(
                "--rate {r}: give a rate between 0 and 1000000 requests/s"
            )));
        }
    }
    if args.itl.is_zero() || args.ttft.is_zero() || args.duration.is_zero() {
        return Err(exit::bad_input(
            "--ttft, --itl and --duration must be longer than zero",
        ));
    }
    match calibrate(&args, args.json)? {
        Ok(c) => {
            if let Some(path) = &args.write {
                aibench_results::write_json(path, &c)?;
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", render(&c));
            }
            Ok(Outcome::Success)
        }
        Err(code) => {
            eprintln!("selfcheck: no request succeeded against the simulator");
            Ok(code)
        }
    }
}
