//! The Slurm commands aibench runs: `sbatch`, `squeue`, `scontrol`, `sacct`, `scancel`, `srun`.
//!
//! Each call is one short process; their answers are parsed in [`crate::state`]. Programs are
//! found on `PATH`, or in `$AIBENCH_SLURM_BIN` when that is set (a site's own wrappers).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::state::{parse_sacct_line, parse_scontrol_line, parse_squeue_line, JobStatus};
use crate::SlurmError;

/// Runs Slurm's commands.
#[derive(Clone, Debug, Default)]
pub struct SlurmCli {
    bin_dir: Option<PathBuf>,
}

impl SlurmCli {
    /// Programs from `$AIBENCH_SLURM_BIN`, else from `PATH`.
    pub fn from_env() -> Self {
        SlurmCli {
            bin_dir: std::env::var_os("AIBENCH_SLURM_BIN").map(PathBuf::from),
        }
    }

    /// Programs from `dir` (a site's wrappers, or stand-ins in tests).
    pub fn with_bin_dir(dir: impl Into<PathBuf>) -> Self {
        SlurmCli {
            bin_dir: Some(dir.into()),
        }
    }

    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Is Slurm's client side installed here (`sinfo` found)?
    pub fn available(&self) -> bool {
        Command::new(self.program("sinfo"))
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(&self, program: &str, args: &[String]) -> Result<Output, SlurmError> {
        Command::new(self.program(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| SlurmError::Command {
                command: format!("{program} {}", args.join(" ")),
                message: if e.kind() == std::io::ErrorKind::NotFound {
                    format!("`{program}` not found; is this a Slurm login node? (load Slurm's module, or run where `sinfo` works)")
                } else {
                    e.to_string()
                },
            })
    }

    /// `sbatch --parsable SCRIPT`: the new job's id.
    pub fn sbatch(&self, script: &std::path::Path) -> Result<String, SlurmError> {
        let args = vec!["--parsable".to_string(), script.display().to_string()];
        let out = self.run("sbatch", &args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(SlurmError::Command {
                command: format!("sbatch {}", args.join(" ")),
                message: submit_hint(stderr.trim()),
            });
        }
        // `ID` or `ID;CLUSTER`.
        let id = stdout
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(SlurmError::Command {
                command: format!("sbatch {}", args.join(" ")),
                message: format!("no job id in its answer: {:?}", stdout.trim()),
            });
        }
        Ok(id)
    }

    /// The jobs Slurm still knows among `ids`, in one call: `squeue -h -t all -j IDS`.
    pub fn squeue(&self, ids: &[String]) -> Result<Vec<(String, JobStatus)>, SlurmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let args = vec![
            "-h".to_string(),
            "-t".into(),
            "all".into(),
            "-j".into(),
            ids.join(","),
            "-o".into(),
            "%i|%T|%N|%r".into(),
        ];
        let out = self.run("squeue", &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            // Every id unknown (finished and purged): not an error, just no answer.
            if stderr.contains("Invalid job id") {
                return Ok(Vec::new());
            }
            return Err(SlurmError::Command {
                command: format!("squeue {}", args.join(" ")),
                message: stderr.trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_squeue_line)
            .collect())
    }

    /// `scontrol show job -o ID`: the job's details while slurmctld remembers it.
    pub fn scontrol_job(&self, id: &str) -> Option<JobStatus> {
        let out = self
            .run(
                "scontrol",
                &["show".into(), "job".into(), "-o".into(), id.into()],
            )
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_scontrol_line)
            .find(|(jid, _)| jid == id)
            .map(|(_, s)| s)
    }

