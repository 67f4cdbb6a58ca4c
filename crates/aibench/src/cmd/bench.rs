//! `aibench bench URL`: drive load at a running server from the command line, without a recipe,
//! and write a run directory like `aibench run` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aibench_load::LengthDist;
use aibench_results::{LatencyStats, Summary};
use clap::ValueEnum;

use crate::exit::{self, Outcome};

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
The flags make a one-workload recipe that runs through the same runner as `aibench run`: the
run directory <out>/bench-<UTC time>/ has the same shape (recipe.yaml, run.json, report.md and
report.html, trials/01/ with requests.jsonl and summary.json) and is listed by `aibench runs`
and compared by `aibench compare`; `aibench run <run dir>/recipe.yaml` repeats the measurement.
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

    /// Hard deadline, drain included: then requests in flight get 10 s and are cancelled
    /// [default: warm-up + duration + cool-down + --timeout; 1h with --requests alone]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_duration: Option<Duration>,

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

    /// First measure the client's own measuring error at this load (`aibench selfcheck`,
    /// about 12 s) and record it in run.json
    #[arg(long)]
    pub calibrate: bool,
}

/// Parse `30s`, `2m`, `1h30m`, `500ms`, `250us`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    aibench_results::time::parse_duration(s, aibench_results::time::BareNumber::Seconds)
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
#[derive(Debug)]
struct BadArgs(String);

fn bad<T>(msg: impl Into<String>) -> Result<T, BadArgs> {
    Err(BadArgs(msg.into()))
}

/// The environment variable through which a `--header` value reaches the runner: the
/// generated recipe names it (`${AIBENCH_HEADER_X_API_TOKEN}`) instead of holding the value, so
/// no value is written anywhere.
fn header_var(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("AIBENCH_HEADER_{name}")
}

/// A length distribution in the recipe's form.
fn length_json(d: &LengthDist) -> serde_json::Value {
    match d {
        LengthDist::Fixed(n) => serde_json::json!(n),
        LengthDist::Uniform { min, max } => serde_json::json!({ "min": min, "max": max }),
        LengthDist::Normal { mean, stddev } => {
            serde_json::json!({ "mean": mean.round() as u32, "stddev": stddev.round() as u32 })
        }
    }
}

fn duration_text(d: Duration) -> String {
    aibench_results::time::format_duration(d)
}

/// `scheme://host:port` and the path (with its query) of a URL; `/` when it has none.
fn split_url(url: &str) -> (String, String) {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => (url[..after + i].to_string(), url[after + i..].to_string()),
        None => (url.to_string(), "/".into()),
    }
}

/// The one-workload recipe the flags describe. It is what `aibench run` would read from a file
/// and is kept as `recipe.yaml` in the run directory (JSON is YAML), so that the same
/// measurement can be repeated with `aibench run`. Secrets stay `${VAR}` references.
fn recipe_json(args: &BenchArgs) -> Result<(serde_json::Value, Vec<(String, String)>), BadArgs> {
    use serde_json::json;
    if args.burstiness.is_some() && args.arrival != BenchArrival::Gamma {
        return bad("--burstiness only applies to --arrival gamma");
    }
    if args.protocol != BenchProtocol::Http && args.body.is_some() {
        return bad("--body only applies to --protocol http");
    }
    if args.ignore_eos
        && !matches!(
            args.protocol,
            BenchProtocol::OpenaiCompletions | BenchProtocol::OpenaiChat
        )
    {
        return bad("--ignore-eos only applies to the OpenAI protocols");
    }
    let method = args.method.to_ascii_uppercase();
    if !["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"].contains(&method.as_str()) {
        return bad(format!(
            "`{}` is not an HTTP method aibench sends (GET, POST, PUT, DELETE, HEAD, PATCH)",
            args.method
        ));
    }
    let protocol = args
        .protocol
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let mut w = json!({
        "name": "bench",
        "protocol": protocol,
        "stream": !args.no_stream,
        "timeout": duration_text(args.timeout),
    });
    if args.protocol == BenchProtocol::Http {
        let (base, path) = split_url(&args.url);
        w["target"] = json!(base);
        w["http"] = json!({ "method": method, "path": path });
        if let Some(body) = &args.body {
            w["http"]["body"] = json!(body);
        }
    } else {
        w["target"] = json!(args.url);
    }
    if let Some(m) = &args.model {
        w["model"] = json!(m);
    }
    if args.ignore_eos {
        w["ignore_eos"] = json!(true);
    }
    if let Some(var) = &args.api_key_env {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => w["api_key"] = json!(format!("${{{var}}}")),
            _ => {
                return bad(format!(
                    "--api-key-env {var}: the environment variable {var} is not set"
                ))
            }
        }
    }
    let mut header_values = Vec::new();
    if !args.headers.is_empty() {
        let mut headers = serde_json::Map::new();
        for h in &args.headers {
            match h.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() => {
                    let mut var = header_var(k.trim());
                    if header_values.iter().any(|(used, _)| *used == var) {
                        var = format!("{var}_{}", header_values.len() + 1);
                    }
                    headers.insert(k.trim().to_string(), json!(format!("${{{var}}}")));
                    header_values.push((var, v.trim().to_string()));
                }
                _ => {
                    return bad(format!(
                        "--header `{}` is not of the form 'Name: value'",
                        h.split(':').next().unwrap_or("")
                    ))
                }
            }
        }
        w["headers"] = serde_json::Value::Object(headers);
    }
    w["dataset"] = dataset_json(args);
    w["load"] = load_json(args);
    w["stop"] = stop_json(args);
    if !args.warmup.is_zero() {
        w["warmup"] = json!(duration_text(args.warmup));
    }
    if !args.cooldown.is_zero() {
        w["cooldown"] = json!(duration_text(args.cooldown));
    }
    let mut recipe = json!({
        "name": "bench",
        "seed": args.seed,
        "output": { "dir": args.out.display().to_string(), "requests": !args.no_record },
        "workloads": [w],
    });
    let mut slo = serde_json::Map::new();
    for (key, v) in [
        ("ttft", args.slo_ttft),
        ("tpot", args.slo_tpot),
        ("itl", args.slo_itl),
        ("e2e", args.slo_e2e),
    ] {
        if let Some(d) = v {
            slo.insert(key.into(), json!(duration_text(d)));
        }
    }
    if !slo.is_empty() {
        recipe["slo"] = serde_json::Value::Object(slo);
    }
    Ok((recipe, header_values))
}

