//! Workloads driven by several client processes (`clients: { nodes, processes }`): each process
//! runs `aibench client` for one shard, all start at a common wall-clock instant, and their
//! accumulators merge into exactly the summary one process would have produced.
//!
//! The platform starts them (see `platform::Clients`): child processes here, `srun --overlap`
//! steps on an allocation's client nodes, or a Slurm job of `nodes` x `processes` tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aibench_load::Cancel;
use aibench_results::{Accumulator, Summary};

use super::platform::{Clients, Launched};

pub struct ShardJob {
    pub exe: PathBuf,
    pub run_dir: PathBuf,
    pub base_dir: PathBuf,
    pub trial: String,
    pub workload: String,
    pub url: String,
    pub nodes: u32,
    pub processes: u32,
    /// The trial folder the shards write into.
    pub out: PathBuf,
}

impl ShardJob {
    pub fn shards(&self) -> u32 {
        self.nodes * self.processes
    }
}

fn client_args(j: &ShardJob, start_at: f64) -> Vec<String> {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    vec![
        "client".into(),
        "--run-dir".into(),
        abs(&j.run_dir),
        "--base-dir".into(),
        abs(&j.base_dir),
        "--trial".into(),
        j.trial.clone(),
        "--workload".into(),
        j.workload.clone(),
        "--url".into(),
        j.url.clone(),
        "--shards".into(),
        j.shards().to_string(),
        "--start-at".into(),
        format!("{start_at:.6}"),
        "--out".into(),
        abs(&j.out),
    ]
}

/// Run every shard where the platform puts them, wait for all, merge. `cancel` stops them
/// gracefully (SIGTERM).
pub async fn run(
    j: ShardJob,
    clients: Arc<dyn Clients>,
    cancel: Cancel,
) -> anyhow::Result<Summary> {
    // Time for every process (or job task) to start and open its connections.
    let start_at = super::rundir::now_epoch() + clients.lead_s();
    let args = client_args(&j, start_at);
    let logs = j.run_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let launched = clients.launch(&j, &args, &logs).await?;
    wait_for_shards(launched, clients.as_ref(), &cancel).await?;
    merge_shards(&j, &logs, &cancel)
}

/// Wait until every client process and the client job have ended; pass a cancel on as
/// SIGTERM (the clients flush and exit).
pub(crate) async fn wait_for_shards(
    mut launched: Launched,
    clients: &dyn Clients,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let mut signalled = false;
    loop {
        if cancel.is_cancelled() && !signalled {
            signalled = true;
            super::platform::terminate(&launched.children);
            if let Some(id) = &launched.job_id {
                clients.stop_job(id).await;
            }
        }
        let mut running = 0;
        for c in &mut launched.children {
            if c.try_wait()?.is_none() {
                running += 1;
            }
        }
        if let Some(id) = &launched.job_id {
            if clients.job_running(id).await? {
                running += 1;
            }
        }
        if running == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Merge every shard's accumulator into the workload's summary; a missing one is an error
/// that names its log.
fn merge_shards(j: &ShardJob, logs: &Path, cancel: &Cancel) -> anyhow::Result<Summary> {
    let mut merged: Option<Accumulator> = None;
    let mut missing = Vec::new();
    for i in 0..j.shards() {
        let path = j
            .out
            .join("shards")
            .join(i.to_string())
            .join("accumulator.json");
        match Accumulator::read_shard(&path) {
            Ok(acc) => match merged.as_mut() {
                Some(m) => m.merge(&acc).map_err(|e| anyhow::anyhow!("{e}"))?,
                None => merged = Some(acc),
            },
            Err(_) => missing.push(i),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "client shard(s) {missing:?} of workload `{}` wrote no results; see {}/client-{}-{}-*.log",
            j.workload,
            logs.display(),
            j.trial,
            j.workload
        );
    }
    let mut summary = merged
        .map(|m| m.summary())
        .ok_or_else(|| anyhow::anyhow!("no shards"))?;
    summary.interrupted |= cancel.is_cancelled();
    Ok(summary)
}
