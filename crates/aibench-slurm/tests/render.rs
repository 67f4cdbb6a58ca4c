//! Rendered scripts against committed expected files (Apptainer, GPUs and Ray are absent on the
//! test machines, so what they would run is checked here as text).
//!
//! After an intended change, regenerate the expected files and review the diff:
//!
//!     AIBENCH_BLESS=1 cargo test -p aibench-slurm --test render

use std::path::{Path, PathBuf};

use aibench_slurm::render::{render, Placement, ScriptInput, ScriptTemplate};

fn recipe(yaml: &str) -> (aibench_recipe::Recipe, aibench_plan::Plan) {
    let env = |name: &str| match name {
        "SCRATCH" => Some("/scratch/u100".to_string()),
        "HF_TOKEN" => Some("hf_not_a_real_token".to_string()),
        _ => None,
    };
    let loaded = aibench_recipe::load_str("recipe.yaml", yaml, &env)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let plan = aibench_plan::plan(&loaded);
    (loaded.recipe, plan)
}

fn rendered(yaml: &str, placement: Placement) -> String {
    let (recipe, plan) = recipe(yaml);
    let sp = &plan.trials[0].services[0];
    let service = &recipe.services[0];
    let template = ScriptTemplate::builtin();
    let input = ScriptInput {
        plan: sp,
        service,
        platform: &recipe.platform,
        replica: 1,
        name: sp.name.clone(),
        job_name: format!("aibench-demo-{}", sp.name),
        run_dir: Path::new("/scratch/u100/results/demo"),
        run_id: "demo",
        recipe_name: &recipe.name,
        exe: Path::new("/opt/aibench/bin/aibench"),
        script_path: PathBuf::from(format!(
            "/scratch/u100/results/demo/slurm/{}.sbatch",
            sp.name
        )),
        placement,
        template: &template,
    };
    render(&input).unwrap().text
}

fn check(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("AIBENCH_BLESS").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != text {
        let diff: Vec<String> = expected
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  expected: {a}\n  rendered: {b}", i + 1))
            .collect();
        panic!(
            "{name} differs from {}\n{}\n(lines: expected {}, rendered {})\nIf the change is intended: AIBENCH_BLESS=1 cargo test -p aibench-slurm --test render",
            path.display(),
            diff.join("\n"),
            expected.lines().count(),
            text.lines().count()
        );
    }
}

