//! Real servers for the drivers' tests: found on PATH, started on a free port, answered for
//! before use, killed when dropped; and the load most of those tests drive.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aibench_load::{LoadSpec, Pattern, Stop, ThinkTime};

/// Whether `program` is on PATH. Outside CI a missing server skips the test with a note; in CI
/// (where scripts/test.sh installs every server) it fails it.
pub fn installed(program: &str, install: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed: scripts/test.sh installs it ({install})"
        );
        eprintln!("SKIPPED: {program} is not installed ({install})");
    }
    found
}

/// A server process, killed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    /// Kept for the server's lifetime (its data directory, say).
    pub _keep: Option<tempfile::TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `program` with the arguments `args(port)` on a free port until `ready(port)` says it
/// answers. A port picked here may be taken by another test's server before this one binds
/// it: then the server exits, and another port is tried.
pub fn start(
    program: &str,
    args: impl Fn(u16) -> Vec<String>,
    ready: impl Fn(u16) -> bool,
) -> Proc {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut child = Command::new(program)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if ready(port) {
                return Proc {
                    child,
                    port,
                    _keep: None,
                };
            }
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{program} did not start on any of five ports");
}

/// Whether something on `port` answers `probe` with a reply starting with one of `starts`.
pub fn answers(port: u16, probe: &[u8], starts: &[&[u8]]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(probe).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => starts.iter().any(|p| buf[..n].starts_with(p)),
        _ => false,
    }
}

/// A closed loop of `users` for `requests` measured requests.
pub fn closed(users: usize, requests: u64) -> LoadSpec {
    LoadSpec {
        pattern: Pattern::ClosedLoop {
            users,
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            requests: Some(requests),
            ..Stop::default()
        },
        timeout: Duration::from_secs(60),
        ..LoadSpec::default()
    }
}
