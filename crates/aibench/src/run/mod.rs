//! `aibench run`: deploy, health-check, drive, collect, report — on one machine.
//!
//! Phases: load recipe -> plan -> deploy -> health -> (warm-up, measure: the load engine) ->
//! teardown -> collect -> report. Every exit path stops the services: success, failure, Ctrl-C
//! (the first stops gracefully and keeps every completed request; the second stops at once),
//! SIGTERM, and a panic (the service set stops them when dropped). Services die with aibench
//! even when it is killed outright, through the parent-death signal.

pub mod events;
pub mod liveness;
pub mod monitoring;
pub mod platform;
pub mod report;
pub mod rundir;
pub mod shards;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aibench_load::Cancel;
use aibench_plan::Plan;
use aibench_platform::{PlatformError, StartContext};
use aibench_recipe::Loaded;
use aibench_results::StopReason;
use tokio::sync::mpsc;

use crate::exit::{self, Outcome};
use events::{Event, Events, Mode, ProgressEvent, WorkloadResult};
use platform::Platform;
use report::Row;
use rundir::{Host, RunDir, RunInfo, Status, TrialInfo};

const AFTER_HELP: &str = "\
The run directory (default `results/<recipe name>-<UTC time>/`) receives the recipe as given,
resolved.yaml, run.json, one folder per trial with requests.jsonl and summary.json, service
logs and events under logs/, summary.csv and report.md. It is printed at the end.

Ctrl-C once stops gracefully: requests in flight finish, everything is written, the summary
is marked interrupted. Ctrl-C twice stops at once. Either way no service is left running.

Examples:
  aibench run examples/quickstart.yaml
  aibench run examples/sweep-saturation.yaml --out /scratch/results
  aibench run --resume results/quickstart-20261123-140502     continue an interrupted run
  aibench watch results/quickstart-20261123-140502             follow it from another terminal";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct RunArgs {
    /// The recipe to run.
    #[arg(value_name = "RECIPE", required_unless_present = "resume")]
    pub recipe: Option<PathBuf>,
    /// Continue an interrupted run in this run directory, skipping finished trials.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "recipe")]
    pub resume: Option<PathBuf>,
    /// The results root (default: the recipe's `output.dir`, `results`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print only problems and the report's path.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON object describing the finished run on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Run only these workloads (repeatable).
    #[arg(long = "workload", value_name = "NAME")]
    pub workloads: Vec<String>,
    /// Drive load at the recipe's services as already started by `aibench up`, instead of
    /// deploying them (this is what `aibench bench RECIPE` does).
    #[arg(long)]
    pub use_running: bool,
    /// Write every script (Slurm) or show every command (local) and how it would start,
    /// without starting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Inside a Slurm allocation: the nodes services run on (a Slurm host list, e.g. `node[1-2]`).
    #[arg(long, value_name = "NODES")]
    pub server_nodes: Option<String>,
    /// Inside a Slurm allocation: the nodes reserved for load clients.
    #[arg(long, value_name = "NODES")]
    pub client_nodes: Option<String>,
    /// First measure the client's own measuring error at the recipe's heaviest load (`aibench
    /// selfcheck`, about 12 s) where the load clients run (on Slurm, as a job on a client
    /// node), and record it in run.json and the report.
    #[arg(long, conflicts_with_all = ["resume", "dry_run"])]
    pub calibrate: bool,
    /// The calibration `--calibrate` measured, for run.json.
    #[arg(skip)]
    pub calibration: Option<aibench_results::Calibration>,
}

