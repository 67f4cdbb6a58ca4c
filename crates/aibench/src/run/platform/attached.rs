//! Services started earlier by `aibench up`: found in the user's registry, watched, never
//! started or stopped by the run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aibench_load::Cancel;
use aibench_plan::TrialPlan;
use aibench_platform::{PlatformError, ServiceRecord};
use aibench_recipe::{Loaded, Recipe};

use super::{local::Local, Clients, LocalBoxFuture, Platform};
use crate::run::events::Events;

pub struct Attached {
    records: Vec<ServiceRecord>,
}

/// A service the recipe's workloads target that `aibench up` has not started (or that died).
#[derive(Debug)]
pub struct NotRunning(pub String);

impl Attached {
    /// The running replicas of every service a workload targets.
    pub fn find(loaded: &Loaded) -> Result<Attached, NotRunning> {
        let registry = aibench_platform::Registry::user();
        let needed: BTreeSet<&str> = loaded
            .recipe
            .workloads
            .iter()
            .map(|w| w.target.as_str())
            .filter(|t| loaded.recipe.services.iter().any(|s| s.name == *t))
            .collect();
        let mut records = Vec::new();
        for name in needed {
            let found: Vec<_> = registry
                .find_service(name)
                .into_iter()
                .filter(|r| r.alive() != Some(false))
                .collect();
            if found.is_empty() {
                return Err(NotRunning(name.to_string()));
            }
            records.extend(found);
        }
        Ok(Attached { records })
    }
}

impl Platform for Attached {
    fn name(&self) -> &'static str {
        "running"
    }

    fn deploy<'a>(
        &'a mut self,
        _trial: &'a TrialPlan,
        _recipe: &'a Recipe,
        _events: &'a mut Events,
        _cancel: &'a Cancel,
    ) -> LocalBoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async { Ok(()) })
    }

    fn records(&self) -> Vec<ServiceRecord> {
        self.records.clone()
    }

    fn crashed(&mut self, phase: &str) -> Option<PlatformError> {
        let dead = self.records.iter().find(|r| r.alive() == Some(false))?;
        Some(PlatformError::Crashed {
            name: dead.name.clone(),
            phase: phase.into(),
            status: format!("process {} is gone", dead.pid.unwrap_or_default()),
            last_lines: dead
                .log
                .as_deref()
                .map(|l| aibench_platform::local::last_lines(l, 15))
                .unwrap_or_default(),
        })
    }

    fn starts_services(&self) -> bool {
        false
    }

    fn stop(&mut self, _grace: Duration) -> usize {
        // `aibench down` stops them.
        0
    }

    fn clients(&self) -> Arc<dyn Clients> {
        Local::clients_here()
    }

    fn dry_run(
        &self,
        _trial: &TrialPlan,
        _recipe: &Recipe,
        _run_root: &Path,
    ) -> anyhow::Result<Vec<String>> {
        Ok(self
            .records
            .iter()
            .map(|r| format!("{}: already running at {}:{}", r.name, r.host, r.port))
            .collect())
    }
}
