//! On a real Slurm: `scripts/slurm-up.sh` starts one (slurmctld, munge, two pretend nodes on
//! this host) and these tests call it first when run as root. They skip, saying so, only when
//! `sinfo` is absent.
//!
//! `kind: sim` services run the aibench binary: `$AIBENCH_TEST_EXE` if set, else
//! `target/debug/aibench` of this workspace (`cargo build -p aibench` makes it; `cargo test
//! --workspace` builds it before running tests).
//!
//! The two pretend nodes have one CPU each, so the tests take turns (a lock), and every test
//! uses job names of its own and checks at the end that `squeue` lists none of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use aibench_platform::Registry;
use aibench_slurm::{
    cancel_record, record_status, Allocation, JobState, Mode, SlurmCli, SlurmContext, SlurmError,
    SlurmEvent, SlurmJobs,
};

static TURN: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cluster, started if this process may start it; `None` when Slurm is not installed.
fn slurm() -> Option<MutexGuard<'static, ()>> {
    static UP: OnceLock<bool> = OnceLock::new();
    let up = *UP.get_or_init(|| {
        if !SlurmCli::default().available() {
            eprintln!("SKIPPED: `sinfo` not found, so there is no Slurm here; run scripts/slurm-up.sh (as root) to install and start one");
            return false;
        }
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let status = Command::new("bash")
                .arg(workspace().join("scripts/slurm-up.sh"))
                .status()
                .expect("run scripts/slurm-up.sh");
            assert!(status.success(), "scripts/slurm-up.sh failed");
        }
        true
    });
    up.then(|| TURN.lock().unwrap_or_else(|e| e.into_inner()))
}

fn exe() -> PathBuf {
    let p = std::env::var_os("AIBENCH_TEST_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("debug/aibench")
        });
    assert!(
        p.is_file(),
        "the aibench binary is not at {}; build it with `cargo build -p aibench`, or set AIBENCH_TEST_EXE",
        p.display()
    );
    p.canonicalize().unwrap()
}

/// A test's run: a run directory, job names of its own, and, when it ends, no job left.
struct Run {
    dir: tempfile::TempDir,
    prefix: String,
    registry: tempfile::TempDir,
}

impl Run {
    fn new(test: &str) -> Run {
        Run {
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("aibt-{}-{test}", std::process::id()),
            registry: tempfile::tempdir().unwrap(),
        }
    }

