//! From a planned service to the bash script that runs it on Slurm.
//!
//! The script comes from a template that users can read and replace: the built-in one
//! ([`BUILTIN_TEMPLATE`], `src/service.sbatch.tmpl`), or a file next to the recipe —
//! `<service>.sbatch.tmpl` for one service, `aibench.sbatch.tmpl` for all. The template is the
//! script with holes: `{{sbatch}}` (the `#SBATCH` directives), `{{variables}}`, `{{prepare}}`
//! (module loads and setup lines), `{{environment}}`, `{{container}}`, `{{command}}`,
//! `{{serve}}`, and the texts `{{name}}`, `{{run_id}}`, `{{layout}}`, `{{template}}`. Anything
//! else is left as written.
//!
//! Values reach the script in one of two ways. What aibench knows now (paths, names, resources)
//! is written as a literal. What the recipe wrote as a template (the command, the environment)
//! keeps its `${VAR}` references live for the job's shell: runtime variables (`${PORT}`,
//! `${HOST}`, ...) are set inside the job, and secrets (`${HF_TOKEN}`) come from the environment
//! that sbatch exports, so their values are never written into a script.

use std::path::{Path, PathBuf};

use aibench_plan::ServicePlan;
use aibench_recipe::{Container, ContainerRuntime, Platform, Service};

use crate::shell::{json_string, literal, template};

/// The template every service uses unless the recipe's folder holds its own.
pub const BUILTIN_TEMPLATE: &str = include_str!("service.sbatch.tmpl");

/// A script template and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptTemplate {
    pub text: String,
    /// A path, or `the built-in template`.
    pub source: String,
}

impl ScriptTemplate {
    pub fn builtin() -> Self {
        ScriptTemplate {
            text: BUILTIN_TEMPLATE.to_string(),
            source: "the built-in template of aibench".into(),
        }
    }

    /// The template for `service`: `<dir>/<service>.sbatch.tmpl`, else `<dir>/aibench.sbatch.tmpl`,
    /// for each folder in `dirs` in order, else the built-in one.
    pub fn find(dirs: &[PathBuf], service: &str) -> Result<Self, RenderError> {
        for name in [
            format!("{service}.sbatch.tmpl"),
            "aibench.sbatch.tmpl".into(),
        ] {
            for dir in dirs {
                let path = dir.join(&name);
                if path.is_file() {
                    let text = std::fs::read_to_string(&path).map_err(|e| RenderError {
                        service: service.into(),
                        message: format!("cannot read the template {}: {e}", path.display()),
                    })?;
                    return Ok(ScriptTemplate {
                        text,
                        source: path.display().to_string(),
                    });
                }
            }
        }
        Ok(ScriptTemplate::builtin())
    }
}

/// A script could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("service `{service}`: {message}")]
pub struct RenderError {
    pub service: String,
    pub message: String,
}

/// How the ranks of a service work together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One node, one process.
    Single,
    /// Every node runs the command with `AIBENCH_NODE_RANK` and `AIBENCH_HEAD_ADDRESS`; rank 0
    /// registers.
    Nodes,
    /// vLLM over Ray: the Ray head on rank 0, workers on the others, then `vllm serve`.
    Ray,
}

impl Layout {
    /// Ray for vLLM (or a command with `distributed` settings) on more than one node.
    pub fn of(service: &Service) -> Layout {
        if service.resources.nodes <= 1 {
            Layout::Single
        } else if service.kind.spec().multi_node == aibench_recipe::kinds::MultiNode::Ray
            || service.distributed.is_some()
        {
            Layout::Ray
        } else {
            Layout::Nodes
        }
    }
}

/// Where the job runs: a new job of its own, or a step of an allocation aibench runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `sbatch`: a job of its own.
    Job,
    /// `srun --jobid JOB --overlap -w NODES`: a step inside an existing allocation.
    Step { job_id: String, nodes: Vec<String> },
}

