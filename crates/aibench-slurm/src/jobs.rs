//! The jobs of a run: start them, wait until each has registered and passes its health check,
//! watch them while the load runs, and cancel every one of them on every exit path.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aibench_plan::{ServicePlan, TrialPlan};
use aibench_platform::health::{probe, Check};
use aibench_platform::local::last_lines;
use aibench_platform::registry::write_atomic;
use aibench_platform::{Registry, ServiceRecord};
use aibench_recipe::{Recipe, Service};

use crate::cli::SlurmCli;
use crate::render::{self, Layout, Placement, Script, ScriptInput, ScriptTemplate};
use crate::state::{JobState, JobStatus};
use crate::track::Tracker;
use crate::SlurmError;

/// How services reach the cluster.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Each service replica is a job of its own (`sbatch`).
    Submit,
    /// aibench runs inside an allocation (`salloc`, or an sbatch job of aibench): services are
    /// `srun --overlap` steps on its nodes and no job is submitted.
    Allocation(Allocation),
}

impl Mode {
    /// Steps inside the allocation this process runs in (`SLURM_JOB_ID` set: under `salloc`,
    /// or aibench itself in an sbatch job), with nodes assigned to roles when the lists are
    /// given; jobs of their own otherwise.
    pub fn detect(
        cli: &SlurmCli,
        server_nodes: Option<&str>,
        client_nodes: Option<&str>,
    ) -> Result<Mode, SlurmError> {
        match Allocation::from_env(cli)? {
            Some(a) => Ok(Mode::Allocation(a.with_roles(
                cli,
                server_nodes,
                client_nodes,
            )?)),
            None => Ok(Mode::Submit),
        }
    }
}

/// The allocation aibench runs in, and which of its nodes serve and which drive load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub job_id: String,
    /// Every node of the allocation, in Slurm's order.
    pub nodes: Vec<String>,
    /// Nodes services are placed on, in turn (default: all).
    pub server_nodes: Vec<String>,
    /// Nodes load clients run on (default: all). aibench-slurm only records them; the load
    /// stage places clients.
    pub client_nodes: Vec<String>,
    next: usize,
}

impl Allocation {
    pub fn new(job_id: impl Into<String>, nodes: Vec<String>) -> Self {
        Allocation {
            job_id: job_id.into(),
            server_nodes: nodes.clone(),
            client_nodes: nodes.clone(),
            nodes,
            next: 0,
        }
    }

    /// The allocation this process runs in: `SLURM_JOB_ID` and `SLURM_JOB_NODELIST` (expanded
    /// with `scontrol show hostnames`). `None` outside of one.
    pub fn from_env(cli: &SlurmCli) -> Result<Option<Allocation>, SlurmError> {
        let Ok(job_id) = std::env::var("SLURM_JOB_ID") else {
            return Ok(None);
        };
        let list = std::env::var("SLURM_JOB_NODELIST")
            .or_else(|_| std::env::var("SLURM_NODELIST"))
            .unwrap_or_default();
        let nodes = if list.is_empty() {
            Vec::new()
        } else {
            cli.hostnames(&list)?
        };
        if nodes.is_empty() {
            return Err(SlurmError::Command {
                command: "scontrol show hostnames".into(),
                message: format!(
                    "SLURM_JOB_ID={job_id} is set but the allocation's node list is not (SLURM_JOB_NODELIST)"
                ),
            });
        }
        Ok(Some(Allocation::new(job_id, nodes)))
    }

