//! The local platform: services as child processes on this machine.
//!
//! Each replica runs in its own process group with stdout and stderr captured to
//! `logs/<name>.log`. It is asked to stop with SIGTERM to the whole group, then killed with
//! SIGKILL after a grace period. If aibench itself dies — even by SIGKILL — the kernel kills the
//! child through the parent-death signal. (That signal follows the *thread* that started the
//! child, so services must be started from a thread that lives as long as the run: the main
//! thread, where `Runtime::block_on` runs the top-level future.)

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aibench_plan::ServicePlan;
use aibench_recipe::interpolate::expand;

use crate::health::{probe, Check};
use crate::registry::{Registry, ServiceRecord};
use crate::PlatformError;
use aibench_recipe::HealthCheck;

/// What every service of a run shares.
#[derive(Clone, Debug)]
pub struct StartContext {
    pub run_dir: PathBuf,
    /// The address services bind to and clients connect to.
    pub host: String,
    /// This aibench binary, for `kind: sim` (`${AIBENCH_EXE}`).
    pub exe: PathBuf,
    /// Let services outlive aibench (`aibench up`): a new session, no parent-death signal.
    pub detach: bool,
    pub recipe_name: String,
    /// Record services in the user-level registry too.
    pub user_registry: Option<Registry>,
}

impl StartContext {
    pub fn logs_dir(&self) -> PathBuf {
        self.run_dir.join("logs")
    }
}

/// One running replica.
#[derive(Debug)]
pub struct LocalService {
    pub record: ServiceRecord,
    pub check: Check,
    pub health_timeout: Duration,
    pub health_interval: Duration,
    child: Option<Child>,
    data_dir: PathBuf,
    exited: Option<String>,
}

impl LocalService {
    pub fn addr(&self) -> SocketAddr {
        let ip = self
            .record
            .host
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, self.record.port)
    }

    /// The exit status if the process has ended.
    pub fn poll_exit(&mut self) -> Option<String> {
        if self.exited.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exited = Some(describe_status(status));
                }
            }
        }
        self.exited.clone()
    }

    /// The last lines the service printed.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        self.record
            .log
            .as_deref()
            .map(|p| last_lines(p, n))
            .unwrap_or_default()
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// The last `n` lines of a log file.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if lines.len() == n {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(300).collect());
    }
    lines.into()
}

