//! The Slurm platform of aibench: services as Slurm jobs, or as steps of the allocation aibench
//! runs in.
//!
//! ```text
//! ServicePlan + recipe --render--> <run>/slurm/<name>.sbatch   (a template users can replace)
//!                      --sbatch --parsable--> job id            (or srun --jobid --overlap -w)
//!   job: srun one rank per node; rank 0 picks ports, writes <run>/services/<name>.json
//! aibench: squeue (one call for all jobs, bounded cadence), scontrol, sacct, exit markers
//!          --> JobState, shown as "pending: Resources"
//!          services/<name>.json appears --> health check --> ready
//!          success, failure, Ctrl-C, SIGTERM, drop --> scancel every job of the run
//! ```
//!
//! - [`render`]: the script; `#SBATCH` directives, modules and setup, the container wrapper
//!   (Apptainer/Docker/Podman), the environment (secrets stay `${VAR}` references).
//! - [`jobs`]: [`SlurmJobs`], the jobs of a run: start, wait for discovery and health, watch,
//!   cancel; [`dry_run`]; [`cancel_record`] and [`record_status`] for `aibench down` and
//!   `aibench services`.
//! - [`state`] and [`track`]: Slurm's job states and following them.
//! - [`cli`]: the Slurm commands themselves.
//!
//! # The script
//!
//! Each service replica gets one bash script, `<run>/slurm/<name>.sbatch`, rendered from a
//! template: the first of `<service>.sbatch.tmpl` and `aibench.sbatch.tmpl` found in
//! [`SlurmContext::template_dirs`] (the recipe's folder), else the built-in one
//! ([`BUILTIN_TEMPLATE`], `src/service.sbatch.tmpl`). Copy the built-in template to start one of
//! your own; `{{...}}` marks what aibench fills in (see [`render`]). The script has two roles:
//! as the job (or, inside an allocation, as a local process) it is the *driver*, which starts
//! one rank per node with `srun`; each rank runs the script again with the argument `rank`.
//! Rank 0 chooses the service's ports on its node, publishes its address for the other ranks
//! (`AIBENCH_HEAD_ADDRESS`, `AIBENCH_NODE_RANK`), and writes the discovery record
//! `<run>/services/<name>.json` — a [`aibench_platform::ServiceRecord`] with `platform: slurm`
//! and the job id, plus the node's name. aibench waits for that record, then for health.
//! vLLM on more than one node runs over Ray: the Ray head on rank 0, workers on the others,
//! `vllm serve` once `ray status` counts every node.
//!
//! On SIGTERM (scancel, the time limit) every rank passes the signal on to its service and
//! waits for it; the driver writes `<run>/slurm/<name>.<job>.exit`, the job's own account of
//! how it ended, for when Slurm has forgotten the job.
//!
//! The run directory must be on a file system the compute nodes share (as `$HOME` or a project
//! folder is on every cluster): jobs read their script and write their record there. A node's
//! address is the first of `hostname -I`; set `AIBENCH_HOST` in a `setup` line to choose
//! another (an InfiniBand name, say).
//!
//! # Inside an allocation
//!
//! When aibench itself runs in a Slurm job ([`Mode::detect`]: `SLURM_JOB_ID` is set, under
//! `salloc` or in an sbatch job of aibench), no job is submitted: each service is a step,
//! `srun --jobid JOB --overlap --nodelist NODES`, on the allocation's server nodes in turn
//! ([`Allocation::with_roles`] assigns server and client nodes explicitly). The step's driver is
//! a child of aibench; stopping it signals the step through Slurm, so the service gets SIGTERM.

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
        /// Boxed: the error stays small for the paths that never end a job.
        status: Box<JobStatus>,
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