    fn ctx(&self) -> SlurmContext {
        let mut ctx = SlurmContext::new(self.dir.path(), "test", "test", exe());
        ctx.job_name_prefix = self.prefix.clone();
        ctx.poll_interval = Duration::from_millis(500);
        ctx.user_registry = Some(Registry::at(self.registry.path()));
        ctx
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Ids and names of this test's jobs that squeue lists as pending, running or completing.
    fn active_jobs(&self) -> Vec<(String, String)> {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i|%j"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, name)| name.starts_with(&self.prefix))
            .map(|(id, name)| (id.trim().to_string(), name.to_string()))
            .collect()
    }

    /// Wait until squeue lists no job of this test.
    fn assert_no_jobs_left(&self) {
        while !self.active_jobs().is_empty() {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Whatever a failed test left behind.
        let ids: Vec<String> = self.active_jobs().into_iter().map(|(id, _)| id).collect();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
    }
}

fn load(yaml: &str) -> (aibench_recipe::Recipe, aibench_plan::ServicePlan) {
    let loaded = aibench_recipe::load_str("recipe.yaml", yaml, &aibench_recipe::ProcessEnv)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let plan = aibench_plan::plan(&loaded);
    let sp = plan.trials[0].services[0].clone();
    (loaded.recipe, sp)
}

fn sim_recipe(time: &str, extra_platform: &str) -> String {
    format!(
        r#"
name: slurm-sim
platform:
  kind: slurm
  slurm: {{ time: "{time}" }}
{extra_platform}
services:
  - name: llm
    kind: sim
    model: sim-7b
    args: {{ max-batch: 8 }}
"#
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Ask `check` until it reports the job's end.
fn wait_for_end(jobs: &mut SlurmJobs) -> SlurmError {
    loop {
        if let Some(e) = jobs.check("the test") {
            return e;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

async fn get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn sim_job_registers_passes_health_and_is_cancelled_like_aibench_down() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("sim");
    let (recipe, plan) = load(&sim_recipe("00:10:00", ""));
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    let job_id = jobs.jobs()[0].job_id.clone().unwrap();
    let mut events = Vec::new();
    rt().block_on(jobs.wait_ready(|| false, |e| events.push(e)))
        .unwrap_or_else(|e| panic!("{e}"));

    // Discovery: the job's record, in the run directory and the user registry.
    let record = jobs.records().pop().unwrap();
    assert_eq!(record.platform, "slurm");
    assert_eq!(record.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(record.kind, aibench_recipe::ServiceKind::Sim);
    assert!(record.url.as_deref().unwrap().starts_with("http://"));
    let in_run = Registry::at(run.root().join("services"))
        .get("llm")
        .unwrap();
    assert_eq!(in_run, record);
    let in_user = Registry::at(run.registry.path()).get("llm").unwrap();
    assert_eq!(in_user, record);
    // What the user saw: the job's state, where it registered, and when it became healthy.
    // (The job may register between two polls of its state, so "running" itself may never be
    // seen: registering is the proof that it runs.)
    assert!(
        events.iter().any(|e| matches!(
            e,
            SlurmEvent::State {
                state: JobState::Pending | JobState::Running,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SlurmEvent::Registered { node, .. } if node.starts_with("node"))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SlurmEvent::Healthy { .. })),
        "{events:?}"
    );
    // The server answers where the record says.
    let models = rt().block_on(get(
        &format!("{}:{}", record.host, record.port),
        "/v1/models",
    ));
    assert!(models.contains("sim-7b"), "{models}");
    assert_eq!(jobs.check("the test").map(|e| e.to_string()), None);

    // `aibench down`: the record alone is enough to cancel the job.
    let cli = SlurmCli::default();
    assert_eq!(
        record_status(&cli, &in_user).unwrap().state,
        JobState::Running
    );
    assert!(cancel_record(&cli, &in_user).unwrap());
    let ended = loop {
        match record_status(&cli, &in_user) {
            Some(s) if s.state.is_finished() => break s,
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    assert_eq!(ended.state, JobState::Cancelled);
    jobs.stop(Duration::from_secs(30));
    assert!(Registry::at(run.root().join("services"))
        .get("llm")
        .is_none());
    assert!(Registry::at(run.registry.path()).get("llm").is_none());
    run.assert_no_jobs_left();
}

#[test]
fn two_node_command_finds_its_head_and_drop_cancels_it() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("nodes");
    let yaml = r#"
name: slurm-nodes
platform:
  kind: slurm
  slurm: { time: "00:10:00" }
services:
  - name: spread
    kind: command
    resources: { nodes: 2 }
    health: { check: http, path: /health }
    # bash for /dev/tcp; each rank sees its rank, the head's address and the service's port.
    command:
      - bash
      - -c
      - >-
        if [ "$AIBENCH_NODE_RANK" = 0 ]; then
          exec "$AIBENCH_EXE" sim --host "$HOST" --port "$PORT";
        else
          until (exec 3<>"/dev/tcp/$AIBENCH_HEAD_ADDRESS/$PORT") 2>/dev/null; do sleep 1; done;
          echo "rank $AIBENCH_NODE_RANK on $SLURMD_NODENAME reached $AIBENCH_HEAD_ADDRESS:$PORT" > "$AIBENCH_RUN_DIR/worker.txt";
          exec sleep 100000;
        fi
"#;
    let (recipe, plan) = load(yaml);
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let record = jobs.records().pop().unwrap();
    assert_eq!(jobs.jobs()[0].node.as_deref(), Some("node1"));
    // The worker on the second node found the head through the variables.
    let report = run.root().join("worker.txt");
    while !report.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        text.trim(),
        format!("rank 1 on node2 reached {}:{}", record.host, record.port)
    );
    // Dropping the set (a panic, an early return) cancels the job.
    drop(jobs);
    run.assert_no_jobs_left();
}

#[test]
fn job_failing_at_start_reports_failed_with_its_log() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("fail");
    let yaml = r#"
name: slurm-fail
platform:
  kind: slurm
  slurm: { time: "00:10:00" }
services:
  - name: broken
    kind: command
    command: "echo 'cannot open the model: no such file' >&2; exit 3"
"#;
    let (recipe, plan) = load(yaml);
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    let err = rt()
        .block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_err();
    let message = err.to_string();
    match &err {
        SlurmError::JobEnded {
            status, last_lines, ..
        } => {
            assert_eq!(status.state, JobState::Failed, "{message}");
            assert_eq!(status.exit_code.as_deref(), Some("3:0"), "{message}");
            assert!(
                last_lines
                    .iter()
                    .any(|l| l.contains("cannot open the model")),
                "{message}"
            );
        }
        other => panic!("expected the job's end, got {other}"),
    }
    assert!(message.contains("FAILED (exit code 3"), "{message}");
    let id = jobs.jobs()[0].job_id.clone().unwrap();
    jobs.stop(Duration::from_secs(30));
    run.assert_no_jobs_left();
    // Once Slurm forgets the job, the completion log still knows how it ended (`sacct -c`).
    let from_log = SlurmCli::default().sacct(std::slice::from_ref(&id));
    assert_eq!(from_log.len(), 1, "{from_log:?}");
    assert_eq!(from_log[0].1.state, JobState::Failed);
}

#[test]
fn job_cancelled_from_outside_reports_cancelled() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("scancel");
    let (recipe, plan) = load(&sim_recipe("00:10:00", ""));
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let id = jobs.jobs()[0].job_id.clone().unwrap();
    assert!(Command::new("scancel").arg(&id).status().unwrap().success());
    let err = wait_for_end(&mut jobs);
    match &err {
        SlurmError::JobEnded { status, .. } => {
            assert_eq!(status.state, JobState::Cancelled, "{err}")
        }
        other => panic!("expected the job's end, got {other}"),
    }
    assert!(err.to_string().contains("CANCELLED"), "{err}");
    jobs.stop(Duration::from_secs(30));
    run.assert_no_jobs_left();
}

#[test]
fn job_hitting_its_time_limit_reports_timeout_and_flushes() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("timeout");
    let (recipe, plan) = load(&sim_recipe("1m", ""));
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let id = jobs.jobs()[0].job_id.clone().unwrap();
    let err = wait_for_end(&mut jobs);
    match &err {
        SlurmError::JobEnded { status, .. } => assert_eq!(status.state, JobState::Timeout, "{err}"),
        other => panic!("expected the job's end, got {other}"),
    }
    assert!(err.to_string().contains("platform.slurm.time"), "{err}");
    // The job trapped Slurm's SIGTERM, stopped the server and wrote how it ended.
    let marker = run.root().join(format!("slurm/llm.{id}.exit"));
    while !marker.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&marker).unwrap();
    assert!(text.contains("\"stopped_by\": \"TERM\""), "{text}");
    jobs.stop(Duration::from_secs(30));
    run.assert_no_jobs_left();
}

#[test]
fn apptainer_wrapper_runs_the_service_with_its_environment() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("apptainer");
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let log = run.root().join("apptainer.log");
    // The secret reaches the job through the environment only.
    std::env::set_var("AIBENCH_TEST_SECRET", "s3cret-value-42");
    let platform = r#"  container:
    runtime: apptainer
    image: /images/sim.sif
    binds: [/tmp]
    env: { SIM_GREETING: hello }
"#;
    let mut yaml = sim_recipe("00:10:00", platform);
    yaml = yaml.replace(
        "slurm: { time: \"00:10:00\" }",
        &format!(
            "slurm: {{ time: \"00:10:00\", setup: [\"export PATH={}:$$PATH APPTAINER_STANDIN_LOG={}\"] }}",
            standin.display(),
            log.display()
        ),
    );
    yaml.push_str("    env: { API_SECRET: \"${AIBENCH_TEST_SECRET}\" }\n");
    let (recipe, plan) = load(&yaml);
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let script = std::fs::read_to_string(&jobs.jobs()[0].script).unwrap();
    assert!(
        !script.contains("s3cret-value-42"),
        "a secret was written into the script"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "apptainer exec --bind /tmp /images/sim.sif {} sim --host",
            exe().display()
        )),
        "{text}"
    );
    for name in [
        "API_SECRET",
        "SIM_GREETING",
        "PORT",
        "HOST",
        "AIBENCH_SERVICE",
    ] {
        assert!(
            text.contains(&format!("env APPTAINERENV_{name}\n")),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("image /images/sim.sif"), "{text}");
    jobs.stop(Duration::from_secs(30));
    run.assert_no_jobs_left();
}

#[test]
fn inside_an_allocation_services_are_steps_and_no_job_is_submitted() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("alloc");
    let out = Command::new("salloc")
        .args(["-N", "2", "--no-shell", "--time=00:10:00", "-J"])
        .arg(format!("{}-allocation", run.prefix))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alloc = stderr
        .split_whitespace()
        .last()
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("salloc: {stderr}"))
        .to_string();
    let before = run.active_jobs();

    let cli = SlurmCli::default();
    let allocation = Allocation::new(alloc.clone(), vec!["node1".into(), "node2".into()])
        .with_roles(&cli, Some("node2"), Some("node1"))
        .unwrap();
    let mut ctx = run.ctx();
    ctx.mode = Mode::Allocation(allocation);
    let (recipe, plan) = load(&sim_recipe("00:10:00", ""));
    let mut jobs = SlurmJobs::new(ctx);
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let job = &jobs.jobs()[0];
    // A step of the allocation, on the server node.
    let step = job.job_id.clone().unwrap();
    assert!(step.starts_with(&format!("{alloc}.")), "{step}");
    assert_eq!(job.node.as_deref(), Some("node2"));
    assert_eq!(run.active_jobs(), before, "a job was submitted");
    assert!(cli.steps_named(&alloc, &job.job_name).contains(&step));
    let name = job.job_name.clone();
    let data_dir = std::env::temp_dir().join(format!("aibench-{step}-llm-0"));
    assert!(data_dir.is_dir(), "{}", data_dir.display());
    jobs.stop(Duration::from_secs(30));
    // The step got SIGTERM, not SIGKILL: its rank stopped the service and cleaned up.
    assert!(!data_dir.exists(), "{}", data_dir.display());
    while !cli.steps_named(&alloc, &name).is_empty() {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(Command::new("scancel")
        .arg(&alloc)
        .status()
        .unwrap()
        .success());
    run.assert_no_jobs_left();
}

