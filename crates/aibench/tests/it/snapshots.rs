//! Snapshots of what people read: every command's `--help`, `validate`'s diagnostics and
//! `plan`'s listing. A change to any of them shows up as a diff to review (`cargo insta
//! review`, or accept with `INSTA_UPDATE=always`); unstable parts (temporary paths) are
//! redacted before the comparison.

use crate::harness::Cmd;

const COMMANDS: [&str; 15] = [
    "run",
    "bench",
    "up",
    "services",
    "down",
    "watch",
    "report",
    "compare",
    "runs",
    "export",
    "validate",
    "plan",
    "sim",
    "schema",
    "completions",
];

/// `--help` at a fixed width, so that wrapping does not depend on the terminal.
fn help(args: &[&str]) -> String {
    let out = Cmd::new(args).env("COLUMNS", "100").run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

#[test]
fn help_of_every_command() {
    insta::assert_snapshot!("help", help(&["--help"]));
    for c in COMMANDS {
        insta::assert_snapshot!(format!("help-{c}"), help(&[c, "--help"]));
    }
}

#[test]
fn validate_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("broken.yaml"),
        "name: broken
services:
  - name: llm
    kind: vllm
    model: facebook/opt-125m
    gpus: two
workloads:
  - name: chat
    target: lm
    protocol: openai-completion
    load: { pattern: closed-loop, users: 0 }
    stop: { duration: 30 }
",
    )
    .unwrap();
    let out = Cmd::new(&["validate", "broken.yaml"]).dir(tmp.path()).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("validate-broken", out.stderr);
}

#[test]
fn plan_of_the_sweep_example() {
    let out = Cmd::new(&["plan", "examples/sweep-saturation.yaml"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("plan-sweep-saturation", out.stdout);
}
