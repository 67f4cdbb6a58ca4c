//! Reading a run directory: `run.json`, `resolved.yaml`, the trials and their summaries.
//!
//! Reading is lenient: a run that failed half-way, an older layout or a missing file still
//! gives a report, with a note saying what was missing.

use crate::error::{ReportError, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aibench_results::{RunInfo, Status, Summary, TrialInfo};
use indexmap::IndexMap;

use crate::model::{RunReport, ServiceReport, SloSpec};

/// What the report needs from the recipe (`resolved.yaml`).
#[derive(Debug, Clone, Default)]
pub struct RecipeFacts {
    pub slo: Option<aibench_results::objectives::Slo>,
    pub services: Vec<ServiceReport>,
    /// Workload name -> load pattern (`open-loop`, `closed-loop`).
    pub patterns: HashMap<String, String>,
    pub workload_names: Vec<String>,
    /// The recipe as JSON, for optional sections (`regression`).
    pub json: serde_json::Value,
}

/// One workload of one trial on disk.
#[derive(Debug, Clone)]
pub struct TrialData {
    pub id: String,
    pub workload: String,
    pub params: IndexMap<String, serde_json::Value>,
    /// Which repeat of its sweep point this is (recipes with `repeat: N > 1`).
    pub repeat: Option<u32>,
    /// How the trial ended; `None` when run.json does not list it.
    pub status: Option<Status>,
    /// The trial folder (`trials/<id>`).
    pub trial_dir: PathBuf,
    /// The folder with this workload's `summary.json` and `requests.jsonl`.
    pub dir: PathBuf,
    pub summary: Summary,
}

/// A run directory, read.
#[derive(Debug, Clone)]
pub struct RunData {
    pub root: PathBuf,
    pub run: RunInfo,
    /// How the run ended; `None` when its run.json is missing.
    pub status: Option<Status>,
    pub recipe: RecipeFacts,
    pub trials: Vec<TrialData>,
    /// Trials of the plan without a summary.
    pub not_run: Vec<crate::model::NotRun>,
    /// Trials run.json calls completed whose summaries are missing or unreadable.
    pub damaged: Vec<String>,
    /// Wall-clock start of each trial's load (seconds since the epoch), from `logs/events.jsonl`.
    pub trial_starts: HashMap<String, f64>,
    pub notes: Vec<String>,
}

impl RunData {
    /// Read a run directory. Fails only when it is not a run directory at all.
    pub fn read(root: &Path) -> crate::error::Result<RunData> {
        let mut notes = Vec::new();
        let run_path = root.join("run.json");
        let (run, status) = match std::fs::read(&run_path) {
            Ok(bytes) => {
                let run: RunInfo =
                    serde_json::from_slice(&bytes).map_err(|e| ReportError::NotARun {
                        path: root.to_path_buf(),
                        message: format!("{}: not a readable run.json: {e}", run_path.display()),
                    })?;
                let status = run.status;
                (run, Some(status))
            }
            Err(_) if root.join("trials").is_dir() => {
                notes.push("run.json is missing; run details are unknown".into());
                let run = RunInfo {
                    run_id: root
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    ..RunInfo::default()
                };
                (run, None)
            }
            Err(e) => {
                return Err(ReportError::NotARun {
                    path: root.to_path_buf(),
                    message: format!(
                        "{} is not a run directory ({}: {e}); give the folder `aibench run` \
                         printed, e.g. results/<recipe>-<time>",
                        root.display(),
                        run_path.display()
                    ),
                })
            }
        };
        let recipe = read_recipe(root, &mut notes);
        let mut not_run = Vec::new();
        let mut damaged = Vec::new();
        let trials = read_trials(root, &run, &recipe, &mut notes, &mut not_run, &mut damaged);
        let trial_starts = read_trial_starts(&root.join("logs/events.jsonl"));
        Ok(RunData {
            root: root.to_path_buf(),
            run,
            status,
            recipe,
            trials,
            not_run,
            damaged,
            trial_starts,
            notes,
        })
    }

    pub fn run_report(&self) -> RunReport {
        let r = &self.run;
        RunReport {
            run_id: r.run_id.clone(),
            name: r.name.clone(),
            status: self.status,
            reason: r.reason.clone(),
            platform: r.platform.clone(),
            started_at: r.started_at,
            started_at_utc: r.started_at_utc.clone(),
            finished_at: r.finished_at,
            hostname: r.host.hostname.clone(),
            cpu_model: r.host.cpu_model.clone(),
            cpus: r.host.cpus as u64,
            memory_bytes: r.host.memory_bytes,
            aibench_version: r.aibench_version.clone(),
            aibench_git: r.aibench_git.clone(),
            services: self.recipe.services.clone(),
            calibration: r.calibration.clone(),
        }
    }

    pub fn slo_spec(&self) -> Option<SloSpec> {
        self.recipe.slo.as_ref().map(crate::slo::spec)
    }
}

/// `resolved.yaml` is JSON after a comment header; fall back to nothing when it is absent.
fn read_recipe(root: &Path, notes: &mut Vec<String>) -> RecipeFacts {
    let path = root.join("resolved.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        notes.push("resolved.yaml is missing: objectives and service kinds are unknown".into());
        return RecipeFacts::default();
    };
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let json: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!(
                "resolved.yaml could not be read as JSON ({e}); objectives are unknown"
            ));
            return RecipeFacts::default();
        }
    };
    let slo = match json.get("slo") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match serde_json::from_value::<aibench_results::objectives::Slo>(v.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(format!("the recipe's `slo` section could not be read: {e}"));
                None
            }
        },
    };
    let text_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let services = json
        .get("services")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .map(|s| ServiceReport {
                    name: text_of(s, "name").unwrap_or_default(),
                    kind: text_of(s, "kind").unwrap_or_default(),
                    model: text_of(s, "model"),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut patterns = HashMap::new();
    let mut workload_names = Vec::new();
    for w in json
        .get("workloads")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(name) = text_of(w, "name") {
            if let Some(p) = w.get("load").and_then(|l| text_of(l, "pattern")) {
                patterns.insert(name.clone(), p);
            }
            workload_names.push(name);
        }
    }
    RecipeFacts {
        slo,
        services,
        patterns,
        workload_names,
        json,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<Result<T, String>> {
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
}

fn params_map(v: &serde_json::Value) -> IndexMap<String, serde_json::Value> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn read_trials(
    root: &Path,
    run: &RunInfo,
    recipe: &RecipeFacts,
    notes: &mut Vec<String>,
    not_run: &mut Vec<crate::model::NotRun>,
    damaged: &mut Vec<String>,
) -> Vec<TrialData> {
    // The trials run.json lists, in order, then any other folder under trials/.
    let mut listed: Vec<(TrialInfo, Option<Status>)> = run
        .trials
        .iter()
        .map(|t| (t.clone(), Some(t.status)))
        .collect();
    if let Ok(rd) = std::fs::read_dir(root.join("trials")) {
        let mut extra: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !listed.iter().any(|(t, _)| &t.id == n))
            .collect();
        extra.sort();
        for id in extra {
            let params =
                read_json::<serde_json::Value>(&root.join("trials").join(&id).join("params.json"))
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
            listed.push((
                TrialInfo {
                    id,
                    params,
                    ..TrialInfo::default()
                },
                None,
            ));
        }
    }
    let mut out = Vec::new();
    for (t, status) in listed {
        let trial_dir = root.join("trials").join(&t.id);
        let params = if t.params.is_object() {
            params_map(&t.params)
        } else {
            read_json::<serde_json::Value>(&trial_dir.join("params.json"))
                .and_then(|r| r.ok())
                .map(|v| params_map(&v))
                .unwrap_or_default()
        };
        // One workload: its files sit in the trial folder; several: one folder each.
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        if trial_dir.join("summary.json").is_file() {
            let name = recipe
                .workload_names
                .first()
                .cloned()
                .unwrap_or_else(|| "default".into());
            dirs.push((name, trial_dir.clone()));
        } else {
            let mut names: Vec<String> = recipe
                .workload_names
                .iter()
                .filter(|w| trial_dir.join(w).join("summary.json").is_file())
                .cloned()
                .collect();
            if let Ok(rd) = std::fs::read_dir(&trial_dir) {
                let mut more: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("summary.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !names.contains(n))
                    .collect();
                more.sort();
                names.extend(more);
            }
            for n in names {
                let d = trial_dir.join(&n);
                dirs.push((n, d));
            }
        }
        let completed = status == Some(Status::Completed);
        if dirs.is_empty() {
            if completed {
                damaged.push(t.id.clone());
            }
            not_run.push(crate::model::NotRun {
                id: t.id.clone(),
                params: params.clone(),
                status,
            });
            if status != Some(Status::Pending) {
                notes.push(format!(
                    "trial `{}` ({}) has no summary.json; it is left out",
                    t.id,
                    status.map_or("status unknown", Status::as_str)
                ));
            }
            continue;
        }
        for (workload, dir) in dirs {
            match read_json::<Summary>(&dir.join("summary.json")) {
                Some(Ok(summary)) => out.push(TrialData {
                    id: t.id.clone(),
                    workload,
                    params: params.clone(),
                    repeat: t.repeat,
                    status,
                    trial_dir: trial_dir.clone(),
                    dir,
                    summary,
                }),
                Some(Err(e)) => {
                    if completed && !damaged.contains(&t.id) {
                        damaged.push(t.id.clone());
                    }
                    notes.push(format!(
                        "{}: unreadable summary ({e}); the trial is left out",
                        dir.join("summary.json")
                            .strip_prefix(root)
                            .unwrap_or(&dir)
                            .display()
                    ))
                }
                None => {}
            }
        }
    }
    out
}

/// When each trial's load began, from the `phase: measure` events (or a `workload_started`
/// event carrying `started_at`, when the run writes one).
fn read_trial_starts(path: &Path) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut exact: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let trial = v.get("trial").and_then(|t| t.as_str());
        let event = v.get("event").and_then(|t| t.as_str());
        match (event, trial) {
            (Some("workload_started"), Some(trial)) => {
                if let Some(t) = v.get("started_at").and_then(|t| t.as_f64()) {
                    exact.insert(trial.to_string(), t);
                }
            }
            (Some("phase"), Some(trial))
                if v.get("phase").and_then(|p| p.as_str()) == Some("measure") =>
            {
                if let Some(ts) = v.get("ts").and_then(|t| t.as_f64()) {
                    // A resumed run measures a trial again: the last start counts.
                    out.insert(trial.to_string(), ts);
                }
            }
            _ => {}
        }
    }
    out.extend(exact);
    out
}
