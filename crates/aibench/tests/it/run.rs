//! `aibench run` and the modular workflow on the local platform, against the real binary and
//! the built-in simulator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bin, workspace, Cmd};

/// Processes whose command line contains `marker`.
pub(crate) fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(format!("{name}: {cmd}"));
            }
        }
    }
    out
}

/// Wait for processes to go (their parent reaps them asynchronously).
pub(crate) fn assert_no_process_left(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the run are left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn marker(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

pub(crate) struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(args)
            .dir(self.path())
            .env("AIBENCH_HOME", self.path().join("home").to_str().unwrap())
    }

    pub(crate) fn spawn(&self, args: &[&str]) -> Child {
        Command::new(bin())
            .args(args)
            .current_dir(self.path())
            .env("AIBENCH_HOME", self.path().join("home"))
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) fn run_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path().join("results"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Wait until the single run directory's events show `needle`.
    pub(crate) fn wait_for_event(&self, needle: &str, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(dir) = self.run_dirs().pop() {
                let events =
                    std::fs::read_to_string(dir.join("logs/events.jsonl")).unwrap_or_default();
                if events.contains(needle) {
                    return dir;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no event `{needle}` within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

pub(crate) fn sim_recipe(model: &str, duration: &str, sweep: &str) -> String {
    format!(
        "name: t
services:
  - name: llm
    kind: sim
    model: {model}
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: {{ kind: synthetic, prompt_tokens: 16, output_tokens: 8 }}
    load: {{ pattern: closed-loop, users: 2 }}
    stop: {{ duration: {duration} }}
{sweep}"
    )
}

pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("aibench did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quickstart_end_to_end() {
    let env = Env::new();
    let recipe = workspace().join("examples/quickstart.yaml");
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    // Not a terminal: timestamped progress lines, in every trial (not only the first).
    let trials: Vec<&str> = run.stderr.split("] trial ").skip(1).collect();
    assert_eq!(trials.len(), 3, "{}", run.stderr);
    for t in trials {
        assert!(t.contains(" done  "), "a progress line in each trial: {t}");
    }
    assert!(
        run.stdout.starts_with("report: results/quickstart-"),
        "{}",
        run.stdout
    );
    let dir = env.run_dirs().pop().unwrap();
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "completed");
    assert!(info["host"]["cpus"].as_u64().unwrap() >= 1);
    assert!(info["started_at"].as_f64().unwrap() > 1.7e9);
    for t in info["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed");
        let id = t["id"].as_str().unwrap();
        let summary = read_json(&dir.join("trials").join(id).join("summary.json"));
        assert!(
            summary["counts"]["successes"].as_u64().unwrap() > 0,
            "{id}: {summary}"
        );
        assert_eq!(summary["counts"]["errors"], 0);
        assert!(summary["latency"]["ttft"]["p50_ms"].as_f64().unwrap() > 0.0);
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and three trials:\n{csv}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("| `03_users=16` | chat | completed |"),
        "{report}"
    );
    assert!(dir.join("recipe.yaml").exists() && dir.join("resolved.yaml").exists());
    assert!(dir.join("logs/llm.log").exists());
    let metrics = dir.join("trials/01_users=1/metrics");
    let scraped = std::fs::read_to_string(metrics.join("llm.csv")).unwrap();
    assert!(
        scraped.contains("vllm:num_requests_running"),
        "the simulator's vLLM metrics are scraped"
    );
    assert!(scraped.contains("vllm:kv_cache_usage_perc"));
    assert!(
        std::fs::read_to_string(metrics.join("host.csv"))
            .unwrap()
            .lines()
            .count()
            > 2,
        "host samples"
    );
    assert!(dir.join("report.html").exists() && dir.join("report.json").exists());
    assert_no_process_left("sim-7b");

    // `watch` on the finished run replays it with the run's own times.
    let watched = env
        .cmd(&["watch", dir.to_str().unwrap(), "--no-follow"])
        .run();
    assert_eq!(watched.code, 0, "{}", watched.stderr);
    let times: Vec<f64> = watched
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once("s]"))
        .filter_map(|(t, _)| t.trim().parse().ok())
        .collect();
    assert!(times.len() > 10, "{}", watched.stderr);
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times[times.len() - 1] > 30.0,
        "the run took more than 30 s (3 trials of 12 s):\n{}",
        watched.stderr
    );
    assert!(watched.stderr.contains("run completed (exit code 0)"));
}

#[test]
fn command_service_driven_by_a_recipe() {
    let env = Env::new();
    let m = marker("cmd");
    let text = format!(
        "name: cmd
services:
  - name: server
    kind: command
    command: [\"${{AIBENCH_EXE}}\", sim, --host, \"${{HOST}}\", --port, \"${{PORT}}\", --model, {m}]
    health: {{ check: http, path: /health, timeout: 20s }}
workloads:
  - name: chat
    target: server
    protocol: openai-chat
    model: {m}
    dataset: {{ kind: synthetic, prompt_tokens: 8, output_tokens: 4 }}
    load: {{ pattern: open-loop, arrival: constant, rate: 20/s }}
    stop: {{ duration: 2s }}
"
    );
    let recipe = env.recipe("cmd.yaml", &text);
    let run = env.cmd(&["run", "--json", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["status"], "completed");
    let s = &out["trials"][0]["summary"];
    assert!(s["counts"]["successes"].as_u64().unwrap() >= 30, "{s}");
    assert_no_process_left(&m);
}

#[test]
fn a_service_that_never_becomes_healthy() {
    let env = Env::new();
    let m = marker("never");
    let text = format!(
        "name: never
services:
  - name: stuck
    kind: command
    command: \"sleep 3600 # {m}\"
    health: {{ check: http, path: /health, timeout: 2s, interval: 200ms }}
workloads:
  - name: w
    target: stuck
    protocol: http
    http: {{ path: / }}
    load: {{ pattern: closed-loop, users: 1 }}
    stop: {{ duration: 1s }}
"
    );
    let recipe = env.recipe("never.yaml", &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 3, "the environment failed: {}", run.stderr);
    assert!(
        run.stderr
            .contains("service `stuck` did not become healthy within 2s"),
        "{}",
        run.stderr
    );
    let dir = env.run_dirs().pop().unwrap();
    assert_eq!(read_json(&dir.join("run.json"))["status"], "failed");
    assert_no_process_left(&m);
}

#[test]
fn a_service_that_crashes_at_start_is_quoted() {
    let env = Env::new();
    let text = "name: crash
services:
  - name: bad
    kind: command
    command: \"echo loading the model; echo out of memory >&2; exit 3\"
workloads:
  - name: w
    target: bad
    protocol: http
    load: { pattern: closed-loop, users: 1 }
    stop: { duration: 1s }
";
    let recipe = env.recipe("crash.yaml", text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 3, "the environment failed: {}", run.stderr);
    assert!(
        run.stderr
            .contains("service `bad` exited during start-up (exit code 3)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("| out of memory"),
        "the last lines are quoted: {}",
        run.stderr
    );
}

#[test]
fn a_service_killed_mid_run() {
    let env = Env::new();
    let m = marker("killed");
    let recipe = env.recipe("k.yaml", &sim_recipe(&m, "60s", ""));
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let dir = env.wait_for_event(
        "\"workload\":\"chat\",\"phase\":\"measure\"",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    let svc = read_json(&dir.join("services/llm.json"));
    let pid = svc["pid"].as_i64().unwrap() as i32;
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, 3, "a crash is the environment's failure: {stderr}");
    assert!(
        stderr.contains("service `llm` exited during the measurement (killed by signal 9)"),
        "{stderr}"
    );
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "failed");
    let summary = read_json(&dir.join("trials/01/summary.json"));
    assert_eq!(summary["interrupted"], true);
    let records = std::fs::read_to_string(dir.join("trials/01/requests.jsonl")).unwrap();
    let ok = records
        .lines()
        .filter(|l| l.contains("\"status\":200"))
        .count();
    assert!(ok > 0, "completed requests are kept");
    assert_no_process_left(&m);
}

fn interrupt_mid_run(signal: i32) {
    let env = Env::new();
    let m = marker("sig");
    let recipe = env.recipe("s.yaml", &sim_recipe(&m, "60s", ""));
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let dir = env.wait_for_event("\"phase\":\"measure\"", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(800));
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let code = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(code, 130);
    assert_no_process_left(&m);
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "interrupted");
    let summary = read_json(&dir.join("trials/01/summary.json"));
    assert_eq!(summary["interrupted"], true);
    assert!(summary["counts"]["successes"].as_u64().unwrap() > 0);
    let lines = std::fs::read_to_string(dir.join("trials/01/requests.jsonl")).unwrap();
    for l in lines.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("every record line is whole");
    }
    assert!(dir.join("report.md").exists());
}

#[test]
fn sigint_mid_run_stops_cleanly() {
    interrupt_mid_run(libc::SIGINT);
}

#[test]
fn sigterm_mid_run_stops_cleanly() {
    interrupt_mid_run(libc::SIGTERM);
}

#[test]
fn resume_completes_the_same_trials() {
    let env = Env::new();
    let m = marker("resume");
    let sweep = "sweep:\n  matrix:\n    chat.load.users: [1, 2, 3]\n";
    let recipe = env.recipe("r.yaml", &sim_recipe(&m, "2s", sweep));
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let dir = env.wait_for_event(
        "\"trial\":\"02_users=2\",\"index\":1",
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(300));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 130);
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["trials"][0]["status"], "completed");
    assert_ne!(info["trials"][2]["status"], "completed");
    // The trial that never ran is listed as such in every report format.
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| `03_users=3` | – | not run |"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("03_users=3") && html.contains("not run"));
    let report = read_json(&dir.join("report.json"));
    assert!(
        report["not_run"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "03_users=3"),
        "{}",
        report["not_run"]
    );

    let run = env.cmd(&["run", "--resume", dir.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("trial 01_users=1: skipped"),
        "{}",
        run.stderr
    );
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "completed");
    let ids: Vec<&str> = info["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["01_users=1", "02_users=2", "03_users=3"]);
    for t in info["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed");
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // A trial run.json calls finished whose summary was damaged runs again (faults item 10).
    let summary = dir.join("trials/02_users=2/summary.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    std::fs::write(&summary, &text[..text.len() / 2]).unwrap();
    // `report` on the damaged run says so and fails, naming the trial.
    let report = env.cmd(&["report", dir.to_str().unwrap()]).run();
    assert_eq!(report.code, 2, "{}", report.stderr);
    assert!(
        report
            .stderr
            .contains("run.json says trial 02_users=2 finished")
            && report.stderr.contains("--resume"),
        "{}",
        report.stderr
    );
    let run = env.cmd(&["run", "--resume", dir.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("trial 02_users=2 was finished, but 1 of its 1 summaries are missing or unreadable: it runs again"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("trial 01_users=1: skipped"),
        "{}",
        run.stderr
    );
    let again = read_json(&summary);
    assert!(again["counts"]["successes"].as_u64().unwrap() > 0);
    assert_no_process_left(&m);
}

/// Services of `aibench up` are watched while `bench RECIPE` drives them: one that dies ends
/// the measurement with its crash, completed requests kept (exit 3, the environment).
#[test]
fn a_service_of_up_that_dies_during_bench_is_noticed() {
    let env = Env::new();
    let m = marker("updies");
    let recipe = env.recipe("d.yaml", &sim_recipe(&m, "60s", ""));
    let up = env.cmd(&["up", recipe.to_str().unwrap()]).run();
    assert_eq!(up.code, 0, "{}", up.stderr);
    let before = env.run_dirs();
    let mut child = env.spawn(&["bench", recipe.to_str().unwrap()]);
    // The run's own folder, beside the one `up` wrote its logs into.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dir = loop {
        let fresh = env.run_dirs().into_iter().find(|d| !before.contains(d));
        if let Some(d) = fresh.filter(|d| {
            std::fs::read_to_string(d.join("logs/events.jsonl"))
                .is_ok_and(|e| e.contains("\"workload\":\"chat\",\"phase\":\"measure\""))
        }) {
            break d;
        }
        assert!(Instant::now() < deadline, "bench did not start measuring");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    for pid in processes_with(&m) {
        if let Some(pid) = pid.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("service `llm` exited during the measurement"),
        "{stderr}"
    );
    assert_eq!(read_json(&dir.join("run.json"))["status"], "failed");
    let _ = env.cmd(&["down", "--all"]).run();
    assert_no_process_left(&m);
}

#[test]
fn up_services_down() {
    let env = Env::new();
    let m = marker("up");
    let recipe = env.recipe("u.yaml", &sim_recipe(&m, "1s", ""));
    let up = env.cmd(&["up", recipe.to_str().unwrap()]).run();
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(
        !processes_with(&m).is_empty(),
        "the service outlives `aibench up`"
    );
    let list = env.cmd(&["services", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["name"], "llm");
    assert_eq!(v[0]["state"], "ready");
    let bench = env
        .cmd(&[
            "bench",
            recipe.to_str().unwrap(),
            "--workload",
            "chat",
            "--json",
        ])
        .run();
    assert_eq!(bench.code, 0, "{}", bench.stderr);
    let out: serde_json::Value = serde_json::from_str(&bench.stdout).unwrap();
    assert!(
        out["trials"][0]["summary"]["counts"]["successes"]
            .as_u64()
            .unwrap()
            > 0,
        "{out}"
    );
    assert!(
        !processes_with(&m).is_empty(),
        "`bench` leaves the services of `up` running"
    );
    let again = env.cmd(&["up", recipe.to_str().unwrap()]).run();
    assert_eq!(
        again.code, 2,
        "a second `up` of the same service is refused"
    );
    let down = env.cmd(&["down", "llm"]).run();
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains("stopped llm"));
    assert_no_process_left(&m);
    let list = env.cmd(&["services", "--json"]).run();
    assert_eq!(list.stdout.trim(), "[]");
    assert_eq!(env.cmd(&["down", "nope"]).run().code, 2);
}

#[test]
fn services_die_with_aibench_even_on_sigkill() {
    let env = Env::new();
    let m = marker("sigkill");
    let recipe = env.recipe("k9.yaml", &sim_recipe(&m, "60s", ""));
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    env.wait_for_event("\"phase\":\"measure\"", Duration::from_secs(30));
    assert!(!processes_with(&m).is_empty(), "the service runs");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    assert_no_process_left(&m);
}

#[test]
fn two_client_processes_merge_exactly() {
    use aibench_results::{read_records, Accumulator, AccumulatorConfig};
    let env = Env::new();
    let m = marker("shards");
    let text = sim_recipe(&m, "3s", "").replace(
        "load: { pattern: closed-loop, users: 2 }",
        "load: { pattern: open-loop, arrival: poisson, rate: 40/s }\n    clients: { processes: 2 }",
    );
    let recipe = env.recipe("sh.yaml", &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("2 client processes"), "{}", run.stderr);
    let dir = env.run_dirs().pop().unwrap();
    let trial = dir.join("trials/01");
    let merged: aibench_results::Summary =
        serde_json::from_slice(&std::fs::read(trial.join("summary.json")).unwrap()).unwrap();
    // One accumulator fed every record of both shards must give the same summary.
    // The same planned window as the shards': no warm-up, a 3 s measurement.
    let mut single = Accumulator::new(AccumulatorConfig {
        window_us: Some([0, 3_000_000]),
        ..AccumulatorConfig::default()
    });
    let mut per_shard = Vec::new();
    for shard in 0..2 {
        let path = trial.join(format!("shards/{shard}/requests.jsonl"));
        let mut n = 0;
        for rec in read_records(&path).unwrap() {
            single.add(&rec.unwrap());
            n += 1;
        }
        per_shard.push(n);
    }
    assert!(
        per_shard.iter().all(|n| *n > 20),
        "both shards sent requests: {per_shard:?}"
    );
    let one = single.summary();
    assert_eq!(merged.counts, one.counts);
    // Percentiles, counts and extremes are exact; means differ only by floating-point
    // summation order.
    let (a, b) = (
        serde_json::to_value(&merged.latency).unwrap(),
        serde_json::to_value(&one.latency).unwrap(),
    );
    for (metric, stats) in a.as_object().unwrap() {
        for (field, v) in stats.as_object().unwrap() {
            let (x, y) = (v.as_f64().unwrap(), b[metric][field].as_f64().unwrap());
            if field.starts_with("mean") || field.starts_with("stddev") {
                assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{metric}.{field}: {x} vs {y}"
                );
            } else {
                assert_eq!(x, y, "{metric}.{field} merges exactly");
            }
        }
    }
    assert_eq!(merged.tokens, one.tokens);
    assert_eq!(merged.throughput, one.throughput);
    assert_no_process_left(&m);
}

#[test]
fn a_failing_scrape_target_does_not_stop_the_run() {
    let env = Env::new();
    let m = marker("scrape");
    // The metrics port has nothing behind it: every scrape fails, the run goes on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = sim_recipe(&m, "3s", "monitor: { interval: 500ms }\n").replace(
        "    model: ",
        &format!("    metrics: {{ path: /metrics, port: {dead} }}\n    model: "),
    );
    let recipe = env.recipe("scrape.yaml", &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("monitoring:"),
        "the failing scrapes are reported: {}",
        run.stderr
    );
    let dir = env.run_dirs().pop().unwrap();
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.to_lowercase().contains("scrape"),
        "the report says so:\n{report}"
    );
    assert_no_process_left(&m);
}

