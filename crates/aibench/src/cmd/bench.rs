//! `aibench bench URL`: drive load at a running server from the command line, without a recipe,
//! and write a run directory like `aibench run` does.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use aibench_load::{
    discover_model, Arrival, Cancel, CapPolicy, Dataset, DatasetFormat, LengthDist, LoadSpec,
    Pattern, Progress, Protocol, RunOptions, Shard, Stop, Target, ThinkTime,
};
use aibench_results::{AccumulatorConfig, LatencyStats, Phase, Summary};
use anyhow::Context;
use clap::ValueEnum;

use crate::exit;

const AFTER_HELP: &str = "\
Examples:
  aibench bench http://127.0.0.1:8000 --concurrency 8 --requests 200
      8 users back to back against an OpenAI-compatible server (model discovered from /v1/models)
  aibench bench http://127.0.0.1:8000 --protocol openai-chat --rate 10 --duration 60s --warmup 10s
      open loop: Poisson arrivals at 10 requests/s for a minute after a 10 s warm-up
  aibench bench http://127.0.0.1:8000 --rate 20 --arrival gamma --burstiness 0.5 --max-in-flight 64
      bursty arrivals; requests due while 64 are in flight are dropped and counted
  aibench bench http://127.0.0.1:11434 --protocol ollama-chat --model llama3.2 --concurrency 2
  aibench bench http://127.0.0.1:8000 --dataset prompts.jsonl --slo-ttft 500ms --slo-tpot 50ms --json
  aibench up examples/quickstart.yaml && aibench bench examples/quickstart.yaml --workload chat
      a recipe's workload against its services, already running (the load flags then come
      from the recipe)

Latencies follow vLLM's definitions (TTFT, ITL per gap, TPOT, E2E). Open-loop latencies are also
given from each request's intended send time, and the client's own lag separately.
Results go to <out>/<run-id>/trials/01/ (requests.jsonl, summary.json).
Exit codes: 0 success, 1 every request failed, 2 bad arguments, 130 interrupted.";

/// The protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchProtocol {
    /// OpenAI /v1/completions (vLLM, SGLang, TGI, llama.cpp server, ...)
    OpenaiCompletions,
    /// OpenAI /v1/chat/completions
    OpenaiChat,
    /// Ollama /api/generate
    OllamaGenerate,
    /// Ollama /api/chat
    OllamaChat,
    /// Any HTTP endpoint (see --method and --body); latency to the end of the body
    Http,
}

/// Open-loop arrival process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchArrival {
    /// Evenly spaced
    Constant,
    /// Exponential gaps
    Poisson,
    /// Gamma gaps with shape --burstiness (vLLM's definition)
    Gamma,
}

/// Dataset file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDatasetFormat {
    /// One JSON object per line with "prompt" or "text" (optional "output_tokens")
    Jsonl,
    /// ShareGPT conversations
    Sharegpt,
    /// HellaSwag lines ("ctx", "endings")
    Hellaswag,
}