/// Everything a script is rendered from.
#[derive(Clone, Debug)]
pub struct ScriptInput<'a> {
    pub plan: &'a ServicePlan,
    pub service: &'a Service,
    pub platform: &'a Platform,
    /// 1 for the first replica.
    pub replica: u32,
    /// The replica's name: the service's, then `<service>-2`, ...
    pub name: String,
    pub job_name: String,
    pub run_dir: &'a Path,
    pub run_id: &'a str,
    pub recipe_name: &'a str,
    /// The aibench binary as the compute nodes see it (`${AIBENCH_EXE}`).
    pub exe: &'a Path,
    /// Where the script is written; ranks run it from there (the run directory is shared).
    pub script_path: PathBuf,
    pub placement: Placement,
    pub template: &'a ScriptTemplate,
}

/// A rendered script.
#[derive(Clone, Debug)]
pub struct Script {
    pub name: String,
    pub service: String,
    pub replica: u32,
    pub layout: Layout,
    pub nodes: u32,
    pub path: PathBuf,
    pub text: String,
    pub template_source: String,
}

/// The variables aibench sets for every command (see `aibench_recipe::interpolate::RUNTIME_VARS`).
const RUNTIME_VARS: [&str; 8] = [
    "PORT",
    "HOST",
    "AIBENCH_SERVICE",
    "AIBENCH_RUN_DIR",
    "AIBENCH_DATA_DIR",
    "AIBENCH_EXE",
    "AIBENCH_NODE_RANK",
    "AIBENCH_HEAD_ADDRESS",
];

/// Further variables the script sets for the service (besides Slurm's own `SLURM_*`).
const JOB_VARS: [&str; 4] = [
    "AIBENCH_NODES",
    "AIBENCH_GPUS",
    "AIBENCH_JOB_ID",
    "AIBENCH_LOG",
];

/// The container a service runs in: its own, else the platform's.
pub fn container_of<'a>(service: &'a Service, platform: &'a Platform) -> Option<&'a Container> {
    service
        .container
        .as_ref()
        .or(platform.container.as_ref())
        .filter(|c| c.runtime != ContainerRuntime::None)
}

/// Named ports of the service (name, fixed port or none: a free one), the Ray port included for
/// [`Layout::Ray`]. Port 0 means a free one.
fn named_ports(input: &ScriptInput) -> Vec<(String, Option<u16>)> {
    let mut ports: Vec<(String, Option<u16>)> = input
        .plan
        .named_ports
        .iter()
        .map(|(n, p)| (n.clone(), p.filter(|_| input.replica == 1)))
        .collect();
    if Layout::of(input.service) == Layout::Ray && !ports.iter().any(|(n, _)| n == "ray") {
        let port = input.service.distributed.as_ref().map(|d| d.ray_port);
        ports.push(("ray".into(), port));
    }
    for (_, p) in &mut ports {
        *p = p.filter(|&p| p != 0);
    }
    ports
}

/// Render the script of one service replica.
pub fn render(input: &ScriptInput) -> Result<Script, RenderError> {
    let fail = |message: String| RenderError {
        service: input.name.clone(),
        message,
    };
    for (what, path) in [
        ("the run directory", input.run_dir),
        ("the script path", input.script_path.as_path()),
    ] {
        let text = path.to_string_lossy();
        if text.contains(['"', '\\', '\n', '$', '`']) {
            return Err(fail(format!(
                "{what} `{text}` holds a character that cannot go into a job script safely (\", \\, $, ` or a newline); choose another `--out`"
            )));
        }
    }
    if input.plan.argv.is_empty() || input.plan.argv[0].trim().is_empty() {
        return Err(fail(
            "no command to run; give the service a `command`".into(),
        ));
    }
    let layout = Layout::of(input.service);
    let res = &input.service.resources;
    let nodes = res.nodes.max(1);
    let ports = named_ports(input);
    for (name, _) in &ports {
        if !crate::shell::is_name(name) {
            return Err(fail(format!(
                "port name `{name}` cannot name a variable (`AIBENCH_PORT_{}`); use letters, digits and `_`",
                name.to_ascii_uppercase()
            )));
        }
    }
    let container = container_of(input.service, input.platform);
    if let Some(c) = container {
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            return Err(fail(format!(
                "a `{}` container needs an `image`",
                runtime_name(c.runtime)
            )));
        }
    }

    let layout_text = match layout {
        Layout::Single => "on one node".to_string(),
        Layout::Nodes => format!("on {nodes} nodes, one rank per node"),
        Layout::Ray => format!("on {nodes} nodes over Ray"),
    };
    let values: Vec<(&str, String)> = vec![
        ("sbatch", sbatch_block(input, nodes)),
        ("name", input.name.clone()),
        ("run_id", input.run_id.to_string()),
        ("layout", layout_text),
        ("template", input.template.source.clone()),
        ("variables", variables_block(input, nodes, &ports)),
        ("prepare", prepare_block(input.platform)),
        ("environment", environment_block(input, container)),
        (
            "container",
            container_block(input, layout, container, &ports),
        ),
        ("command", command_block(input.plan)),
        (
            "serve",
            match layout {
                Layout::Ray => "aibench_serve_ray".into(),
                Layout::Single | Layout::Nodes => "aibench_serve_command".into(),
            },
        ),
    ];
    let text = fill(&input.template.text, &values)
        .map_err(|m| fail(format!("{m} in {}", input.template.source)))?;
    Ok(Script {
        name: input.name.clone(),
        service: input.plan.name.clone(),
        replica: input.replica,
        layout,
        nodes,
        path: input.script_path.clone(),
        text,
        template_source: input.template.source.clone(),
    })
}

