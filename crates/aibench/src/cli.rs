//! The command line: one subcommand per verb, each `--help` with an example.

use clap::{Parser, Subcommand};

use crate::cmd;

const ABOUT: &str =
    "Deploy AI services, drive load at them, and report how they perform on this hardware";

const LONG_ABOUT: &str = "\
aibench answers one question: how does this AI service perform on this hardware?

From one YAML recipe it deploys the services of an AI factory (LLM servers, vector databases,
object stores, caches, SQL databases) on this machine or as Slurm jobs, drives load at them,
and turns what it measured into a report.";

const AFTER_HELP: &str = "\
Examples:
  aibench validate examples/quickstart.yaml     check a recipe, every problem at once
  aibench plan examples/sweep-saturation.yaml   list the trials a sweep expands into
  aibench schema > recipe.schema.json           the JSON Schema editors autocomplete from

Exit codes: 0 success, 1 failed gate, 2 invalid input, 3 internal or environment fault,
130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "aibench", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
#[command(propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing would only add noise
pub enum Command {
    /// Deploy the recipe's services, drive its workloads, and write results and a report
    Run(crate::run::RunArgs),
    /// Drive load at a running server (like vllm bench serve or oha), or at a recipe's running services
    Bench(cmd::bench::BenchArgs),
    /// One shard of a workload's load (started by `aibench run` for multi-process clients)
    #[command(hide = true)]
    Client(cmd::client::ClientArgs),
    /// Start a recipe's services and leave them running
    Up(cmd::services::UpArgs),
    /// List running services and check their health
    Services(cmd::services::ServicesArgs),
    /// Stop running services
    Down(cmd::services::DownArgs),
    /// Follow a run from another terminal
    Watch(cmd::services::WatchArgs),
    /// Regenerate a run directory's reports (Markdown, HTML, JSON, plots)
    Report(cmd::report::ReportArgs),
    /// Compare runs side by side and gate on regressions (exit code 1)
    Compare(cmd::compare::CompareArgs),
    /// List the runs in the catalog, filtered by recipe, date, status or service
    Runs(cmd::runs::RunsArgs),
    /// Query a run's Prometheus (PromQL, instant or range) and print CSV or JSON
    Export(cmd::export::ExportArgs),
    /// Check recipes and report every problem at once, with file:line:col
    Validate(cmd::validate::ValidateArgs),
    /// Expand a recipe into its trials and show what would run where
    Plan(cmd::plan::PlanArgs),
    /// Serve a simulated vLLM-like LLM server (OpenAI and Ollama APIs, vLLM metrics)
    Sim(cmd::sim::SimArgs),
    /// Measure this machine's own measuring error against the fixed-timing simulator
    Selfcheck(cmd::selfcheck::SelfcheckArgs),
    /// Print the recipe JSON Schema (draft 2020-12), generated from the recipe types
    Schema(cmd::schema::SchemaArgs),
    /// Print a shell completion script
    Completions(cmd::completions::CompletionsArgs),
}

impl Command {
    /// Commands that only read and print: a closed stdout ends them quietly (SIGPIPE). Not
    /// those that hold services, connections or children, which must stop in order.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Services(_)
                | Command::Report(_)
                | Command::Compare(_)
                | Command::Runs(_)
                | Command::Export(_)
                | Command::Validate(_)
                | Command::Plan(_)
                | Command::Schema(_)
                | Command::Completions(_)
        )
    }
}
