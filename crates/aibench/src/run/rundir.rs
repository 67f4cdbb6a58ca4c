//! The run directory: the one place results live (see docs/architecture.md).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// `run.json`: what ran, where, when, and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub run_id: String,
    pub name: String,
    /// `running`, `completed`, `failed` or `interrupted`.
    pub status: String,
    /// Why the run failed or stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub recipe_path: String,
    pub platform: String,
    pub seed: u64,
    /// Wall-clock time of the run's start, seconds since the Unix epoch; record times in
    /// `requests.jsonl` are relative to each workload's own start, given in its summary.
    pub started_at: f64,
    pub started_at_utc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    pub aibench_version: String,
    pub aibench_git: String,
    /// The commit of the repository holding the recipe, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_git: Option<String>,
    pub host: Host,
    pub trials: Vec<TrialInfo>,
    #[serde(default)]
    pub job_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrialInfo {
    pub id: String,
    pub params: serde_json::Value,
    /// `pending`, `running`, `complete`, `interrupted` or `failed`.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
}

impl Host {
    pub fn here() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(String::from)
            })
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Host {
            hostname: hostname(),
            os: std::env::consts::OS.into(),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes,
        }
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn utc(epoch: f64) -> String {
    let secs = epoch.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A run id: the recipe name and the UTC start time, e.g. `quickstart-20261123-140502`.
pub fn run_id(name: &str, epoch: f64) -> String {
    let t = utc(epoch);
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
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
    format!("{safe}-{}-{}", &compact[..8], &compact[8..14])
}

pub fn git_head(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn trial_dir(&self, trial: &str) -> PathBuf {
        self.root.join("trials").join(trial)
    }

    /// Where a workload's records and summary go: the trial folder itself when the recipe has
    /// one workload, else one folder per workload inside it.
    pub fn workload_dir(&self, trial: &str, workload: &str, single: bool) -> PathBuf {
        if single {
            self.trial_dir(trial)
        } else {
            self.trial_dir(trial).join(workload)
        }
    }

    pub fn write_json(&self, rel: &str, value: &impl Serialize) -> std::io::Result<()> {
        let path = self.root.join(rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        aibench_platform::registry::write_atomic(&path, &serde_json::to_vec_pretty(value)?)
    }

    pub fn read_info(&self) -> Option<RunInfo> {
        serde_json::from_slice(&std::fs::read(self.root.join("run.json")).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_437_902.0), "2026-11-23T12:45:02Z");
        assert_eq!(
            run_id("quick start", 1_795_437_902.0),
            "quick-start-20261123-124502"
        );
    }
}