#[test]
fn prometheus_scrapes_a_run_and_export_returns_the_series() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: the `prometheus` program is not installed (Debian package prometheus)");
        return;
    }
    let env = Env::new();
    let m = marker("prom");
    let text = sim_recipe(&m, "6s", "monitor: { interval: 1s, prometheus: true }\n");
    let recipe = env.recipe("prom.yaml", &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = env.run_dirs().pop().unwrap();
    assert!(dir.join("prometheus/prometheus.yml").exists());
    assert!(
        dir.join("grafana/provisioning/datasources").exists(),
        "Grafana provisioning is written"
    );
    let rd = dir.to_str().unwrap();
    // The simulator's vLLM metrics, scraped by Prometheus during the run.
    let sim = env
        .cmd(&[
            "export",
            "--run",
            rd,
            "--query",
            "vllm:num_requests_running",
            "--range",
            "start..end",
            "--format",
            "json",
        ])
        .run();
    assert_eq!(sim.code, 0, "{}", sim.stderr);
    assert!(
        sim.stdout.contains("vllm:num_requests_running"),
        "{}",
        sim.stdout
    );
    // aibench's own live endpoint, scraped during the run.
    let live = env
        .cmd(&[
            "export",
            "--run",
            rd,
            "--query",
            "{__name__=~\"aibench_.*\"}",
            "--format",
            "csv",
        ])
        .run();
    assert_eq!(live.code, 0, "{}", live.stderr);
    assert!(
        live.stdout.lines().count() > 1,
        "aibench's own metrics were scraped: {}",
        live.stdout
    );
    assert_no_process_left(&m);
    assert_no_process_left(dir.join("prometheus").to_str().unwrap());
}