    /// Assign roles explicitly. Each list holds node names or Slurm host lists (`node[1-4]`)
    /// and must name nodes of the allocation; `None` keeps the default (all nodes).
    pub fn with_roles(
        mut self,
        cli: &SlurmCli,
        server_nodes: Option<&str>,
        client_nodes: Option<&str>,
    ) -> Result<Self, SlurmError> {
        for (list, slot) in [
            (server_nodes, &mut self.server_nodes),
            (client_nodes, &mut self.client_nodes),
        ] {
            let Some(list) = list else { continue };
            let names = cli.hostnames(list)?;
            if let Some(stranger) = names.iter().find(|n| !self.nodes.contains(n)) {
                return Err(SlurmError::Placement {
                    name: "allocation".into(),
                    message: format!(
                        "node `{stranger}` is not part of the allocation {} ({})",
                        self.job_id,
                        self.nodes.join(",")
                    ),
                });
            }
            if names.is_empty() {
                return Err(SlurmError::Placement {
                    name: "allocation".into(),
                    message: format!("the node list `{list}` names no node"),
                });
            }
            *slot = names;
        }
        Ok(self)
    }

    /// The next `count` server nodes, in turn; services share nodes when there are fewer.
    fn place(&mut self, name: &str, count: u32) -> Result<Vec<String>, SlurmError> {
        let count = count.max(1) as usize;
        if count > self.server_nodes.len() {
            return Err(SlurmError::Placement {
                name: name.into(),
                message: format!(
                    "it needs {count} nodes but the allocation {} has {} server node(s) ({}); ask salloc for more with `-N {count}`",
                    self.job_id,
                    self.server_nodes.len(),
                    self.server_nodes.join(",")
                ),
            });
        }
        let n = self.server_nodes.len();
        let start = self.next % n;
        let mut chosen: Vec<String> = (0..count)
            .map(|i| self.server_nodes[(start + i) % n].clone())
            .collect();
        self.next = (start + count) % n;
        // srun's node list is a set; keep Slurm's order so rank 0 is the first node.
        chosen.sort_by_key(|c| self.nodes.iter().position(|n| n == c));
        Ok(chosen)
    }
}

/// What every job of a run shares.
#[derive(Clone, Debug)]
pub struct SlurmContext {
    /// The run directory; absolute, and shared with the compute nodes.
    pub run_dir: PathBuf,
    pub run_id: String,
    pub recipe_name: String,
    /// The aibench binary as the compute nodes see it (`${AIBENCH_EXE}`, `kind: sim`).
    pub exe: PathBuf,
    /// Folders searched for `<service>.sbatch.tmpl` and `aibench.sbatch.tmpl` (the recipe's).
    pub template_dirs: Vec<PathBuf>,
    /// Where scripts are written (default `<run>/slurm`).
    pub script_dir: PathBuf,
    /// Job names are `<prefix>-<service>` (default `aibench-<run id>`).
    pub job_name_prefix: String,
    pub mode: Mode,
    /// How often Slurm is asked about the jobs (one `squeue` for all of them).
    pub poll_interval: Duration,
    /// Record services in the user-level registry too, so `aibench services` lists them.
    pub user_registry: Option<Registry>,
    pub cli: SlurmCli,
}

impl SlurmContext {
    /// Defaults for a run directory: jobs submitted with sbatch, Slurm asked every 2 s.
    pub fn new(
        run_dir: impl Into<PathBuf>,
        run_id: impl Into<String>,
        recipe_name: impl Into<String>,
        exe: impl Into<PathBuf>,
    ) -> Self {
        let run_dir = absolute(run_dir.into());
        let run_id = run_id.into();
        SlurmContext {
            script_dir: run_dir.join("slurm"),
            job_name_prefix: format!("aibench-{run_id}"),
            run_dir,
            run_id,
            recipe_name: recipe_name.into(),
            exe: exe.into(),
            template_dirs: Vec::new(),
            mode: Mode::Submit,
            poll_interval: Duration::from_secs(2),
            user_registry: None,
            cli: SlurmCli::from_env(),
        }
    }