    /// Final states from accounting (`sacct`), or from the job completion log (`sacct -c`) when
    /// the cluster keeps no accounting database.
    pub fn sacct(&self, ids: &[String]) -> Vec<(String, JobStatus)> {
        if ids.is_empty() {
            return Vec::new();
        }
        let fields = "JobID,State,ExitCode,NodeList".to_string();
        for completion_log in [false, true] {
            let mut args = vec![
                "-n".to_string(),
                "-P".into(),
                "-X".into(),
                "-j".into(),
                ids.join(","),
                "-o".into(),
                fields.clone(),
            ];
            if completion_log {
                args.insert(0, "-c".into());
                args.retain(|a| a != "-X");
            }
            let Ok(out) = self.run("sacct", &args) else {
                return Vec::new();
            };
            if out.status.success() {
                let found: Vec<(String, JobStatus)> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(parse_sacct_line)
                    .filter(|(id, _)| ids.contains(id))
                    .collect();
                if !found.is_empty() {
                    return found;
                }
            }
        }
        Vec::new()
    }

    /// `scancel IDS` (job ids or `job.step`). Ids Slurm no longer knows are fine.
    pub fn scancel(&self, ids: &[String]) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let out = self.run("scancel", ids)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let real_errors: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.contains("Job/step already completing or completed")
                    && !l.contains("Invalid job id")
                    && !l.contains("already completed")
            })
            .collect();
        if !out.status.success() && !real_errors.is_empty() {
            return Err(SlurmError::Command {
                command: format!("scancel {}", ids.join(" ")),
                message: real_errors.join("; "),
            });
        }
        Ok(())
    }

    /// `scancel --signal=SIGNAL IDS`: signal jobs or steps without cancelling them.
    pub fn signal(&self, ids: &[String], signal: &str) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec![format!("--signal={signal}")];
        args.extend(ids.iter().cloned());
        // Slurm 22.05 delivers the signal to a step, then complains about the job id and exits
        // non-zero; the delivery is what counts, so only a failure to run at all is an error.
        self.run("scancel", &args).map(|_| ())
    }

    /// The steps of job `job_id` whose name is `name` (`JOB.STEP`), from `squeue -s`.
    pub fn steps_named(&self, job_id: &str, name: &str) -> Vec<String> {
        let args = vec![
            "-h".to_string(),
            "-s".into(),
            "-j".into(),
            job_id.into(),
            "-o".into(),
            "%i|%j".into(),
        ];
        let Ok(out) = self.run("squeue", &args) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, n)| n.trim() == name)
            .map(|(id, _)| id.trim().to_string())
            .collect()
    }

    /// Expand a Slurm host list (`node[1-3],gpu7`) into names: `scontrol show hostnames`.
    pub fn hostnames(&self, list: &str) -> Result<Vec<String>, SlurmError> {
        let args = vec!["show".to_string(), "hostnames".into(), list.into()];
        let out = self.run("scontrol", &args)?;
        if !out.status.success() {
            return Err(SlurmError::Command {
                command: format!("scontrol {}", args.join(" ")),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect())
    }
}

/// The fix for sbatch's most common refusals, after its own words.
fn submit_hint(stderr: &str) -> String {
    let lower = stderr.to_ascii_lowercase();
    let hint = if lower.contains("invalid account") {
        Some("check `platform.slurm.account` (your accounts: `sacctmgr show assoc user=$USER format=account`)")
    } else if lower.contains("invalid partition") {
        Some("check `platform.slurm.partition` (the partitions: `sinfo -s`)")
    } else if lower.contains("invalid qos") {
        Some("check `platform.slurm.qos` (`sacctmgr show qos format=name`)")
    } else if lower.contains("time limit") {
        Some("lower `platform.slurm.time` below the partition's limit (`sinfo -o '%P %l'`)")
    } else if lower.contains("node configuration is not available")
        || lower.contains("more processors than")
        || lower.contains("memory specification")
    {
        Some("no node has what the service asks for; lower its `resources` (cpus, memory, gpus) or pick another partition")
    } else if lower.contains("invalid generic resource") || lower.contains("gres") {
        Some("this partition has no GPUs as asked; set `platform.slurm.partition` to a GPU partition")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{stderr}; {h}"),
        None => stderr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_slurm_errors() {
        let m = submit_hint("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified");
        assert!(m.contains("platform.slurm.account"), "{m}");
        assert_eq!(submit_hint("something else"), "something else");
    }
}
