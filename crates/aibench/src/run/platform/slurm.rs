//! Services as Slurm jobs (or steps of the allocation aibench runs in); load clients as a job
//! of their own, or `srun --overlap` steps on the allocation's client nodes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aibench_load::Cancel;
use aibench_plan::TrialPlan;
use aibench_platform::{PlatformError, ServiceRecord};
use aibench_recipe::Recipe;
use aibench_slurm::{Mode, SlurmContext, SlurmEvent, SlurmJobs};

use super::{
    prepare_services, set_emergency, BoxFuture, Clients, Launched, LocalBoxFuture, Platform,
};
use crate::run::events::{Event, Events};
use crate::run::shards::ShardJob;

pub struct Slurm {
    ctx: SlurmContext,
    jobs: Option<SlurmJobs>,
    clients: Arc<SlurmClients>,
}

impl Slurm {
    pub fn new(ctx: SlurmContext, settings: aibench_recipe::Slurm, run_id: &str) -> Self {
        let allocation = match &ctx.mode {
            Mode::Allocation(a) => Some((a.job_id.clone(), a.client_nodes.clone())),
            Mode::Submit => None,
        };
        Slurm {
            ctx,
            jobs: None,
            clients: Arc::new(SlurmClients {
                settings,
                allocation,
                run_id: run_id.to_string(),
            }),
        }
    }

    async fn start(
        &self,
        jobs: &mut SlurmJobs,
        trial: &TrialPlan,
        recipe: &Recipe,
        events: &mut Events,
        cancel: &Cancel,
    ) -> Result<(), PlatformError> {
        events.emit(Event::Phase {
            phase: "submit".into(),
            trial: Some(trial.id.clone()),
        });
        for sp in &trial.services {
            let before = jobs.jobs().len();
            jobs.start(sp, recipe).map_err(PlatformError::from)?;
            for j in &jobs.jobs()[before..] {
                match &self.ctx.mode {
                    Mode::Allocation(a) => events.emit(Event::JobState {
                        name: j.name.clone(),
                        job_id: a.job_id.clone(),
                        description: "starting as a step of this allocation (srun)".into(),
                    }),
                    Mode::Submit => events.emit(Event::JobSubmitted {
                        name: j.name.clone(),
                        job_id: j.id_text(),
                        script: j.script.display().to_string(),
                    }),
                }
            }
        }
        events.emit(Event::Phase {
            phase: "health".into(),
            trial: Some(trial.id.clone()),
        });
        let c = cancel.clone();
        jobs.wait_ready(
            move || c.is_cancelled(),
            |e| match e {
                SlurmEvent::State {
                    name,
                    job_id,
                    description,
                    ..
                } => events.emit(Event::JobState {
                    name,
                    job_id,
                    description,
                }),
                SlurmEvent::Registered {
                    name,
                    job_id,
                    node,
                    address,
                    log,
                } => events.emit(Event::ServiceStarted {
                    name,
                    pid: None,
                    address: format!("{address} on {node} (job {job_id})"),
                    log,
                }),
                SlurmEvent::Healthy { name, after_s, .. } => {
                    events.emit(Event::ServiceHealthy { name, after_s })
                }
            },
        )
        .await
        .map_err(PlatformError::from)?;
        prepare_services(trial, &jobs.records(), events).await
    }
}

impl Platform for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn deploy<'a>(
        &'a mut self,
        trial: &'a TrialPlan,
        recipe: &'a Recipe,
        events: &'a mut Events,
        cancel: &'a Cancel,
    ) -> LocalBoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            let mut jobs = SlurmJobs::new(self.ctx.clone());
            let handle = jobs.cancel_handle();
            set_emergency(|e| e.slurm = Some(handle));
            let result = self.start(&mut jobs, trial, recipe, events, cancel).await;
            // Kept even when they failed: run.json records the job ids.
            self.jobs = Some(jobs);
            if result.is_err() {
                self.stop(Duration::from_secs(10));
            }
            result
        })
    }

    fn records(&self) -> Vec<ServiceRecord> {
        self.jobs
            .as_ref()
            .map(SlurmJobs::records)
            .unwrap_or_default()
    }

    fn job_ids(&self) -> Vec<String> {
        self.jobs
            .as_ref()
            .map(SlurmJobs::job_ids)
            .unwrap_or_default()
    }

    fn crashed(&mut self, phase: &str) -> Option<PlatformError> {
        self.jobs.as_mut()?.check(phase).map(PlatformError::from)
    }

    fn stop(&mut self, grace: Duration) -> usize {
        let Some(jobs) = self.jobs.as_mut() else {
            return 0;
        };
        let n = jobs.jobs().len();
        jobs.stop(grace);
        set_emergency(|e| e.slurm = None);
        n
    }

    fn clients(&self) -> Arc<dyn Clients> {
        self.clients.clone()
    }

    fn dry_run(
        &self,
        trial: &TrialPlan,
        recipe: &Recipe,
        run_root: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let mut s = self.ctx.clone();
        s.script_dir = run_root.join("slurm").join(&trial.id);
        let subs = aibench_slurm::dry_run(s, trial, recipe).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(subs
            .into_iter()
            .map(|sub| {
                format!(
                    "{}: {}\n    script: {}",
                    sub.name,
                    sub.command_line(),
                    sub.script.display()
                )
            })
            .collect())
    }
}

