//! The plan stage: from a validated recipe to what runs where, with which command.
//!
//! For each trial the plan lists the services with the command line their kind's template
//! renders (or the recipe's own), their health check and metrics endpoint (the kind's defaults
//! unless the recipe says otherwise), and whether the services must restart because a service
//! parameter changed since the previous trial. The platform stage fills in what is only known at
//! deploy time — ports, hosts, data directories — through the runtime variables
//! (`${PORT}`, `${HOST}`, `${AIBENCH_DATA_DIR}`, ...).

pub mod kinds;

use aibench_recipe::{HealthCheck, Loaded, Recipe, Service, ServiceKind, Trial};
use serde::Serialize;

pub use kinds::{defaults, prepare_steps, KindDefaults};

pub use aibench_recipe::kinds::PrepareStep;

/// What runs, for every trial.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub name: String,
    pub platform: String,
    pub trials: Vec<TrialPlan>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrialPlan {
    pub id: String,
    pub params: indexmap::IndexMap<String, serde_json::Value>,
    /// Which repeat of its sweep point this is (recipes with `repeat: N > 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The services must be (re)started before this trial: first trial, or a service changed.
    pub restart_services: bool,
    pub services: Vec<ServicePlan>,
    pub workloads: Vec<WorkloadPlan>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServicePlan {
    pub name: String,
    pub kind: ServiceKind,
    pub replicas: u32,
    pub nodes: u32,
    /// The command line, with runtime variables such as `${PORT}` still to expand.
    pub argv: Vec<String>,
    /// Run through `sh -c` (the recipe gave a command string).
    pub shell: bool,
    /// Commands run once before the service starts (e.g. `initdb` for PostgreSQL).
    pub setup: Vec<Vec<String>>,
    /// Environment the kind needs, runtime variables still to expand; secrets stay references.
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    /// Further named ports (`None`: a free one at start), exposed as `${AIBENCH_PORT_<NAME>}`.
    pub named_ports: Vec<(String, Option<u16>)>,
    /// The model the service serves, if any.
    pub model: Option<String>,
    pub health: HealthPlan,
    pub metrics_path: Option<String>,
    /// What to do once it is healthy, before the clock (see [`PrepareStep`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prepare: Vec<PrepareStep>,
    /// When aibench (or the job) runs as root: the system user the setup commands and the
    /// service run as instead, owning the data directory (PostgreSQL refuses to run as root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// Folders searched for the programs after PATH; a `*` stands for a version, the highest
    /// first (`/usr/lib/postgresql/*/bin`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub program_dirs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthPlan {
    pub check: HealthCheck,
    pub path: Option<String>,
    pub timeout_s: f64,
    pub interval_s: f64,
    /// During the measurement, how long the check may fail before the service is judged hung
    /// or down (0: not checked then).
    pub hung_after_s: f64,
}

/// `health.hung_after` when the recipe does not say.
pub const DEFAULT_HUNG_AFTER_S: f64 = 15.0;

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadPlan {
    pub name: String,
    pub target: String,
    pub protocol: String,
    pub load: String,
    pub stop: String,
    pub clients: u32,
}

/// Plan every trial of a loaded recipe.
pub fn plan(loaded: &Loaded) -> Plan {
    let mut trials = Vec::new();
    let mut previous: Option<serde_json::Value> = None;
    for trial in &loaded.trials {
        let services_json = serde_json::to_value(&trial.recipe.services).unwrap_or_default();
        let restart = previous.as_ref() != Some(&services_json);
        previous = Some(services_json);
        trials.push(plan_trial(trial, restart));
    }
    Plan {
        name: loaded.recipe.name.clone(),
        platform: match loaded.recipe.platform.kind {
            aibench_recipe::PlatformKind::Local => "local".into(),
            aibench_recipe::PlatformKind::Slurm => "slurm".into(),
        },
        trials,
    }
}

fn plan_trial(trial: &Trial, restart_services: bool) -> TrialPlan {
    let r = &trial.recipe;
    TrialPlan {
        id: trial.id.clone(),
        params: trial.params.clone(),
        repeat: trial.repeat,
        restart_services,
        services: r.services.iter().map(|s| plan_service(r, s)).collect(),
        workloads: r.workloads.iter().map(plan_workload).collect(),
    }
}

/// The service's command, health check and metrics endpoint.
pub fn plan_service(_recipe: &Recipe, s: &Service) -> ServicePlan {
    let d = defaults(s);
    // `args` and `extra_args` follow the command, the kind's or the recipe's own (so that a
    // sweep over `llm.args.x` changes the command either way).
    let (argv, shell) = match &s.command {
        Some(aibench_recipe::CommandLine::Shell(t)) => {
            let mut line = t.0.clone();
            for a in kinds::render_args(s, Vec::new()) {
                line.push(' ');
                line.push_str(&kinds::shell_word(&a));
            }
            (vec![line], true)
        }
        Some(aibench_recipe::CommandLine::Argv(v)) => (
            kinds::render_args(s, v.iter().map(|t| t.0.clone()).collect()),
            false,
        ),
        None => (kinds::render_args(s, d.argv.clone()), false),
    };
    let mut env = d.env.clone();
    for (k, v) in &s.env {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.0.clone()));
    }
    let health = match &s.health {
        Some(h) => HealthPlan {
            check: h.check,
            path: h.path.clone().or_else(|| {
                (h.check == HealthCheck::Http)
                    .then(|| d.health_path.clone())
                    .flatten()
            }),
            timeout_s: h.timeout.as_secs_f64(),
            interval_s: h.interval.as_secs_f64(),
            hung_after_s: h.hung_after.as_secs_f64(),
        },
        None => HealthPlan {
            check: d.health,
            path: d.health_path.clone(),
            timeout_s: d.health_timeout_s,
            interval_s: 1.0,
            hung_after_s: DEFAULT_HUNG_AFTER_S,
        },
    };
    let metrics_path = match &s.metrics {
        Some(m) if m.enabled => Some(m.path.clone()),
        Some(_) => None,
        None => d.metrics_path.clone(),
    };
    ServicePlan {
        name: s.name.clone(),
        kind: s.kind,
        replicas: s.replicas,
        nodes: s.resources.nodes,
        argv,
        shell,
        setup: d.setup.clone(),
        env,
        port: s.port,
        named_ports: {
            let mut ports: Vec<(String, Option<u16>)> =
                s.ports.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
            if let Some(p) = s.metrics.as_ref().and_then(|m| m.port) {
                if !ports.iter().any(|(k, _)| k == "metrics") {
                    ports.push(("metrics".to_string(), Some(p)));
                }
            }
            for required in &d.named_ports {
                if !ports.iter().any(|(k, _)| k == required) {
                    ports.push((required.to_string(), None));
                }
            }
            ports
        },
        model: s.model.clone(),
        health,
        metrics_path,
        prepare: prepare_steps(s),
        run_as: d.run_as.map(String::from),
        program_dirs: d.program_dirs.iter().map(|d| d.to_string()).collect(),
    }
}