    fn job_name(&self, name: &str) -> String {
        format!("{}-{name}", self.job_name_prefix)
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// What happened to the jobs, for the terminal and `logs/events.jsonl`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SlurmEvent {
    /// The state of a job changed (`pending: Resources`, `running on node1`).
    State {
        name: String,
        job_id: String,
        state: JobState,
        description: String,
    },
    /// The job wrote its discovery record: the service runs there.
    Registered {
        name: String,
        job_id: String,
        node: String,
        address: String,
        log: String,
    },
    Healthy {
        name: String,
        job_id: String,
        after_s: f64,
    },
}

/// How a service would be started, for `--dry-run`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Submission {
    pub name: String,
    pub script: PathBuf,
    pub layout: Layout,
    pub nodes: u32,
    /// The command that starts it.
    pub command: Vec<String>,
    /// Environment set for that command besides aibench's own.
    pub env: Vec<(String, String)>,
    pub template: String,
}

impl Submission {
    /// The command as one shell line.
    pub fn command_line(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::shell::literal(v)))
            .collect();
        words.extend(self.command.iter().map(|w| crate::shell::literal(w)));
        words.join(" ")
    }
}

/// One service replica on Slurm.
#[derive(Debug)]
pub struct SlurmJob {
    pub name: String,
    pub service: String,
    pub replica: u32,
    /// The Slurm job (`123`), or the step inside an allocation (`123.4`) once it registered.
    pub job_id: Option<String>,
    pub job_name: String,
    pub script: PathBuf,
    pub log: PathBuf,
    pub layout: Layout,
    pub nodes: u32,
    pub status: Option<JobStatus>,
    /// Where the service runs, once the job wrote it.
    pub record: Option<ServiceRecord>,
    /// The node rank 0 runs on.
    pub node: Option<String>,
    pub healthy: bool,
    pub check: Check,
    pub health_timeout: Duration,
    pub health_interval: Duration,
    registered_at: Option<Instant>,
    /// Inside an allocation: the local driver process running `srun` (also its process group).
    step: Option<Child>,
    driver_pid: Option<i32>,
    cancelled: bool,
}

impl SlurmJob {
    /// `job 123` or `step of job 123` for messages.
    pub fn id_text(&self) -> String {
        self.job_id
            .clone()
            .unwrap_or_else(|| "(not submitted)".into())
    }

    pub fn last_lines(&self, n: usize) -> Vec<String> {
        last_lines(&self.log, n)
    }

    fn addr(&self) -> Option<std::net::SocketAddr> {
        let r = self.record.as_ref()?;
        let ip: std::net::IpAddr = match r.host.parse() {
            Ok(ip) => ip,
            Err(_) => {
                use std::net::ToSocketAddrs;
                return (r.host.as_str(), r.port).to_socket_addrs().ok()?.next();
            }
        };
        Some(std::net::SocketAddr::new(ip, r.port))
    }
}

/// The job ids and local step drivers of a run, shareable with a signal handler that must
/// cancel everything at once (a second Ctrl-C) without the [`SlurmJobs`] itself.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle {
    inner: Arc<Mutex<Shared>>,
    cli: SlurmCli,
}

#[derive(Debug, Default)]
struct Shared {
    job_ids: Vec<String>,
    driver_pids: Vec<i32>,
}

impl CancelHandle {
    /// scancel every job and step, SIGTERM every local step driver (which cancels its step).
    /// Safe to call repeatedly.
    pub fn cancel_all(&self) {
        let (ids, driver_pids) = match self.inner.lock() {
            Ok(s) => (s.job_ids.clone(), s.driver_pids.clone()),
            Err(_) => return,
        };
        for pid in driver_pids {
            signal_process(pid, libc::SIGTERM);
        }
        let _ = self.cli.scancel(&ids);
    }

    fn set(&self, jobs: &[SlurmJob]) {
        if let Ok(mut s) = self.inner.lock() {
            s.job_ids = jobs
                .iter()
                .filter(|j| !j.cancelled && j.driver_pid.is_none())
                .filter_map(|j| j.job_id.clone())
                .collect();
            s.driver_pids = jobs
                .iter()
                .filter(|j| !j.cancelled)
                .filter_map(|j| j.driver_pid)
                .collect();
        }
    }
}