/// Replace every `{{name}}` with its value; an unknown name is an error.
pub fn fill(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = after[..end].trim();
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_key {
            out.push_str("{{");
            rest = after;
            continue;
        }
        match values.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => out.push_str(v),
            None => {
                let known: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "unknown placeholder `{{{{{key}}}}}`; known: {}",
                    known.join(", ")
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn runtime_name(r: ContainerRuntime) -> &'static str {
    match r {
        ContainerRuntime::None => "none",
        ContainerRuntime::Apptainer => "apptainer",
        ContainerRuntime::Docker => "docker",
        ContainerRuntime::Podman => "podman",
    }
}

/// An `#SBATCH` value: quoted when it holds spaces.
fn directive(option: &str, value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("#SBATCH {option}=\"{value}\"")
    } else {
        format!("#SBATCH {option}={value}")
    }
}

fn sbatch_block(input: &ScriptInput, nodes: u32) -> String {
    if let Placement::Step { job_id, nodes } = &input.placement {
        return format!(
            "# Runs as an srun step inside the allocation {job_id} (nodes {}), not as a job of its own.",
            nodes.join(",")
        );
    }
    let res = &input.service.resources;
    let slurm = input.platform.slurm.clone().unwrap_or_default();
    let log = input
        .run_dir
        .join("logs")
        .join(format!("{}.%j.log", input.name));
    let log = log.to_string_lossy();
    let mut lines = vec![
        directive("--job-name", &input.job_name),
        directive("--output", &log),
        directive("--error", &log),
        format!("#SBATCH --nodes={nodes}"),
        format!("#SBATCH --ntasks={nodes}"),
        "#SBATCH --ntasks-per-node=1".to_string(),
    ];
    if let Some(c) = res.cpus {
        lines.push(format!("#SBATCH --cpus-per-task={c}"));
    }
    if let Some(m) = res.memory {
        lines.push(format!("#SBATCH --mem={}M", m.mebibytes_ceil()));
    }
    if res.gpus > 0 {
        lines.push(format!("#SBATCH --gres=gpu:{}", res.gpus));
    }
    if let Some(t) = slurm.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    for (option, value) in [
        ("--account", &slurm.account),
        ("--partition", &slurm.partition),
        ("--qos", &slurm.qos),
        ("--constraint", &slurm.constraint),
        ("--reservation", &slurm.reservation),
    ] {
        if let Some(v) = value {
            lines.push(directive(option, v));
        }
    }
    if slurm.exclusive {
        lines.push("#SBATCH --exclusive".into());
    }
    lines.push("#SBATCH --export=ALL".into());
    for extra in &slurm.extra_args {
        lines.push(format!("#SBATCH {extra}"));
    }
    lines.join("\n")
}