#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Server URL: http://host:port (the protocol's default path is used) or a full endpoint URL;
    /// or a recipe, whose workloads then run against its services as started by `aibench up`
    #[arg(value_name = "URL|RECIPE")]
    pub url: String,

    /// With a recipe: run only this workload (repeatable; default: all)
    #[arg(long = "workload", value_name = "NAME")]
    pub workloads: Vec<String>,

    /// Protocol to speak
    #[arg(long, value_enum, default_value_t = BenchProtocol::OpenaiCompletions)]
    pub protocol: BenchProtocol,

    /// Model name (default: the first model the server lists)
    #[arg(long)]
    pub model: Option<String>,

    /// Closed loop: this many users, each sending its next request when the previous ends
    /// [default: 1 when --rate is not given]
    #[arg(long, short = 'c', value_name = "N", conflicts_with = "rate")]
    pub concurrency: Option<usize>,

    /// Open loop: requests per second, whatever the responses do
    #[arg(long, short = 'r', value_name = "R")]
    pub rate: Option<f64>,

    /// Open loop arrival process
    #[arg(long, value_enum, default_value_t = BenchArrival::Poisson, requires = "rate")]
    pub arrival: BenchArrival,

    /// Gamma arrivals: shape of the gaps (1 = Poisson, < 1 burstier, > 1 more regular)
    #[arg(long, value_name = "B")]
    pub burstiness: Option<f64>,

    /// Open loop: at most this many requests in flight; one due beyond it is dropped and counted
    #[arg(long, value_name = "N", requires = "rate")]
    pub max_in_flight: Option<usize>,

    /// Stop after this many measured requests [default: 100 when --duration is not given]
    #[arg(long, short = 'n', value_name = "N")]
    pub requests: Option<u64>,

    /// Stop after measuring this long (e.g. 30s, 2m)
    #[arg(long, short = 'd', value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Requests intended in this first stretch are recorded as warm-up and left out of the summary
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub warmup: Duration,

    /// Keep the load going this long after the measure window (left out of the summary)
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub cooldown: Duration,

    /// Synthetic prompt length in tokens (words): N, MIN..MAX (uniform) or MEAN~STDDEV (normal)
    #[arg(long, value_parser = parse_length, default_value = "128", value_name = "TOKENS")]
    pub prompt_tokens: LengthDist,

    /// Output tokens to ask for (max_tokens); same forms as --prompt-tokens.
    /// With --dataset, overrides the lengths the file gives
    #[arg(long, value_parser = parse_length, value_name = "TOKENS")]
    pub output_tokens: Option<LengthDist>,

    /// Prompts from a file instead of synthetic ones
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,

    /// Format of --dataset
    #[arg(long, value_enum, default_value_t = BenchDatasetFormat::Jsonl, requires = "dataset")]
    pub dataset_format: BenchDatasetFormat,

    /// Ask for whole responses instead of streams (no TTFT or ITL then)
    #[arg(long)]
    pub no_stream: bool,

    /// Ask the server to ignore end-of-sequence so every request yields its full output length
    /// (vLLM extension)
    #[arg(long)]
    pub ignore_eos: bool,

    /// Name of the environment variable holding the API key (sent as a Bearer token, never
    /// written anywhere)
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,

    /// Extra request header, 'Name: value' (repeatable; values are never written anywhere)
    #[arg(long = "header", short = 'H', value_name = "'K: V'")]
    pub headers: Vec<String>,

    /// --protocol http: request method
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// --protocol http: request body; {{prompt}} (JSON-escaped), {{max_tokens}} and {{model}}
    /// are filled in per request
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,

    /// Seed of every random choice (arrivals, prompts, lengths)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Per-request timeout
    #[arg(long, value_parser = parse_duration, default_value = "300s", value_name = "DURATION")]
    pub timeout: Duration,

    /// Stop after this many failed requests in a row (0: never)
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub max_consecutive_errors: u64,

    /// SLO on time to first token, for goodput
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub slo_ttft: Option<Duration>,

    /// SLO on time per output token, for goodput
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub slo_tpot: Option<Duration>,

    /// SLO on every inter-token gap, for goodput
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub slo_itl: Option<Duration>,

    /// SLO on end-to-end latency, for goodput
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub slo_e2e: Option<Duration>,

    /// Directory that receives the run directory
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,

    /// Print the summary as JSON on stdout (and nothing else)
    #[arg(long)]
    pub json: bool,

    /// Do not write requests.jsonl (the summary is still written)
    #[arg(long)]
    pub no_record: bool,
}

/// Parse `30s`, `2m`, `1h`, `500ms`, `250us`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 2m, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use h, m, s, ms or us)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

/// Parse `128`, `64..256` (uniform) or `128~16` (normal: mean ~ stddev).
pub fn parse_length(s: &str) -> Result<LengthDist, String> {
    let s = s.trim();
    let d = if let Some((a, b)) = s.split_once("..") {
        let min = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not a whole number"))?;
        let max = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|_| format!("`{b}` is not a whole number"))?;
        LengthDist::Uniform { min, max }
    } else if let Some((a, b)) = s.split_once('~') {
        let mean = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not a number"))?;
        let stddev = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not a number"))?;
        LengthDist::Normal { mean, stddev }
    } else {
        LengthDist::Fixed(
            s.parse()
                .map_err(|_| format!("`{s}` is not a token count (try 128, 64..256 or 128~16)"))?,
        )
    };
    d.validate().map_err(|e| e.to_string())?;
    Ok(d)
}