/// The recipe's `dataset`: synthetic prompts, or a file.
fn dataset_json(args: &BenchArgs) -> serde_json::Value {
    use serde_json::json;
    match &args.dataset {
        None => json!({
            "kind": "synthetic",
            "prompt_tokens": length_json(&args.prompt_tokens),
            "output_tokens": length_json(&args.output_tokens.unwrap_or(LengthDist::Fixed(128))),
        }),
        Some(path) => {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let kind = match args.dataset_format {
                BenchDatasetFormat::Jsonl => "jsonl",
                BenchDatasetFormat::Sharegpt => "sharegpt",
                BenchDatasetFormat::Hellaswag => "hellaswag",
            };
            let mut d = json!({ "kind": kind, "path": path.display().to_string() });
            if let Some(o) = &args.output_tokens {
                d["output_tokens"] = length_json(o);
            }
            d
        }
    }
}

/// The recipe's `load`: closed loop by default, open loop with `--rate`.
fn load_json(args: &BenchArgs) -> serde_json::Value {
    use serde_json::json;
    match args.rate {
        None => json!({ "pattern": "closed-loop", "users": args.concurrency.unwrap_or(1) }),
        Some(rate) => {
            let arrival = args
                .arrival
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            let mut l = json!({ "pattern": "open-loop", "arrival": arrival, "rate": rate });
            if let Some(b) = args.burstiness {
                l["burstiness"] = json!(b);
            }
            if let Some(m) = args.max_in_flight {
                l["max_in_flight"] = json!(m);
            }
            l
        }
    }
}

/// The recipe's `stop`: 100 requests unless `--requests` or `--duration` say otherwise.
fn stop_json(args: &BenchArgs) -> serde_json::Value {
    use serde_json::json;
    let mut stop = serde_json::Map::new();
    match (args.requests, args.duration) {
        (None, None) => {
            stop.insert("requests".into(), json!(100));
        }
        (n, d) => {
            if let Some(n) = n {
                stop.insert("requests".into(), json!(n));
            }
            if let Some(d) = d {
                stop.insert("duration".into(), json!(duration_text(d)));
            }
        }
    }
    if let Some(d) = args.max_duration {
        stop.insert("max_duration".into(), json!(duration_text(d)));
    }
    if args.max_consecutive_errors > 0 {
        stop.insert(
            "max_consecutive_errors".into(),
            json!(args.max_consecutive_errors),
        );
    }
    serde_json::Value::Object(stop)
}

pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
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
            calibrate: args.calibrate,
            calibration: None,
        });
    }
    if !args.workloads.is_empty() {
        return Err(exit::bad_input(
            "--workload needs a recipe instead of a URL",
        ));
    }
    let (recipe, header_values) = match recipe_json(&args) {
        Ok(r) => r,
        Err(BadArgs(msg)) => return Err(exit::bad_input(msg)),
    };
    let text = serde_json::to_string_pretty(&recipe)? + "\n";
    let mut head =
        String::from("# Made by `aibench bench`; run it again with `aibench run recipe.yaml`");
    if !header_values.is_empty() {
        let vars: Vec<&str> = header_values.iter().map(|(v, _)| v.as_str()).collect();
        head.push_str(&format!(
            "\n# after exporting the header values it reads: {}",
            vars.join(", ")
        ));
    }
    let text = format!("{head}.\n{text}");
    // Header values reach the runner through the environment, never through a file. Set before
    // any thread starts.
    for (var, value) in &header_values {
        std::env::set_var(var, value);
    }
    let loaded = match aibench_recipe::load_str("aibench bench", &text, &aibench_recipe::ProcessEnv)
    {
        Ok(l) => l,
        Err(e) => {
            // The flags were checked above; what the recipe check adds is about their values.
            for d in e.diagnostics.items.iter() {
                match flag_of(&d.path) {
                    Some(flag) => eprintln!("error: {flag}: {}", d.message),
                    None => eprintln!("error: {}", d.message),
                }
                if let Some(h) = &d.help {
                    eprintln!("  help: {h}");
                }
            }
            return Err(exit::shown_input());
        }
    };
    let calibration = if args.calibrate {
        let users = args.concurrency.map(|c| c.min(u32::MAX as usize) as u32);
        let check = crate::cmd::selfcheck::SelfcheckArgs::at(
            users.or(args.rate.is_none().then_some(1)),
            args.rate,
        );
        if !args.json {
            eprintln!("calibrating: aibench selfcheck at this load first");
        }
        match crate::cmd::selfcheck::calibrate(&check, true)? {
            Ok(c) => {
                if !args.json {
                    eprint!("{}", crate::cmd::selfcheck::render(&c));
                }
                Some(c)
            }
            Err(_) => {
                eprintln!("error: the calibration against the simulator failed; nothing was run");
                return Ok(Outcome::Broken);
            }
        }
    } else {
        None
    };
    let run_args = crate::run::RunArgs {
        recipe: None,
        resume: None,
        out: Some(args.out.clone()),
        quiet: args.json,
        json: false,
        workloads: Vec::new(),
        use_running: false,
        dry_run: false,
        server_nodes: None,
        client_nodes: None,
        calibrate: false,
        calibration,
    };
    let generated = crate::run::Generated {
        loaded,
        command: aibench_results::Command::Bench,
    };
    let (code, dir) = crate::run::run_request(run_args, Some(generated))?;
    let Some(dir) = dir else {
        return Ok(code);
    };
    let trial = dir.join("trials").join("01");
    let summary: Option<Summary> = std::fs::read(trial.join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match (&summary, args.json) {
        (Some(s), true) => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, s)?;
            writeln!(out)?;
        }
        (Some(s), false) => {
            print!("{}", render_summary(s));
            println!("results: {}", trial.display());
        }
        (None, _) => eprintln!("no summary was written; see {}", dir.display()),
    }
    if let Some(s) = &summary {
        if s.counts.successes == 0 && s.counts.total > 0 && !args.json {
            eprintln!("error: every request failed; see errors by class above and error_message in requests.jsonl");
        }
    }
    Ok(code)
}