fn variables_block(input: &ScriptInput, nodes: u32, ports: &[(String, Option<u16>)]) -> String {
    let plan = input.plan;
    let exported = [
        (
            "AIBENCH_RUN_DIR",
            input.run_dir.to_string_lossy().into_owned(),
        ),
        ("AIBENCH_SERVICE", input.name.clone()),
        ("AIBENCH_EXE", input.exe.to_string_lossy().into_owned()),
        (
            "AIBENCH_SCRIPT",
            input.script_path.to_string_lossy().into_owned(),
        ),
        ("AIBENCH_NODES", nodes.to_string()),
        ("AIBENCH_GPUS", input.service.resources.gpus.to_string()),
    ];
    let mut lines: Vec<String> = exported
        .iter()
        .map(|(k, v)| format!("export {k}={}", literal(v)))
        .collect();
    let names: Vec<&str> = ports.iter().map(|(n, _)| n.as_str()).collect();
    lines.push(format!(
        "export AIBENCH_NAMED_PORTS={}   # each published as AIBENCH_PORT_<NAME>",
        literal(&names.join(" "))
    ));
    let url = plan.health.check == aibench_recipe::HealthCheck::Http
        || plan.metrics_path.is_some()
        || plan.kind.spec().llm;
    lines.push(format!(
        "export AIBENCH_URL_SCHEME={}",
        if url { "http" } else { "''" }
    ));
    let in_allocation = matches!(input.placement, Placement::Step { .. });
    lines.push(format!(
        "export AIBENCH_IN_ALLOCATION={}",
        u8::from(in_allocation)
    ));
    lines.push(
        "export AIBENCH_LOG=\"${AIBENCH_LOG:-${AIBENCH_RUN_DIR}/logs/${AIBENCH_SERVICE}.${SLURM_JOB_ID}.log}\""
            .into(),
    );
    if let Placement::Step { job_id, .. } = &input.placement {
        lines.push(format!("AIBENCH_ALLOCATION={}", literal(job_id)));
        lines.push(format!("AIBENCH_STEP_NAME={}", literal(&input.job_name)));
    }
    match plan.port {
        Some(p) if p != 0 && input.replica == 1 => lines.push(format!("AIBENCH_FIXED_PORT={p}")),
        _ => {}
    }
    for (name, port) in ports {
        if let Some(p) = port {
            lines.push(format!(
                "AIBENCH_FIXED_PORT_{}={p}",
                name.to_ascii_uppercase()
            ));
        }
    }
    // The static part of the discovery record; the job adds where it runs.
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map(json_string)
            .unwrap_or_else(|| "null".into())
    };
    let record = [
        format!("\"name\": {}", json_string(&input.name)),
        format!("\"service\": {}", json_string(&plan.name)),
        format!("\"replica\": {}", input.replica),
        format!("\"kind\": {}", json_string(plan.kind.name())),
        "\"platform\": \"slurm\"".into(),
        "\"pid\": null".into(),
        "\"pgid\": null".into(),
        format!("\"model\": {}", opt(&plan.model)),
        format!("\"metrics_path\": {}", opt(&plan.metrics_path)),
        format!("\"health\": {}", json_string(plan.health.check.name())),
        format!("\"health_path\": {}", opt(&plan.health.path)),
        format!(
            "\"run_dir\": {}",
            json_string(&input.run_dir.to_string_lossy())
        ),
        format!("\"recipe\": {}", json_string(input.recipe_name)),
    ];
    lines.push(format!("AIBENCH_RECORD={}", literal(&record.join(", "))));
    let mut srun: Vec<String> = Vec::new();
    if let Placement::Step {
        job_id,
        nodes: list,
    } = &input.placement
    {
        srun.push(format!("--jobid={job_id}"));
        srun.push("--overlap".into());
        srun.push(format!("--job-name={}", input.job_name));
        srun.push(format!("--nodelist={}", list.join(",")));
    }
    srun.push(format!("--nodes={nodes}"));
    srun.push(format!("--ntasks={nodes}"));
    srun.push("--ntasks-per-node=1".into());
    if let Some(c) = input.service.resources.cpus {
        // Since Slurm 22.05 a step no longer inherits the job's --cpus-per-task.
        srun.push(format!("--cpus-per-task={c}"));
    }
    if in_allocation && input.service.resources.gpus > 0 {
        srun.push(format!("--gres=gpu:{}", input.service.resources.gpus));
    }
    srun.push("--kill-on-bad-exit=1".into());
    if nodes > 1 {
        srun.push("--label".into());
    }
    lines.push(format!(
        "AIBENCH_SRUN_ARGS=({})",
        srun.iter()
            .map(|a| literal(a))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    lines.join("\n")
}

fn prepare_block(platform: &Platform) -> String {
    let Some(slurm) = &platform.slurm else {
        return "  # (none in the recipe)".into();
    };
    let mut lines = Vec::new();
    for m in &slurm.modules {
        lines.push(format!("  module load {} || return", literal(m)));
    }
    for s in &slurm.setup {
        // Setup lines are shell, as the user wrote them.
        lines.push(format!("  {s}"));
    }
    if lines.is_empty() {
        return "  # (none in the recipe)".into();
    }
    lines.join("\n")
}

/// The names of every variable a command may see: runtime ones, named ports, the service's and
/// the container's environment.
fn env_names(
    input: &ScriptInput,
    container: Option<&Container>,
    ports: &[(String, Option<u16>)],
) -> Vec<String> {
    let mut names: Vec<String> = RUNTIME_VARS.iter().map(|s| s.to_string()).collect();
    for (n, _) in ports {
        names.push(format!("AIBENCH_PORT_{}", n.to_ascii_uppercase()));
    }
    for (k, _) in &input.plan.env {
        names.push(k.clone());
    }
    if let Some(c) = container {
        names.extend(c.env.keys().cloned());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn environment_block(input: &ScriptInput, container: Option<&Container>) -> String {
    let mut lines = Vec::new();
    for (k, v) in &input.plan.env {
        lines.push(format!("  export {k}={}", template(v)));
    }
    if let Some(c) = container {
        for (k, v) in &c.env {
            lines.push(format!("  export {k}={}", template(&v.0)));
        }
    }
    if lines.is_empty() {
        return "  # (none in the recipe)".into();
    }
    lines.join("\n")
}

fn container_block(
    input: &ScriptInput,
    layout: Layout,
    container: Option<&Container>,
    ports: &[(String, Option<u16>)],
) -> String {
    let Some(c) = container else {
        return "aibench_container() {\n  \"$@\"\n}\naibench_container_stop() { :; }".into();
    };
    let image = literal(c.image.as_deref().unwrap_or_default());
    let gpu = c.gpu.unwrap_or(input.service.resources.gpus > 0);
    let names = env_names(input, Some(c), ports);
    let mut out = String::new();
    match c.runtime {
        ContainerRuntime::None => unreachable!("filtered by container_of"),
        ContainerRuntime::Apptainer => {
            out.push_str("aibench_container() {\n");
            out.push_str("  # The environment goes in through APPTAINERENV_<NAME>, so values stay off the command line.\n");
            out.push_str("  local v\n");
            out.push_str(&format!(
                "  for v in {}; do\n    [ -n \"${{!v+x}}\" ] && export \"APPTAINERENV_${{v}}=${{!v}}\"\n  done\n",
                names.join(" ")
            ));
            let mut args = vec!["apptainer exec".to_string()];
            if gpu {
                args.push("--nv".into());
            }
            for b in &c.binds {
                args.push(format!("--bind {}", literal(b)));
            }
            for o in &c.options {
                args.push(o.clone());
            }
            args.push(format!("{image} \"$@\""));
            out.push_str("  ");
            out.push_str(&args.join(" \\\n    "));
            out.push_str("\n}\naibench_container_stop() { :; }");
        }
        ContainerRuntime::Docker | ContainerRuntime::Podman => {
            let tool = runtime_name(c.runtime);
            out.push_str("aibench_container() {\n");
            out.push_str("  # `-e NAME` passes the value from this shell's environment, never on the command line.\n");
            let mut args = vec![
                format!("{tool} run --rm --init --network host"),
                "--name \"aibench-${SLURM_JOB_ID}-${AIBENCH_SERVICE}-${AIBENCH_NODE_RANK}-${BASHPID}\"".into(),
            ];
            if gpu {
                args.push(
                    if c.runtime == ContainerRuntime::Docker {
                        "--gpus all --ipc host"
                    } else {
                        "--device nvidia.com/gpu=all --ipc host"
                    }
                    .into(),
                );
            }
            args.push("--volume \"${AIBENCH_DATA_DIR}:${AIBENCH_DATA_DIR}\"".into());
            if layout == Layout::Ray {
                // The server finds the Ray cluster through /tmp/ray, shared by the containers.
                args.push("--volume /tmp/ray:/tmp/ray".into());
            }
            for b in &c.binds {
                let bind = if b.contains(':') {
                    b.clone()
                } else {
                    format!("{b}:{b}")
                };
                args.push(format!("--volume {}", literal(&bind)));
            }
            args.push(
                names
                    .iter()
                    .map(|n| format!("-e {n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            for o in &c.options {
                args.push(o.clone());
            }
            args.push(format!("{image} \"$@\""));
            out.push_str("  ");
            out.push_str(&args.join(" \\\n    "));
            out.push_str("\n}\n");
            out.push_str(&format!(
                "aibench_container_stop() {{\n  {tool} ps -q --filter \"name=^aibench-${{SLURM_JOB_ID}}-${{AIBENCH_SERVICE}}-\" | xargs -r {tool} stop --time 20 >/dev/null\n}}"
            ));
        }
    }
    out
}

fn command_block(plan: &ServicePlan) -> String {
    let word = |s: &str| {
        if s.contains('$') {
            template(s)
        } else {
            literal(s)
        }
    };
    let mut lines = Vec::new();
    if !plan.program_dirs.is_empty() {
        lines.push(
            "  # The programs may live off PATH: look in these folders too, the highest version first."
                .to_string(),
        );
        lines.push("  local d".into());
        for dirs in &plan.program_dirs {
            // A `*` stays a glob; everything else is literal.
            let pattern = dirs.split('*').map(literal).collect::<Vec<_>>().join("*");
            lines.push(format!(
                "  for d in $(ls -d {pattern} 2>/dev/null | sort -V -r); do PATH=\"$PATH:$d\"; done"
            ));
        }
    }
    let mut as_user = "";
    if let Some(user) = &plan.run_as {
        let u = literal(user);
        lines.push(format!(
            "  # `{}` refuses to run as root: as root, its commands run as `{user}`, who owns the data directory.",
            plan.kind
        ));
        lines.push("  local as_user=()".into());
        lines.push("  if [ \"$(id -u)\" = 0 ]; then".into());
        lines.push(format!(
            "    if ! id -u {u} >/dev/null 2>&1; then\n      aibench_log \"running as root, and there is no system user {user} to run {} as: create it (useradd --system --user-group {user}; Debian's postgresql package does)\"\n      return 1\n    fi",
            plan.kind
        ));
        lines.push(format!("    chown -R {u}: \"$AIBENCH_DATA_DIR\" || return"));
        lines.push(format!("    as_user=(runuser -u {u} --)"));
        lines.push("  fi".into());
        as_user = "\"${as_user[@]}\" ";
    }
    for step in &plan.setup {
        let words: Vec<String> = step.iter().map(|s| word(s)).collect();
        lines.push(format!(
            "  aibench_container {as_user}{} || return",
            words.join(" ")
        ));
    }
    if plan.shell {
        lines.push(format!(
            "  aibench_container {as_user}sh -c {}",
            template(&plan.argv.join(" "))
        ));
    } else {
        let words: Vec<String> = plan.argv.iter().map(|s| word(s)).collect();
        lines.push(format!("  aibench_container {as_user}{}", words.join(" ")));
    }
    lines.join("\n")
}

/// Variables the service's command and environment reference that neither aibench nor the
/// environment of this process provides (the job gets this environment through `--export=ALL`).
pub fn missing_variables(
    plan: &ServicePlan,
    container: Option<&Container>,
    env: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut texts: Vec<&str> = plan.argv.iter().map(String::as_str).collect();
    texts.extend(plan.env.iter().map(|(_, v)| v.as_str()));
    for step in &plan.setup {
        texts.extend(step.iter().map(String::as_str));
    }
    if let Some(c) = container {
        texts.extend(c.env.values().map(|t| t.0.as_str()));
    }
    let own: Vec<&str> = plan.env.iter().map(|(k, _)| k.as_str()).collect();
    let mut missing = Vec::new();
    for t in texts {
        for (name, has_default) in crate::shell::references(t) {
            let provided = has_default
                || RUNTIME_VARS.contains(&name.as_str())
                || JOB_VARS.contains(&name.as_str())
                || name.starts_with("AIBENCH_PORT_")
                || name.starts_with("SLURM")
                || own.contains(&name.as_str())
                || env(&name);
            if !provided && !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    missing
}
