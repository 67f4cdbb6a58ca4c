//! The services of a trial, wherever they run: child processes here, or Slurm jobs.

use std::sync::Mutex;
use std::time::Duration;

use aibench_platform::{PlatformError, ServiceRecord, ServiceSet};
use aibench_slurm::{CancelHandle, SlurmJobs};

pub enum Deployed {
    Local(ServiceSet),
    Slurm(Box<SlurmJobs>),
}

/// Slurm jobs to cancel on the second Ctrl-C, which exits at once.
pub static SLURM_CANCEL: Mutex<Option<CancelHandle>> = Mutex::new(None);

impl Deployed {
    pub fn records(&self) -> Vec<ServiceRecord> {
        match self {
            Deployed::Local(s) => s.records(),
            Deployed::Slurm(j) => j.records(),
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Deployed::Local(s) => s.services.len(),
            Deployed::Slurm(j) => j.jobs().len(),
        }
    }

    /// The first service found to have died, as an error naming it.
    pub fn crashed(&mut self, phase: &str) -> Option<PlatformError> {
        match self {
            Deployed::Local(s) => s.crashed(phase),
            Deployed::Slurm(j) => j.check(phase).map(PlatformError::from),
        }
    }

    pub fn stop(&mut self, grace: Duration) {
        match self {
            Deployed::Local(s) => s.stop(grace),
            Deployed::Slurm(j) => {
                j.stop(grace);
                if let Ok(mut h) = SLURM_CANCEL.lock() {
                    *h = None;
                }
            }
        }
    }
}