#[test]
fn vllm_over_ray_waits_for_every_node_then_serves() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("ray");
    // Stand-ins for `ray` and `vllm` (tests/data): the script's head/worker protocol is real,
    // the cluster and the server are not.
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let state = run.root().join("ray");
    let yaml = format!(
        r#"
name: slurm-ray
platform:
  kind: slurm
  slurm:
    time: "00:10:00"
    setup: ["export PATH={}:$$PATH RAY_STANDIN_DIR={}"]
services:
  - name: llm
    kind: vllm
    model: facebook/opt-125m
    resources: {{ nodes: 2 }}
    distributed: {{ tensor_parallel_size: 1, pipeline_parallel_size: 2, ray_port: 0 }}
"#,
        standin.display(),
        state.display()
    );
    let (recipe, plan) = load(&yaml);
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    rt().block_on(jobs.wait_ready(|| false, |_| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    let record = jobs.records().pop().unwrap();
    assert!(record.ports.contains_key("ray"), "{record:?}");
    // The worker joined the head before the server started, with the parallel sizes asked for.
    assert!(state.join("node_head").exists() && state.join("node_rank1").exists());
    let calls = std::fs::read_to_string(state.join("calls.log")).unwrap();
    let ray = format!("{}:{}", record.host, record.ports["ray"]);
    assert!(calls.contains("ray start --head --block"), "{calls}");
    assert!(
        calls.contains(&format!(
            "ray start --block --disable-usage-stats --address={ray}"
        )),
        "{calls}"
    );
    let vllm = std::fs::read_to_string(state.join("vllm.log")).unwrap();
    assert!(
        vllm.contains("--pipeline-parallel-size 2 --distributed-executor-backend ray"),
        "{vllm}"
    );
    assert!(vllm.contains(&format!("RAY_ADDRESS={ray}")), "{vllm}");
    let models = rt().block_on(get(
        &format!("{}:{}", record.host, record.port),
        "/v1/models",
    ));
    assert!(models.contains("facebook/opt-125m"), "{models}");
    jobs.stop(Duration::from_secs(30));
    run.assert_no_jobs_left();
}

#[test]
fn a_pending_job_shows_why_and_an_interrupt_cancels_it() {
    let Some(_turn) = slurm() else { return };
    let run = Run::new("pending");
    // Both nodes taken, so the service's job waits.
    let out = Command::new("salloc")
        .args(["-N", "2", "--no-shell", "--time=00:10:00", "-J"])
        .arg(format!("{}-holder", run.prefix))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (recipe, plan) = load(&sim_recipe("00:10:00", ""));
    let mut jobs = SlurmJobs::new(run.ctx());
    jobs.start(&plan, &recipe).unwrap();
    let interrupted = std::cell::Cell::new(false);
    let mut seen = Vec::new();
    let err = rt()
        .block_on(jobs.wait_ready(
            || interrupted.get(),
            |e| {
                if let SlurmEvent::State { description, .. } = &e {
                    // What the user reads while the job waits: Ctrl-C after seeing it.
                    if description == "pending: Resources" {
                        interrupted.set(true);
                    }
                    seen.push(description.clone());
                }
            },
        ))
        .unwrap_err();
    assert!(matches!(err, SlurmError::Interrupted { .. }), "{err}");
    assert!(seen.iter().any(|d| d == "pending: Resources"), "{seen:?}");
    jobs.stop(Duration::from_secs(30));
    let left: Vec<String> = run
        .active_jobs()
        .into_iter()
        .filter(|(_, name)| !name.ends_with("-holder"))
        .map(|(id, _)| id)
        .collect();
    assert!(left.is_empty(), "still queued: {left:?}");
    let holder: Vec<String> = run.active_jobs().into_iter().map(|(id, _)| id).collect();
    assert!(Command::new("scancel")
        .args(&holder)
        .status()
        .unwrap()
        .success());
    run.assert_no_jobs_left();
}
