//! Workloads driven by several client processes (`clients: { nodes, processes }`): each process
//! runs `aibench client` for one shard, all start at a common wall-clock instant, and their
//! accumulators merge into exactly the summary one process would have produced.
//!
//! Locally the shards are child processes; inside a Slurm allocation they are `srun --overlap`
//! steps on the client nodes; otherwise they are one Slurm job of `nodes` x `processes` tasks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aibench_load::Cancel;
use aibench_results::{Accumulator, Summary};

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
    pub slurm: Option<SlurmClients>,
}

pub struct SlurmClients {
    pub settings: aibench_recipe::Slurm,
    /// Inside an allocation: the allocation's id and the client nodes (empty: any).
    pub allocation: Option<(String, Vec<String>)>,
    pub job_name: String,
}

fn client_args(j: &ShardJob, shards: u32, start_at: f64) -> Vec<String> {
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
        shards.to_string(),
        "--start-at".into(),
        format!("{start_at:.6}"),
        "--out".into(),
        abs(&j.out),
    ]
}

fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Run every shard, wait for all, merge. `cancel` stops them gracefully (SIGTERM).
pub async fn run(j: ShardJob, cancel: Cancel) -> anyhow::Result<Summary> {
    let shards = j.nodes * j.processes;
    // Time for every process (or job task) to start and open its connections.
    let lead = if j.slurm.is_some() { 10.0 } else { 2.0 };
    let start_at = super::rundir::now_epoch() + lead;
    let args = client_args(&j, shards, start_at);
    let logs = j.run_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let (children, job_id) = match &j.slurm {
        None => (spawn_local(&j, &args, &logs, shards)?, None),
        Some(s) => match &s.allocation {
            Some((alloc, nodes)) => (
                vec![srun_in_allocation(&j, s, alloc, nodes, &args, &logs)?],
                None,
            ),
            None => (Vec::new(), Some(submit_job(&j, s, &args, &logs).await?)),
        },
    };
    wait_for_shards(children, job_id.as_deref(), &cancel).await?;
    merge_shards(&j, shards, &logs, &cancel)
}

/// Client processes on this machine, one per shard, dying with aibench.
fn spawn_local(
    j: &ShardJob,
    args: &[String],
    logs: &Path,
    shards: u32,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    let mut children = Vec::new();
    for i in 0..shards {
        let log =
            std::fs::File::create(logs.join(format!("client-{}-{}-{i}.log", j.trial, j.workload)))?;
        let mut cmd = tokio::process::Command::new(&j.exe);
        cmd.args(args)
            .arg("--shard")
            .arg(i.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: the hook runs only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(aibench_platform::process::die_with_parent(libc::SIGKILL));
        }
        children.push(cmd.spawn()?);
    }
    Ok(children)
}

/// Inside a Slurm allocation: one `srun --overlap` step with a task per shard.
fn srun_in_allocation(
    j: &ShardJob,
    s: &SlurmClients,
    alloc: &str,
    nodes: &[String],
    args: &[String],
    logs: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let mut srun: Vec<String> = vec![
        "srun".to_string(),
        format!("--jobid={alloc}"),
        "--overlap".into(),
        format!("--nodes={}", j.nodes),
        format!("--ntasks-per-node={}", j.processes),
        format!("--job-name={}", s.job_name),
    ];
    if !nodes.is_empty() {
        srun.push(format!("--nodelist={}", nodes.join(",")));
    }
    srun.push(format!(
        "--output={}/client-{}-{}-%t.log",
        logs.display(),
        j.trial,
        j.workload
    ));
    srun.push(j.exe.display().to_string());
    srun.extend(args.iter().cloned());
    let log =
        std::fs::File::create(logs.join(format!("client-{}-{}-srun.log", j.trial, j.workload)))?;
    let mut cmd = tokio::process::Command::new(&srun[0]);
    cmd.args(&srun[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

/// Outside an allocation: a batch job of its own with a task per shard; its job id.
async fn submit_job(
    j: &ShardJob,
    s: &SlurmClients,
    args: &[String],
    logs: &Path,
) -> anyhow::Result<String> {
    let task_args = format!(
        "{} {}",
        quote(&j.exe.display().to_string()),
        args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    );
    let st = &s.settings;
    let mut script = String::from("#!/bin/bash\n");
    script.push_str(&format!(
        "#SBATCH --job-name={}\n#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n",
        s.job_name, j.nodes, j.processes
    ));
    script.push_str(&format!(
        "#SBATCH --output={}/client-{}-{}-%j.log\n",
        logs.display(),
        j.trial,
        j.workload
    ));
    for (flag, v) in [
        ("account", &st.account),
        ("partition", &st.partition),
        ("qos", &st.qos),
        ("constraint", &st.constraint),
        ("reservation", &st.reservation),
    ] {
        if let Some(v) = v {
            script.push_str(&format!("#SBATCH --{flag}={v}\n"));
        }
    }
    if let Some(t) = &st.time {
        script.push_str(&format!("#SBATCH --time={t}\n"));
    }
    for m in &st.modules {
        script.push_str(&format!("module load {m}\n"));
    }
    for l in &st.setup {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str(&format!("srun {task_args}\n"));
    let path = j
        .run_dir
        .join("slurm")
        .join(format!("client-{}-{}.sbatch", j.trial, j.workload));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&path, script)?;
    let out = tokio::process::Command::new("sbatch")
        .arg("--parsable")
        .arg("--export=ALL")
        .arg(&path)
        .output()
        .await?;
    if !out.status.success() {
        anyhow::bail!(
            "sbatch of the load clients failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string())
}

/// Wait until every client process and the client job have ended; pass a cancel on as
/// SIGTERM (the clients flush and exit).
async fn wait_for_shards(
    mut children: Vec<tokio::process::Child>,
    job_id: Option<&str>,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let mut signalled = false;
    loop {
        if cancel.is_cancelled() && !signalled {
            signalled = true;
            for c in &children {
                if let Some(pid) = c.id() {
                    // SAFETY: kill(2) with a pid this process started and has not reaped.
                    unsafe {
                        libc::kill(pid as i32, libc::SIGTERM);
                    }
                }
            }
            if let Some(id) = job_id {
                let _ = tokio::process::Command::new("scancel")
                    .args(["--signal=TERM", "--full", id])
                    .status()
                    .await;
            }
        }
        let mut running = 0;
        for c in &mut children {
            if c.try_wait()?.is_none() {
                running += 1;
            }
        }
        if let Some(id) = job_id {
            let out = tokio::process::Command::new("squeue")
                .args(["-h", "-j", id, "-o", "%T"])
                .output()
                .await?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !state.is_empty()
                && !matches!(
                    state.as_str(),
                    "COMPLETED"
                        | "FAILED"
                        | "CANCELLED"
                        | "TIMEOUT"
                        | "NODE_FAIL"
                        | "OUT_OF_MEMORY"
                        | "BOOT_FAIL"
                        | "PREEMPTED"
                )
            {
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
fn merge_shards(
    j: &ShardJob,
    shards: u32,
    logs: &Path,
    cancel: &Cancel,
) -> anyhow::Result<Summary> {
    let mut merged: Option<Accumulator> = None;
    let mut missing = Vec::new();
    for i in 0..shards {
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