/// examples/chromadb.yaml for real, shortened: aibench starts ChromaDB, inserts the vectors,
/// drives the queries, and every trial's summary holds the queries' recall.
#[test]
fn chromadb_example_end_to_end() {
    let installed = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("chroma").is_file()))
        .unwrap_or(false);
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "ChromaDB (`chroma`) is not installed: scripts/test.sh installs it (pip install chromadb)"
        );
        eprintln!("SKIPPED: ChromaDB is not installed (pip install chromadb)");
        return;
    }
    let env = Env::new();
    let mut text = std::fs::read_to_string(workspace().join("examples/chromadb.yaml")).unwrap();
    for (from, to) in [
        ("dimensions: 384", "dimensions: 48"),
        ("collection_size: 50000", "collection_size: 3000"),
        ("queries: 1000", "queries: 200"),
        ("rate: 50/s", "rate: 40/s"),
        ("warmup: 5s", "warmup: 1s"),
        ("duration: 1m", "duration: 4s"),
    ] {
        assert!(
            text.contains(from),
            "examples/chromadb.yaml no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    let recipe = env.recipe("chromadb.yaml", &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let dir = env.run_dirs().pop().unwrap();
    // The prepare step says what it did.
    assert!(
        run.stderr.contains("inserted 3000 vectors in"),
        "{}",
        run.stderr
    );
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "completed");
    let trials = info["trials"].as_array().unwrap();
    assert!(!trials.is_empty());
    for t in trials {
        let id = t["id"].as_str().unwrap();
        let summary = read_json(&dir.join("trials").join(id).join("summary.json"));
        assert_eq!(summary["counts"]["errors"], 0, "{id}: {summary}");
        let query = &summary["operations"]["query"];
        let recall = query["recall"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id}: {summary}"));
        assert!((0.8..=1.0).contains(&recall), "{id}: recall {recall}");
        assert!(query["successes"].as_u64().unwrap() > 50, "{id}: {summary}");
    }
    // The ChromaDB server is gone with the run.
    let events = std::fs::read_to_string(dir.join("logs/events.jsonl")).unwrap();
    let started = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "service_started" && e["name"] == "vectors")
        .expect("a service_started event");
    let port = started["address"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap();
    assert_no_process_left(&format!("--port {port} --path"));
}

