//! One judge: the exit code and the report say the same about the same run.

use crate::harness::Cmd;

#[test]
fn a_trial_with_no_measured_request_fails_in_the_report_and_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    // One user whose only request falls in the warm-up: it then thinks past the end of the
    // measure window, so nothing is measured.
    let recipe = tmp.path().join("nothing-measured.yaml");
    std::fs::write(
        &recipe,
        "name: nothing-measured
services:
  - name: llm
    kind: sim
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: { kind: synthetic, prompt_tokens: 8, output_tokens: 4 }
    load: { pattern: closed-loop, users: 1, think_time: 30s }
    warmup: 1s
    stop: { duration: 1s }
slo: { ttft_p99: 10s }
",
    )
    .unwrap();
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .run();
    let dir = std::fs::read_dir(tmp.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("no request was measured"), "{report}");
    assert_eq!(
        run.code, 1,
        "the report fails the SLO, so must the exit code:\n{}",
        run.stderr
    );
}