/// Every rendered script must at least be valid bash.
fn assert_bash_syntax(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.sh");
    std::fs::write(&p, text).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const RAY: &str = r#"
name: llama70b
platform:
  kind: slurm
  slurm:
    account: p200981
    partition: gpu
    qos: default
    time: 02:00:00
    exclusive: true
    constraint: a100
    reservation: bench
    modules: [env/release/2023.1, Apptainer]
    setup: ["export HF_HOME=${SCRATCH}/hf"]
    extra_args: [--mail-type=END]
  container:
    runtime: apptainer
    image: /project/containers/vllm-openai_v0.6.3.sif
    binds: [/project/models:/models:ro, /scratch]
    env: { VLLM_LOGGING_LEVEL: INFO }
services:
  - name: llm
    kind: vllm
    model: /models/Llama-3.1-70B-Instruct
    env: { HF_TOKEN: "${HF_TOKEN}" }
    resources: { nodes: 2, gpus: 4, cpus: 64, memory: 480GiB }
    distributed: { tensor_parallel_size: 4, pipeline_parallel_size: 2 }
    args: { max-model-len: 8192 }
"#;

#[test]
fn apptainer_gpu_ray_on_two_nodes() {
    let text = rendered(RAY, Placement::Job);
    assert_bash_syntax(&text);
    // A secret stays a reference; its value is never in the script.
    assert!(text.contains("export HF_TOKEN=\"${HF_TOKEN}\""));
    check("apptainer-gpu-ray.sbatch", &text);
}

#[test]
fn docker_gpu_single_node() {
    let text = rendered(
        r#"
name: vllm-docker
platform:
  kind: slurm
  slurm: { partition: gpu, time: 30m }
  container:
    runtime: docker
    image: vllm/vllm-openai:v0.6.3
    binds: [/data/models]
    options: [--shm-size=16g]
services:
  - name: llm
    kind: vllm
    model: facebook/opt-125m
    port: 8000
    resources: { gpus: 1, cpus: 8, memory: 32GiB }
"#,
        Placement::Job,
    );
    assert_bash_syntax(&text);
    check("docker-gpu-single.sbatch", &text);
}

#[test]
fn no_container_sim() {
    let text = rendered(
        r#"
name: quickstart
platform:
  kind: slurm
  slurm: { time: 00:10:00 }
services:
  - name: llm
    kind: sim
    model: sim-7b
    args: { max-batch: 8 }
"#,
        Placement::Job,
    );
    assert_bash_syntax(&text);
    check("none-sim.sbatch", &text);
}

#[test]
fn podman_command_on_two_nodes_inside_an_allocation() {
    let text = rendered(
        r#"
name: nodes
platform:
  kind: slurm
  slurm: { time: 00:10:00 }
  container: { runtime: podman, image: docker.io/library/python:3.12 }
services:
  - name: spread
    kind: command
    command: "python3 -m http.server ${PORT} --bind ${HOST} # rank ${AIBENCH_NODE_RANK} of head ${AIBENCH_HEAD_ADDRESS}; cost $$5"
    ports: { control: 7000 }
    resources: { nodes: 2 }
"#,
        Placement::Step {
            job_id: "4242".into(),
            nodes: vec!["node1".into(), "node2".into()],
        },
    );
    assert_bash_syntax(&text);
    check("podman-nodes-allocation.sbatch", &text);
}

const POSTGRES: &str = r#"
name: pg
platform:
  kind: slurm
  slurm: { time: 00:10:00 }
services:
  - name: db
    kind: postgres
"#;

#[test]
fn postgres_runs_as_its_own_user_under_root_and_is_found_off_path() {
    let text = rendered(POSTGRES, Placement::Job);
    assert_bash_syntax(&text);
    check("none-postgres.sbatch", &text);
}

/// The rendered command of a `postgres` service, run for real as the job would run it: as
/// root it must hand the data directory to the `postgres` user and start the server as that
/// user, finding `initdb` and `postgres` where Debian keeps them.
#[test]
fn the_rendered_postgres_command_starts_a_server() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let installed = std::fs::read_dir("/usr/lib/postgresql").is_ok();
    if !root || !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with PostgreSQL installed (scripts/test.sh)"
        );
        eprintln!("SKIPPED: needs root and the Debian package postgresql");
        return;
    }
    let text = rendered(POSTGRES, Placement::Job);
    let start = text.find("aibench_command() {").unwrap();
    let end = start + text[start..].find("\n}\n").unwrap() + 3;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "aibench_log() {{ echo \"$*\" >&2; }}\naibench_container() {{ \"$@\"; }}\n{}\nexec 2>&1\naibench_command",
        &text[start..end]
    );
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        // Only what a job would have: no PostgreSQL folder on PATH.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AIBENCH_DATA_DIR", &data)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut up = false;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signals only the group this test started.
    unsafe {
        libc::killpg(pgid, libc::SIGINT);
    }
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
    let output = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(up, "the server did not come up:\n{output}");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data.join("pgdata")).unwrap().uid();
    assert_ne!(owner, 0, "the data belong to the postgres user");
}

fn sim_recipe() -> (aibench_recipe::Recipe, aibench_plan::Plan) {
    recipe(
        r#"
name: quickstart
platform:
  kind: slurm
  slurm: { time: 00:10:00 }
services:
  - name: llm
    kind: sim
    replicas: 2
"#,
    )
}

#[test]
fn dry_run_writes_every_script_and_says_how_it_would_submit() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, plan) = sim_recipe();
    let ctx = aibench_slurm::SlurmContext::new(dir.path(), "demo", "quickstart", "/opt/aibench");
    let subs = aibench_slurm::dry_run(ctx, &plan.trials[0], &recipe).unwrap();
    let names: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["llm", "llm-2"]);
    for s in &subs {
        assert!(s.script.is_file());
        assert_eq!(
            s.command[1..],
            ["--parsable".to_string(), s.script.display().to_string()]
        );
        assert!(s.command_line().starts_with("sbatch --parsable "));
        let text = std::fs::read_to_string(&s.script).unwrap();
        assert!(text.contains(&format!("#SBATCH --job-name=aibench-demo-{}", s.name)));
    }
}