/// Load clients on Slurm: steps of the allocation on its client nodes, or a job of their own.
struct SlurmClients {
    settings: aibench_recipe::Slurm,
    /// Inside an allocation: its id and the client nodes (empty: any).
    allocation: Option<(String, Vec<String>)>,
    run_id: String,
}

impl SlurmClients {
    fn job_name(&self, j: &ShardJob) -> String {
        format!("aibench-{}-client-{}", self.run_id, j.workload)
    }

    /// Inside a Slurm allocation: one `srun --overlap` step with a task per shard.
    fn srun_step(
        &self,
        j: &ShardJob,
        alloc: &str,
        nodes: &[String],
        args: &[String],
        logs: &Path,
    ) -> anyhow::Result<tokio::process::Child> {
        let mut srun: Vec<String> = vec![
            "srun".to_string(),
            format!("--jobid={alloc}"),
            "--overlap".into(),
            format!("--nodes={}", j.nodes),
            format!("--ntasks-per-node={}", j.processes),
            format!("--job-name={}", self.job_name(j)),
        ];
        if !nodes.is_empty() {
            srun.push(format!("--nodelist={}", nodes.join(",")));
        }
        srun.push(format!(
            "--output={}/client-{}-{}-%t.log",
            logs.display(),
            j.trial,
            j.workload
        ));
        srun.push(j.exe.display().to_string());
        srun.extend(args.iter().cloned());
        let log = std::fs::File::create(
            logs.join(format!("client-{}-{}-srun.log", j.trial, j.workload)),
        )?;
        let mut cmd = tokio::process::Command::new(&srun[0]);
        cmd.args(&srun[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        Ok(cmd.spawn()?)
    }

    /// Outside an allocation: a batch job of its own with a task per shard; its job id.
    async fn submit(&self, j: &ShardJob, args: &[String], logs: &Path) -> anyhow::Result<String> {
        let task_args = format!(
            "{} {}",
            quote(&j.exe.display().to_string()),
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let st = &self.settings;
        let mut script = String::from("#!/bin/bash\n");
        script.push_str(&format!(
            "#SBATCH --job-name={}\n#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n",
            self.job_name(j),
            j.nodes,
            j.processes
        ));
        script.push_str(&format!(
            "#SBATCH --output={}/client-{}-{}-%j.log\n",
            logs.display(),
            j.trial,
            j.workload
        ));
        for (flag, v) in [
            ("account", &st.account),
            ("partition", &st.partition),
            ("qos", &st.qos),
            ("constraint", &st.constraint),
            ("reservation", &st.reservation),
        ] {
            if let Some(v) = v {
                script.push_str(&format!("#SBATCH --{flag}={v}\n"));
            }
        }
        if let Some(t) = &st.time {
            script.push_str(&format!("#SBATCH --time={t}\n"));
        }
        for m in &st.modules {
            script.push_str(&format!("module load {m}\n"));
        }
        for l in &st.setup {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str(&format!("srun {task_args}\n"));
        let path = j
            .run_dir
            .join("slurm")
            .join(format!("client-{}-{}.sbatch", j.trial, j.workload));
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&path, script)?;
        let out = tokio::process::Command::new("sbatch")
            .arg("--parsable")
            .arg("--export=ALL")
            .arg(&path)
            .output()
            .await?;
        if !out.status.success() {
            anyhow::bail!(
                "sbatch of the load clients failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .to_string())
    }
}

impl Clients for SlurmClients {
    fn always_separate(&self) -> bool {
        true
    }

    fn place(&self) -> &'static str {
        " on Slurm"
    }

    fn lead_s(&self) -> f64 {
        10.0
    }

    fn launch<'a>(
        &'a self,
        j: &'a ShardJob,
        args: &'a [String],
        logs: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<Launched>> {
        Box::pin(async move {
            Ok(match &self.allocation {
                Some((alloc, nodes)) => Launched {
                    children: vec![self.srun_step(j, alloc, nodes, args, logs)?],
                    job_id: None,
                },
                None => Launched {
                    children: Vec::new(),
                    job_id: Some(self.submit(j, args, logs).await?),
                },
            })
        })
    }

    fn job_running<'a>(&'a self, id: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let out = tokio::process::Command::new("squeue")
                .args(["-h", "-j", id, "-o", "%T"])
                .output()
                .await?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok(!state.is_empty()
                && !matches!(
                    state.as_str(),
                    "COMPLETED"
                        | "FAILED"
                        | "CANCELLED"
                        | "TIMEOUT"
                        | "NODE_FAIL"
                        | "OUT_OF_MEMORY"
                        | "BOOT_FAIL"
                        | "PREEMPTED"
                ))
        })
    }

    fn stop_job<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = tokio::process::Command::new("scancel")
                .args(["--signal=TERM", "--full", id])
                .status()
                .await;
        })
    }
}

/// A word for a bash script: as it is when safe, single-quoted otherwise.
fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
