//! `aibench export`: run PromQL against a run's Prometheus and print CSV or JSON.

use std::io::Write;
use std::path::PathBuf;

use aibench_monitor::export::{export, ExportFormat, ExportRequest};

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
RUN is a run directory (one recorded with `monitor: { prometheus: true }`) or the http:// URL
of a Prometheus server. For a run directory, the Prometheus that ran with it is asked if it is
still up; otherwise a temporary `prometheus` is started on the run's stored data
(RUN/prometheus/data) for the query and stopped afterwards.

Without --range the query is instant, at --time (default: the end of the run, or now).
Times: now, now-5m, start, start+30s, end, end-1m (start and end of the run, from run.json),
unix seconds, or RFC 3339 (2026-11-23T14:22:00Z). Durations: 500ms, 15s, 2m, 1h30m.

CSV columns: timestamp (unix seconds), t_s (seconds since the run's start, when known), name,
labels (k=v;k2=v2, as in metrics/*.csv), value.

Examples:
  aibench export --run results/quickstart-20261123-140502 --query 'vllm:num_requests_running'
  aibench export --run results/quickstart-20261123-140502 \\
      --query 'rate(vllm:generation_tokens_total[30s])' --range start..end --step 5s
  aibench export --run http://localhost:9090 --query 'aibench_requests_in_flight' \\
      --range now-10m..now --step 15s --format json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Long format: timestamp,t_s,name,labels,value.
    Csv,
    /// The series with their labels and [time, value] pairs.
    Json,
}

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ExportArgs {
    /// A run directory or a Prometheus URL (http://host:port).
    #[arg(long, value_name = "RUN_DIR_OR_URL")]
    pub run: String,
    /// The PromQL expression.
    #[arg(long, value_name = "PROMQL")]
    pub query: String,
    /// A range query over START..END (e.g. `start..end`, `now-10m..now`).
    #[arg(long, value_name = "START..END")]
    pub range: Option<String>,
    /// Step of a range query (default: the range over 300, at least 1s).
    #[arg(long, value_name = "DURATION", requires = "range")]
    pub step: Option<String>,
    /// Time of an instant query (default: the end of the run, or now).
    #[arg(long, value_name = "TIME", conflicts_with = "range")]
    pub time: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The Prometheus program used to read a finished run's data.
    #[arg(long, value_name = "PATH", default_value = "prometheus")]
    pub prometheus: PathBuf,
}

pub fn run(args: ExportArgs) -> anyhow::Result<Outcome> {
    let request = ExportRequest {
        source: args.run.clone(),
        query: args.query.clone(),
        range: args.range.clone(),
        step: args.step.clone(),
        time: args.time.clone(),
        format: match args.format {
            Format::Csv => ExportFormat::Csv,
            Format::Json => ExportFormat::Json,
        },
        prometheus: args.prometheus.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(export(&request)) {
        Ok(text) => {
            match &args.output {
                Some(path) => std::fs::write(path, text)
                    .map_err(|e| anyhow::anyhow!("could not write {}: {e}", path.display()))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    // A closed pipe (`| head`) is not an error.
                    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
                }
            }
            Ok(Outcome::Success)
        }
        Err(e) if e.is_input() => Err(exit::bad_input(e.to_string())),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
