//! `aibench client`: one shard of a workload's load, as a separate process (a local child of
//! `aibench run`, or a task of a Slurm job on another node). Every shard starts at the same
//! wall-clock instant, takes its share of the arrivals or users, and writes its records and
//! its accumulator under `shards/<n>/`; `aibench run` merges the accumulators exactly.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::exit::{self, Outcome};
use crate::run::workload;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Started by `aibench run` for workloads with `clients: { nodes, processes }` above one;\nnot meant to be run by hand.\n\nExample:\n  aibench client --run-dir results/r --trial 01 --workload chat --url http://node1:8000 \\\n      --shard 0 --shards 4 --start-at 1795442597.5"
)]
pub struct ClientArgs {
    /// The run directory (its recipe.yaml is read; the shard writes under the trial's folder).
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// The recipe's folder, for relative dataset paths.
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    #[arg(long, value_name = "TRIAL_ID")]
    pub trial: String,
    #[arg(long, value_name = "NAME")]
    pub workload: String,
    /// The service's address.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// This shard's index, from 0 (default: $SLURM_PROCID).
    #[arg(long, env = "SLURM_PROCID")]
    pub shard: u32,
    /// How many shards there are.
    #[arg(long)]
    pub shards: u32,
    /// The common start, seconds since the Unix epoch.
    #[arg(long)]
    pub start_at: f64,
    /// Where the trial's files go (default: the trial folder in the run directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: ClientArgs) -> anyhow::Result<Outcome> {
    let recipe_path = args.run_dir.join("recipe.yaml");
    let Ok(loaded) = super::load_recipe(&recipe_path) else {
        return Err(exit::shown_input());
    };
    let trial = loaded
        .trials
        .iter()
        .find(|t| t.id == args.trial)
        .ok_or_else(|| anyhow::anyhow!("no trial `{}` in {}", args.trial, recipe_path.display()))?;
    let recipe = &trial.recipe;
    let w = recipe
        .workloads
        .iter()
        .find(|w| w.name == args.workload)
        .ok_or_else(|| anyhow::anyhow!("no workload `{}`", args.workload))?;
    let base_dir = args
        .base_dir
        .clone()
        .unwrap_or_else(|| args.run_dir.clone());
    let service = recipe.services.iter().find(|s| s.name == w.target);
    let spec = workload::load_spec(w, recipe.seed, &base_dir)?;
    // The orchestrator prepared the workload (preloaded keys, ...) before starting shards.
    let driven = workload::driven(w, &args.url, service, recipe.seed, &base_dir)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("trials").join(&args.trial));
    let shard_dir = out.join("shards").join(args.shard.to_string());
    std::fs::create_dir_all(&shard_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cancel = aibench_load::Cancel::new();
    let options = aibench_load::RunOptions {
        records: recipe
            .output
            .requests
            .then(|| shard_dir.join("requests.jsonl")),
        cancel: Some(cancel.clone()),
        shard: aibench_load::Shard {
            index: args.shard,
            count: args.shards,
        },
        start_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(args.start_at)),
        accumulator: workload::accumulator_config(recipe.slo.as_ref()),
        ..Default::default()
    };
    let signalled = cancel.clone();
    let outcome = rt.block_on(async move {
        // SIGTERM (scancel, a time limit) and Ctrl-C stop the shard gracefully: it still
        // writes everything it measured.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let c = signalled;
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            c.cancel();
        });
        driven
            .run(&spec, options)
            .await
            .map_err(anyhow::Error::from)
    })?;
    outcome
        .accumulator
        .write_shard(&shard_dir.join("accumulator.json"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(if cancel.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::Success
    })
}
