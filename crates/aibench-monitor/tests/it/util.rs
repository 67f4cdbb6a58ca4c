//! Helpers: free ports, child processes that die with the test, the simulator in-process,
//! waiting for conditions, reading metrics CSVs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aibench_monitor::csv::{decode_labels, split_line};
use aibench_sim::{SimConfig, SimServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a condition may take before the test gives up (a hang guard, not a speed claim).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The path of a program, or None when it is not installed.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Print why a test does nothing and return true, when a program is missing.
pub fn missing(program: &str, package: &str) -> bool {
    if which(program).is_some() {
        return false;
    }
    eprintln!("SKIPPED: `{program}` is not installed (Debian package `{package}`)");
    true
}

/// A child process stopped (and reaped) when dropped, even when the test fails: first with
/// its polite signal, then with SIGKILL.
pub struct ChildGuard {
    pub child: Child,
    /// Sent first (PostgreSQL shuts down cleanly on SIGINT); SIGKILL when None.
    pub stop_signal: Option<i32>,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        ChildGuard {
            child,
            stop_signal: None,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let (Some(sig), Ok(pid)) = (self.stop_signal, i32::try_from(self.child.id())) {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(pid, sig) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 50 ms until it is true; panic with `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > PATIENCE {
            panic!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until a TCP port accepts connections.
pub async fn wait_port(port: u16) {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if start.elapsed() > PATIENCE {
            panic!("port {port} never opened");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The simulator, in this process, on a real socket.
pub struct Sim {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Sim {
        let config = SimConfig::from_args(["--decode-base", "1ms", "--shutdown-grace", "10ms"])
            .expect("valid flags");
        let server = SimServer::bind(config, addr)
            .await
            .expect("bind the simulator");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Sim {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop it and wait until its port is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Send a few completions so that counters and histograms move.
    pub async fn load(&self, n: usize) {
        for _ in 0..n {
            let body = serde_json::json!({"model": "sim", "prompt": "hello", "max_tokens": 8});
            let call = aibench_monitor::http::Call {
                method: hyper::Method::POST,
                host: "127.0.0.1",
                port: self.addr.port(),
                path: "/v1/completions",
                accept: None,
                body: Some(("application/json", body.to_string().into())),
                timeout: PATIENCE,
            };
            let r = call.send().await.expect("completion");
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One row of a metrics CSV.
#[derive(Debug, Clone)]
pub struct Row {
    pub t_s: f64,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Read a metrics CSV (checks the header).
pub fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    match lines.next() {
        Some(h) => assert_eq!(h, "t_s,name,labels,value", "{}", path.display()),
        None => return Vec::new(),
    }
    lines
        .map(|l| {
            let f = split_line(l);
            assert_eq!(f.len(), 4, "bad row {l:?}");
            Row {
                t_s: f[0].parse().expect("t_s"),
                name: f[1].clone(),
                labels: decode_labels(&f[2]),
                value: aibench_monitor::expo::parse_value(&f[3]).expect("value"),
            }
        })
        .collect()
}

/// Distinct scrape times in a CSV.
pub fn scrape_times(rows: &[Row]) -> Vec<f64> {
    let mut t: Vec<f64> = rows.iter().map(|r| r.t_s).collect();
    t.dedup();
    t
}