/// An argument problem found after parsing: reported like clap's, exit code 2.
struct BadArgs(String);

fn bad<T>(msg: impl Into<String>) -> Result<T, BadArgs> {
    Err(BadArgs(msg.into()))
}

struct Plan {
    spec: LoadSpec,
    target: Target,
    dataset: Dataset,
    accumulator: AccumulatorConfig,
}

fn plan(args: &BenchArgs) -> Result<Plan, BadArgs> {
    if args.burstiness.is_some() && args.arrival != BenchArrival::Gamma {
        return bad("--burstiness only applies to --arrival gamma");
    }
    let pattern = match args.rate {
        Some(rate) => Pattern::OpenLoop {
            arrival: match args.arrival {
                BenchArrival::Constant => Arrival::Constant { rate },
                BenchArrival::Poisson => Arrival::Poisson { rate },
                BenchArrival::Gamma => Arrival::Gamma {
                    rate,
                    burstiness: args.burstiness.unwrap_or(1.0),
                },
            },
            max_in_flight: args.max_in_flight,
            on_cap: CapPolicy::Drop,
        },
        None => Pattern::ClosedLoop {
            users: args.concurrency.unwrap_or(1),
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
    };
    let requests = match (args.requests, args.duration) {
        (None, None) => Some(100),
        (n, _) => n,
    };
    let spec = LoadSpec {
        pattern,
        stop: Stop {
            duration: args.duration,
            requests,
            max_consecutive_errors: (args.max_consecutive_errors > 0)
                .then_some(args.max_consecutive_errors),
            max_error_rate: None,
            error_backoff: Duration::ZERO,
        },
        warmup: args.warmup,
        cooldown: args.cooldown,
        seed: args.seed,
        timeout: args.timeout,
        grace: Duration::from_secs(5),
    };
    if let Err(e) = spec.validate(Shard::default()) {
        return bad(e.to_string());
    }

    let protocol = match args.protocol {
        BenchProtocol::OpenaiCompletions => Protocol::OpenAiCompletions,
        BenchProtocol::OpenaiChat => Protocol::OpenAiChat,
        BenchProtocol::OllamaGenerate => Protocol::OllamaGenerate,
        BenchProtocol::OllamaChat => Protocol::OllamaChat,
        BenchProtocol::Http => Protocol::Http {
            method: args
                .method
                .to_ascii_uppercase()
                .parse()
                .map_err(|_| BadArgs(format!("`{}` is not an HTTP method", args.method)))?,
            body_template: args.body.clone(),
        },
    };
    if args.protocol != BenchProtocol::Http && args.body.is_some() {
        return bad("--body only applies to --protocol http");
    }
    let mut target = Target::new(args.url.clone(), protocol);
    target.model = args.model.clone();
    target.stream = !args.no_stream;
    target.ignore_eos = args.ignore_eos;
    if let Some(var) = &args.api_key_env {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => target.api_key = Some(v),
            _ => {
                return bad(format!(
                    "--api-key-env {var}: the environment variable {var} is not set"
                ))
            }
        }
    }
    for h in &args.headers {
        match h.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => target
                .headers
                .push((k.trim().to_string(), v.trim().to_string())),
            _ => {
                return bad(format!(
                    "--header `{}` is not of the form 'Name: value'",
                    h.split(':').next().unwrap_or("")
                ))
            }
        }
    }

    let count = prompt_count(&spec);
    let dataset = match &args.dataset {
        None => Dataset::synthetic(
            args.prompt_tokens,
            args.output_tokens.unwrap_or(LengthDist::Fixed(128)),
            count,
            args.seed,
        )
        .map_err(|e| BadArgs(e.to_string()))?,
        Some(path) => {
            let format = match args.dataset_format {
                BenchDatasetFormat::Jsonl => DatasetFormat::Jsonl,
                BenchDatasetFormat::Sharegpt => DatasetFormat::ShareGpt,
                BenchDatasetFormat::Hellaswag => DatasetFormat::HellaSwag,
            };
            Dataset::load(format, path, args.output_tokens, Some(count), args.seed)
                .map_err(|e| BadArgs(e.to_string()))?
        }
    };

    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
    let mut accumulator = AccumulatorConfig::default();
    accumulator.slo.ttft_us = us(args.slo_ttft);
    accumulator.slo.tpot_us = us(args.slo_tpot);
    accumulator.slo.itl_us = us(args.slo_itl);
    accumulator.slo.e2e_us = us(args.slo_e2e);
    Ok(Plan {
        spec,
        target,
        dataset,
        accumulator,
    })
}

