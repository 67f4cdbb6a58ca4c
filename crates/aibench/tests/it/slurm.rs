//! `aibench run` with `platform: slurm`, on the real Slurm that `scripts/slurm-up.sh` starts.

use std::path::Path;
use std::process::Command;

use crate::harness::{bin, Cmd};

/// The pretend cluster has two one-CPU nodes: tests that use it take turns.
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_cluster() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn slurm_here() -> bool {
    let ok = Command::new("sinfo")
        .arg("-h")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: no Slurm here (run scripts/slurm-up.sh as root)");
    }
    ok
}

fn recipe(name: &str, users: &str) -> String {
    format!(
        "name: {name}
platform:
  kind: slurm
  slurm: {{ partition: debug, time: \"00:10:00\" }}
services:
  - name: llm
    kind: sim
    model: {name}
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: {{ kind: synthetic, prompt_tokens: 16, output_tokens: 8 }}
    load: {{ pattern: closed-loop, users: 2 }}
    stop: {{ duration: 2s }}
sweep:
  matrix:
    chat.load.users: [{users}]
"
    )
}

fn squeue_names() -> String {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%j"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails if a job named `name` is still queued. A job that just ended may be listed while Slurm
/// completes it (state CG), so this looks again for a while; a job left running stays listed.
fn assert_no_job_named(name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let names = squeue_names();
        if !names.contains(name) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a job of the test is left:\n{names}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn only_run_dir(root: &Path) -> std::path::PathBuf {
    std::fs::read_dir(root.join("results"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
}

#[test]
fn quickstart_on_slurm_end_to_end() {
    let _cluster = take_cluster();
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmqs{}", std::process::id());
    std::fs::write(dir.path().join("r.yaml"), recipe(&name, "1, 3")).unwrap();
    let run = Cmd::new(&["run", "r.yaml"])
        .dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("submitted llm as job"),
        "{}",
        run.stderr
    );
    let rd = only_run_dir(dir.path());
    let info = read_json(&rd.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert_eq!(info["platform"], "slurm");
    assert!(!info["job_ids"].as_array().unwrap().is_empty());
    for t in info["trials"].as_array().unwrap() {
        let s = read_json(
            &rd.join("trials")
                .join(t["id"].as_str().unwrap())
                .join("summary.json"),
        );
        assert!(s["counts"]["successes"].as_u64().unwrap() > 0);
    }
    assert!(rd.join("report.md").exists() && rd.join("summary.csv").exists());
    assert!(
        rd.join("slurm/llm.sbatch").exists(),
        "the script is kept with the results"
    );
    assert!(
        run.stderr.contains("client process on Slurm"),
        "the load client is a job too: {}",
        run.stderr
    );
    assert!(rd.join("slurm/client-01_users=1-chat.sbatch").exists());
    assert_no_job_named(&name);
}

/// `run --calibrate` on Slurm measures the client's error where the load clients run: as a
/// job of its own on a client node, before the first trial, into run.json and the report.
#[test]
fn calibrate_on_slurm_runs_selfcheck_on_a_client_node() {
    let _cluster = take_cluster();
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmcal{}", std::process::id());
    std::fs::write(dir.path().join("r.yaml"), recipe(&name, "2")).unwrap();
    let run = Cmd::new(&["run", "r.yaml", "--calibrate"])
        .dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("calibrating: aibench selfcheck on a client node on Slurm first"),
        "{}",
        run.stderr
    );
    let rd = only_run_dir(dir.path());
    assert!(rd
        .join("slurm/client-calibration-selfcheck.sbatch")
        .exists());
    let info = read_json(&rd.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert_eq!(info["calibration"]["users"], 2, "{info}");
    assert!(info["calibration"]["requests"].as_u64().unwrap() > 0);
    let md = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(md.contains("Measurement resolution:"), "{md}");
    assert_no_job_named(&name);
}

#[test]
fn inside_an_allocation_services_are_steps() {
    let _cluster = take_cluster();
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmalloc{}", std::process::id());
    std::fs::write(dir.path().join("r.yaml"), recipe(&name, "2")).unwrap();
    let out = Command::new("salloc")
        .args(["-N", "1", "-J", &name])
        .arg(bin())
        .args(["run", "r.yaml"])
        .current_dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("submitted llm as job"),
        "no new job inside an allocation: {stderr}"
    );
    let info = read_json(&only_run_dir(dir.path()).join("run.json"));
    assert_eq!(info["status"], "completed");
    let ids: Vec<String> = info["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.contains('.')),
        "steps of the allocation: {ids:?}"
    );
    assert_no_job_named(&name);
}

#[test]
fn dry_run_writes_scripts_and_submits_nothing() {
    let _cluster = take_cluster();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmdry{}", std::process::id());
    let text = recipe(&name, "1, 2").replace(
        "  slurm: { partition: debug, time: \"00:10:00\" }",
        "  slurm: { account: p200981, partition: gpu, time: \"01:00:00\", modules: [Apptainer] }\n  container: { runtime: apptainer, image: /containers/vllm.sif, binds: [\"/scratch:/scratch\"] }",
    );
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let run = Cmd::new(&["run", "--dry-run", "r.yaml"])
        .dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("sbatch"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing was started"), "{}", run.stdout);
    let rd = only_run_dir(dir.path());
    let script = std::fs::read_to_string(rd.join("slurm/01_users=1/llm.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --account=p200981"), "{script}");
    assert!(script.contains("apptainer exec"), "{script}");
    assert!(script.contains("module load Apptainer"), "{script}");
    if slurm_here() {
        assert_no_job_named(&name);
    }
}

#[test]
fn two_client_nodes_inside_an_allocation_merge() {
    let _cluster = take_cluster();
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmclients{}", std::process::id());
    let text = recipe(&name, "2").replace(
        "    stop: { duration: 2s }",
        "    stop: { duration: 3s }\n    clients: { nodes: 2, processes: 1 }",
    );
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let out = Command::new("salloc")
        .args(["-N", "2", "-J", &name])
        .arg(bin())
        .args(["run", "r.yaml"])
        .current_dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 client processes on Slurm"), "{stderr}");
    let rd = only_run_dir(dir.path());
    let trial = rd.join("trials/01_users=2");
    for shard in 0..2 {
        assert!(
            trial
                .join(format!("shards/{shard}/accumulator.json"))
                .exists(),
            "shard {shard} wrote its results"
        );
    }
    let s = read_json(&trial.join("summary.json"));
    assert!(s["counts"]["successes"].as_u64().unwrap() > 0, "{s}");
    assert_no_job_named(&name);
}

#[test]
fn slurm_jobs_run_the_kinds_prepare_step() {
    let _cluster = take_cluster();
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("slurmpull{}", std::process::id());
    // An `ollama` service (the simulator speaks its API, `/api/pull` included): its model is
    // pulled once the job is healthy, before the clock, as locally.
    let text = format!(
        "name: {name}
platform:
  kind: slurm
  slurm: {{ partition: debug, time: \"00:10:00\" }}
services:
  - name: llm
    kind: ollama
    model: tiny
    command: [\"${{AIBENCH_EXE}}\", sim, --host, \"${{HOST}}\", --port, \"${{PORT}}\", --model, tiny]
workloads:
  - name: gen
    target: llm
    protocol: ollama-generate
    dataset: {{ kind: synthetic, prompt_tokens: 8, output_tokens: 4 }}
    load: {{ pattern: closed-loop, users: 1 }}
    stop: {{ requests: 3 }}
"
    );
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let run = Cmd::new(&["run", "r.yaml"])
        .dir(dir.path())
        .env("AIBENCH_HOME", dir.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("pulling tiny into llm"),
        "{}",
        run.stderr
    );
    assert_no_job_named(&name);
}
