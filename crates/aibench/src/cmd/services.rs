//! The modular workflow: `aibench up` deploys and registers services and returns, `aibench
//! services` shows what runs, `aibench down` stops it; `aibench watch` follows a run.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aibench_platform::health::{probe, Check};
use aibench_platform::{Registry, ServiceRecord, ServiceSet, StartContext};

use crate::exit::{self, Outcome};
use crate::run::events::{Events, Mode, Stamped};
use crate::run::rundir;
use crate::table;

const UP_HELP: &str = "\
The services keep running after aibench returns, recorded in the user registry
($AIBENCH_HOME, default ~/.local/state/aibench) so that other commands find them.

Examples:
  aibench up examples/quickstart.yaml
  aibench services
  aibench bench examples/quickstart.yaml --workload chat     drive load at them
  aibench down --all";

#[derive(Debug, clap::Args)]
#[command(after_help = UP_HELP)]
pub struct UpArgs {
    /// The recipe whose services to start.
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Start the services of this trial (default: the first), for sweeps over service settings.
    #[arg(long, value_name = "TRIAL_ID")]
    pub trial: Option<String>,
    /// Where the services' logs go (a run directory is made under it).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the started services as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn up(args: UpArgs) -> anyhow::Result<Outcome> {
    let Ok(loaded) = super::load_recipe(&args.recipe) else {
        return Err(exit::shown_input());
    };
    let plan = aibench_plan::plan(&loaded);
    let trial = match &args.trial {
        Some(id) => match plan.trials.iter().find(|t| &t.id == id) {
            Some(t) => t,
            None => {
                return Err(exit::bad_input_help(
                    format!("no trial `{id}`"),
                    format!("`aibench plan {}` lists them", args.recipe.display()),
                ))
            }
        },
        None => &plan.trials[0],
    };
    if trial.services.is_empty() {
        return Err(exit::bad_input("the recipe has no services to start"));
    }
    let registry = Registry::user();
    for s in &trial.services {
        if let Some(r) = registry.get(&s.name).filter(|r| r.alive() == Some(true)) {
            return Err(exit::bad_input_help(
                format!(
                    "a service named `{}` already runs (pid {}, recipe {})",
                    s.name,
                    r.pid.unwrap_or(0),
                    r.recipe.as_deref().unwrap_or("?"),
                ),
                format!("stop it with `aibench down {}`", s.name),
            ));
        }
    }
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(&loaded.recipe.output.dir));
    let run_dir = root.join(format!(
        "{}-up",
        rundir::run_id(&loaded.recipe.name, rundir::now_epoch())
    ));
    std::fs::create_dir_all(&run_dir)?;
    let ctx = StartContext {
        run_dir: run_dir.clone(),
        host: "127.0.0.1".into(),
        exe: std::env::current_exe()?,
        detach: true,
        recipe_name: loaded.recipe.name.clone(),
        user_registry: Some(registry),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut set = ServiceSet::new(ctx);
    let started = (|| {
        for sp in &trial.services {
            set.start(sp)?;
        }
        Ok::<_, aibench_platform::PlatformError>(())
    })();
    let healthy = match started {
        Ok(()) => rt.block_on(async {
            set.wait_healthy(|| false).await?;
            // The kinds' own preparation (a model pull), as `run` does.
            let records = set.records();
            for sp in &trial.services {
                aibench_platform::prepare::prepare(sp, &records, |what| eprintln!("{what}"))
                    .await
                    .map_err(|reason| aibench_platform::PlatformError::Start {
                        name: sp.name.clone(),
                        reason,
                    })?;
            }
            Ok(())
        }),
        Err(e) => Err(e),
    };
    if let Err(e) = healthy {
        set.stop(Duration::from_secs(5));
        return Err(e.into());
    }
    let records = set.detach();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!(
            "{}",
            service_table(&records, &vec!["ready".to_string(); records.len()])
        );
        eprintln!(
            "logs: {}/logs\nstop with: aibench down {}",
            run_dir.display(),
            records
                .iter()
                .map(|r| r.service.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(Outcome::Success)
}

fn service_table(records: &[ServiceRecord], states: &[String]) -> String {
    let now = rundir::now_epoch();
    let rows: Vec<Vec<String>> = records
        .iter()
        .zip(states)
        .map(|(r, state)| {
            vec![
                r.name.clone(),
                r.kind.to_string(),
                r.url
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", r.host, r.port)),
                state.clone(),
                r.pid
                    .map(|p| p.to_string())
                    .or_else(|| r.job_id.clone())
                    .unwrap_or_default(),
                r.platform.clone(),
                age(now - r.started_at),
                r.recipe.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &[
            "name", "kind", "address", "state", "pid/job", "platform", "up", "recipe",
        ],
        &rows,
    )
}

fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

const SERVICES_HELP: &str = "\
Shows every service aibench started that is registered on this machine — by `aibench up` or
by a running `aibench run` — and checks each one now.

Examples:
  aibench services
  aibench services --json | jq '.[] | select(.state == \"ready\") | .url'";

#[derive(Debug, clap::Args)]
#[command(after_help = SERVICES_HELP)]
pub struct ServicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ready`, `not ready: ...`, or `gone` for one record.
pub async fn state_of(r: &ServiceRecord) -> String {
    if r.alive() == Some(false) {
        return "gone".into();
    }
    if r.platform == "slurm" {
        let cli = aibench_slurm::SlurmCli::from_env();
        if let Some(status) = aibench_slurm::record_status(&cli, r) {
            if status.state.is_finished() {
                return format!("gone ({})", status.describe());
            }
        }
    }
    let check = Check::from_plan(r.health, r.health_path.as_deref(), r.kind);
    let addr = format!("{}:{}", r.host, r.port)
        .parse()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], r.port)));
    match probe(&check, addr, Duration::from_secs(2)).await {
        Ok(()) => "ready".into(),
        Err(e) => format!("not ready: {e}"),
    }
}

pub fn services(args: ServicesArgs) -> anyhow::Result<Outcome> {
    let records = Registry::user().list();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let states: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for r in &records {
            out.push(state_of(r).await);
        }
        out
    });
    if args.json {
        let list: Vec<serde_json::Value> = records
            .iter()
            .zip(&states)
            .map(|(r, s)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["state"] = serde_json::Value::from(s.clone());
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if records.is_empty() {
        eprintln!("no services are running; start some with `aibench up RECIPE`");
    } else {
        print!("{}", service_table(&records, &states));
        if states.iter().any(|s| s == "gone") {
            eprintln!("services marked `gone` have exited; `aibench down NAME` forgets them");
        }
    }
    Ok(Outcome::Success)
}

const DOWN_HELP: &str = "\
Stops services recorded in the registry: SIGTERM to the service's process group, SIGKILL
after the grace period. Names match a replica (`llm-2`) or a service with all its replicas.

Examples:
  aibench down llm
  aibench down --all";

#[derive(Debug, clap::Args)]
#[command(after_help = DOWN_HELP)]
pub struct DownArgs {
    /// Services to stop.
    #[arg(value_name = "NAME", required_unless_present = "all")]
    pub names: Vec<String>,
    /// Stop every registered service.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
}

pub fn down(args: DownArgs) -> anyhow::Result<Outcome> {
    let registry = Registry::user();
    let records = registry.list();
    let mut chosen: Vec<&ServiceRecord> = Vec::new();
    let mut missing = Vec::new();
    if args.all {
        chosen.extend(records.iter());
    } else {
        for n in &args.names {
            let matched: Vec<&ServiceRecord> = records
                .iter()
                .filter(|r| &r.name == n || &r.service == n)
                .collect();
            if matched.is_empty() {
                missing.push(n.clone());
            }
            chosen.extend(matched);
        }
    }
    for r in &chosen {
        let was_alive = if r.platform == "slurm" {
            aibench_slurm::cancel_record(&aibench_slurm::SlurmCli::from_env(), r).unwrap_or(false)
        } else {
            let alive = r.alive() == Some(true);
            if alive {
                aibench_platform::local::stop_record(r, Duration::from_secs(args.grace));
            }
            alive
        };
        registry.remove(&r.name)?;
        println!(
            "{} {}",
            if was_alive {
                "stopped"
            } else {
                "forgot (already gone)"
            },
            r.name
        );
    }
    if !missing.is_empty() {
        let known: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        return Err(exit::bad_input(format!(
            "no running service named {}{}",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if known.is_empty() {
                String::new()
            } else {
                format!("; running: {}", known.join(", "))
            }
        )));
    }
    if chosen.is_empty() {
        eprintln!("nothing to stop");
    }
    Ok(Outcome::Success)
}

const WATCH_HELP: &str = "\
Follows the events a run writes to logs/events.jsonl: phases, services, live progress and
results, until the run finishes.

Examples:
  aibench watch results/quickstart-20261123-140502
  aibench watch --no-follow results/quickstart-20261123-140502   print what happened and return";

#[derive(Debug, clap::Args)]
#[command(after_help = WATCH_HELP)]
pub struct WatchArgs {
    /// The run directory.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Print the events so far and return instead of following.
    #[arg(long)]
    pub no_follow: bool,
}

/// The owner of a run marked running, when that process is gone from this host.
pub fn abandoned(run_dir: &Path) -> Option<aibench_results::Owner> {
    let info = aibench_results::RunInfo::read(run_dir).ok()?;
    if info.status != aibench_results::Status::Running {
        return None;
    }
    let owner = info.owner?;
    (owner.alive() == Some(false)).then_some(owner)
}

pub fn watch(args: WatchArgs) -> anyhow::Result<Outcome> {
    let path = args.run_dir.join("logs/events.jsonl");
    let mut waited = 0;
    while !path.exists() {
        if args.no_follow || waited > 100 {
            return Err(exit::bad_input(format!(
                "{} has no events; is it a run directory?",
                args.run_dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let mut events = Events::new(Mode::pick(false));
    let mut file = std::fs::File::open(&path)?;
    let mut pos = 0u64;
    let mut partial = String::new();
    loop {
        file.seek(SeekFrom::Start(pos))?;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        let mut finished = false;
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if !line.ends_with('\n') {
                partial.push_str(&line);
                continue;
            }
            let full = std::mem::take(&mut partial) + &line;
            if let Ok(stamped) = serde_json::from_str::<Stamped>(&full) {
                finished |= matches!(stamped.event, crate::run::events::Event::RunFinished { .. });
                if let crate::run::events::Event::RunFinished {
                    status,
                    report,
                    exit_code,
                } = &stamped.event
                {
                    events.say_at(
                        stamped.t,
                        &format!(
                            "run {status} (exit code {exit_code}){}",
                            report
                                .as_ref()
                                .map(|r| format!("; report: {r}"))
                                .unwrap_or_default()
                        ),
                    );
                } else {
                    events.show_stamped(&stamped);
                }
            }
        }
        if finished || args.no_follow {
            break;
        }
        if let Some(owner) = abandoned(&args.run_dir) {
            events.finish();
            eprintln!(
                "run abandoned: its aibench process (pid {} on {}) is gone without finishing; \
                 `aibench run --resume {}` continues it",
                owner.pid,
                owner.hostname,
                args.run_dir.display()
            );
            return Ok(Outcome::Broken);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    events.finish();
    Ok(Outcome::Success)
}
