//! Where a run's services and load clients live: child processes on this machine, Slurm jobs,
//! or services already started by `aibench up`. The runner speaks to one [`Platform`] and never
//! asks which one it is.

mod attached;
mod local;
mod slurm;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aibench_load::Cancel;
use aibench_plan::TrialPlan;
use aibench_platform::{PlatformError, ServiceRecord};
use aibench_recipe::Recipe;

use super::events::{Event, Events};
use super::shards::ShardJob;

pub use attached::{Attached, NotRunning};
pub use local::Local;
pub use slurm::Slurm;

/// A future the runner awaits in place (it need not move between threads).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
/// A future that may run on any worker thread.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The services of a run: start them, wait until they are ready, notice when one dies, stop
/// them; and the place load clients start.
pub trait Platform {
    /// `local`, `slurm` or `running` (services of `aibench up`), for messages.
    fn name(&self) -> &'static str;

    /// Start a trial's services, wait until every one is ready, and run the kinds' prepare
    /// steps (a model pull), announcing each step in `events`. On an error nothing this call
    /// started is left running.
    fn deploy<'a>(
        &'a mut self,
        trial: &'a TrialPlan,
        recipe: &'a Recipe,
        events: &'a mut Events,
        cancel: &'a Cancel,
    ) -> LocalBoxFuture<'a, Result<(), PlatformError>>;

    /// The services running now, one record per replica.
    fn records(&self) -> Vec<ServiceRecord>;

    /// Batch job ids to record in run.json.
    fn job_ids(&self) -> Vec<String> {
        Vec::new()
    }

    /// The first service found to have died, as an error naming it and the phase.
    fn crashed(&mut self, phase: &str) -> Option<PlatformError>;

    /// Stop every service this platform started (SIGTERM, then SIGKILL after `grace`); how
    /// many there were.
    fn stop(&mut self, grace: Duration) -> usize;

    /// Whether it starts (and so stops) services itself; services of `aibench up` are only
    /// watched.
    fn starts_services(&self) -> bool {
        true
    }

    /// Where the load clients of multi-process workloads start.
    fn clients(&self) -> Arc<dyn Clients>;

    /// `--dry-run`: what starting the trial's services would do, one line each, with the
    /// scripts written under `run_root`.
    fn dry_run(
        &self,
        trial: &TrialPlan,
        recipe: &Recipe,
        run_root: &Path,
    ) -> anyhow::Result<Vec<String>>;
}

/// Client processes started for one workload: children of this process and, on Slurm, a batch
/// job of its own.
pub struct Launched {
    pub children: Vec<tokio::process::Child>,
    pub job_id: Option<String>,
}

/// Where a workload's client shards run.
pub trait Clients: Send + Sync {
    /// Every workload runs in client processes of its own, even with one shard (on Slurm they
    /// run on the client nodes, not beside aibench).
    fn always_separate(&self) -> bool;

    /// Where they run, for messages (`on Slurm`); empty on this machine.
    fn place(&self) -> &'static str {
        ""
    }

    /// Seconds every shard gets to start and connect before the common start instant.
    fn lead_s(&self) -> f64;

    /// Start every shard of `j`, each running `exe args… --shard i`; logs go under `logs`.
    fn launch<'a>(
        &'a self,
        j: &'a ShardJob,
        args: &'a [String],
        logs: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<Launched>>;

    /// Whether the batch job `id` is still queued or running.
    fn job_running<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    /// Ask the batch job `id` to stop gracefully (its clients flush their results).
    fn stop_job<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What the second Ctrl-C kills at once: process groups of local services, Slurm jobs.
static EMERGENCY: Mutex<Emergency> = Mutex::new(Emergency {
    groups: Vec::new(),
    slurm: None,
});

struct Emergency {
    groups: Vec<i32>,
    slurm: Option<aibench_slurm::CancelHandle>,
}

fn set_emergency(f: impl FnOnce(&mut Emergency)) {
    if let Ok(mut e) = EMERGENCY.lock() {
        f(&mut e);
    }
}

/// Kill every service now, wherever it runs (the second Ctrl-C).
pub fn kill_now() {
    if let Ok(e) = EMERGENCY.lock() {
        if let Some(h) = &e.slurm {
            h.cancel_all();
        }
        for pgid in &e.groups {
            aibench_platform::local::signal_group(*pgid, libc::SIGKILL);
        }
    }
}

/// Run the plan's prepare steps (see `aibench_plan::PrepareStep`) against the started
/// services, whichever platform started them.
async fn prepare_services(
    trial: &TrialPlan,
    records: &[ServiceRecord],
    events: &mut Events,
) -> Result<(), PlatformError> {
    for sp in trial.services.iter().filter(|s| !s.prepare.is_empty()) {
        aibench_platform::prepare::prepare(sp, records, |what| {
            events.emit(Event::Phase {
                phase: what,
                trial: None,
            })
        })
        .await
        .map_err(|reason| PlatformError::Start {
            name: sp.name.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Signal every client process that is still running (SIGTERM: flush and exit).
pub fn terminate(children: &[tokio::process::Child]) {
    for c in children {
        if let Some(pid) = c.id() {
            // SAFETY: kill(2) with a pid this process started and has not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}
