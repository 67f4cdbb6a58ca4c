//! `aibench sim`: run the built-in simulated LLM server until SIGINT or SIGTERM.

use std::io::Write as _;

use aibench_sim::{SimConfig, SimServer};
use anyhow::Context as _;

use crate::exit::{self, Outcome};

const AFTER_HELP: &str = "\
Serves the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models) and the Ollama API
(/api/generate, /api/chat, /api/tags, /api/pull) with a vLLM-like continuous-batching model and
vLLM-named Prometheus metrics on /metrics, so the whole pipeline runs without a GPU. Prompts
count one token per word; outputs are max_tokens tokens (t0 t1 ...), one per stream chunk.
Once bound it prints one line, `aibench sim listening on http://ADDR (model NAME)`, and stops
gracefully on SIGINT or SIGTERM.

Capacity of the batching model, with prefill small next to decoding:
  tokens/s = max_batch / (decode_base + decode_per_seq x max_batch)   (defaults: ~5517)

Examples:
  aibench sim --port 8000 --max-batch 64
      batching model, 64 sequences per step: at most 64 / (8ms + 64 x 150us) = 3636 tokens/s
  aibench sim --port 8000 --fixed-ttft 50ms --fixed-itl 10ms
      fixed timing: first token 50ms after arrival, then one every 10ms, whatever the load;
      the reference target for measuring a load generator's own overhead
  aibench sim --port 0 --failure-rate 0.01 --api-key secret
      any free port, 1% of requests fail with 500, Authorization: Bearer secret required
  curl -N localhost:8000/v1/completions -H 'content-type: application/json' \\
      -d '{\"model\": \"sim\", \"prompt\": \"hello world\", \"max_tokens\": 5, \"stream\": true}'";

/// Run a simulated vLLM-like LLM server (OpenAI and Ollama APIs, vLLM metrics)
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct SimArgs {
    /// Address to listen on (0.0.0.0 to accept other hosts)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free port; the printed line shows which)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    #[command(flatten)]
    pub config: SimConfig,
}

pub fn run(args: SimArgs) -> anyhow::Result<Outcome> {
    if let Err(e) = args.config.validate() {
        for problem in &e.problems {
            eprintln!("error: {problem}");
        }
        return Err(exit::shown_input());
    }
    // A thousand concurrent streams need more than the common default of 1024 open files.
    let _ = aibench_sim::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(Outcome::Success)
}

async fn serve(args: SimArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("could not resolve --host {}", args.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", args.host))?;
    let server = SimServer::bind(args.config, addr).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "aibench sim listening on http://{} (model {})",
        server.local_addr(),
        server.model()
    )
    .and_then(|()| stdout.flush())
    .context("could not write to stdout")?;
    drop(stdout);
    let mut interrupt = signal(SignalKind::interrupt()).context("could not watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not watch SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    server.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    /// `validate` checks a `kind: sim` service's `args` against the recipe crate's list of the
    /// simulator's options: it must be exactly the simulator's flags.
    #[test]
    fn the_recipe_knows_every_simulator_option() {
        use clap::Args;
        let cmd = aibench_sim::SimConfig::augment_args(clap::Command::new("sim"));
        let mut flags: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        flags.sort_unstable();
        let mut known: Vec<&str> = aibench_recipe::kinds::SIM_OPTIONS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        known.sort_unstable();
        assert_eq!(flags, known);
    }
}
