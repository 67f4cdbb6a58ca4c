//! The Slurm platform of aibench: services as Slurm jobs, or as steps of the allocation aibench
//! runs in.
//!
//! ```text
//! ServicePlan + recipe --render--> <run>/slurm/<name>.sbatch   (a template users can replace)
//!                      --sbatch --parsable--> job id            (or srun --jobid --overlap -w)
//!   job: srun one rank per node; rank 0 picks ports, writes <run>/services/<name>.json
//! aibench: squeue/scontrol/sacct (batched, bounded cadence) --> JobState, "pending: Resources"
//!          services/<name>.json appears --> health check --> ready
//!          success, failure, Ctrl-C, SIGTERM, drop --> scancel every job of the run
//! ```
//!
//! - [`render`]: the script, from [`render::BUILTIN_TEMPLATE`] or a `*.sbatch.tmpl` next to the
//!   recipe; `#SBATCH` directives, modules and setup, the container wrapper
//!   (Apptainer/Docker/Podman), the environment (secrets stay `${VAR}` references).
//! - [`jobs`]: [`SlurmJobs`], the jobs of a run: start, wait for discovery and health, watch,
//!   cancel; [`dry_run`]; [`cancel_record`] for `aibench down`.
//! - [`state`] and [`track`]: Slurm's job states and following them.
//! - [`cli`]: the Slurm commands themselves.
//!
//! The run directory must be on a file system the compute nodes share (as `$HOME` or a project
//! folder are on every cluster): jobs read their script and write their discovery record there.

pub mod cli;
pub mod jobs;
pub mod render;
pub mod shell;
pub mod state;
pub mod track;

pub use cli::SlurmCli;
pub use jobs::{
    cancel_record, dry_run, record_status, Allocation, CancelHandle, Mode, SlurmContext,
    SlurmEvent, SlurmJob, SlurmJobs, Submission,
};
pub use render::{Layout, ScriptTemplate, BUILTIN_TEMPLATE};
pub use state::{JobState, JobStatus};

use aibench_platform::PlatformError;

/// Why the Slurm platform could not give the run its services.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("service `{service}`: {}", missing_message(.names))]
    MissingVariables { service: String, names: Vec<String> },
    #[error("service `{name}`: {message}")]
    Placement { name: String, message: String },
    #[error("service `{name}`: Slurm job {job_id} ended during {phase}: {}{}{}", .status.describe(), hint(.status), tail(.last_lines))]
    JobEnded {
        name: String,
        job_id: String,
        phase: String,
        status: JobStatus,
        last_lines: Vec<String>,
    },
    #[error("service `{name}` (Slurm job {job_id}) did not become healthy within {timeout_s:.0}s of registering ({check}){}", tail(.last_lines))]
    Unhealthy {
        name: String,
        job_id: String,
        timeout_s: f64,
        check: String,
        last_lines: Vec<String>,
    },
    #[error("interrupted while waiting for `{name}`")]
    Interrupted { name: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SlurmError {
    /// The service the error is about, if it is about one.
    pub fn service(&self) -> Option<&str> {
        match self {
            SlurmError::Render(e) => Some(&e.service),
            SlurmError::MissingVariables { service, .. } => Some(service),
            SlurmError::Placement { name, .. }
            | SlurmError::JobEnded { name, .. }
            | SlurmError::Unhealthy { name, .. }
            | SlurmError::Interrupted { name } => Some(name),
            SlurmError::Command { .. } | SlurmError::Io(_) => None,
        }
    }
}

fn missing_message(names: &[String]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "environment variable{} {} {} not set; export {} before running aibench (jobs get its environment through --export=ALL), or give a default: `${{{}:-value}}`",
        if names.len() == 1 { "" } else { "s" },
        list.join(", "),
        if names.len() == 1 { "is" } else { "are" },
        if names.len() == 1 { "it" } else { "them" },
        names.first().map(String::as_str).unwrap_or("VAR"),
    )
}

fn hint(status: &JobStatus) -> String {
    status
        .state
        .hint()
        .map(|h| format!("; {h}"))
        .unwrap_or_default()
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; its log is empty".into();
    }
    let mut s = String::from("; its last lines:");
    for l in lines {
        s.push_str("\n    | ");
        s.push_str(l);
    }
    s
}

impl From<SlurmError> for PlatformError {
    fn from(e: SlurmError) -> Self {
        match e {
            SlurmError::JobEnded {
                name,
                job_id,
                phase,
                status,
                last_lines,
            } => PlatformError::Crashed {
                name,
                phase,
                status: format!("Slurm job {job_id} {}{}", status.describe(), hint(&status)),
                last_lines,
            },
            SlurmError::Unhealthy {
                name,
                timeout_s,
                check,
                last_lines,
                ..
            } => PlatformError::Unhealthy {
                name,
                timeout_s,
                check,
                last_lines,
            },
            SlurmError::Interrupted { name } => PlatformError::Interrupted { name },
            SlurmError::Io(e) => PlatformError::Io(e),
            other => PlatformError::Start {
                name: other.service().unwrap_or("slurm").to_string(),
                reason: other.to_string(),
            },
        }
    }
}