/// Ctrl-C and SIGTERM: the first cancels gracefully; a second Ctrl-C kills services and exits.
fn install_signals(cancel: Cancel, count: Arc<AtomicU32>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let hard = tokio::select! {
                _ = int.recv() => true,
                _ = term.recv() => false,
            };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            cancel.cancel();
            if n == 1 {
                eprintln!("\nstopping: finishing requests in flight and writing results (Ctrl-C again to stop at once)");
            } else if hard || n > 2 {
                platform::kill_now();
                eprintln!("\nstopped at once; results written so far are kept");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
    Ok(())
}

pub fn run(mut args: RunArgs) -> anyhow::Result<Outcome> {
    if args.calibrate {
        // A recipe that does not load is reported by the run itself, below. On Slurm the
        // runner calibrates on a client node instead (`Runner::calibrate_on_clients`).
        if let Some(loaded) = args
            .recipe
            .as_deref()
            .and_then(|p| aibench_recipe::load_file(p).ok())
            .filter(|l| {
                args.use_running || l.recipe.platform.kind != aibench_recipe::PlatformKind::Slurm
            })
        {
            let (users, rate) = heaviest_load(&loaded);
            let check = crate::cmd::selfcheck::SelfcheckArgs::at(users, rate);
            if !args.quiet {
                eprintln!("calibrating: aibench selfcheck at the recipe's heaviest load first");
            }
            match crate::cmd::selfcheck::calibrate(&check, true)? {
                Ok(c) => {
                    if !args.quiet {
                        eprint!("{}", crate::cmd::selfcheck::render(&c));
                    }
                    args.calibration = Some(c);
                }
                Err(code) => {
                    eprintln!("error: the calibration against the simulator failed; the recipe was not run");
                    return Ok(if code == Outcome::Success {
                        Outcome::Broken
                    } else {
                        code
                    });
                }
            }
        }
    }
    run_request(args, None).map(|(code, _)| code)
}

/// The heaviest load of any trial: its closed-loop users, or else its open-loop rate (each
/// summed over the trial's workloads, which run together).
fn heaviest_load(loaded: &Loaded) -> (Option<u32>, Option<f64>) {
    use aibench_recipe::Load;
    let (mut users, mut rate) = (0u32, 0.0f64);
    for t in &loaded.trials {
        let (mut u, mut r) = (0u32, 0.0f64);
        for w in &t.recipe.workloads {
            match &w.load {
                Load::ClosedLoop { users, .. } => u = u.saturating_add(*users),
                Load::OpenLoop {
                    rate: rt,
                    steps,
                    ramp,
                    ..
                } => {
                    let peak = rt
                        .iter()
                        .chain(steps.iter().map(|s| &s.rate))
                        .chain(ramp.iter().flat_map(|x| [&x.from, &x.to]))
                        .map(|x| x.per_second())
                        .fold(0.0, f64::max);
                    r += peak;
                }
            }
        }
        users = users.max(u);
        rate = rate.max(r);
    }
    match (users, rate) {
        (0, r) if r > 0.0 => (None, Some(r)),
        (0, _) => (Some(1), None),
        (u, _) => (Some(u), None),
    }
}

/// A recipe made by another command rather than read from a file: `aibench bench URL` builds a
/// one-workload recipe from its flags and runs it here, through the same runner.
pub struct Generated {
    pub loaded: Loaded,
    /// Which command made it (recorded in run.json).
    pub command: aibench_results::Command,
}

/// Run a recipe, from `args.recipe` or `generated`; the exit code and the run directory (once
/// one was made). A generated run prints nothing on stdout: its command shows the result.
pub fn run_request(
    args: RunArgs,
    generated: Option<Generated>,
) -> anyhow::Result<(Outcome, Option<PathBuf>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut dir = None;
    // `block_on` runs on this (the main) thread, so services started by the top-level future
    // get the main thread as the parent whose death kills them.
    let code = rt.block_on(run_async(args, generated, &mut dir))?;
    Ok((code, dir))
}

struct Failure {
    status: Status,
    reason: String,
    /// How the run ends because of it.
    outcome: Outcome,
}

/// Where the recipe came from, once loaded.
struct Source {
    loaded: Loaded,
    recipe_path: PathBuf,
    resume_dir: Option<PathBuf>,
    command: aibench_results::Command,
    /// Print the run's result on stdout (a generated recipe's command prints its own).
    print_result: bool,
}

/// One run, from its set-up to its report: the state the trials share.
struct Runner {
    json: bool,
    print_result: bool,
    loaded: Loaded,
    plan: Plan,
    base_dir: PathBuf,
    dir: RunDir,
    info: RunInfo,
    events: Events,
    cancel: Cancel,
    platform: Box<dyn Platform>,
    /// Whether the platform runs the services of the current trial.
    deployed: bool,
    exe: PathBuf,
    monitoring: monitoring::RunMonitoring,
    single: bool,
    rows: Vec<Row>,
    failure: Option<Failure>,
    warnings: Vec<String>,
}

async fn run_async(
    args: RunArgs,
    generated: Option<Generated>,
    dir_out: &mut Option<PathBuf>,
) -> anyhow::Result<Outcome> {
    let calibrate = args.calibrate && args.calibration.is_none();
    let mut runner = match Runner::setup(args, generated, dir_out).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if calibrate && runner.platform.clients().always_separate() {
        if let Err(e) = runner.calibrate_on_clients().await {
            runner.events.problem(&format!(
                "error: the calibration on a client node failed: {e:#}; the recipe was not run"
            ));
            runner.failure = Some(Failure {
                status: Status::Failed,
                reason: format!("the calibration on a client node failed: {e:#}"),
                outcome: Outcome::Broken,
            });
            return runner.finish().await;
        }
    }
    for i in 0..runner.plan.trials.len() {
        if !runner.run_trial(i).await? {
            break;
        }
    }
    runner.finish().await
}

/// Load the recipe: given, from the file, or from the run directory being resumed; keep only
/// the workloads asked for. `Err` is the exit code of a recipe that cannot run.
fn load_source(args: &RunArgs, generated: Option<Generated>) -> anyhow::Result<Source> {
    let (recipe_path, resume_dir) = match (&args.recipe, &args.resume) {
        (_, Some(dir)) => (dir.join("recipe.yaml"), Some(dir.clone())),
        (Some(p), None) => (p.clone(), None),
        (None, None) if generated.is_some() => (PathBuf::new(), None),
        (None, None) => anyhow::bail!("give a recipe, or --resume RUN_DIR"),
    };
    let command = generated
        .as_ref()
        .map_or(aibench_results::Command::Run, |g| g.command);
    let print_result = generated.is_none();
    let mut loaded = match generated {
        Some(g) => g.loaded,
        None => match crate::cmd::load_recipe(&recipe_path) {
            Ok(l) => l,
            Err(_) => return Err(exit::shown_input()),
        },
    };
    if !args.workloads.is_empty() {
        let known: Vec<String> = loaded
            .recipe
            .workloads
            .iter()
            .map(|w| w.name.clone())
            .collect();
        if let Some(bad) = args.workloads.iter().find(|w| !known.contains(w)) {
            return Err(exit::bad_input(format!(
                "the recipe has no workload `{bad}`; it has: {}",
                known.join(", ")
            )));
        }
        let keep = |r: &mut aibench_recipe::Recipe| {
            r.workloads.retain(|w| args.workloads.contains(&w.name))
        };
        keep(&mut loaded.recipe);
        for t in &mut loaded.trials {
            keep(&mut t.recipe);
        }
    }
    Ok(Source {
        loaded,
        recipe_path,
        resume_dir,
        command,
        print_result,
    })
}

/// The run directory and its run.json: the one being resumed, or a new one holding the recipe
/// as given; then resolved.yaml, and run.json marked running.
fn open_run_dir(args: &RunArgs, source: &Source, plan: &Plan) -> anyhow::Result<(RunDir, RunInfo)> {
    let loaded = &source.loaded;
    let (dir, mut info) = match &source.resume_dir {
        Some(d) => {
            let rd = RunDir { root: d.clone() };
            let info = rd.read_info().ok_or_else(|| {
                exit::bad_input(format!(
                    "{} has no readable run.json; is it a run directory?",
                    d.display()
                ))
            })?;
            if let Some(o) = info.owner.as_ref().filter(|o| {
                info.status == Status::Running
                    && o.alive() == Some(true)
                    && o.pid != std::process::id()
            }) {
                return Err(exit::bad_input(format!(
                    "{} is still being run by aibench (pid {} on {}); stop it first, or follow \
                     it with `aibench watch {}`",
                    d.display(),
                    o.pid,
                    o.hostname,
                    d.display()
                )));
            }
            (rd, info)
        }
        None => {
            let started_at = rundir::now_epoch();
            let root = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(&loaded.recipe.output.dir));
            let rd = RunDir::create(&root, &rundir::run_id(&loaded.recipe.name, started_at))?;
            std::fs::write(rd.root.join("recipe.yaml"), &loaded.source.text)?;
            let mut info = new_info(loaded, plan, &source.recipe_path, rd.id(), started_at);
            info.command = source.command;
            info.calibration = args.calibration.clone();
            (rd, info)
        }
    };
    // resolved.yaml: defaults filled, values expanded, secrets still references. JSON is YAML.
    let mut resolved = String::from(
        "# The recipe with defaults filled in and ${VAR}s expanded; secrets stay references.\n",
    );
    resolved.push_str(&serde_json::to_string_pretty(&serde_json::to_value(
        &loaded.recipe,
    )?)?);
    resolved.push('\n');
    aibench_results::write_atomic(&dir.root.join("resolved.yaml"), resolved.as_bytes())?;
    info.status = Status::Running;
    info.owner = Some(aibench_results::Owner::here());
    dir.write_json("run.json", &info)?;
    Ok((dir, info))
}

