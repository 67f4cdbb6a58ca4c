//! The platform stage: start the planned services, find out when they are ready, notice when
//! they die, and stop every one of them on every exit path.
//!
//! - [`local`]: services as child processes of aibench, each in its own process group, output
//!   captured under `logs/`, killed group-wide at the end — and by the kernel if aibench itself
//!   is killed (parent-death signal).
//! - [`health`]: readiness by HTTP path, TCP connect, or the protocol's own ping.
//! - [`registry`]: where running services are recorded — `services/<name>.json` in the run
//!   directory and a user-level registry — so that separate commands (`services`, `bench`,
//!   `down`) find them.

pub mod health;
pub mod local;
pub mod prepare;
pub mod process;
pub mod registry;

pub use local::{LocalService, ServiceSet, StartContext};
pub use registry::{Registry, ServiceRecord};

/// Why the platform could not give the run its services.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("service `{name}` could not start: {reason}")]
    Start { name: String, reason: String },
    #[error("service `{name}` exited during {phase} ({status}){}", tail(.last_lines))]
    Crashed {
        name: String,
        phase: String,
        status: String,
        last_lines: Vec<String>,
    },
    #[error("service `{name}` did not become healthy within {timeout_s:.0}s ({check}){}", tail(.last_lines))]
    Unhealthy {
        name: String,
        timeout_s: f64,
        check: String,
        last_lines: Vec<String>,
    },
    #[error("interrupted while waiting for `{name}`")]
    Interrupted { name: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it printed nothing".into();
    }
    let mut s = String::from("; its last lines:");
    for l in lines {
        s.push_str("\n    | ");
        s.push_str(l);
    }
    s
}
