//! One test per row of the README's exit-code table: each outcome gives its documented code.
//! (130, interrupted, is `run::sigint_mid_run_stops_cleanly` and `sigterm_mid_run_stops_cleanly`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{bin, Cmd, Run};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, args: &[&str]) -> Run {
        Cmd::new(args)
            .dir(self.path())
            .env("AIBENCH_HOME", self.path().join("home").to_str().unwrap())
            .run()
    }

    fn only_run_dir(&self) -> PathBuf {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path().join("results"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(v.len(), 1, "{v:?}");
        v.pop().unwrap()
    }
}

fn status_of(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn code_0_success() {
    let run = crate::harness::aibench(&["validate", "examples/quickstart.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// 1: an error budget that runs out is a failed gate, never a success.
#[test]
fn code_1_when_the_error_budget_runs_out() {
    let env = Env::new();
    let recipe = env.recipe(
        "budget.yaml",
        "name: budget
services:
  - name: llm
    kind: sim
    args: { failure-rate: 0.5 }
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: { kind: synthetic, prompt_tokens: 8, output_tokens: 4 }
    load: { pattern: closed-loop, users: 2 }
    stop: { duration: 30s, max_error_rate: 10% }
",
    );
    let run = env.run(&["run", recipe.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("error budget ran out"),
        "{}",
        run.stderr
    );
    assert_eq!(status_of(&env.only_run_dir()), "failed");
}

/// 2: a URL scheme aibench cannot drive, and a port that is not a port.
#[test]
fn code_2_for_a_bad_url() {
    for url in ["ftp://127.0.0.1:21/", "http://127.0.0.1:99999/"] {
        let env = Env::new();
        let run = env.run(&["bench", url, "-n", "1"]);
        assert_eq!(run.code, 2, "{url}: {}", run.stderr);
        assert!(
            !env.path().join("results").exists(),
            "nothing ran for {url}"
        );
    }
}

/// 2: a corrupt run.json is bad input to every command that reads it.
#[test]
fn code_2_for_a_corrupt_run_directory_everywhere() {
    let env = Env::new();
    let bad = env.path().join("bad");
    std::fs::create_dir_all(bad.join("trials")).unwrap();
    std::fs::write(bad.join("run.json"), "{ not json").unwrap();
    std::fs::write(bad.join("recipe.yaml"), "name: x\n").unwrap();
    let b = bad.to_str().unwrap();
    for args in [
        vec!["report", b],
        vec!["compare", b, b],
        vec!["run", "--resume", b],
    ] {
        let run = env.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("error:"), "{args:?}: {}", run.stderr);
    }
}

/// 3: a service whose program is not installed could not start: the environment, not a gate.
#[test]
fn code_3_when_the_server_program_is_missing() {
    let env = Env::new();
    let recipe = env.recipe(
        "missing.yaml",
        "name: missing
services:
  - name: llm
    kind: command
    command: aibench-no-such-server --port ${PORT}
workloads:
  - name: chat
    target: llm
    protocol: http
    load: { pattern: closed-loop, users: 1 }
    stop: { duration: 1s }
",
    );
    let run = env.run(&["run", recipe.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(status_of(&env.only_run_dir()), "failed");
}

/// A printing command whose reader goes away ends by SIGPIPE, like `cat`, without a panic.
#[test]
fn a_closed_pipe_ends_printing_commands_quietly() {
    for args in [
        vec!["plan", "examples/sweep-saturation.yaml"],
        vec!["completions", "bash"],
        vec!["schema"],
    ] {
        let mut child = Command::new(bin())
            .args(&args)
            .current_dir(crate::harness::workspace())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}
