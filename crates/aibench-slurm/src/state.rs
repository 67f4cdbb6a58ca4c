//! Slurm job states, and reading them from what `squeue`, `scontrol` and `sacct` print.

use std::fmt;

/// The state of a Slurm job, as Slurm names it.
///
/// Long names (`PENDING`) and the compact codes of `squeue -t`/`%t` (`PD`) both parse. A state
/// this list does not know stays visible as [`JobState::Other`] and counts as active until
/// Slurm reports one it knows: a newer Slurm must not make a running job look finished.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Configuring,
    Running,
    Suspended,
    Completing,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    NodeFail,
    OutOfMemory,
    Preempted,
    BootFail,
    Deadline,
    /// Requeued, requeue-held and the like: the job will run again.
    Requeued,
    /// A state this list does not know, as Slurm printed it.
    Other(String),
}

impl JobState {
    /// Parse a state as `squeue`, `scontrol` or `sacct` print it (`CANCELLED by 0` included).
    pub fn parse(text: &str) -> JobState {
        let word = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+')
            .to_ascii_uppercase();
        match word.as_str() {
            "PENDING" | "PD" => JobState::Pending,
            "CONFIGURING" | "CF" => JobState::Configuring,
            "RUNNING" | "R" => JobState::Running,
            "SUSPENDED" | "S" | "STOPPED" | "ST" => JobState::Suspended,
            "COMPLETING" | "CG" | "STAGE_OUT" | "SO" | "SIGNALING" | "SI" => JobState::Completing,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            "REQUEUED" | "RQ" | "REQUEUE_FED" | "RF" | "REQUEUE_HOLD" | "RH" | "RESV_DEL_HOLD"
            | "RD" => JobState::Requeued,
            _ => JobState::Other(word),
        }
    }

    /// The job has ended and will not run again.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Cancelled
                | JobState::Timeout
                | JobState::NodeFail
                | JobState::OutOfMemory
                | JobState::Preempted
                | JobState::BootFail
                | JobState::Deadline
        )
    }

    /// Slurm's own name for the state.
    pub fn name(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Configuring => "CONFIGURING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Preempted => "PREEMPTED",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::Requeued => "REQUEUED",
            JobState::Other(s) => s,
        }
    }

    /// What the user can do about a job that ended this way.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            JobState::Timeout => Some("it hit its time limit; raise `platform.slurm.time`"),
            JobState::OutOfMemory => {
                Some("it ran out of memory; raise the service's `resources.memory`")
            }
            JobState::NodeFail | JobState::BootFail => {
                Some("a node failed; run again, or exclude the node with `platform.slurm.extra_args: [--exclude=NODE]`")
            }
            JobState::Preempted => Some("a job of higher priority took its nodes; use a partition or QOS without preemption"),
            JobState::Cancelled => Some("it was cancelled (scancel, or an administrator)"),
            JobState::Deadline => Some("it passed its deadline"),
            _ => None,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What aibench knows about one job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JobStatus {
    pub state: JobState,
    /// Why the job waits or why it ended, as Slurm says it (`Resources`, `NonZeroExitCode`).
    pub reason: Option<String>,
    /// The nodes it runs or ran on, in Slurm's compact form (`node[1-2]`).
    pub nodes: Option<String>,
    /// `code:signal`, as `scontrol` and `sacct` print it (`3:0`, `0:15`).
    pub exit_code: Option<String>,
    /// Where the state came from: `squeue`, `scontrol`, `sacct`, `exit marker`.
    pub source: &'static str,
}

impl JobStatus {
    pub fn new(state: JobState, source: &'static str) -> Self {
        JobStatus {
            state,
            reason: None,
            nodes: None,
            exit_code: None,
            source,
        }
    }

    /// `pending: Resources`, `running on node1`, `FAILED (exit code 3, NonZeroExitCode)`.
    pub fn describe(&self) -> String {
        match &self.state {
            JobState::Pending => match &self.reason {
                Some(r) => format!("pending: {r}"),
                None => "pending".into(),
            },
            JobState::Running | JobState::Configuring | JobState::Completing => {
                let mut s = self.state.name().to_ascii_lowercase();
                if let Some(n) = &self.nodes {
                    s.push_str(&format!(" on {n}"));
                }
                s
            }
            state => {
                let mut details = Vec::new();
                if let Some(code) = self.exit_code.as_deref().and_then(describe_exit_code) {
                    details.push(code);
                }
                if let Some(r) = &self.reason {
                    details.push(r.clone());
                }
                if let Some(n) = &self.nodes {
                    details.push(format!("on {n}"));
                }
                if details.is_empty() {
                    state.name().to_string()
                } else {
                    format!("{} ({})", state.name(), details.join(", "))
                }
            }
        }
    }
}

/// `3:0` -> `exit code 3`; `0:15` -> `signal 15`; `0:0` -> none.
fn describe_exit_code(code: &str) -> Option<String> {
    let (c, s) = code.split_once(':').unwrap_or((code, "0"));
    let c: i32 = c.trim().parse().ok()?;
    let s: i32 = s.trim().parse().unwrap_or(0);
    match (c, s) {
        (0, 0) => None,
        (_, 0) => Some(format!("exit code {c}")),
        (_, s) => Some(format!("signal {s}")),
    }
}