/// Prompts to prepare: about one per expected request, so that few repeat.
fn prompt_count(spec: &LoadSpec) -> usize {
    let window = spec.stop.duration.map_or(60.0, |d| d.as_secs_f64()) + spec.warmup.as_secs_f64();
    let expected = match &spec.pattern {
        Pattern::OpenLoop { arrival, .. } => arrival.peak_rate() * window,
        Pattern::ClosedLoop { users, .. } => *users as f64 * 50.0,
    };
    let expected = spec.stop.requests.map_or(expected, |n| n as f64);
    (expected.ceil() as usize).clamp(64, 20_000)
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let as_path = Path::new(&args.url);
    let is_recipe = !args.url.contains("://")
        && (as_path.is_file() || args.url.ends_with(".yaml") || args.url.ends_with(".yml"));
    if is_recipe {
        return crate::run::run(crate::run::RunArgs {
            recipe: Some(as_path.to_path_buf()),
            resume: None,
            out: (args.out != Path::new("results")).then(|| args.out.clone()),
            quiet: false,
            json: args.json,
            workloads: args.workloads,
            use_running: true,
            dry_run: false,
            server_nodes: None,
            client_nodes: None,
        });
    }
    if !args.workloads.is_empty() {
        eprintln!("error: --workload needs a recipe instead of a URL");
        return Ok(ExitCode::from(exit::INVALID_INPUT));
    }
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(BadArgs(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(exit::INVALID_INPUT));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(bench(args, plan))
}

async fn bench(args: BenchArgs, mut plan: Plan) -> anyhow::Result<ExitCode> {
    let quiet = args.json;
    let llm = !matches!(plan.target.protocol, Protocol::Http { .. });
    if llm && plan.target.model.is_none() {
        match discover_model(&plan.target, Duration::from_secs(10)).await {
            Ok(Some(m)) => {
                if !quiet {
                    eprintln!("model: {m} (from the server's model list; --model to choose)");
                }
                plan.target.model = Some(m);
            }
            Ok(None) => {
                if matches!(
                    plan.target.protocol,
                    Protocol::OllamaGenerate | Protocol::OllamaChat
                ) {
                    eprintln!("error: the server lists no model; pass --model NAME");
                    return Ok(ExitCode::from(exit::INVALID_INPUT));
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("hint: is the server running at {}? (`aibench sim` starts a simulated one); or pass --model NAME", args.url);
                return Ok(ExitCode::from(exit::FAILED));
            }
        }
    }

    // The run directory.
    let started = SystemTime::now();
    let epoch = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let run_dir = unique_dir(&args.out, &run_id("bench", epoch))?;
    let trial_dir = run_dir.join("trials").join("01");
    std::fs::create_dir_all(&trial_dir)
        .with_context(|| format!("creating {}", trial_dir.display()))?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut info = serde_json::json!({
        "schema_version": 1,
        "run_id": run_id,
        "name": "bench",
        "status": "running",
        "command": "bench",
        "seed": args.seed,
        "started_at": epoch,
        "started_at_utc": utc(epoch),
        "aibench_version": env!("CARGO_PKG_VERSION"),
        "trials": [{ "id": "01", "params": params_json(&args, &plan), "status": "running" }],
    });
    write_json(&run_dir.join("run.json"), &info)?;
    write_json(&trial_dir.join("params.json"), &params_json(&args, &plan))?;

    // Ctrl-C and SIGTERM stop the load; what completed is kept.
    let cancel = Cancel::new();
    let signals = tokio::spawn(wait_for_signal(cancel.clone()));

    let (events_tx, events) = match !quiet && std::io::stderr().is_terminal() {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            (Some(tx), Some(tokio::spawn(print_progress(rx))))
        }
        false => (None, None),
    };
    if !quiet {
        eprintln!("{}", describe(&plan));
    }
    let options = RunOptions {
        records: (!args.no_record).then(|| trial_dir.join("requests.jsonl")),
        events: events_tx,
        cancel: Some(cancel.clone()),
        accumulator: plan.accumulator,
        ..RunOptions::default()
    };
    let result = aibench_load::run(&plan.spec, &plan.target, &plan.dataset, options).await;
    signals.abort();
    if let Some(e) = events {
        let _ = e.await;
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            info["status"] = "failed".into();
            info["reason"] = e.to_string().into();
            write_json(&run_dir.join("run.json"), &info)?;
            return Err(anyhow::Error::new(e).context("the load could not run"));
        }
    };
    let summary = &outcome.summary;
    write_json(&trial_dir.join("summary.json"), summary)?;
    let status = if cancel.is_cancelled() {
        "interrupted"
    } else if summary.counts.successes == 0 {
        "failed"
    } else {
        "completed"
    };
    info["status"] = status.into();
    info["finished_at"] = now_epoch().into();
    info["trials"][0]["status"] = if status == "completed" {
        "complete"
    } else {
        status
    }
    .into();
    if let Some(r) = summary.stop_reason {
        info["reason"] = serde_json::to_value(r)?;
    }
    write_json(&run_dir.join("run.json"), &info)?;

    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, summary)?;
        writeln!(out)?;
    } else {
        print!("{}", render_summary(summary));
        println!("results: {}", trial_dir.display());
    }
    if cancel.is_cancelled() {
        return Ok(ExitCode::from(exit::INTERRUPTED));
    }
    if summary.counts.successes == 0 && summary.counts.total > 0 {
        if !quiet {
            eprintln!("error: every request failed; see errors_by_class above and error_message in requests.jsonl");
        }
        return Ok(ExitCode::from(exit::FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal(cancel: Cancel) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                cancel.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("\nstopping: letting requests in flight finish (up to 5 s)...");
    cancel.cancel();
}

async fn print_progress(mut rx: tokio::sync::mpsc::Receiver<Progress>) {
    let mut err = std::io::stderr();
    while let Some(p) = rx.recv().await {
        let phase = match p.phase {
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Cooldown => "cool-down",
        };
        let p99 = p
            .e2e_p99_ms
            .map(|v| format!("  p99 e2e {v:.0} ms"))
            .unwrap_or_default();
        let _ = write!(
            err,
            "\r\x1b[2K{:>6.1}s {phase:<9} sent {}  ok {}  errors {}  dropped {}  in flight {}  {:.1} req/s{p99}",
            p.elapsed.as_secs_f64(),
            p.sent,
            p.succeeded,
            p.errors,
            p.dropped,
            p.in_flight,
            p.rate_rps,
        );
        if p.done {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

fn describe(plan: &Plan) -> String {
    let load = match &plan.spec.pattern {
        Pattern::ClosedLoop { users, .. } => format!("{users} user(s), closed loop"),
        Pattern::OpenLoop {
            arrival,
            max_in_flight,
            ..
        } => {
            let a = match arrival {
                Arrival::Constant { rate } => format!("constant {rate}/s"),
                Arrival::Poisson { rate } => format!("poisson {rate}/s"),
                Arrival::Gamma { rate, burstiness } => {
                    format!("gamma {rate}/s, burstiness {burstiness}")
                }
                other => format!("{other:?}"),
            };
            match max_in_flight {
                Some(m) => format!("open loop, {a}, at most {m} in flight"),
                None => format!("open loop, {a}"),
            }
        }
    };
    let stop = match (plan.spec.stop.requests, plan.spec.stop.duration) {
        (Some(n), Some(d)) => format!("{n} requests or {d:?}"),
        (Some(n), None) => format!("{n} requests"),
        (None, Some(d)) => format!("{d:?}"),
        (None, None) => "end of schedule".into(),
    };
    format!(
        "bench {} ({}): {load}; stop after {stop}{}",
        plan.target.url,
        plan.target.model.as_deref().unwrap_or("no model"),
        if plan.spec.warmup.is_zero() {
            String::new()
        } else {
            format!(" after {:?} warm-up", plan.spec.warmup)
        }
    )
}

/// What was asked for, without secrets (header names only).
fn params_json(args: &BenchArgs, plan: &Plan) -> serde_json::Value {
    let name = |v: Option<clap::builder::PossibleValue>| v.map(|v| v.get_name().to_string());
    let (users, rate) = match &plan.spec.pattern {
        Pattern::ClosedLoop { users, .. } => (Some(*users), None),
        Pattern::OpenLoop { arrival, .. } => (None, Some(arrival.peak_rate())),
    };
    serde_json::json!({
        "url": args.url,
        "protocol": name(args.protocol.to_possible_value()),
        "model": plan.target.model,
        "concurrency": users,
        "rate": rate,
        "arrival": rate.and(name(args.arrival.to_possible_value())),
        "burstiness": args.burstiness,
        "max_in_flight": args.max_in_flight,
        "requests": plan.spec.stop.requests,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "warmup_s": args.warmup.as_secs_f64(),
        "cooldown_s": args.cooldown.as_secs_f64(),
        "prompt_tokens": args.dataset.is_none().then(|| length_text(&args.prompt_tokens)),
        "output_tokens": args.output_tokens.as_ref().map(length_text),
        "dataset": args.dataset,
        "dataset_format": args.dataset.as_ref().and(name(args.dataset_format.to_possible_value())),
        "stream": !args.no_stream,
        "ignore_eos": args.ignore_eos,
        "api_key_env": args.api_key_env,
        "headers": args
            .headers
            .iter()
            .filter_map(|h| h.split_once(':').map(|(k, _)| k.trim().to_string()))
            .collect::<Vec<_>>(),
        "seed": args.seed,
        "timeout_s": args.timeout.as_secs_f64(),
    })
}

/// A length distribution in the form `--prompt-tokens` takes.
fn length_text(d: &LengthDist) -> String {
    match d {
        LengthDist::Fixed(n) => n.to_string(),
        LengthDist::Uniform { min, max } => format!("{min}..{max}"),
        LengthDist::Normal { mean, stddev } => format!("{mean}~{stddev}"),
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary as a terminal table.
pub fn render_summary(s: &Summary) -> String {
    let c = &s.counts;
    let t = &s.throughput;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<22} {v}\n"));
    line(
        "requests",
        format!(
            "{} ok, {} failed, {} dropped{} of {} measured",
            c.successes,
            c.errors,
            c.dropped,
            if c.cancelled > 0 {
                format!(", {} cancelled", c.cancelled)
            } else {
                String::new()
            },
            c.total
        ),
    );
    if !c.errors_by_class.is_empty() {
        let by: Vec<String> = c
            .errors_by_class
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        line("errors by class", by.join(", "));
    }
    line(
        "measure window",
        format!(
            "{:.2} s{}",
            s.duration_s,
            if s.interrupted { " (interrupted)" } else { "" }
        ),
    );
    line("requests/s", format!("{:.2}", t.requests_per_s));
    line(
        "output tokens/s",
        format!(
            "{:.1} (peak {:.0} in a 1-s bucket)",
            t.output_tokens_per_s, t.peak_output_tokens_per_s
        ),
    );
    line("total tokens/s", format!("{:.1}", t.total_tokens_per_s));
    line(
        "concurrency",
        format!(
            "mean {:.1}, peak {:.1}",
            t.mean_concurrency, t.peak_concurrency
        ),
    );
    if let (Some(g), Some(n)) = (t.goodput_per_s, t.good_requests) {
        line(
            "goodput",
            format!("{g:.2} requests/s ({n} of {} met every SLO)", c.successes),
        );
    }
    let src = &s.tokens.source;
    line(
        "tokens",
        format!(
            "{} in, {} out in {} chunks; counts from usage {}, estimate {}",
            s.tokens.input, s.tokens.output, s.tokens.chunks, src.usage, src.estimate
        ),
    );
    out.push('\n');
    let l = &s.latency;
    let metrics: [(&str, &Option<LatencyStats>); 7] = [
        ("TTFT", &l.ttft),
        ("ITL", &l.itl),
        ("TPOT", &l.tpot),
        ("E2E", &l.e2e),
        ("TTFT from intended", &l.ttft_from_intended),
        ("E2E from intended", &l.e2e_from_intended),
        ("send lag", &l.send_lag),
    ];
    let rows: Vec<Vec<String>> = metrics
        .iter()
        .filter_map(|(name, m)| {
            m.map(|m| {
                vec![
                    name.to_string(),
                    m.count.to_string(),
                    ms(m.mean_ms),
                    ms(m.p50_ms),
                    ms(m.p90_ms),
                    ms(m.p99_ms),
                    ms(m.p999_ms),
                    ms(m.max_ms),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&crate::table::render(
            &["ms", "count", "mean", "p50", "p90", "p99", "p99.9", "max"],
            &rows,
        ));
    }
    if src.estimate > 0 {
        out.push_str("\nnote: output tokens were estimated from the text (about 4 characters per token): the server sent no usage\n");
    }
    if c.total > 0 && c.late * 100 > c.total {
        out.push_str(&format!(
            "note: {} requests were sent more than {} ms after their intended time: the client lagged; \
             see the \"from intended\" rows\n",
            c.late, s.late_after_ms
        ));
    }
    out
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `<out>/<id>`, or `<id>-2`, `<id>-3`... if taken.
fn unique_dir(out: &Path, id: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for n in 1.. {
        let name = if n == 1 {
            id.to_string()
        } else {
            format!("{id}-{n}")
        };
        let dir = out.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("some suffix is free")
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
fn utc(epoch: f64) -> String {
    let secs = epoch.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `bench-20261123-140502`.
fn run_id(name: &str, epoch: f64) -> String {
    let digits: String = utc(epoch).chars().filter(char::is_ascii_digit).collect();
    format!("{name}-{}-{}", &digits[..8], &digits[8..14])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn durations_and_lengths() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            parse_length("64..256").unwrap(),
            LengthDist::Uniform { min: 64, max: 256 }
        );
        assert_eq!(
            parse_length("128~16").unwrap(),
            LengthDist::Normal {
                mean: 128.0,
                stddev: 16.0
            }
        );
        assert!(parse_length("0").is_err());
    }

    #[test]
    fn closed_loop_by_default_open_loop_with_rate() {
        let a = parse(&["http://127.0.0.1:1"]).unwrap();
        let p = plan(&a).ok().unwrap();
        assert!(matches!(
            p.spec.pattern,
            Pattern::ClosedLoop { users: 1, .. }
        ));
        assert_eq!(p.spec.stop.requests, Some(100));
        let a = parse(&[
            "http://127.0.0.1:1",
            "--rate",
            "5",
            "--arrival",
            "gamma",
            "--burstiness",
            "0.5",
            "-d",
            "10s",
        ])
        .unwrap();
        let p = plan(&a).ok().unwrap();
        assert!(
            matches!(p.spec.pattern, Pattern::OpenLoop { arrival: Arrival::Gamma { burstiness, .. }, .. } if burstiness == 0.5)
        );
        assert_eq!(p.spec.stop.requests, None);
    }

    #[test]
    fn bad_arguments_are_reported() {
        assert!(parse(&["http://x", "--concurrency", "2", "--rate", "3"]).is_err());
        let a = parse(&["http://x", "--rate", "3", "--burstiness", "2"]).unwrap();
        assert!(plan(&a).is_err());
        let a = parse(&["http://x", "--header", "novalue"]).unwrap();
        assert!(plan(&a).is_err());
        let a = parse(&["http://x", "--api-key-env", "AIBENCH_TEST_SURELY_UNSET_VAR"]).unwrap();
        assert!(plan(&a).is_err());
    }

    #[test]
    fn run_ids_are_dated() {
        assert_eq!(run_id("bench", 1_795_437_902.0), "bench-20261123-124502");
    }
}
