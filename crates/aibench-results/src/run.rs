//! `run.json`: what ran, where, when, and how each trial and the run ended.
//!
//! The runner writes it (`aibench run` and `aibench bench` alike) at every change of status;
//! the report, `runs`, `compare`, `watch` and `--resume` read it with [`RunInfo::read`]. Its
//! JSON Schema, from [`run_schema`], is committed as `schema/run.schema.json`.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the `run.json` layout.
pub const RUN_SCHEMA_VERSION: u32 = 1;

/// How a run, a trial or one workload of a trial stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not started yet.
    #[default]
    Pending,
    /// Started and not ended (or its process died without saying how it ended).
    Running,
    /// Ended as planned. (Older run directories wrote `complete` for trials.)
    #[serde(alias = "complete")]
    Completed,
    /// Stopped early by a signal or a stop request; what was measured is kept.
    Interrupted,
    /// Could not do what it was asked: a service did not start or crashed, every request
    /// failed, or the load could not run.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Interrupted => "interrupted",
            Status::Failed => "failed",
        }
    }

    /// Every status, in the order a run goes through them.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Running,
        Status::Completed,
        Status::Interrupted,
        Status::Failed,
    ];
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "complete" => Ok(Status::Completed),
            _ => Status::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| {
                    format!(
                        "`{s}` is not a status; use one of {}",
                        Status::ALL.map(Status::as_str).join(", ")
                    )
                }),
        }
    }
}

/// Which command made the run directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `aibench run RECIPE`: deploys the recipe's services (or uses running ones) and drives
    /// its workloads.
    #[default]
    Run,
    /// `aibench bench URL`: one workload at a server that already runs, from flags.
    Bench,
    /// `aibench selfcheck`: load at the fixed-timing simulator, to measure the client's error.
    Selfcheck,
}

/// `run.json`.
///
/// Reading is lenient (every field has a default) so that a run cut off half-way, or written
/// by an older aibench, still reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RunInfo {
    pub schema_version: u32,
    /// The run directory's name: the recipe name and the UTC start time.
    pub run_id: String,
    /// The recipe's name (`bench` for `aibench bench URL`).
    pub name: String,
    pub command: Command,
    pub status: Status,
    /// Why the run failed or stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The recipe as given on the command line (`recipe.yaml` in the run directory holds its
    /// text).
    pub recipe_path: String,
    /// `local` or `slurm`.
    pub platform: String,
    pub seed: u64,
    /// Wall-clock time of the run's start, seconds since the Unix epoch; record times in
    /// `requests.jsonl` are relative to each workload's own start, given in its summary.
    pub started_at: f64,
    pub started_at_utc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    pub aibench_version: String,
    pub aibench_git: String,
    /// The commit of the repository holding the recipe, if it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe_git: Option<String>,
    /// The aibench process writing the run, so that a run whose process died (SIGKILL, a
    /// lost node) is shown as abandoned rather than running forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    pub host: Host,
    /// The measuring error of this machine, when `run --calibrate` measured it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    pub trials: Vec<TrialInfo>,
    /// Slurm jobs submitted for the run.
    pub job_ids: Vec<String>,
}

/// One trial of a run: one point of the recipe's sweep.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TrialInfo {
    /// `01`, `02`, ...: the folder under `trials/`.
    pub id: String,
    /// The sweep's values for this trial (empty object without a sweep).
    pub params: serde_json::Value,
    /// Which repeat of its sweep point this trial is (recipes with `repeat: N > 1`); the
    /// repeats of one point share their params.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    pub status: Status,
}

/// A process on a host, identified beyond its pid (pids are reused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Owner {
    pub pid: u32,
    pub hostname: String,
    /// When the process started, in clock ticks since boot (`/proc/<pid>/stat`).
    pub start_ticks: u64,
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 of the line; the command name (field 2) may hold spaces, so count after it.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

impl Owner {
    /// This process.
    pub fn here() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            hostname: Host::here().hostname,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether the process still runs; `None` when it ran on another host.
    pub fn alive(&self) -> Option<bool> {
        if self.hostname != Host::here().hostname {
            return None;
        }
        Some(start_ticks(self.pid).is_some_and(|t| self.start_ticks == 0 || t == self.start_ticks))
    }
}