fn signal_process(pid: i32, signal: i32) {
    if pid > 1 {
        // SAFETY: kill only sends a signal.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// The services of a run on Slurm. Dropping it cancels every job it started.
#[derive(Debug)]
pub struct SlurmJobs {
    ctx: SlurmContext,
    jobs: Vec<SlurmJob>,
    tracker: Tracker,
    run_registry: Registry,
    handle: CancelHandle,
}

impl SlurmJobs {
    pub fn new(ctx: SlurmContext) -> Self {
        let tracker = Tracker::new(ctx.cli.clone(), ctx.poll_interval);
        let run_registry = Registry::at(ctx.run_dir.join("services"));
        let handle = CancelHandle {
            inner: Default::default(),
            cli: ctx.cli.clone(),
        };
        SlurmJobs {
            ctx,
            jobs: Vec::new(),
            tracker,
            run_registry,
            handle,
        }
    }

    pub fn context(&self) -> &SlurmContext {
        &self.ctx
    }

    pub fn jobs(&self) -> &[SlurmJob] {
        &self.jobs
    }

    /// A handle that cancels every job of this set from anywhere (a signal handler).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.handle.clone()
    }

    /// Every job id (or `job.step`) started, for run.json.
    pub fn job_ids(&self) -> Vec<String> {
        self.jobs.iter().filter_map(|j| j.job_id.clone()).collect()
    }

    /// Where the services run: the records the jobs wrote.
    pub fn records(&self) -> Vec<ServiceRecord> {
        self.jobs.iter().filter_map(|j| j.record.clone()).collect()
    }

    /// Render and write the scripts of every replica of `plan`, without starting anything.
    pub fn prepare(
        &mut self,
        plan: &ServicePlan,
        recipe: &Recipe,
    ) -> Result<Vec<Script>, SlurmError> {
        let service = find_service(recipe, plan)?;
        std::fs::create_dir_all(&self.ctx.script_dir)?;
        std::fs::create_dir_all(self.ctx.run_dir.join("logs"))?;
        std::fs::create_dir_all(self.ctx.run_dir.join("services"))?;
        let template = ScriptTemplate::find(&self.ctx.template_dirs, &plan.name)?;
        let mut scripts = Vec::new();
        for replica in 1..=plan.replicas.max(1) {
            let name = if replica == 1 {
                plan.name.clone()
            } else {
                format!("{}-{replica}", plan.name)
            };
            let placement = match &mut self.ctx.mode {
                Mode::Submit => Placement::Job,
                Mode::Allocation(a) => Placement::Step {
                    job_id: a.job_id.clone(),
                    nodes: a.place(&name, service.resources.nodes)?,
                },
            };
            let input = ScriptInput {
                plan,
                service,
                platform: &recipe.platform,
                replica,
                job_name: self.ctx.job_name(&name),
                script_path: self.ctx.script_dir.join(format!("{name}.sbatch")),
                name,
                run_dir: &self.ctx.run_dir,
                run_id: &self.ctx.run_id,
                recipe_name: &self.ctx.recipe_name,
                exe: &self.ctx.exe,
                placement,
                template: &template,
            };
            let script = render::render(&input)?;
            write_script(&script.path, &script.text)?;
            scripts.push(script);
        }
        Ok(scripts)
    }

    /// How the replicas of `plan` would be started; writes their scripts, starts nothing.
    pub fn dry_run(
        &mut self,
        plan: &ServicePlan,
        recipe: &Recipe,
    ) -> Result<Vec<Submission>, SlurmError> {
        let scripts = self.prepare(plan, recipe)?;
        Ok(scripts
            .into_iter()
            .map(|s| {
                let (command, env) = self.start_command(&s);
                Submission {
                    name: s.name,
                    script: s.path,
                    layout: s.layout,
                    nodes: s.nodes,
                    command,
                    env,
                    template: s.template_source,
                }
            })
            .collect())
    }

    fn step_log(&self, name: &str) -> PathBuf {
        self.ctx.run_dir.join("logs").join(format!("{name}.log"))
    }

    fn start_command(&self, s: &Script) -> (Vec<String>, Vec<(String, String)>) {
        match self.ctx.mode {
            Mode::Submit => (
                vec![
                    self.ctx.cli.program("sbatch").display().to_string(),
                    "--parsable".into(),
                    s.path.display().to_string(),
                ],
                Vec::new(),
            ),
            Mode::Allocation(_) => (
                vec!["bash".into(), s.path.display().to_string()],
                vec![(
                    "AIBENCH_LOG".into(),
                    self.step_log(&s.name).display().to_string(),
                )],
            ),
        }
    }

    /// Start every replica of a planned service: submit its job, or start its step inside the
    /// allocation. Returns at once; see [`SlurmJobs::wait_ready`].
    ///
    /// Inside an allocation the step's driver is a child of this thread and gets SIGTERM if the
    /// thread ends, so call this from a thread that lives as long as the run (the main thread).
    pub fn start(&mut self, plan: &ServicePlan, recipe: &Recipe) -> Result<(), SlurmError> {
        let service = find_service(recipe, plan)?;
        let container = render::container_of(service, &recipe.platform);
        let missing =
            render::missing_variables(plan, container, &|v| std::env::var_os(v).is_some());
        if !missing.is_empty() {
            return Err(SlurmError::MissingVariables {
                service: plan.name.clone(),
                names: missing,
            });
        }
        let scripts = self.prepare(plan, recipe)?;
        let health_timeout = Duration::from_secs_f64(plan.health.timeout_s.max(0.1));
        let health_interval = Duration::from_secs_f64(plan.health.interval_s.clamp(0.05, 60.0));
        for s in scripts {
            // A record left by an earlier job of the same name must not pass for this one's.
            let _ = self.run_registry.remove(&s.name);
            let mut job = SlurmJob {
                name: s.name.clone(),
                service: s.service.clone(),
                replica: s.replica,
                job_id: None,
                job_name: self.ctx.job_name(&s.name),
                script: s.path.clone(),
                log: PathBuf::new(),
                layout: s.layout,
                nodes: s.nodes,
                status: None,
                record: None,
                node: None,
                healthy: false,
                check: Check::from_plan(plan.health.check, plan.health.path.as_deref(), plan.kind),
                health_timeout,
                health_interval,
                registered_at: None,
                step: None,
                driver_pid: None,
                cancelled: false,
            };
            match &self.ctx.mode {
                Mode::Submit => {
                    let id = self.ctx.cli.sbatch(&s.path)?;
                    job.log = self
                        .ctx
                        .run_dir
                        .join("logs")
                        .join(format!("{}.{id}.log", s.name));
                    let marker = self.ctx.script_dir.join(format!("{}.{id}.exit", s.name));
                    self.tracker.watch(&id, Some(marker));
                    job.job_id = Some(id);
                }
                Mode::Allocation(_) => {
                    job.log = self.step_log(&s.name);
                    let child = spawn_driver(&s.path, &job.log)?;
                    job.driver_pid = Some(child.id() as i32);
                    job.step = Some(child);
                    job.status = Some(running_step());
                }
            }
            self.jobs.push(job);
            self.handle.set(&self.jobs);
        }
        Ok(())
    }

    /// Update every job's state (at the context's cadence) and return the jobs whose state
    /// changed, as events.
    fn poll(&mut self) -> Vec<SlurmEvent> {
        self.tracker.refresh_if_due();
        let mut events = Vec::new();
        for job in &mut self.jobs {
            let new = if let Some(child) = job.step.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => Some(step_status(status, job.cancelled)),
                    _ => job.status.clone(),
                }
            } else {
                job.job_id
                    .as_deref()
                    .and_then(|id| self.tracker.status(id))
                    .cloned()
            };
            if let Some(s) = new.as_ref().filter(|s| Some(*s) != job.status.as_ref()) {
                events.push(SlurmEvent::State {
                    name: job.name.clone(),
                    job_id: job.id_text(),
                    state: s.state.clone(),
                    description: s.describe(),
                });
                job.status = new.clone();
            }
        }
        events
    }

    /// Read the discovery record of a job that has not registered yet.
    fn discover(&mut self, i: usize) -> Option<SlurmEvent> {
        let job = &self.jobs[i];
        if job.record.is_some() {
            return None;
        }
        let path = self.run_registry.dir().join(format!("{}.json", job.name));
        let bytes = std::fs::read(&path).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let record: ServiceRecord = serde_json::from_value(value.clone()).ok()?;
        let belongs = match (&self.ctx.mode, &job.job_id, &record.job_id) {
            (Mode::Submit, Some(ours), Some(theirs)) => ours == theirs,
            (Mode::Allocation(a), _, Some(theirs)) => theirs.starts_with(&format!("{}.", a.job_id)),
            _ => false,
        };
        if !belongs {
            return None;
        }
        let node = value
            .get("node")
            .and_then(|n| n.as_str())
            .unwrap_or(&record.host)
            .to_string();
        if let Some(user) = &self.ctx.user_registry {
            let _ = user.put(&record);
        }
        let job = &mut self.jobs[i];
        job.job_id = record.job_id.clone();
        job.node = Some(node.clone());
        job.registered_at = Some(Instant::now());
        let event = SlurmEvent::Registered {
            name: job.name.clone(),
            job_id: job.id_text(),
            node,
            address: format!("{}:{}", record.host, record.port),
            log: job.log.display().to_string(),
        };
        job.record = Some(record);
        self.handle.set(&self.jobs);
        Some(event)
    }

    /// Wait until every job has registered and its service passes its health check. Fails as
    /// soon as a job ends (with its Slurm state and the tail of its log), when a service stays
    /// unhealthy past its timeout (counted from registering: time in the queue does not count),
    /// or when `cancelled` returns true.
    pub async fn wait_ready(
        &mut self,
        cancelled: impl Fn() -> bool,
        mut on_event: impl FnMut(SlurmEvent),
    ) -> Result<(), SlurmError> {
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(job) = self.jobs.iter().find(|j| !j.healthy) {
                if cancelled() {
                    return Err(SlurmError::Interrupted {
                        name: job.name.clone(),
                    });
                }
            } else {
                return Ok(());
            }
            for e in self.poll() {
                on_event(e);
            }
            for i in 0..self.jobs.len() {
                if self.jobs[i].healthy {
                    continue;
                }
                if let Some(e) = self.discover(i) {
                    on_event(e);
                }
                let job = &self.jobs[i];
                if let Some(status) = job.status.as_ref().filter(|s| s.state.is_finished()) {
                    return Err(SlurmError::JobEnded {
                        name: job.name.clone(),
                        job_id: job.id_text(),
                        phase: if job.record.is_some() {
                            "start-up (after registering, before passing its health check)".into()
                        } else {
                            "start-up (before registering)".into()
                        },
                        status: Box::new(status.clone()),
                        last_lines: job.last_lines(15),
                    });
                }
                let (Some(addr), Some(registered)) = (job.addr(), job.registered_at) else {
                    continue;
                };
                let attempt = job
                    .health_interval
                    .clamp(Duration::from_millis(200), Duration::from_secs(5));
                match probe(&job.check, addr, attempt).await {
                    Ok(()) => {
                        let job = &mut self.jobs[i];
                        job.healthy = true;
                        on_event(SlurmEvent::Healthy {
                            name: job.name.clone(),
                            job_id: job.id_text(),
                            after_s: registered.elapsed().as_secs_f64(),
                        });
                    }
                    Err(reason) if registered.elapsed() >= job.health_timeout => {
                        return Err(SlurmError::Unhealthy {
                            name: job.name.clone(),
                            job_id: job.id_text(),
                            timeout_s: job.health_timeout.as_secs_f64(),
                            check: format!("{} on {addr}: {reason}", job.check.describe()),
                            last_lines: job.last_lines(15),
                        });
                    }
                    Err(_) => {}
                }
            }
            if self.jobs.iter().all(|j| j.healthy) {
                return Ok(());
            }
            let cap = self
                .jobs
                .iter()
                .filter(|j| !j.healthy)
                .map(|j| j.health_interval)
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(self.ctx.poll_interval);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(cap.max(Duration::from_millis(100)));
        }
    }

    /// The first job found to have ended, as an error naming it (asks Slurm at most once per
    /// poll interval; between rounds it answers from what it knows). Call it while the load
    /// runs; it blocks for one `squeue` call at most.
    pub fn check(&mut self, phase: &str) -> Option<SlurmError> {
        self.poll();
        self.jobs.iter().find_map(|job| {
            let status = job.status.as_ref().filter(|s| s.state.is_finished())?;
            Some(SlurmError::JobEnded {
                name: job.name.clone(),
                job_id: job.id_text(),
                phase: phase.into(),
                status: Box::new(status.clone()),
                last_lines: job.last_lines(15),
            })
        })
    }

    /// Cancel every job and step this set started (scancel; SIGTERM to local step drivers) and
    /// forget their discovery records. Returns at once; see [`SlurmJobs::stop`] to wait.
    pub fn cancel_all(&mut self) {
        // Jobs are cancelled by Slurm; steps by their drivers.
        let ids: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| !j.cancelled && j.driver_pid.is_none())
            .filter_map(|j| j.job_id.clone())
            .collect();
        for job in &mut self.jobs {
            if job.cancelled {
                continue;
            }
            if let Some(pid) = job.driver_pid {
                // The driver alone: it cancels its step, so the service gets SIGTERM and
                // Slurm's KillWait to finish (srun itself would kill it at once).
                signal_process(pid, libc::SIGTERM);
            }
            job.cancelled = true;
        }
        let _ = self.ctx.cli.scancel(&ids);
        for job in &self.jobs {
            let _ = self.run_registry.remove(&job.name);
            if let Some(user) = &self.ctx.user_registry {
                if user.get(&job.name).is_some_and(|r| r.job_id == job.job_id) {
                    let _ = user.remove(&job.name);
                }
            }
        }
        self.handle.set(&self.jobs);
    }

    /// Cancel everything, then wait up to `grace` for the jobs to end (so that their nodes are
    /// free for what comes next), and forget them.
    pub fn stop(&mut self, grace: Duration) {
        self.cancel_all();
        let deadline = Instant::now() + grace;
        loop {
            self.tracker.refresh();
            let mut open = false;
            for job in &mut self.jobs {
                if let Some(child) = job.step.as_mut() {
                    if matches!(child.try_wait(), Ok(None)) {
                        open = true;
                    }
                } else if let Some(id) = &job.job_id {
                    let done = self
                        .tracker
                        .status(id)
                        .is_some_and(|s| s.state.is_finished());
                    open |= !done;
                }
            }
            if !open || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let alloc = match &self.ctx.mode {
            Mode::Allocation(a) => Some(a.job_id.clone()),
            Mode::Submit => None,
        };
        for job in &mut self.jobs {
            if let Some(mut child) = job.step.take() {
                if let Some(pgid) = job.driver_pid {
                    signal_group(pgid, libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                // A driver killed hard may leave its step behind.
                if let Some(a) = &alloc {
                    let steps = self.ctx.cli.steps_named(a, &job.job_name);
                    let _ = self.ctx.cli.scancel(&steps);
                }
            }
            if let Some(id) = &job.job_id {
                self.tracker.forget(id);
            }
        }
        self.jobs.clear();
        self.handle.set(&self.jobs);
    }
}

impl Drop for SlurmJobs {
    fn drop(&mut self) {
        if self.jobs.iter().any(|j| !j.cancelled) {
            self.cancel_all();
        }
        for job in &mut self.jobs {
            if let Some(mut child) = job.step.take() {
                let _ = child.try_wait();
            }
        }
    }
}

fn find_service<'a>(recipe: &'a Recipe, plan: &ServicePlan) -> Result<&'a Service, SlurmError> {
    recipe
        .services
        .iter()
        .find(|s| s.name == plan.name)
        .ok_or_else(|| SlurmError::Placement {
            name: plan.name.clone(),
            message: "the recipe has no service of this name".into(),
        })
}