fn plan_workload(w: &aibench_recipe::Workload) -> WorkloadPlan {
    use aibench_recipe::Load;
    let load = match &w.load {
        Load::ClosedLoop {
            users, think_time, ..
        } => match think_time {
            Some(t) => format!("closed loop, {users} users, think {t}"),
            None => format!("closed loop, {users} users"),
        },
        Load::OpenLoop {
            arrival,
            rate,
            max_in_flight,
            ..
        } => {
            let mut s = format!(
                "open loop, {}",
                serde_json::to_value(arrival)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            );
            if let Some(r) = rate {
                s.push_str(&format!(" at {r}"));
            }
            if let Some(m) = max_in_flight {
                s.push_str(&format!(", at most {m} in flight"));
            }
            s
        }
    };
    let mut stop = Vec::new();
    if let Some(w) = &w.warmup {
        stop.push(format!("warm-up {w}"));
    }
    if let Some(d) = &w.stop.duration {
        stop.push(format!("{d}"));
    }
    if let Some(n) = &w.stop.requests {
        stop.push(format!("{n} requests"));
    }
    WorkloadPlan {
        name: w.name.clone(),
        target: w.target.clone(),
        protocol: w.protocol.name().into(),
        load,
        stop: stop.join(", "),
        clients: w.clients.nodes * w.clients.processes,
    }
}
