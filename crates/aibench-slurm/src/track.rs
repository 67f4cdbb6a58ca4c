//! Following the state of every job of a run, with one `squeue` call per round at a bounded
//! cadence however many jobs there are.
//!
//! A job that has left `squeue` (finished longer ago than `MinJobAge`, or on a cluster that
//! forgets quickly) still gets a final state, from the first source that knows it:
//! `scontrol show job`, then `sacct` (accounting, or the job completion log through `sacct -c`),
//! then the exit marker the job's own script writes into the run directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::SlurmCli;
use crate::state::{JobState, JobStatus};

/// The states of a run's jobs.
#[derive(Debug)]
pub struct Tracker {
    cli: SlurmCli,
    interval: Duration,
    last: Option<Instant>,
    jobs: BTreeMap<String, Tracked>,
    /// The last failure to ask Slurm, kept to report if it persists.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Tracked {
    status: Option<JobStatus>,
    marker: Option<PathBuf>,
    /// Final and complete (exit code known): no need to ask again.
    settled: bool,
}

impl Tracker {
    /// Ask Slurm at most once per `interval` (at least 200 ms).
    pub fn new(cli: SlurmCli, interval: Duration) -> Self {
        Tracker {
            cli,
            interval: interval.max(Duration::from_millis(200)),
            last: None,
            jobs: BTreeMap::new(),
            last_error: None,
        }
    }

    /// Follow `job_id`; `marker` is where the job writes how it ended.
    pub fn watch(&mut self, job_id: &str, marker: Option<PathBuf>) {
        self.jobs.insert(
            job_id.to_string(),
            Tracked {
                status: None,
                marker,
                settled: false,
            },
        );
        // A new job is worth a fresh look.
        self.last = None;
    }

    pub fn forget(&mut self, job_id: &str) {
        self.jobs.remove(job_id);
    }

    pub fn status(&self, job_id: &str) -> Option<&JobStatus> {
        self.jobs.get(job_id).and_then(|t| t.status.as_ref())
    }

    /// Refresh if the last round is older than the interval. True if it asked.
    pub fn refresh_if_due(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < self.interval) {
            return false;
        }
        self.refresh();
        true
    }

    /// Ask Slurm now about every job not yet settled.
    pub fn refresh(&mut self) {
        self.last = Some(Instant::now());
        let open: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, t)| !t.settled)
            .map(|(id, _)| id.clone())
            .collect();
        if open.is_empty() {
            return;
        }
        let listed = match self.cli.squeue(&open) {
            Ok(l) => {
                self.last_error = None;
                l
            }
            Err(e) => {
                // slurmctld busy or restarting: keep the last known states and try again.
                self.last_error = Some(e.to_string());
                return;
            }
        };
        let mut missing: Vec<String> = Vec::new();
        for id in &open {
            match listed.iter().find(|(jid, _)| jid == id) {
                Some((_, status)) => {
                    let mut status = status.clone();
                    if status.state.is_finished() {
                        // squeue has no exit code; scontrol has, while it remembers the job.
                        if let Some(detail) = self.cli.scontrol_job(id) {
                            status.exit_code = detail.exit_code;
                            status.reason = status.reason.or(detail.reason);
                        }
                        self.settle(id, status);
                    } else if let Some(t) = self.jobs.get_mut(id) {
                        t.status = Some(status);
                    }
                }
                None => missing.push(id.clone()),
            }
        }
        if missing.is_empty() {
            return;
        }
        // Gone from squeue: ask the sources that remember finished jobs.
        let mut still: Vec<String> = Vec::new();
        for id in missing {
            match self.cli.scontrol_job(&id) {
                Some(s) if s.state.is_finished() => self.settle(&id, s),
                Some(s) => {
                    if let Some(t) = self.jobs.get_mut(&id) {
                        t.status = Some(s);
                    }
                }
                None => still.push(id),
            }
        }
        if still.is_empty() {
            return;
        }
        for (id, s) in self.cli.sacct(&still) {
            if s.state.is_finished() {
                still.retain(|x| x != &id);
                self.settle(&id, s);
            }
        }
        for id in still {
            let from_marker = self
                .jobs
                .get(&id)
                .and_then(|t| t.marker.as_ref())
                .and_then(|m| read_marker(m));
            match from_marker {
                Some(s) => self.settle(&id, s),
                None => {
                    // A job just submitted can be missing for a moment; a job that was
                    // known and vanished without a trace is reported as such.
                    if let Some(t) = self.jobs.get_mut(&id) {
                        if t.status.is_some() {
                            let mut s =
                                JobStatus::new(JobState::Other("VANISHED".into()), "squeue");
                            s.reason = Some(
                                "Slurm no longer knows the job and it left no exit marker".into(),
                            );
                            t.status = Some(s);
                            t.settled = true;
                        }
                    }
                }
            }
        }
    }

    fn settle(&mut self, id: &str, status: JobStatus) {
        if let Some(t) = self.jobs.get_mut(id) {
            t.status = Some(status);
            t.settled = true;
        }
    }
}