/// Quantiles of an error, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ErrorStats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// How far this machine's numbers can be trusted: `aibench selfcheck` drove load at the
/// built-in simulator in fixed-timing mode, whose every token leaves on an exact schedule, and
/// compared what the client measured with that schedule. The simulator's own lateness on the
/// same machine counts too, so the errors bound the client's from above.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Calibration {
    /// The machine it ran on (where a local run's clients run).
    pub hostname: String,
    /// Closed-loop users, when the load was a closed loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<u32>,
    /// Requests per second, when the load was an open loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    pub duration_s: f64,
    pub output_tokens: u32,
    /// The simulator's exact time to first token and gap between tokens.
    pub ttft_ms: f64,
    pub itl_ms: f64,
    /// Measured requests that succeeded.
    pub requests: u64,
    /// |measured TTFT − exact TTFT|.
    pub ttft_error: ErrorStats,
    /// |measured gap − exact ITL|, over every gap.
    pub itl_error: ErrorStats,
    /// How late requests left against their schedule.
    pub send_lag: ErrorStats,
    /// aibench's own CPU over the measure window, percent of one core.
    pub client_cpu_pct: f64,
    /// The larger of the TTFT and ITL errors' p99: differences smaller than this are below what
    /// this machine measures at this load.
    pub resolution_ms: f64,
}

/// The suffix of a repeated trial's id: `03_users=8_repeat=2`.
pub const REPEAT_SUFFIX: &str = "_repeat=";

/// The sweep point a trial id names: the id without its `_repeat=<n>` suffix.
pub fn point_of(id: &str) -> &str {
    match id.rfind(REPEAT_SUFFIX) {
        Some(i) if id[i + REPEAT_SUFFIX.len()..].parse::<u32>().is_ok() => &id[..i],
        _ => id,
    }
}

/// The machine aibench ran on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Host {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
}

impl Host {
    /// This machine (Linux `/proc`; fields it cannot read are left empty).
    pub fn here() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let hostname = read("/proc/sys/kernel/hostname").trim().to_string();
        Host {
            hostname: if hostname.is_empty() {
                "localhost".into()
            } else {
                hostname
            },
            os: std::env::consts::OS.into(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
        }
    }
}

impl RunInfo {
    /// Read `run.json` from a run directory.
    pub fn read(run_dir: &Path) -> std::io::Result<RunInfo> {
        let bytes = std::fs::read(run_dir.join("run.json"))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Set one trial's status, by its position.
    pub fn set_trial_status(&mut self, index: usize, status: Status) {
        if let Some(t) = self.trials.get_mut(index) {
            t.status = status;
        }
    }
}

/// A run id: the name made safe for a folder, and the UTC start time, e.g.
/// `quickstart-20261123-140502`.
pub fn run_id(name: &str, epoch_s: f64) -> String {
    let digits: String = crate::time::utc(epoch_s)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{safe}-{}-{}", &digits[..8], &digits[8..14])
}

/// Write a file so that readers see the old content or the new, never a part: a temporary
/// file beside it (hidden, so globs like `*.json` skip it), then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Write a value as pretty JSON (with a final newline) through [`write_atomic`], creating the
/// folders it goes in.
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The JSON Schema of `run.json`.
pub fn run_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RunInfo);
    serde_json::to_value(&schema).expect("a JSON Schema always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_trial_ids_name_their_point() {
        assert_eq!(point_of("03_users=8_repeat=2"), "03_users=8");
        assert_eq!(point_of("01_repeat=10"), "01");
        assert_eq!(point_of("01_users=8"), "01_users=8");
        assert_eq!(point_of("01_repeat=x"), "01_repeat=x");
    }

    #[test]
    fn ids_are_named_and_dated() {
        assert_eq!(
            run_id("quick start", 1_795_437_902.0),
            "quick-start-20261123-124502"
        );
    }

    #[test]
    fn statuses_read_old_spellings_and_write_one() {
        let t: TrialInfo =
            serde_json::from_str(r#"{"id": "01", "params": {}, "status": "complete"}"#).unwrap();
        assert_eq!(t.status, Status::Completed);
        assert_eq!(
            serde_json::to_value(&t).unwrap()["status"],
            serde_json::json!("completed")
        );
        assert_eq!("complete".parse::<Status>(), Ok(Status::Completed));
        assert!("done".parse::<Status>().unwrap_err().contains("pending"));
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
    }

    #[test]
    fn a_partial_run_json_reads() {
        let r: RunInfo = serde_json::from_str(r#"{"run_id": "x", "status": "running"}"#).unwrap();
        assert_eq!(r.status, Status::Running);
        assert_eq!(r.command, Command::Run);
        assert!(r.trials.is_empty());
    }
}
