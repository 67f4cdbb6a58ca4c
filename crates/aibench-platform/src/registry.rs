//! Where running services are recorded, so that separate commands can find them.
//!
//! Each service replica is one JSON file: in the run directory (`services/<name>.json`, part of
//! the results) and in the user-level registry (`$AIBENCH_HOME/services/`, by default
//! `$XDG_STATE_HOME/aibench` or `~/.local/state/aibench`). Files are written atomically (write
//! to a temporary name, then rename), so a reader never sees half a record.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One running service replica.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceRecord {
    /// The service's name in the recipe; replicas after the first get `-2`, `-3`, ...
    pub name: String,
    pub service: String,
    pub replica: u32,
    pub kind: aibench_recipe::ServiceKind,
    /// `local` or `slurm`.
    pub platform: String,
    pub host: String,
    pub port: u16,
    /// Further named ports.
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, u16>,
    /// `http://host:port` for HTTP services.
    pub url: Option<String>,
    pub pid: Option<u32>,
    /// The process group to signal (local platform).
    pub pgid: Option<i32>,
    pub job_id: Option<String>,
    pub model: Option<String>,
    pub metrics_path: Option<String>,
    pub health: aibench_recipe::HealthCheck,
    pub health_path: Option<String>,
    pub run_dir: Option<PathBuf>,
    pub recipe: Option<String>,
    pub log: Option<PathBuf>,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
}

impl ServiceRecord {
    /// Is the process still there? (Local platform; `None` when it cannot be told.)
    pub fn alive(&self) -> Option<bool> {
        let pid = self.pid?;
        // SAFETY: kill with signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        Some(r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    }
}

/// A folder of service records.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Registry { dir: dir.into() }
    }

    /// The user-level registry.
    pub fn user() -> Self {
        Registry::at(user_home().join("services"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn put(&self, record: &ServiceRecord) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(
            &self.path(&record.name),
            &serde_json::to_vec_pretty(record)?,
        )
    }

    pub fn get(&self, name: &str) -> Option<ServiceRecord> {
        let bytes = std::fs::read(self.path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record, sorted by name; unreadable files are skipped.
    pub fn list(&self) -> Vec<ServiceRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<ServiceRecord> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Records of the service `service` (all its replicas).
    pub fn find_service(&self, service: &str) -> Vec<ServiceRecord> {
        self.list()
            .into_iter()
            .filter(|r| r.service == service)
            .collect()
    }
}

/// `$AIBENCH_HOME`, else `$XDG_STATE_HOME/aibench`, else `~/.local/state/aibench`.
pub fn user_home() -> PathBuf {
    if let Some(h) = std::env::var_os("AIBENCH_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("aibench");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/aibench")
}

pub use aibench_results::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ServiceRecord {
        ServiceRecord {
            name: name.into(),
            service: "llm".into(),
            replica: 1,
            kind: aibench_recipe::ServiceKind::Sim,
            platform: "local".into(),
            host: "127.0.0.1".into(),
            port: 8000,
            ports: Default::default(),
            url: Some("http://127.0.0.1:8000".into()),
            pid: Some(std::process::id()),
            pgid: None,
            job_id: None,
            model: None,
            metrics_path: Some("/metrics".into()),
            health: aibench_recipe::HealthCheck::Http,
            health_path: Some("/health".into()),
            run_dir: None,
            recipe: None,
            log: None,
            started_at: 0.0,
        }
    }

    #[test]
    fn put_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(dir.path());
        reg.put(&record("llm")).unwrap();
        reg.put(&record("llm-2")).unwrap();
        assert_eq!(reg.list().len(), 2);
        assert_eq!(reg.find_service("llm").len(), 2);
        assert_eq!(reg.get("llm").unwrap().alive(), Some(true));
        reg.remove("llm").unwrap();
        reg.remove("llm").unwrap();
        assert_eq!(reg.list().len(), 1);
    }
}