#[test]
fn dry_run_inside_an_allocation_places_replicas_on_server_nodes_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, plan) = sim_recipe();
    let mut ctx =
        aibench_slurm::SlurmContext::new(dir.path(), "demo", "quickstart", "/opt/aibench");
    ctx.mode = aibench_slurm::Mode::Allocation(aibench_slurm::Allocation::new(
        "77",
        vec!["n1".into(), "n2".into(), "n3".into()],
    ));
    let subs = aibench_slurm::dry_run(ctx, &plan.trials[0], &recipe).unwrap();
    assert_eq!(
        subs[0].command,
        ["bash".to_string(), subs[0].script.display().to_string()]
    );
    assert!(subs[0].command_line().starts_with("AIBENCH_LOG="));
    let nodes: Vec<String> = subs
        .iter()
        .map(|s| {
            let text = std::fs::read_to_string(&s.script).unwrap();
            assert!(text.contains("--jobid=77 --overlap"));
            text.split("--nodelist=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(nodes, ["n1", "n2"]);
}

#[test]
fn a_template_next_to_the_recipe_replaces_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("llm.sbatch.tmpl"),
        "#!/bin/bash\n{{sbatch}}\n# mine: {{name}} {{ layout }}\n{{command}}\n",
    )
    .unwrap();
    let t = ScriptTemplate::find(&[dir.path().to_path_buf()], "llm").unwrap();
    assert!(t.source.ends_with("llm.sbatch.tmpl"));
    assert_eq!(
        ScriptTemplate::find(&[dir.path().to_path_buf()], "db").unwrap(),
        ScriptTemplate::builtin()
    );
    let (recipe, plan) = sim_recipe();
    let mut ctx = aibench_slurm::SlurmContext::new(
        dir.path().join("run"),
        "demo",
        "quickstart",
        "/opt/aibench",
    );
    ctx.template_dirs = vec![dir.path().to_path_buf()];
    let subs = aibench_slurm::dry_run(ctx.clone(), &plan.trials[0], &recipe).unwrap();
    let text = std::fs::read_to_string(&subs[0].script).unwrap();
    assert!(text.contains("# mine: llm on one node\n"), "{text}");
    assert!(
        text.contains("aibench_container \"${AIBENCH_EXE}\" sim"),
        "{text}"
    );

    std::fs::write(
        dir.path().join("aibench.sbatch.tmpl"),
        "{{sbatch}} {{nope}}",
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("llm.sbatch.tmpl")).unwrap();
    let err = aibench_slurm::dry_run(ctx, &plan.trials[0], &recipe)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown placeholder `{{nope}}`"), "{err}");
    assert!(err.contains("aibench.sbatch.tmpl"), "{err}");
}

#[test]
fn a_secret_missing_from_the_environment_stops_the_submission() {
    let env = |name: &str| (name == "AIBENCH_TEST_UNSET_TOKEN").then(|| "x".to_string());
    let loaded = aibench_recipe::load_str(
        "recipe.yaml",
        r#"
name: secret
platform: { kind: slurm, slurm: { time: 00:10:00 } }
services:
  - name: llm
    kind: sim
    env: { TOKEN: "${AIBENCH_TEST_UNSET_TOKEN}", OTHER: "${AIBENCH_TEST_UNSET_OTHER:-fine}" }
"#,
        &env,
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let plan = aibench_plan::plan(&loaded);
    let dir = tempfile::tempdir().unwrap();
    let ctx = aibench_slurm::SlurmContext::new(dir.path(), "demo", "secret", "/opt/aibench");
    let mut jobs = aibench_slurm::SlurmJobs::new(ctx);
    let err = jobs
        .start(&plan.trials[0].services[0], &loaded.recipe)
        .unwrap_err();
    assert!(
        matches!(&err, aibench_slurm::SlurmError::MissingVariables { names, .. } if names == &["AIBENCH_TEST_UNSET_TOKEN".to_string()]),
        "{err}"
    );
    assert!(err.to_string().contains("--export=ALL"), "{err}");
    assert!(jobs.jobs().is_empty());
}