/// The job's own account of its end: `slurm/<name>.<job>.exit`.
pub fn read_marker(path: &std::path::Path) -> Option<JobStatus> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let code = v.get("exit_code")?.as_i64()?;
    let stopped_by = v.get("stopped_by").and_then(|s| s.as_str()).unwrap_or("");
    let state = match (code, stopped_by) {
        (0, "") => JobState::Completed,
        (_, "TERM") | (_, "INT") => JobState::Cancelled,
        _ => JobState::Failed,
    };
    let mut s = JobStatus::new(state, "exit marker");
    s.exit_code = Some(format!("{code}:0"));
    if !stopped_by.is_empty() && stopped_by != "EXIT" {
        s.reason = Some(format!(
            "stopped by SIG{stopped_by} (scancel or the time limit)"
        ));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Stand-ins for Slurm's commands: each prints `<name>.out` from `dir` and exits with the
    /// code in `<name>.rc` (default 1, printing "Invalid job id specified").
    fn fake_slurm(dir: &std::path::Path, answers: &[(&str, i32, &str)]) -> SlurmCli {
        for name in ["squeue", "scontrol", "sacct"] {
            let (rc, out) = answers
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, rc, out)| (*rc, *out))
                .unwrap_or((1, ""));
            let script = format!(
                "#!/bin/sh\nprintf '%s' '{out}'\n[ {rc} = 0 ] || echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit {rc}\n"
            );
            let p = dir.join(name);
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        SlurmCli::with_bin_dir(dir)
    }

    #[test]
    fn a_job_gone_from_squeue_gets_its_state_from_the_completion_log() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_slurm(dir.path(), &[("sacct", 0, "41|TIMEOUT|0:15|node2\n")]);
        let mut t = Tracker::new(cli, Duration::from_secs(1));
        t.watch("41", None);
        t.refresh();
        let s = t.status("41").unwrap();
        assert_eq!((&s.state, s.source), (&JobState::Timeout, "sacct"));
    }

    #[test]
    fn a_job_slurm_forgot_gets_its_state_from_its_exit_marker() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_slurm(dir.path(), &[]);
        let marker = dir.path().join("llm.42.exit");
        std::fs::write(
            &marker,
            r#"{"job_id": "42", "exit_code": 3, "stopped_by": "", "at": 1.0}"#,
        )
        .unwrap();
        let mut t = Tracker::new(cli, Duration::from_secs(1));
        t.watch("42", Some(marker));
        t.refresh();
        let s = t.status("42").unwrap();
        assert_eq!((&s.state, s.source), (&JobState::Failed, "exit marker"));
    }

    #[test]
    fn squeue_answers_in_one_call_and_scontrol_adds_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let cli = fake_slurm(
            dir.path(),
            &[
                (
                    "squeue",
                    0,
                    "7|PENDING||Resources\n8|FAILED|node1|NonZeroExitCode\n",
                ),
                (
                    "scontrol",
                    0,
                    "JobId=8 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 NodeList=node1\n",
                ),
            ],
        );
        let mut t = Tracker::new(cli, Duration::from_secs(3600));
        t.watch("7", None);
        t.watch("8", None);
        assert!(t.refresh_if_due());
        assert!(!t.refresh_if_due(), "asked again within the interval");
        assert_eq!(t.status("7").unwrap().describe(), "pending: Resources");
        assert_eq!(t.status("8").unwrap().exit_code.as_deref(), Some("3:0"));
    }

    #[test]
    fn markers_tell_how_a_job_ended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.exit");
        std::fs::write(
            &p,
            r#"{"job_id": "5", "exit_code": 3, "stopped_by": "", "at": 1.0}"#,
        )
        .unwrap();
        assert_eq!(read_marker(&p).unwrap().state, JobState::Failed);
        std::fs::write(
            &p,
            r#"{"job_id": "5", "exit_code": 143, "stopped_by": "TERM", "at": 1.0}"#,
        )
        .unwrap();
        let s = read_marker(&p).unwrap();
        assert_eq!(s.state, JobState::Cancelled);
        assert!(s.reason.unwrap().contains("SIGTERM"));
        std::fs::write(
            &p,
            r#"{"job_id": "5", "exit_code": 0, "stopped_by": "", "at": 1.0}"#,
        )
        .unwrap();
        assert_eq!(read_marker(&p).unwrap().state, JobState::Completed);
        assert!(read_marker(&dir.path().join("none")).is_none());
    }
}