/// Whether PostgreSQL's server programs are here: on PATH, or where Debian keeps them.
fn postgres_installed() -> bool {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("initdb").is_file()))
        .unwrap_or(false);
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|e| e.path().join("bin/initdb").is_file()))
        .unwrap_or(false);
    if !(on_path || debian) {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed: scripts/test.sh installs the Debian package postgresql"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (Debian package postgresql)");
    }
    on_path || debian
}

/// Run an example shortened by text replacements; every trial's summary must count successful
/// operations `op` and no error. Returns the run directory and aibench's stderr.
fn run_postgres_example(file: &str, edits: &[(&str, &str)], op: &str) -> (PathBuf, String) {
    let env = Env::new();
    let mut text = std::fs::read_to_string(workspace().join("examples").join(file)).unwrap();
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "examples/{file} no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    let recipe = env.recipe(file, &text);
    let run = env.cmd(&["run", recipe.to_str().unwrap()]).run();
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let dir = env.run_dirs().pop().unwrap();
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "completed");
    let trials = info["trials"].as_array().unwrap();
    assert!(!trials.is_empty());
    for t in trials {
        let id = t["id"].as_str().unwrap();
        let summary = read_json(&dir.join("trials").join(id).join("summary.json"));
        assert_eq!(summary["counts"]["errors"], 0, "{id}: {summary}");
        let stats = &summary["operations"][op];
        assert!(
            stats["successes"].as_u64().unwrap_or(0) > 0,
            "{id}: {summary}"
        );
        assert_eq!(stats["errors"], 0, "{id}: {summary}");
    }
    // The server is gone with the run (its data directory was under the run's temp folder).
    let events = std::fs::read_to_string(dir.join("logs/events.jsonl")).unwrap();
    let started = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "service_started" && e["name"] == "db")
        .expect("a service_started event");
    let port = started["address"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap();
    assert_no_process_left(&format!("-p {port} -k"));
    let stderr = run.stderr.clone();
    // Keep the temporary folder alive until the checks are done.
    drop(env);
    (dir, stderr)
}