/// A port nobody listens on now.
pub fn free_port(host: &str) -> std::io::Result<u16> {
    let l = TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

/// Find a program on PATH, else in `extra` folders (a `*` in one of them stands for a
/// version: `/usr/lib/postgresql/*/bin`, the highest version first).
pub fn resolve_program(name: &str, extra: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for pattern in extra {
        dirs.extend(expand_version_glob(pattern));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The folders a pattern with one `*` component matches, highest version first (`15` above
/// `9`); a pattern without `*` is itself.
fn expand_version_glob(pattern: &str) -> Vec<PathBuf> {
    let Some((head, tail)) = pattern.split_once('*') else {
        return vec![PathBuf::from(pattern)];
    };
    let (parent, prefix) = match head.rsplit_once('/') {
        Some((p, f)) => (if p.is_empty() { "/" } else { p }, f),
        None => (".", head),
    };
    let (suffix, rest) = match tail.split_once('/') {
        Some((s, r)) => (s, Some(r)),
        None => (tail, None),
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let middle = name.strip_prefix(prefix)?.strip_suffix(suffix)?.to_string();
            let mut p = e.path();
            if let Some(r) = rest {
                p.push(r);
            }
            let version = middle
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((version, name, p))
        })
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, _, p)| p).collect()
}

/// The uid and gid of a system user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam reads the user database; the fields are copied before any other call.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Give `path` and everything under it to `uid`:`gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The services of a run. Dropping the set stops every service it started (unless detached).
#[derive(Debug)]
pub struct ServiceSet {
    ctx: StartContext,
    pub services: Vec<LocalService>,
    run_registry: Registry,
}

impl ServiceSet {
    pub fn new(ctx: StartContext) -> Self {
        let run_registry = Registry::at(ctx.run_dir.join("services"));
        ServiceSet {
            ctx,
            services: Vec::new(),
            run_registry,
        }
    }

    /// Start every replica of a planned service. Returns at once; see [`ServiceSet::wait_healthy`].
    pub fn start(&mut self, plan: &ServicePlan) -> Result<(), PlatformError> {
        for replica in 1..=plan.replicas.max(1) {
            let svc = self.start_replica(plan, replica)?;
            self.services.push(svc);
        }
        Ok(())
    }

    fn start_replica(
        &mut self,
        plan: &ServicePlan,
        replica: u32,
    ) -> Result<LocalService, PlatformError> {
        let name = if replica == 1 {
            plan.name.clone()
        } else {
            format!("{}-{replica}", plan.name)
        };
        let fail = |reason: String| PlatformError::Start {
            name: name.clone(),
            reason,
        };
        let host = self.ctx.host.clone();
        let port = match plan.port {
            Some(p) if replica == 1 && p != 0 => p,
            _ => free_port(&host).map_err(|e| fail(format!("no free port: {e}")))?,
        };
        let mut named = BTreeMap::new();
        for (pname, p) in &plan.named_ports {
            let p = match p {
                Some(p) if replica == 1 => *p,
                _ => free_port(&host).map_err(|e| fail(format!("no free port: {e}")))?,
            };
            named.insert(pname.clone(), p);
        }
        let logs = self.ctx.logs_dir();
        std::fs::create_dir_all(&logs)?;
        let log_path = logs.join(format!("{name}.log"));
        let data_dir = std::env::temp_dir().join(format!(
            "aibench-{}-{}-{name}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&data_dir)?;

        // The variables every template may use, then the environment.
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("PORT".into(), port.to_string());
        vars.insert("HOST".into(), host.clone());
        vars.insert("AIBENCH_SERVICE".into(), name.clone());
        vars.insert(
            "AIBENCH_RUN_DIR".into(),
            self.ctx.run_dir.display().to_string(),
        );
        vars.insert("AIBENCH_DATA_DIR".into(), data_dir.display().to_string());
        vars.insert("AIBENCH_EXE".into(), self.ctx.exe.display().to_string());
        vars.insert("AIBENCH_NODE_RANK".into(), "0".into());
        vars.insert("AIBENCH_HEAD_ADDRESS".into(), host.clone());
        for (pname, p) in &named {
            vars.insert(
                format!("AIBENCH_PORT_{}", pname.to_ascii_uppercase()),
                p.to_string(),
            );
        }
        let lookup = |v: &str| vars.get(v).cloned().or_else(|| std::env::var(v).ok());
        let expand_all = |items: &[String]| -> Result<Vec<String>, String> {
            items
                .iter()
                .map(|s| {
                    expand(s, &lookup).map_err(|e| {
                        e.into_iter()
                            .map(|e| e.message)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                })
                .collect()
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in &plan.env {
            let value = expand(v, &lookup)
                .map_err(|e| fail(format!("environment `{k}`: {}", e[0].message)))?;
            env.push((k.clone(), value));
        }
        env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));

        // Programs that refuse root run as their own system user, who owns the data directory.
        let user = match plan.run_as.as_deref() {
            Some(user) if running_as_root() => {
                let (uid, gid) = user_ids(user).ok_or_else(|| {
                    fail(format!(
                        "aibench runs as root, and a `{}` service's programs refuse to; they run as the system user `{user}`, which does not exist: create it with `useradd --system --user-group {user}` (Debian's `postgresql` package creates it), or run aibench as an ordinary user",
                        plan.kind
                    ))
                })?;
                chown_tree(&data_dir, uid, gid)
                    .map_err(|e| fail(format!("giving {} to `{user}`: {e}", data_dir.display())))?;
                Some((uid, gid))
            }
            _ => None,
        };
        let as_user = |c: &mut Command| {
            if let Some((uid, gid)) = user {
                c.uid(uid).gid(gid);
            }
        };
        let not_found = |program: &str| {
            let mut places = String::from("on PATH");
            if !plan.program_dirs.is_empty() {
                places.push_str(&format!(" or in {}", plan.program_dirs.join(", ")));
            }
            format!(
                "program `{program}` not found {places}; install it, load its module, or give the service a `command`"
            )
        };

        let mut log = File::create(&log_path)?;
        for step in &plan.setup {
            let argv = expand_all(step).map_err(fail)?;
            let program = resolve_program(&argv[0], &plan.program_dirs)
                .ok_or_else(|| fail(not_found(&argv[0])))?;
            writeln!(log, "$ {}", argv.join(" "))?;
            let mut c = Command::new(&program);
            as_user(&mut c);
            let out = c
                .args(&argv[1..])
                .current_dir(&data_dir)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?)
                .status()?;
            if !out.success() {
                return Err(PlatformError::Crashed {
                    name,
                    phase: format!("setup (`{}`)", argv.join(" ")),
                    status: describe_status(out),
                    last_lines: last_lines(&log_path, 15),
                });
            }
        }

        let argv = expand_all(&plan.argv).map_err(fail)?;
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err(fail("no command to run".into()));
        }
        let mut cmd = if plan.shell {
            // `exec` lets a simple command replace the shell, so signals and the parent-death
            // signal reach the server itself; compound commands keep their shell.
            let script = argv.join(" ");
            let compound = script.contains([';', '&', '|', '\n', '`', '(']);
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(if compound {
                script
            } else {
                format!("exec {script}")
            });
            c
        } else {
            let program = resolve_program(&argv[0], &plan.program_dirs)
                .ok_or_else(|| fail(not_found(&argv[0])))?;
            let mut c = Command::new(program);
            c.args(&argv[1..]);
            c
        };
        as_user(&mut cmd);
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let detach = self.ctx.detach;
        // SAFETY: only async-signal-safe calls run between fork and exec.
        unsafe {
            if detach {
                // `aibench up`: a session of its own, to outlive this process.
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            } else {
                cmd.pre_exec(crate::process::die_with_parent(libc::SIGKILL));
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start `{}`: {e}", argv[0])))?;
        let pid = child.id();
        let url = (plan.health.check == HealthCheck::Http
            || plan.metrics_path.is_some()
            || plan.kind.spec().llm)
            .then(|| format!("http://{host}:{port}"));
        let record = ServiceRecord {
            name: name.clone(),
            service: plan.name.clone(),
            replica,
            kind: plan.kind,
            platform: "local".into(),
            host: host.clone(),
            port,
            ports: named,
            url,
            pid: Some(pid),
            pgid: Some(pid as i32),
            job_id: None,
            model: plan.model.clone(),
            metrics_path: plan.metrics_path.clone(),
            health: plan.health.check,
            health_path: plan.health.path.clone(),
            run_dir: Some(self.ctx.run_dir.clone()),
            recipe: Some(self.ctx.recipe_name.clone()),
            log: Some(log_path),
            started_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        self.run_registry.put(&record)?;
        if let Some(user) = &self.ctx.user_registry {
            user.put(&record)?;
        }
        Ok(LocalService {
            check: Check::from_plan(plan.health.check, plan.health.path.as_deref(), plan.kind),
            health_timeout: Duration::from_secs_f64(plan.health.timeout_s.max(0.1)),
            health_interval: Duration::from_secs_f64(plan.health.interval_s.clamp(0.05, 60.0)),
            record,
            child: Some(child),
            data_dir,
            exited: None,
        })
    }

    /// Wait until every service passes its check. Fails fast when a service exits, and gives
    /// up at a service's timeout; `cancelled` is polled so Ctrl-C is honoured while waiting.
    pub async fn wait_healthy(
        &mut self,
        cancelled: impl Fn() -> bool,
    ) -> Result<(), PlatformError> {
        for i in 0..self.services.len() {
            let started = Instant::now();
            // Poll quickly at first (most services are up in well under a second), then at
            // the recipe's interval.
            let mut pause = Duration::from_millis(25);
            loop {
                let svc = &mut self.services[i];
                if let Some(status) = svc.poll_exit() {
                    return Err(PlatformError::Crashed {
                        name: svc.record.name.clone(),
                        phase: "start-up".into(),
                        status,
                        last_lines: svc.last_lines(15),
                    });
                }
                if cancelled() {
                    return Err(PlatformError::Interrupted {
                        name: svc.record.name.clone(),
                    });
                }
                let attempt = svc
                    .health_interval
                    .max(Duration::from_millis(200))
                    .min(Duration::from_secs(5));
                match probe(&svc.check, svc.addr(), attempt).await {
                    Ok(()) => break,
                    Err(_) if started.elapsed() < svc.health_timeout => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(svc.health_interval);
                    }
                    Err(reason) => {
                        return Err(PlatformError::Unhealthy {
                            name: svc.record.name.clone(),
                            timeout_s: svc.health_timeout.as_secs_f64(),
                            check: format!("{} on {}: {reason}", svc.check.describe(), svc.addr()),
                            last_lines: svc.last_lines(15),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The first service found to have exited, as an error naming it.
    pub fn crashed(&mut self, phase: &str) -> Option<PlatformError> {
        for svc in &mut self.services {
            if let Some(status) = svc.poll_exit() {
                return Some(PlatformError::Crashed {
                    name: svc.record.name.clone(),
                    phase: phase.into(),
                    status,
                    last_lines: svc.last_lines(15),
                });
            }
        }
        None
    }

    pub fn records(&self) -> Vec<ServiceRecord> {
        self.services.iter().map(|s| s.record.clone()).collect()
    }

    /// Stop every service: SIGTERM to each group, SIGKILL after `grace`; forget their records.
    pub fn stop(&mut self, grace: Duration) {
        for svc in &self.services {
            if let Some(pgid) = svc.record.pgid {
                signal_group(pgid, libc::SIGTERM);
                // A stopped (hung) service would hold SIGTERM until the grace ran out.
                signal_group(pgid, libc::SIGCONT);
            }
        }
        let deadline = Instant::now() + grace;
        for svc in &mut self.services {
            while svc.poll_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for svc in &mut self.services {
            if let Some(pgid) = svc.record.pgid {
                signal_group(pgid, libc::SIGKILL);
            }
            if let Some(mut child) = svc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = self.run_registry.remove(&svc.record.name);
            if let Some(user) = &self.ctx.user_registry {
                if user
                    .get(&svc.record.name)
                    .is_some_and(|r| r.pid == svc.record.pid)
                {
                    let _ = user.remove(&svc.record.name);
                }
            }
            let _ = std::fs::remove_dir_all(&svc.data_dir);
        }
        self.services.clear();
    }

    /// Leave the services running (`aibench up`) and return their records.
    pub fn detach(mut self) -> Vec<ServiceRecord> {
        let records = self.records();
        for svc in &mut self.services {
            // The child handle is dropped without killing; the registry keeps the pid.
            svc.child.take();
        }
        self.services.clear();
        records
    }
}

impl Drop for ServiceSet {
    fn drop(&mut self) {
        if !self.services.is_empty() {
            self.stop(Duration::from_secs(3));
        }
    }
}

/// Send a signal to a process group; a group that is gone already is fine.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Stop a registered service from another process (`aibench down`): SIGTERM to its group,
/// SIGKILL after `grace`.
pub fn stop_record(record: &ServiceRecord, grace: Duration) -> bool {
    let Some(pgid) = record.pgid else {
        return false;
    };
    signal_group(pgid, libc::SIGTERM);
    signal_group(pgid, libc::SIGCONT);
    let deadline = Instant::now() + grace;
    while record.alive() == Some(true) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_group(pgid, libc::SIGKILL);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_folders_are_searched_highest_version_first() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "13"] {
            std::fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        std::fs::write(root.path().join("13/bin/initdb"), "").unwrap();
        std::fs::write(root.path().join("9.6/bin/initdb"), "").unwrap();
        let pattern = format!("{}/*/bin", root.path().display());
        let dirs = expand_version_glob(&pattern);
        let names: Vec<String> = dirs
            .iter()
            .map(|d| {
                d.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["15", "13", "9.6"]);
        // Not on PATH: found in the highest version that has it.
        let found = resolve_program("initdb-not-on-path", std::slice::from_ref(&pattern));
        assert_eq!(found, None);
        std::fs::write(root.path().join("13/bin/initdb-not-on-path"), "").unwrap();
        assert_eq!(
            resolve_program("initdb-not-on-path", &[pattern]),
            Some(root.path().join("13/bin/initdb-not-on-path"))
        );
    }
}