/// Reasons that only mean "nothing to say".
fn meaningful_reason(r: &str) -> Option<String> {
    let r = r.trim();
    (!r.is_empty() && r != "None" && r != "(null)" && r != "n/a").then(|| r.to_string())
}

/// One line of `squeue -h -o '%i|%T|%N|%r'`.
pub fn parse_squeue_line(line: &str) -> Option<(String, JobStatus)> {
    let mut parts = line.trim().splitn(4, '|');
    let id = parts.next()?.trim();
    if id.is_empty() {
        return None;
    }
    let state = JobState::parse(parts.next()?);
    let nodes = parts.next().map(str::trim).filter(|n| !n.is_empty());
    let reason = parts.next().and_then(meaningful_reason);
    let mut status = JobStatus::new(state, "squeue");
    status.nodes = nodes.map(String::from);
    status.reason = reason;
    Some((id.to_string(), status))
}

/// The `Key=Value` fields of `scontrol show job -o` (one job per line).
pub fn parse_scontrol_fields(line: &str) -> Vec<(String, String)> {
    // Values may contain spaces (`Reason=...`, paths); a token without `=` continues the value
    // before it.
    let mut out: Vec<(String, String)> = Vec::new();
    for token in line.split_whitespace() {
        match token.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/') =>
            {
                out.push((k.to_string(), v.to_string()))
            }
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(token);
                }
            }
        }
    }
    out
}

/// The status of one job from a line of `scontrol show job -o`.
pub fn parse_scontrol_line(line: &str) -> Option<(String, JobStatus)> {
    let fields = parse_scontrol_fields(line);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let id = get("JobId")?.to_string();
    let mut status = JobStatus::new(JobState::parse(get("JobState")?), "scontrol");
    status.reason = get("Reason").and_then(meaningful_reason);
    status.nodes = get("NodeList").and_then(meaningful_reason);
    status.exit_code = get("ExitCode").map(String::from);
    Some((id, status))
}

/// One line of `sacct -n -P -X -o JobID,State,ExitCode,NodeList` (also with `-c`).
pub fn parse_sacct_line(line: &str) -> Option<(String, JobStatus)> {
    let mut parts = line.trim().split('|');
    let id = parts.next()?.trim().to_string();
    if id.is_empty() || id.contains('.') {
        return None;
    }
    let state_text = parts.next()?.trim();
    if state_text.is_empty() {
        return None;
    }
    let mut status = JobStatus::new(JobState::parse(state_text), "sacct");
    status.exit_code = parts
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    status.nodes = parts.next().and_then(meaningful_reason);
    Some((id, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_both_forms() {
        assert_eq!(JobState::parse("PENDING"), JobState::Pending);
        assert_eq!(JobState::parse("PD"), JobState::Pending);
        assert_eq!(JobState::parse("CANCELLED by 0"), JobState::Cancelled);
        assert_eq!(JobState::parse("OUT_OF_MEMORY"), JobState::OutOfMemory);
        assert_eq!(JobState::parse("NF"), JobState::NodeFail);
        assert_eq!(JobState::parse("BOOT_FAIL"), JobState::BootFail);
        assert_eq!(JobState::parse("COMPLETED+"), JobState::Completed);
        assert_eq!(
            JobState::parse("RESIZING"),
            JobState::Other("RESIZING".into())
        );
        assert!(!JobState::Other("X".into()).is_finished());
        assert!(JobState::Timeout.is_finished());
        assert!(!JobState::Completing.is_finished());
    }

    #[test]
    fn squeue_lines() {
        let (id, s) = parse_squeue_line("12|PENDING||Resources").unwrap();
        assert_eq!(id, "12");
        assert_eq!(s.describe(), "pending: Resources");
        let (_, s) = parse_squeue_line("13|RUNNING|node[1-2]|None").unwrap();
        assert_eq!(s.describe(), "running on node[1-2]");
        assert!(parse_squeue_line("").is_none());
    }

    #[test]
    fn scontrol_lines() {
        let line = "JobId=7 JobName=aibench-x-llm UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:01 NodeList=node1 BatchHost=node1 Command=/tmp/a b/x.sbatch WorkDir=/tmp";
        let (id, s) = parse_scontrol_line(line).unwrap();
        assert_eq!(id, "7");
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(s.exit_code.as_deref(), Some("3:0"));
        assert_eq!(
            s.describe(),
            "FAILED (exit code 3, NonZeroExitCode, on node1)"
        );
        let fields = parse_scontrol_fields(line);
        assert!(fields.contains(&("Command".into(), "/tmp/a b/x.sbatch".into())));
        let (_, s) = parse_scontrol_line(
            "JobId=8 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 NodeList=node2",
        )
        .unwrap();
        assert_eq!(s.describe(), "TIMEOUT (signal 15, TimeLimit, on node2)");
    }

    #[test]
    fn sacct_lines() {
        let (id, s) = parse_sacct_line("9|CANCELLED by 0|0:15|node1").unwrap();
        assert_eq!((id.as_str(), &s.state), ("9", &JobState::Cancelled));
        assert!(parse_sacct_line("9.batch|COMPLETED|0:0|node1").is_none());
    }
}