/// examples/postgres.yaml for real, shortened: aibench starts PostgreSQL (as the `postgres`
/// user when the test runs as root), runs the setup, and drives the prepared lookups.
#[test]
fn postgres_example_end_to_end() {
    if !postgres_installed() {
        return;
    }
    let (_, stderr) = run_postgres_example(
        "postgres.yaml",
        &[
            ("warmup: 5s", "warmup: 1s"),
            ("duration: 30s", "duration: 2s"),
            ("users: 16", "users: 4"),
        ],
        "SELECT docs",
    );
    assert!(
        stderr.contains("ran 2 setup statements; prepared 1 statements"),
        "{stderr}"
    );
}

/// examples/postgres-tpcb.yaml, shortened to scale 1 and two sweep points: the TPC-B tables are
/// made before the first trial and kept for the second; every transaction lands.
#[test]
fn postgres_tpcb_example_end_to_end() {
    if !postgres_installed() {
        return;
    }
    let (_, stderr) = run_postgres_example(
        "postgres-tpcb.yaml",
        &[
            ("scale: 10", "scale: 1"),
            ("warmup: 5s", "warmup: 1s"),
            ("duration: 30s", "duration: 2s"),
            ("[1, 4, 16, 32]", "[1, 4]"),
        ],
        "tpcb",
    );
    assert!(
        stderr.contains("created the TPC-B tables at scale 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TPC-B tables already hold scale 1"),
        "{stderr}"
    );
}