/// The Slurm platform's context, when the recipe runs there (and deploys its services).
/// `Err` is the exit code when Slurm is not reachable.
fn slurm_context(
    args: &RunArgs,
    loaded: &Loaded,
    dir: &RunDir,
    run_id: &str,
    base_dir: &Path,
) -> anyhow::Result<aibench_slurm::SlurmContext> {
    let cli = aibench_slurm::SlurmCli::from_env();
    if !cli.available() && !args.dry_run {
        anyhow::bail!("`platform.kind: slurm`, but Slurm's commands (sbatch, squeue) are not on PATH; run on a login node, load the Slurm module, or use `--dry-run` to see the scripts");
    }
    let mut s = aibench_slurm::SlurmContext::new(
        &dir.root,
        run_id,
        &loaded.recipe.name,
        std::env::current_exe()?,
    );
    s.template_dirs = vec![base_dir.to_path_buf()];
    s.user_registry = Some(aibench_platform::Registry::user());
    s.mode = aibench_slurm::Mode::detect(
        &s.cli,
        args.server_nodes.as_deref(),
        args.client_nodes.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s)
}

impl Runner {
    /// Everything before the first trial: the recipe, the run directory, signals, the
    /// platform's context, monitoring. `Err` is an exit code to return at once (bad input, a
    /// dry run's end).
    async fn setup(
        args: RunArgs,
        generated: Option<Generated>,
        dir_out: &mut Option<PathBuf>,
    ) -> anyhow::Result<Result<Runner, Outcome>> {
        let source = load_source(&args, generated)?;
        // Services of `aibench up` are looked for before anything is written.
        let attached = if args.use_running {
            match platform::Attached::find(&source.loaded) {
                Ok(a) => Some(a),
                Err(platform::NotRunning(name)) => {
                    return Err(exit::bad_input_help(
                        format!("service `{name}` is not running"),
                        format!(
                            "start it with `aibench up {}`",
                            source.recipe_path.display()
                        ),
                    ))
                }
            }
        } else {
            None
        };
        let plan = aibench_plan::plan(&source.loaded);
        let base_dir = source
            .recipe_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));

        let mut events = Events::new(Mode::pick(args.quiet));
        let (dir, info) = open_run_dir(&args, &source, &plan)?;
        *dir_out = Some(dir.root.clone());
        let loaded = source.loaded;
        events.open_log(&dir.root.join("logs/events.jsonl"))?;
        events.emit(Event::RunStarted {
            run_id: info.run_id.clone(),
            recipe: loaded.recipe.name.clone(),
            run_dir: dir.root.display().to_string(),
            trials: plan.trials.len(),
        });

        let cancel = Cancel::new();
        install_signals(cancel.clone(), Arc::new(AtomicU32::new(0)))?;

        let exe = std::env::current_exe()?;
        let platform: Box<dyn Platform> = match attached {
            Some(a) => Box::new(a),
            None if loaded.recipe.platform.kind == aibench_recipe::PlatformKind::Slurm => {
                Box::new(platform::Slurm::new(
                    slurm_context(&args, &loaded, &dir, &info.run_id, &base_dir)?,
                    loaded.recipe.platform.slurm.clone().unwrap_or_default(),
                    &info.run_id,
                ))
            }
            None => Box::new(platform::Local::new(StartContext {
                run_dir: dir.root.clone(),
                host: "127.0.0.1".into(),
                exe: exe.clone(),
                detach: false,
                recipe_name: loaded.recipe.name.clone(),
                user_registry: Some(aibench_platform::Registry::user()),
            })),
        };
        if args.dry_run {
            events.finish();
            return dry_run(&plan, &loaded, platform.as_ref(), &dir).map(Err);
        }
        let mut warnings = Vec::new();
        let monitoring = monitoring::RunMonitoring::start(
            &loaded.recipe,
            &dir.root,
            &info.run_id,
            &mut warnings,
        )
        .await;
        for message in warnings.drain(..) {
            events.emit(Event::Warning { message });
        }
        Ok(Ok(Runner {
            json: args.json,
            print_result: source.print_result,
            single: loaded.recipe.workloads.len() == 1,
            loaded,
            plan,
            base_dir,
            dir,
            info,
            events,
            cancel,
            platform,
            deployed: false,
            exe,
            monitoring,
            rows: Vec::new(),
            failure: None,
            warnings,
        }))
    }

    /// `--calibrate` where the load clients run apart (Slurm): `aibench selfcheck` as a job or
    /// step on a client node, at the recipe's heaviest load; its result goes into run.json.
    async fn calibrate_on_clients(&mut self) -> anyhow::Result<()> {
        let (users, rate) = heaviest_load(&self.loaded);
        let out = self.dir.root.join("calibration");
        std::fs::create_dir_all(&out)?;
        let file = out.join("calibration.json");
        let _ = std::fs::remove_file(&file);
        let mut check = crate::cmd::selfcheck::SelfcheckArgs::at(users, rate);
        check.write = Some(std::path::absolute(&file)?);
        let job = shards::ShardJob {
            exe: self.exe.clone(),
            run_dir: self.dir.root.clone(),
            base_dir: self.base_dir.clone(),
            trial: "calibration".into(),
            workload: "selfcheck".into(),
            url: String::new(),
            nodes: 1,
            processes: 1,
            out,
        };
        let clients = self.platform.clients();
        self.events.say(&format!(
            "calibrating: aibench selfcheck on a client node{} first",
            clients.place()
        ));
        let logs = self.dir.root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let launched = clients
            .launch(&job, &crate::cmd::selfcheck::argv(&check), &logs)
            .await?;
        shards::wait_for_shards(launched, clients.as_ref(), &self.cancel).await?;
        let c: aibench_results::Calibration =
            serde_json::from_slice(&std::fs::read(&file).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}; see logs/client-calibration-selfcheck-*.log",
                    file.display()
                )
            })?)?;
        self.events
            .say(crate::cmd::selfcheck::render(&c).trim_end());
        self.info.calibration = Some(c);
        self.dir.write_json("run.json", &self.info)?;
        Ok(())
    }

    /// Trial `i`: skip it if an earlier attempt finished it; deploy if needed; measure; record
    /// its status. `false`: stop here (a failure, or a signal).
    async fn run_trial(&mut self, i: usize) -> anyhow::Result<bool> {
        let trial = &self.plan.trials[i];
        let recipe = &self.loaded.trials[i].recipe;
        if self
            .info
            .trials
            .get(i)
            .is_some_and(|t| t.status == Status::Completed)
        {
            // Finished before, if its files say so too: a summary that is missing or does not
            // read (a truncated file, a lost disk block) means the trial runs again.
            let rows = read_rows(&self.dir, &trial.id, recipe, self.single, &trial.params);
            if rows.len() == recipe.workloads.len() {
                self.events.emit(Event::TrialSkipped {
                    trial: trial.id.clone(),
                    reason: "finished before".into(),
                });
                self.rows.extend(rows);
                return Ok(true);
            }
            self.events.emit(Event::Warning {
                message: format!(
                    "trial {} was finished, but {} of its {} summaries are missing or \
                     unreadable: it runs again",
                    trial.id,
                    recipe.workloads.len() - rows.len(),
                    recipe.workloads.len()
                ),
            });
        }
        if self.cancel.is_cancelled() {
            return Ok(false);
        }
        self.events.emit(Event::TrialStarted {
            trial: trial.id.clone(),
            index: i,
            total: self.plan.trials.len(),
            params: serde_json::to_value(&trial.params)?,
        });
        self.info.set_trial_status(i, Status::Running);
        self.dir.write_json("run.json", &self.info)?;
        self.dir
            .write_json(&format!("trials/{}/params.json", trial.id), &trial.params)?;

        if !self.deploy_trial(i).await? {
            return Ok(false);
        }
        let trial = &self.plan.trials[i];
        let recipe = &self.loaded.trials[i].recipe;

        // Drive every workload of the trial at once, watching the services as they run.
        self.events.emit(Event::Phase {
            phase: "measure".into(),
            trial: Some(trial.id.clone()),
        });
        let records = self.platform.records();
        let trial_monitor = self.monitoring.start_trial(
            recipe,
            &self.dir.trial_dir(&trial.id),
            &records,
            &mut self.warnings,
        );
        for message in self.warnings.drain(..) {
            self.events.emit(Event::Warning { message });
        }
        let urls = service_urls(&records);
        let outcome = measure(
            recipe,
            trial,
            &self.dir,
            self.single,
            &self.base_dir,
            &urls,
            self.platform.as_mut(),
            &self.exe,
            &self.monitoring.live,
            &self.cancel,
            &mut self.events,
        )
        .await;
        if let Some(handle) = trial_monitor {
            for message in monitoring::RunMonitoring::finish_trial(handle).await {
                self.events.emit(Event::Warning {
                    message: format!("monitoring: {message}"),
                });
            }
        }
        if trial.restart_services || i + 1 == self.plan.trials.len() {
            self.monitoring.forget_services(&records);
        }
        match outcome {
            Ok((trial_rows, crash)) => {
                let status =
                    if crash.is_some() || trial_rows.iter().any(|r| r.status == Status::Failed) {
                        Status::Failed
                    } else if trial_rows.iter().any(|r| r.status == Status::Interrupted)
                        || self.cancel.is_cancelled()
                    {
                        Status::Interrupted
                    } else {
                        Status::Completed
                    };
                self.rows.extend(trial_rows);
                self.info.set_trial_status(i, status);
                if let Some(msg) = crash {
                    self.failure = Some(Failure {
                        status: Status::Failed,
                        reason: msg,
                        outcome: Outcome::Broken,
                    });
                }
            }
            Err(e) => {
                self.info.set_trial_status(i, Status::Failed);
                self.failure = Some(Failure {
                    status: Status::Failed,
                    reason: format!("{e:#}"),
                    outcome: Outcome::Broken,
                });
            }
        }
        report::write_csv(&self.dir.root.join("summary.csv"), &self.rows)?;
        self.dir.write_json("run.json", &self.info)?;
        Ok(self.failure.is_none() && !self.cancel.is_cancelled())
    }

    /// Deploy the trial's services, or keep those running (first trial, or a service changed
    /// since the last one). `false`: they did not start, and the run stops.
    async fn deploy_trial(&mut self, i: usize) -> anyhow::Result<bool> {
        let trial = &self.plan.trials[i];
        let recipe = &self.loaded.trials[i].recipe;
        if self.deployed && !trial.restart_services {
            return Ok(true);
        }
        let n = self.platform.stop(Duration::from_secs(10));
        if n > 0 {
            self.events.emit(Event::ServicesStopped { count: n });
        }
        let deployed = self
            .platform
            .deploy(trial, recipe, &mut self.events, &self.cancel)
            .await;
        self.info.job_ids = self.platform.job_ids();
        self.dir.write_json("run.json", &self.info)?;
        match deployed {
            Ok(()) => {
                self.deployed = true;
                Ok(true)
            }
            Err(e) => {
                let interrupted = matches!(e, PlatformError::Interrupted { .. });
                if !interrupted {
                    if let PlatformError::Crashed { name, .. }
                    | PlatformError::Unhealthy { name, .. }
                    | PlatformError::Start { name, .. } = &e
                    {
                        self.events.emit(Event::ServiceCrashed {
                            name: name.clone(),
                            message: e.to_string(),
                        });
                    }
                }
                let status = if interrupted {
                    Status::Interrupted
                } else {
                    Status::Failed
                };
                self.info.set_trial_status(i, status);
                self.failure = Some(Failure {
                    status,
                    reason: e.to_string(),
                    outcome: if interrupted {
                        Outcome::Interrupted
                    } else {
                        Outcome::Broken
                    },
                });
                Ok(false)
            }
        }
    }

    /// Teardown, the run's status, report and catalog entry; the exit code.
    async fn finish(mut self) -> anyhow::Result<Outcome> {
        if self.deployed {
            // Said only when there is something of ours to stop (not for `bench URL`, nor for
            // the services of `aibench up`); stopped in any case.
            let announce = self.platform.starts_services() && !self.platform.records().is_empty();
            if announce {
                self.events.emit(Event::Phase {
                    phase: "teardown".into(),
                    trial: None,
                });
            }
            let n = self.platform.stop(Duration::from_secs(10));
            if announce || n > 0 {
                self.events.emit(Event::ServicesStopped { count: n });
            }
        }
        self.monitoring.stop().await;

        let rows = &self.rows;
        let slo_failed = rows.iter().any(|r| !r.slo_failures.is_empty());
        let (status, reason) = match (&self.failure, self.cancel.is_cancelled()) {
            (Some(f), _) => (f.status, Some(f.reason.clone())),
            (None, true) => (Status::Interrupted, Some("stopped by a signal".to_string())),
            (None, false) => match failed_workloads(rows) {
                None => (Status::Completed, None),
                Some(which) => (Status::Failed, Some(which)),
            },
        };
        let (dir, info) = (&self.dir, &mut self.info);
        info.status = status;
        info.reason = reason.clone();
        info.finished_at = Some(rundir::now_epoch());
        dir.write_json("run.json", info)?;
        report::write_csv(&dir.root.join("summary.csv"), rows)?;
        // The full report (analysis, plots, HTML); the plain table if the analysis fails, so a
        // report is always there.
        let report_path = match aibench_report::write_reports(&dir.root) {
            Ok(paths) => paths.html,
            Err(e) => {
                self.events.problem(&format!(
                    "warning: the full report could not be written ({e:#}); writing the plain table"
                ));
                let md = dir.root.join("report.md");
                report::write_markdown(&md, info, rows, self.loaded.recipe.slo.is_some())?;
                md
            }
        };
        let results_root = dir.root.parent().unwrap_or(Path::new("."));
        if let Err(e) = aibench_report::catalog_add(results_root, &dir.root) {
            self.events.problem(&format!(
                "warning: the run was not added to the catalog {}: {e:#}",
                aibench_report::catalog_path(results_root).display()
            ));
        }
        let outcome = match (&self.failure, status) {
            (Some(f), _) => f.outcome,
            (None, Status::Completed) if slo_failed => Outcome::Failed,
            (None, Status::Completed) => Outcome::Success,
            (None, Status::Interrupted) => Outcome::Interrupted,
            (None, _)
                if rows
                    .iter()
                    .any(|r| r.summary.stop_reason == Some(StopReason::InternalError)) =>
            {
                Outcome::Broken
            }
            (None, _) => Outcome::Failed,
        };
        let code = outcome.code();
        self.events.emit(Event::RunFinished {
            status,
            report: Some(report_path.display().to_string()),
            exit_code: code,
        });
        self.events.finish();
        if let Some(r) = &reason {
            if status != Status::Completed {
                eprintln!("run {status}: {r}");
            }
        }
        if slo_failed && status == Status::Completed {
            eprintln!(
                "SLO missed in {} trial(s); see the report",
                rows.iter().filter(|r| !r.slo_failures.is_empty()).count()
            );
        }
        if !self.print_result {
            // The command that generated the recipe shows the result.
        } else if self.json {
            let out = serde_json::json!({
                "run_id": info.run_id,
                "status": status,
                "reason": reason,
                "run_dir": dir.root,
                "report": report_path,
                "exit_code": code,
                "trials": rows.iter().map(|r| serde_json::json!({
                    "trial": r.trial, "workload": r.workload, "status": r.status,
                    "slo_failures": r.slo_failures, "summary": r.summary,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("report: {}", report_path.display());
        }
        Ok(outcome)
    }
}

/// The workloads (with their trials) that failed, and why, if any.
fn failed_workloads(rows: &[Row]) -> Option<String> {
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.status == Status::Failed)
        .map(|r| {
            let c = &r.summary.counts;
            let why = match r.summary.stop_reason {
                Some(StopReason::Stalled) => {
                    "the service stalled: requests were in flight and none received a byte for \
                     `stop.stall` (a hung server)"
                }
                _ if c.total > 0 && c.successes == 0 => "every request failed",
                Some(StopReason::ErrorBudget) => "its error budget ran out",
                Some(StopReason::InternalError) => "aibench failed internally (see stderr)",
                _ => "it failed",
            };
            format!("workload `{}` of trial {}: {why}", r.workload, r.trial)
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

fn new_info(
    loaded: &Loaded,
    plan: &Plan,
    recipe_path: &Path,
    run_id: String,
    started_at: f64,
) -> RunInfo {
    RunInfo {
        schema_version: aibench_results::RUN_SCHEMA_VERSION,
        run_id,
        name: loaded.recipe.name.clone(),
        command: aibench_results::Command::Run,
        status: Status::Running,
        reason: None,
        recipe_path: recipe_path.display().to_string(),
        platform: plan.platform.clone(),
        seed: loaded.recipe.seed,
        started_at,
        started_at_utc: rundir::utc(started_at),
        finished_at: None,
        aibench_version: env!("CARGO_PKG_VERSION").into(),
        aibench_git: env!("AIBENCH_GIT_HASH").into(),
        recipe_git: recipe_path.parent().and_then(|p| {
            rundir::git_head(if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            })
        }),
        host: Host::here(),
        owner: Some(aibench_results::Owner::here()),
        calibration: None,
        trials: plan
            .trials
            .iter()
            .map(|t| TrialInfo {
                id: t.id.clone(),
                params: serde_json::to_value(&t.params).unwrap_or_default(),
                repeat: t.repeat,
                status: Status::Pending,
            })
            .collect(),
        job_ids: Vec::new(),
    }
}

/// `--dry-run`: the scripts and commands of every trial that (re)starts services.
fn dry_run(
    plan: &Plan,
    loaded: &Loaded,
    platform: &dyn Platform,
    dir: &RunDir,
) -> anyhow::Result<Outcome> {
    for (i, trial) in plan.trials.iter().enumerate() {
        if !trial.restart_services {
            continue;
        }
        println!("trial {} ({}):", trial.id, platform.name());
        for line in platform.dry_run(trial, &loaded.trials[i].recipe, &dir.root)? {
            println!("  {line}");
        }
    }
    println!(
        "nothing was started; scripts are under {}",
        dir.root.display()
    );
    Ok(Outcome::Success)
}

/// The address of each service (its first replica), by service name.
pub fn service_urls(
    records: &[aibench_platform::ServiceRecord],
) -> std::collections::HashMap<String, String> {
    let mut urls = std::collections::HashMap::new();
    for r in records {
        urls.entry(r.service.clone())
            .or_insert_with(|| format!("http://{}:{}", r.host, r.port));
    }
    urls
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    recipe: &aibench_recipe::Recipe,
    trial: &aibench_plan::TrialPlan,
    dir: &RunDir,
    single: bool,
    base_dir: &Path,
    urls: &std::collections::HashMap<String, String>,
    platform: &mut dyn Platform,
    exe: &Path,
    live: &aibench_monitor::LiveMetrics,
    cancel: &Cancel,
    events: &mut Events,
) -> anyhow::Result<(Vec<Row>, Option<String>)> {
    let (ptx, mut prx) = mpsc::channel::<(String, aibench_load::Progress)>(256);
    let mut tasks = tokio::task::JoinSet::new();
    let mut planned: std::collections::HashMap<String, f64> = Default::default();
    let clients = platform.clients();
    for w in &recipe.workloads {
        let url = match recipe.services.iter().find(|s| s.name == w.target) {
            Some(_) => urls
                .get(&w.target)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("service `{}` is not running", w.target))?,
            None => w.target.clone(),
        };
        let service = recipe.services.iter().find(|s| s.name == w.target);
        let spec = workload::load_spec(w, recipe.seed, base_dir)?;
        let mut driven = workload::driven(w, &url, service, recipe.seed, base_dir)?;
        // Before the clock, once for every client process: preload keys, create tables...
        if let Some(done) = driven
            .prepare()
            .await
            .map_err(|e| anyhow::anyhow!("workload `{}`: preparing: {e}", w.name))?
        {
            events.say(&format!("  {}: {done}", w.name));
        }
        let wdir = dir.workload_dir(&trial.id, &w.name, single);
        std::fs::create_dir_all(&wdir)?;
        planned.insert(
            w.name.clone(),
            spec.warmup.as_secs_f64()
                + spec.stop.duration.map(|d| d.as_secs_f64()).unwrap_or(0.0)
                + spec.cooldown.as_secs_f64(),
        );
        let (tx, mut rx) = mpsc::channel(64);
        let fwd = ptx.clone();
        let name = w.name.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if fwd.send((name.clone(), p)).await.is_err() {
                    break;
                }
            }
        });
        let options = aibench_load::RunOptions {
            records: recipe.output.requests.then(|| wdir.join("requests.jsonl")),
            events: Some(tx),
            cancel: Some(cancel.clone()),
            accumulator: workload::accumulator_config(recipe.slo.as_ref()),
            ..Default::default()
        };
        let name = w.name.clone();
        let processes = w.clients.nodes * w.clients.processes;
        // On Slurm the load clients are jobs (or steps) of their own, like the services.
        if processes > 1 || clients.always_separate() {
            let job = shards::ShardJob {
                exe: exe.to_path_buf(),
                run_dir: dir.root.clone(),
                base_dir: base_dir.to_path_buf(),
                trial: trial.id.clone(),
                workload: w.name.clone(),
                url: url.clone(),
                nodes: w.clients.nodes,
                processes: w.clients.processes,
                out: wdir.clone(),
            };
            events.say(&format!(
                "  {}: {processes} client process{}{}, starting together",
                w.name,
                if processes == 1 { "" } else { "es" },
                clients.place()
            ));
            let c = cancel.clone();
            let clients = clients.clone();
            tasks.spawn(async move { (name, wdir, shards::run(job, clients, c).await) });
        } else {
            tasks.spawn(async move {
                let out = driven
                    .run(&spec, options)
                    .await
                    .map(|o| o.summary)
                    .map_err(anyhow::Error::from);
                (name, wdir, out)
            });
        }
    }
    drop(ptx);

    let mut crash: Option<String> = None;
    let mut results = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Alive is not enough: each service goes on answering its health check.
    let mut liveness = liveness::watch(&platform.records(), &trial.services);
    loop {
        tokio::select! {
            u = liveness.next(), if crash.is_none() => {
                events.emit(Event::ServiceCrashed { name: u.name, message: u.message.clone() });
                crash = Some(u.message);
                cancel.cancel();
            }
            Some((name, p)) = prx.recv() => {
                live.observe_progress(&name, &p);
                // Past the planned end (cool-down included), what is left is requests finishing.
                let draining = p.phase == aibench_results::Phase::Cooldown
                    && planned.get(&name).is_some_and(|end| p.elapsed.as_secs_f64() >= *end);
                events.emit(Event::Progress(ProgressEvent {
                    trial: trial.id.clone(),
                    workload: name.clone(),
                    phase: if draining {
                        "draining".into()
                    } else {
                        format!("{:?}", p.phase).to_lowercase()
                    },
                    elapsed_s: p.elapsed.as_secs_f64(),
                    planned_s: planned.get(&name).copied(),
                    sent: p.sent,
                    succeeded: p.succeeded,
                    errors: p.errors,
                    dropped: p.dropped,
                    in_flight: p.in_flight,
                    rate_rps: p.rate_rps,
                    ttft_p99_ms: p.ttft_p99_ms,
                    e2e_p99_ms: p.e2e_p99_ms,
                }));
            }
            joined = tasks.join_next() => {
                match joined {
                    Some(Ok(r)) => results.push(r),
                    Some(Err(e)) => anyhow::bail!("a load task failed: {e}"),
                    None => break,
                }
            }
            _ = tick.tick() => {
                if crash.is_none() {
                    if let Some(e) = platform.crashed("the measurement") {
                        let name = match &e { PlatformError::Crashed { name, .. } => name.clone(), _ => String::new() };
                        events.emit(Event::ServiceCrashed { name, message: e.to_string() });
                        crash = Some(e.to_string());
                        // Stop the load: requests already answered are kept.
                        cancel.cancel();
                    }
                }
            }
        }
    }

    let rows = workload_rows(recipe, trial, dir, results, crash.is_some(), cancel, events)?;
    Ok((rows, crash))
}

/// What one workload's load task returned: its name, folder and summary.
type WorkloadOutcome = (String, PathBuf, anyhow::Result<aibench_results::Summary>);

/// Each workload's summary written, its status judged and announced: the trial's rows, in the
/// recipe's order.
fn workload_rows(
    recipe: &aibench_recipe::Recipe,
    trial: &aibench_plan::TrialPlan,
    dir: &RunDir,
    results: Vec<WorkloadOutcome>,
    crashed: bool,
    cancel: &Cancel,
    events: &mut Events,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, wdir, out) in results {
        let mut summary = out.map_err(|e| anyhow::anyhow!("workload `{name}`: {e:#}"))?;
        if crashed || cancel.is_cancelled() {
            summary.interrupted = true;
        }
        let every_request_failed = summary.counts.total > 0 && summary.counts.successes == 0;
        let gave_up = matches!(
            summary.stop_reason,
            Some(StopReason::ErrorBudget | StopReason::InternalError | StopReason::Stalled)
        );
        let status = if crashed || every_request_failed || gave_up {
            Status::Failed
        } else if summary.interrupted {
            Status::Interrupted
        } else {
            Status::Completed
        };
        let rel = wdir
            .strip_prefix(&dir.root)
            .unwrap_or(&wdir)
            .join("summary.json");
        dir.write_json(&rel.to_string_lossy(), &summary)?;
        let slo_failures = report::slo_failures(recipe.slo.as_ref(), &summary);
        let l = &summary.latency;
        events.emit(Event::WorkloadFinished(WorkloadResult {
            trial: trial.id.clone(),
            workload: name.clone(),
            status,
            requests: summary.counts.total,
            successes: summary.counts.successes,
            errors: summary.counts.errors + summary.counts.dropped,
            requests_per_s: summary.throughput.requests_per_s,
            output_tokens_per_s: summary.throughput.output_tokens_per_s,
            ttft_p50_ms: l.ttft.as_ref().map(|x| x.p50_ms),
            ttft_p99_ms: l.ttft.as_ref().map(|x| x.p99_ms),
            tpot_p50_ms: l.tpot.as_ref().map(|x| x.p50_ms),
            e2e_p99_ms: l.e2e.as_ref().map(|x| x.p99_ms),
        }));
        rows.push(Row {
            trial: trial.id.clone(),
            params: serde_json::to_value(&trial.params)?,
            workload: name,
            status,
            summary,
            slo_failures,
        });
    }
    rows.sort_by_key(|r| recipe.workloads.iter().position(|w| w.name == r.workload));
    Ok(rows)
}

/// The rows of a trial finished in an earlier attempt (for `--resume`).
fn read_rows(
    dir: &RunDir,
    trial: &str,
    recipe: &aibench_recipe::Recipe,
    single: bool,
    params: &indexmap::IndexMap<String, serde_json::Value>,
) -> Vec<Row> {
    recipe
        .workloads
        .iter()
        .filter_map(|w| {
            let path = dir
                .workload_dir(trial, &w.name, single)
                .join("summary.json");
            let summary: aibench_results::Summary =
                serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            Some(Row {
                trial: trial.into(),
                params: serde_json::to_value(params).unwrap_or_default(),
                workload: w.name.clone(),
                status: Status::Completed,
                slo_failures: report::slo_failures(recipe.slo.as_ref(), &summary),
                summary,
            })
        })
        .collect()
}