/// The flag behind a field of the recipe `bench` builds, to name it in an error.
fn flag_of(path: &str) -> Option<&'static str> {
    let field = path.rsplit(['.', '[']).next().unwrap_or(path);
    Some(match field {
        "users" => "--concurrency",
        "rate" => "--rate",
        "burstiness" => "--burstiness",
        "max_in_flight" => "--max-in-flight",
        "requests" => "--requests",
        "duration" => "--duration",
        "max_duration" => "--max-duration",
        "warmup" => "--warmup",
        "cooldown" => "--cooldown",
        "timeout" => "--timeout",
        "prompt_tokens" => "--prompt-tokens",
        "output_tokens" => "--output-tokens",
        "path" => "--dataset",
        _ => return None,
    })
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
    if c.reconnects > 0 {
        line(
            "reconnects",
            format!(
                "{} request{} sent again: the server closed a kept-alive connection before \
                 answering",
                c.reconnects,
                if c.reconnects == 1 { "" } else { "s" }
            ),
        );
    }
    line(
        "measure window",
        format!(
            "{:.2} s{}{}",
            s.duration_s,
            if s.interrupted { " (interrupted)" } else { "" },
            if c.drained > 0 {
                format!(
                    "; {} request{} finished after it (latency counted, not throughput)",
                    c.drained,
                    if c.drained == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
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

    /// The flags' recipe, loaded and checked as `aibench run` would.
    fn recipe(args: &[&str]) -> Result<aibench_recipe::Loaded, String> {
        let a = parse(args).map_err(|e| e.to_string())?;
        let (json, _) = recipe_json(&a).map_err(|e| e.0)?;
        aibench_recipe::load_str("t", &json.to_string(), &aibench_recipe::ProcessEnv)
            .map_err(|e| format!("{:?}", e.diagnostics.items))
    }

    #[test]
    fn closed_loop_by_default_open_loop_with_rate() {
        let r = recipe(&["http://127.0.0.1:1"]).unwrap().recipe;
        let w = &r.workloads[0];
        assert!(matches!(
            w.load,
            aibench_recipe::Load::ClosedLoop { users: 1, .. }
        ));
        assert_eq!(w.stop.requests, Some(100));
        assert_eq!(w.stop.duration, None);
        let r = recipe(&[
            "http://127.0.0.1:1",
            "--rate",
            "5",
            "--arrival",
            "gamma",
            "--burstiness",
            "0.5",
            "-d",
            "10s",
            "--slo-ttft",
            "200ms",
        ])
        .unwrap()
        .recipe;
        let w = &r.workloads[0];
        assert!(matches!(
            w.load,
            aibench_recipe::Load::OpenLoop { arrival: aibench_recipe::Arrival::Gamma, burstiness: Some(b), .. } if b == 0.5
        ));
        assert_eq!(w.stop.requests, None);
        assert_eq!(
            w.stop.duration.map(|d| d.std()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            r.slo.and_then(|s| s.ttft).map(|d| d.std()),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn http_urls_split_into_target_and_path() {
        let r = recipe(&[
            "http://127.0.0.1:9/v1/embeddings?x=1",
            "--protocol",
            "http",
            "--method",
            "post",
            "--body",
            "{\"input\": \"{{prompt}}\"}",
        ])
        .unwrap()
        .recipe;
        let w = &r.workloads[0];
        assert_eq!(w.target, "http://127.0.0.1:9");
        let h = w.http.as_ref().unwrap();
        assert_eq!(h.path, "/v1/embeddings?x=1");
        assert_eq!(h.method, aibench_recipe::HttpMethod::Post);
    }

    #[test]
    fn header_values_stay_out_of_the_recipe() {
        let a = parse(&["http://x:1", "-H", "X-Token: s3cret"]).unwrap();
        let (json, values) = recipe_json(&a).unwrap();
        assert!(!json.to_string().contains("s3cret"), "{json}");
        assert_eq!(
            values,
            vec![("AIBENCH_HEADER_X_TOKEN".to_string(), "s3cret".to_string())]
        );
        assert_eq!(
            json["workloads"][0]["headers"]["X-Token"],
            "${AIBENCH_HEADER_X_TOKEN}"
        );
    }

    #[test]
    fn bad_arguments_are_reported() {
        assert!(parse(&["http://x", "--concurrency", "2", "--rate", "3"]).is_err());
        for bad in [
            &["http://x", "--rate", "3", "--burstiness", "2"][..],
            &["http://x", "--header", "novalue"],
            &["http://x", "--api-key-env", "AIBENCH_TEST_SURELY_UNSET_VAR"],
            &["http://x", "--body", "{}"],
            &["http://x", "--protocol", "ollama-chat", "--ignore-eos"],
            &["http://x", "--protocol", "http", "--method", "BREW"],
        ] {
            let a = parse(bad).unwrap();
            assert!(recipe_json(&a).is_err(), "{bad:?}");
        }
    }

    /// The terminal table, from a summary of known records: its layout is a snapshot.
    #[test]
    fn the_summary_table() {
        use aibench_results::{Accumulator, AccumulatorConfig, ErrorClass, Phase, RequestRecord};
        let mut config = AccumulatorConfig::default();
        config.slo.ttft_us = Some(60_000);
        let mut acc = Accumulator::new(config);
        for i in 0..40u64 {
            let start = i * 250_000;
            let mut r = RequestRecord::new(i, Phase::Measure, start);
            r.sent_us = Some(start + 20);
            if i % 10 == 9 {
                r.error = Some(ErrorClass::Http5xx);
                r.status = Some(503);
                r.end_us = Some(start + 3_000);
                r.done_us = r.end_us;
            } else {
                let ttft = 40_000 + (i % 7) * 5_000;
                r.first_byte_us = Some(start + ttft - 1_000);
                r.first_token_us = Some(start + ttft);
                r.itl_us = vec![10_000; 31];
                r.end_us = Some(start + ttft + 310_000);
                r.done_us = r.end_us;
                r.chunks = 32;
                r.input_tokens = Some(128);
                r.output_tokens = Some(32);
                r.token_source = Some(aibench_results::TokenSource::Usage);
                r.status = Some(200);
            }
            acc.add(&r);
        }
        acc.set_stop_reason(aibench_results::StopReason::Requests);
        insta::assert_snapshot!(render_summary(&acc.summary()));
    }
}