/// Item: `aibench selfcheck` measures this machine's measuring error against the fixed-timing
/// simulator, and `run --calibrate` records it in run.json and states it in the report.
#[test]
fn selfcheck_measures_the_client_and_run_records_it() {
    let out = Cmd::new(&[
        "selfcheck",
        "--users",
        "4",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--json",
    ])
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let c: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(c["users"], 4);
    assert!(c["requests"].as_u64().unwrap() > 0, "{c}");
    for k in ["ttft_error", "itl_error", "send_lag"] {
        let (p50, p99, max) = (
            c[k]["p50_ms"].as_f64().unwrap(),
            c[k]["p99_ms"].as_f64().unwrap(),
            c[k]["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{k}: {c}");
    }
    // Errors are measured against the schedule (50 ms TTFT, 10 ms ITL), not against zero.
    assert!(c["ttft_error"]["p50_ms"].as_f64().unwrap() < 25.0, "{c}");
    assert!(c["itl_error"]["p50_ms"].as_f64().unwrap() < 5.0, "{c}");
    let resolution = c["resolution_ms"].as_f64().unwrap();
    assert_eq!(
        resolution,
        c["ttft_error"]["p99_ms"]
            .as_f64()
            .unwrap()
            .max(c["itl_error"]["p99_ms"].as_f64().unwrap())
    );

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yaml"), sim_recipe("cal", "2s", "")).unwrap();
    let out = Cmd::new(&["run", "r.yaml", "--out", "results", "--calibrate"])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("resolution:"), "{}", out.stderr);
    let run = std::fs::read_dir(tmp.path().join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("run.json").is_file())
        .unwrap();
    let info = read_json(&run.join("run.json"));
    // At the recipe's load: 2 users.
    assert_eq!(info["calibration"]["users"], 2, "{info}");
    assert!(info["calibration"]["requests"].as_u64().unwrap() > 0);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("Measurement resolution:"), "{md}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("Measurement resolution:"));
    // The calibration's own run directory does not stay behind in the results root.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("results"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count(),
        1
    );
}

