//! The run directory: the one place results live (see docs/architecture.md).

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use aibench_results::time::{now_epoch, utc};
pub use aibench_results::{run_id, Host, RunInfo, Status, TrialInfo};

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
    /// A new run directory `<root>/<id>`, or `<id>-2`, `<id>-3`... if that is taken.
    pub fn create(root: &Path, id: &str) -> anyhow::Result<RunDir> {
        use anyhow::Context as _;
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        for n in 1.. {
            let name = if n == 1 {
                id.to_string()
            } else {
                format!("{id}-{n}")
            };
            let path = root.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { root: path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create the run directory {}", path.display())
                    })
                }
            }
        }
        unreachable!("some suffix is free")
    }

    /// The run id: the directory's name.
    pub fn id(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

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
        aibench_results::write_json(&self.root.join(rel), value)
    }

    pub fn read_info(&self) -> Option<RunInfo> {
        RunInfo::read(&self.root).ok()
    }
}