fn write_script(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic(path, text.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

fn running_step() -> JobStatus {
    JobStatus::new(JobState::Running, "srun")
}

fn step_status(status: std::process::ExitStatus, cancelled: bool) -> JobStatus {
    use std::os::unix::process::ExitStatusExt;
    let (state, code) = match (status.code(), status.signal()) {
        (Some(0), _) => (JobState::Completed, "0:0".to_string()),
        (Some(c), _) if cancelled || c > 128 => (JobState::Cancelled, format!("{c}:0")),
        (Some(c), _) => (JobState::Failed, format!("{c}:0")),
        (None, Some(s)) => (JobState::Cancelled, format!("0:{s}")),
        (None, None) => (JobState::Failed, "0:0".to_string()),
    };
    let mut s = JobStatus::new(state, "srun");
    s.exit_code = Some(code);
    s
}

/// Start a step's driver (`bash SCRIPT`, which runs `srun --jobid ... --overlap`) as a child in
/// its own process group, its output appended to `log`, told to stop (SIGTERM) if aibench dies.
fn spawn_driver(script: &Path, log: &Path) -> Result<Child, SlurmError> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env("AIBENCH_LOG", log)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: the hook runs only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(aibench_platform::process::die_with_parent(libc::SIGTERM));
    }
    cmd.spawn().map_err(|e| SlurmError::Command {
        command: format!("bash {}", script.display()),
        message: e.to_string(),
    })
}