/// Item (faults 7): a run whose aibench died (SIGKILL) does not stay "running" forever:
/// `runs` shows it abandoned, `watch` ends saying so (exit 3), and nothing is left running.
/// While a run's process lives, `--resume` of it is refused.
#[test]
fn a_run_whose_process_died_is_abandoned_not_running() {
    let env = Env::new();
    let m = marker("abandon");
    let recipe = env.recipe("a.yaml", &sim_recipe(&m, "60s", ""));
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let dir = env.wait_for_event("\"phase\":\"measure\"", Duration::from_secs(30));
    // Alive: a second aibench may not take it over.
    let resume = env.cmd(&["run", "--resume", dir.to_str().unwrap()]).run();
    assert_eq!(resume.code, 2, "{}", resume.stderr);
    assert!(
        resume.stderr.contains("is still being run by aibench"),
        "{}",
        resume.stderr
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    assert_no_process_left(&m);
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "running");
    assert_eq!(info["owner"]["pid"], child.id());

    let root = dir.parent().unwrap().to_str().unwrap().to_string();
    let runs = env.cmd(&["runs", "--root", &root, "--json"]).run();
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    let listed: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(listed[0]["status"], "abandoned", "{listed}");

    let watched = env.cmd(&["watch", dir.to_str().unwrap()]).run();
    assert_eq!(watched.code, 3, "{}", watched.stderr);
    assert!(
        watched.stderr.contains("run abandoned") && watched.stderr.contains("--resume"),
        "{}",
        watched.stderr
    );
}
