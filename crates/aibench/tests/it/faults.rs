//! The fault-injection suite: faults a cluster produces every day, injected into real runs of
//! the real binary. Each case asserts the exit code, the run's and trial's status, that every
//! request sent is a record, the reason shown, and that nothing is left behind. (Service
//! SIGKILL, SIGINT/SIGTERM, aibench SIGKILL and `--resume` are in `run.rs`; Slurm faults in
//! `slurm.rs`.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::run::{assert_no_process_left, marker, read_json, wait_exit, Env};

/// `summary.json`'s request count and the lines of `requests.jsonl` (each a whole record).
fn records_and_total(trial: &std::path::Path) -> (usize, u64) {
    let text = std::fs::read_to_string(trial.join("requests.jsonl")).unwrap();
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("every record line is whole");
    }
    let summary = read_json(&trial.join("summary.json"));
    (
        text.lines().count(),
        summary["counts"]["total"].as_u64().unwrap(),
    )
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    child
        .stderr
        .as_mut()
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// SIGSTOP of the service: the process lives, holds its connections and answers nothing. The
/// health check that goes on during the measurement fails for `hung_after`, and the trial ends
/// with the hang as its reason (before: the trial stretched until every request timed out, and
/// the run was "completed").
#[test]
fn a_stopped_service_is_judged_hung() {
    let env = Env::new();
    let m = marker("hung");
    let recipe = env.recipe(
        "h.yaml",
        &format!(
            "name: hung
services:
  - name: llm
    kind: sim
    model: {m}
    health: {{ hung_after: 2s }}
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: {{ kind: synthetic, prompt_tokens: 16, output_tokens: 400 }}
    load: {{ pattern: closed-loop, users: 2 }}
    stop: {{ duration: 120s }}
"
        ),
    );
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let dir = env.wait_for_event(
        "\"workload\":\"chat\",\"phase\":\"measure\"",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    let pid = read_json(&dir.join("services/llm.json"))["pid"]
        .as_i64()
        .unwrap() as i32;
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let stderr = stderr_of(&mut child);
    assert_eq!(
        code, 3,
        "a hung service is the environment's failure: {stderr}"
    );
    assert!(
        stderr.contains("service `llm` stopped answering during the measurement"),
        "{stderr}"
    );
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "failed");
    assert!(info["reason"]
        .as_str()
        .unwrap()
        .contains("health check (GET /health) has failed"));
    assert_eq!(info["trials"][0]["status"], "failed");
    let (lines, total) = records_and_total(&dir.join("trials/01"));
    assert_eq!(lines as u64, total, "every request sent is a record");
    assert!(total >= 2, "the requests in flight are recorded too");
    // The stopped service was continued so that SIGTERM could end it.
    assert_no_process_left(&m);
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("stopped answering"));
}

/// A server that accepts every request, starts a stream, then sends nothing more with the
/// connection open (a generation loop that hung while its HTTP front still accepts). There is
/// no service to check (a URL target), so the load side judges it: no byte for `stop.stall`.
#[test]
fn a_stream_that_goes_silent_is_a_stall() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let piece = "data: {\"choices\":[{\"text\":\"a\"}]}\n\n";
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     transfer-encoding: chunked\r\n\r\n{:x}\r\n{piece}\r\n",
                    piece.len()
                );
                let _ = conn.flush();
                std::thread::sleep(Duration::from_secs(120));
            });
        }
    });
    let env = Env::new();
    let recipe = env.recipe(
        "s.yaml",
        &format!(
            "name: stall
workloads:
  - name: chat
    target: http://127.0.0.1:{port}
    protocol: openai-completions
    model: m
    dataset: {{ kind: synthetic, prompt_tokens: 16, output_tokens: 8 }}
    load: {{ pattern: closed-loop, users: 3 }}
    stop: {{ duration: 120s, stall: 1s }}
"
        ),
    );
    let mut child = env.spawn(&["run", recipe.to_str().unwrap()]);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let stderr = stderr_of(&mut child);
    assert_eq!(code, 1, "a failed run: {stderr}");
    assert!(stderr.contains("the service stalled"), "{stderr}");
    let dir = env.run_dirs().pop().unwrap();
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "failed");
    let summary = read_json(&dir.join("trials/01/summary.json"));
    assert_eq!(summary["stop_reason"], "stalled");
    let (lines, total) = records_and_total(&dir.join("trials/01"));
    assert_eq!(lines as u64, total);
    assert_eq!(total, 3, "the three requests in flight, cancelled");
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("the service stalled"));
}
