//! Services as child processes of aibench on this machine; load clients too.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aibench_load::Cancel;
use aibench_plan::TrialPlan;
use aibench_platform::{PlatformError, ServiceRecord, ServiceSet, StartContext};
use aibench_recipe::Recipe;

use super::{
    prepare_services, set_emergency, BoxFuture, Clients, Launched, LocalBoxFuture, Platform,
};
use crate::run::events::{Event, Events};
use crate::run::shards::ShardJob;

pub struct Local {
    ctx: StartContext,
    set: Option<ServiceSet>,
}

impl Local {
    pub fn new(ctx: StartContext) -> Self {
        Local { ctx, set: None }
    }

    async fn start(
        &mut self,
        trial: &TrialPlan,
        events: &mut Events,
        cancel: &Cancel,
    ) -> Result<ServiceSet, PlatformError> {
        let mut set = ServiceSet::new(self.ctx.clone());
        if trial.services.is_empty() {
            return Ok(set);
        }
        events.emit(Event::Phase {
            phase: "deploy".into(),
            trial: Some(trial.id.clone()),
        });
        for sp in &trial.services {
            let before = set.services.len();
            set.start(sp)?;
            for svc in &set.services[before..] {
                events.emit(Event::ServiceStarted {
                    name: svc.record.name.clone(),
                    pid: svc.record.pid,
                    address: format!("{}:{}", svc.record.host, svc.record.port),
                    log: svc
                        .record
                        .log
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                });
            }
        }
        let groups = set
            .services
            .iter()
            .filter_map(|svc| svc.record.pgid)
            .collect();
        set_emergency(|e| e.groups = groups);
        events.emit(Event::Phase {
            phase: "health".into(),
            trial: Some(trial.id.clone()),
        });
        let t0 = Instant::now();
        let c = cancel.clone();
        set.wait_healthy(move || c.is_cancelled()).await?;
        for svc in &set.services {
            events.emit(Event::ServiceHealthy {
                name: svc.record.name.clone(),
                after_s: t0.elapsed().as_secs_f64(),
            });
        }
        // The kinds' own preparation (a model pull) before the clock starts.
        prepare_services(trial, &set.records(), events).await?;
        Ok(set)
    }
}

impl Local {
    /// Client shards on this machine.
    pub fn clients_here() -> Arc<dyn Clients> {
        Arc::new(LocalClients)
    }
}

impl Platform for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn deploy<'a>(
        &'a mut self,
        trial: &'a TrialPlan,
        _recipe: &'a Recipe,
        events: &'a mut Events,
        cancel: &'a Cancel,
    ) -> LocalBoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            // A set that failed stops its services when dropped.
            let set = self.start(trial, events, cancel).await;
            if set.is_err() {
                set_emergency(|e| e.groups.clear());
            }
            self.set = Some(set?);
            Ok(())
        })
    }

    fn records(&self) -> Vec<ServiceRecord> {
        self.set
            .as_ref()
            .map(ServiceSet::records)
            .unwrap_or_default()
    }

    fn crashed(&mut self, phase: &str) -> Option<PlatformError> {
        self.set.as_mut()?.crashed(phase)
    }

    fn stop(&mut self, grace: Duration) -> usize {
        let Some(mut set) = self.set.take() else {
            return 0;
        };
        let n = set.services.len();
        set.stop(grace);
        set_emergency(|e| e.groups.clear());
        n
    }

    fn clients(&self) -> Arc<dyn Clients> {
        Local::clients_here()
    }

    fn dry_run(
        &self,
        trial: &TrialPlan,
        _recipe: &Recipe,
        _run_root: &Path,
    ) -> anyhow::Result<Vec<String>> {
        Ok(trial
            .services
            .iter()
            .map(|sp| format!("{}: {}", sp.name, sp.argv.join(" ")))
            .collect())
    }
}

/// Client shards as child processes, one per shard, dying with aibench.
struct LocalClients;

impl Clients for LocalClients {
    fn always_separate(&self) -> bool {
        false
    }

    fn lead_s(&self) -> f64 {
        2.0
    }

    fn launch<'a>(
        &'a self,
        j: &'a ShardJob,
        args: &'a [String],
        logs: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<Launched>> {
        Box::pin(async move {
            let mut children = Vec::new();
            for i in 0..j.shards() {
                let log = std::fs::File::create(
                    logs.join(format!("client-{}-{}-{i}.log", j.trial, j.workload)),
                )?;
                let mut cmd = tokio::process::Command::new(&j.exe);
                cmd.args(args)
                    .arg("--shard")
                    .arg(i.to_string())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true);
                // SAFETY: the hook runs only async-signal-safe calls between fork and exec.
                unsafe {
                    cmd.pre_exec(aibench_platform::process::die_with_parent(libc::SIGKILL));
                }
                children.push(cmd.spawn()?);
            }
            Ok(Launched {
                children,
                job_id: None,
            })
        })
    }
}