/// Render and write the scripts of a trial's services and say how each would start, without
/// starting anything (`aibench run --dry-run`).
pub fn dry_run(
    ctx: SlurmContext,
    trial: &TrialPlan,
    recipe: &Recipe,
) -> Result<Vec<Submission>, SlurmError> {
    let mut jobs = SlurmJobs::new(ctx);
    let mut out = Vec::new();
    for plan in &trial.services {
        out.extend(jobs.dry_run(plan, recipe)?);
    }
    Ok(out)
}

/// Cancel the job (or step) behind a registry record (`aibench down`). `Ok(false)` when the
/// record is not a Slurm one.
pub fn cancel_record(cli: &SlurmCli, record: &ServiceRecord) -> Result<bool, SlurmError> {
    match (&record.platform[..], &record.job_id) {
        // A step gets SIGTERM (plain scancel would kill it at once); a job is cancelled.
        ("slurm", Some(id)) if id.contains('.') => {
            cli.signal(std::slice::from_ref(id), "TERM")?;
            Ok(true)
        }
        ("slurm", Some(id)) => {
            cli.scancel(std::slice::from_ref(id))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The Slurm state of the job behind a registry record (`aibench services`): `None` when the
/// record is not a Slurm one or Slurm cannot tell.
pub fn record_status(cli: &SlurmCli, record: &ServiceRecord) -> Option<JobStatus> {
    if record.platform != "slurm" {
        return None;
    }
    let id = record.job_id.as_ref()?;
    // A step (`123.4`) lives as long as its job's step list shows it.
    if let Some((job, _)) = id.split_once('.') {
        let listed = cli.squeue(&[job.to_string()]).ok()?;
        let (_, job_status) = listed.into_iter().find(|(j, _)| j == job)?;
        if job_status.state.is_finished() {
            return Some(job_status);
        }
        let steps = std::process::Command::new(cli.program("squeue"))
            .args(["-h", "-s", "-j", job, "-o", "%i"])
            .output()
            .ok()?;
        let alive = String::from_utf8_lossy(&steps.stdout)
            .lines()
            .any(|l| l.trim() == id);
        return Some(if alive {
            JobStatus::new(JobState::Running, "squeue")
        } else {
            JobStatus::new(JobState::Completed, "squeue")
        });
    }
    let mut t = Tracker::new(cli.clone(), Duration::from_millis(200));
    t.watch(id, None);
    t.refresh();
    t.status(id).cloned()
}
