//! `aibench report`, `compare` and `runs` against a real rate sweep of the built-in simulator.
//!
//! The simulator batches at most 4 sequences; with 16-token prompts and 32-token outputs its
//! capacity follows from its documented model (`SimConfig::capacity`): about 14 requests/s.
//! The sweep offers constant arrivals on both sides of that, a few seconds per rate, and the
//! saturation knee must fall near the capacity.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::harness::Cmd;

const RATES: [u32; 9] = [4, 8, 10, 12, 14, 16, 18, 22, 26];
const PROMPT_TOKENS: u32 = 16;
const OUTPUT_TOKENS: u32 = 32;

struct Sweep {
    /// The results root (holds the run directory and the catalog).
    root: PathBuf,
    run: PathBuf,
}

fn recipe() -> String {
    let rates: Vec<String> = RATES.iter().map(|r| format!("{r}/s")).collect();
    format!(
        "name: knee
services:
  - name: llm
    kind: sim
    model: knee-sim
    args: {{ max-batch: 4 }}
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: {{ kind: synthetic, prompt_tokens: {PROMPT_TOKENS}, output_tokens: {OUTPUT_TOKENS} }}
    load: {{ pattern: open-loop, arrival: constant, rate: 1/s }}
    warmup: 1s
    stop: {{ duration: 4s }}
sweep:
  matrix:
    chat.load.rate: [{}]
slo:
  ttft: 500ms
  e2e_p99: 1s
  error_rate: 1%
",
        rates.join(", ")
    )
}

/// The sweep, run once for every test of this module.
fn sweep() -> &'static Sweep {
    static SWEEP: OnceLock<Sweep> = OnceLock::new();
    SWEEP.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("report-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("knee.yaml"), recipe()).unwrap();
        let root = base.join("results");
        let out = Cmd::new(&["run", "knee.yaml", "--out", "results", "--quiet"])
            .dir(&base)
            .env("AIBENCH_HOME", base.join("home").to_str().unwrap())
            .run();
        // Rates above capacity miss the SLO: exit code 1 with a complete run.
        assert!(
            out.code == 0 || out.code == 1,
            "run failed ({}):\n{}",
            out.code,
            out.stderr
        );
        let run = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("run.json").is_file())
            .expect("a run directory");
        Sweep { root, run }
    })
}

fn report_json(run: &Path) -> serde_json::Value {
    let out = Cmd::new(&["report", run.to_str().unwrap(), "--json"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn sweep_knee_is_near_the_simulator_capacity() {
    let s = sweep();
    let capacity = aibench_sim::SimConfig::from_args(["--max-batch", "4"])
        .unwrap()
        .capacity(PROMPT_TOKENS, OUTPUT_TOKENS)
        .unwrap()
        .requests_per_second;
    let r = report_json(&s.run);
    let sweep = &r["sweeps"][0];
    assert_eq!(sweep["parameter"], "chat.load.rate");
    let knee = sweep["saturation"]["x"]
        .as_f64()
        .expect("a saturation knee");
    let plateau = sweep["plateau"]["max_requests_per_s"].as_f64().unwrap();
    eprintln!(
        "simulator capacity {capacity:.2} req/s; saturation knee at {knee}/s ({}); plateau {plateau:.2} req/s; \
         latency knee: Kneedle {}, max curvature {}; throughput knee: Kneedle {}, max curvature {}",
        sweep["saturation"]["method"],
        sweep["latency_knee"]["kneedle"]["x"],
        sweep["latency_knee"]["max_curvature"]["x"],
        sweep["throughput_knee"]["kneedle"]["x"],
        sweep["throughput_knee"]["max_curvature"]["x"],
    );
    // Within a quarter of the capacity: the sweep steps are 2/s around it.
    assert!(
        (knee - capacity).abs() <= 0.25 * capacity,
        "knee at {knee}/s, capacity {capacity:.2}/s"
    );
    assert!(
        (plateau - capacity).abs() <= 0.2 * capacity,
        "plateau {plateau:.2}/s, capacity {capacity:.2}/s"
    );
    // The highest rate within the SLO lies at or below the knee's neighbourhood.
    let slo_max = sweep["slo_max_load"]["x"]
        .as_f64()
        .expect("a load within the SLO");
    assert!(slo_max <= capacity * 1.25, "{}", sweep["slo_max_load"]);
    assert!(r["bottlenecks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["kind"] == "queueing"));
}

#[test]
fn report_writes_markdown_html_json_and_plots() {
    let s = sweep();
    let out = Cmd::new(&["report", s.run.to_str().unwrap()]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("saturation knee"), "{}", out.stdout);
    let md = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(md.contains("## Findings") && md.contains("## Trials"));
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with('|') && l.contains("| `0"))
            .count(),
        RATES.len() * 2,
        "a row per trial in the trials table and the sweep table"
    );
    let html = std::fs::read_to_string(s.run.join("report.html")).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.run.join("report.json")).unwrap()).unwrap();
    let plots = report["plots"].as_array().unwrap();
    assert!(plots.len() >= 3 + RATES.len(), "{plots:?}");
    assert_eq!(html.matches("<svg").count(), plots.len());
    for p in plots {
        for k in ["svg", "png"] {
            let f = s.run.join(p[k].as_str().unwrap());
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
    // Not a run directory: bad input.
    let out = Cmd::new(&["report", s.root.to_str().unwrap()]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not a run directory"));
}

/// A summary.json of the sweep with its p99 latencies scaled and extra error classes.
fn altered_summary(dir: &Path, name: &str, latency: f64, errors: &[(&str, u64)]) -> PathBuf {
    let s = sweep();
    let trial = std::fs::read_dir(s.run.join("trials"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trial.join("summary.json")).unwrap()).unwrap();
    for m in ["ttft", "tpot", "itl", "e2e", "e2e_from_intended"] {
        if let Some(p) = v["latency"][m]["p99_ms"].as_f64() {
            v["latency"][m]["p99_ms"] = (p * latency).into();
        }
    }
    for (class, n) in errors {
        v["counts"]["errors_by_class"][*class] = (*n).into();
    }
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    p
}

#[test]
fn compare_exit_codes() {
    let s = sweep();
    let tmp = tempfile::tempdir().unwrap();
    let run = s.run.to_str().unwrap();
    // A run against itself: no regression.
    let out = Cmd::new(&["compare", run, run]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("no regression"), "{}", out.stdout);

    let base = altered_summary(tmp.path(), "base.json", 1.0, &[]);
    let same = altered_summary(tmp.path(), "same.json", 1.0, &[]);
    let slower = altered_summary(tmp.path(), "slower.json", 1.5, &[]);
    let failing = altered_summary(tmp.path(), "failing.json", 1.0, &[("timeout", 3)]);
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();

    let out = Cmd::new(&["compare", "--baseline", &arg(&base), &arg(&same)]).run();
    assert_eq!(out.code, 0, "{}", out.stdout);

    // p99 latency +50 %: a regression (exit 1), unless the threshold allows it.
    let out = Cmd::new(&["compare", "--baseline", &arg(&base), &arg(&slower)]).run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("REGRESSION") && out.stdout.contains("grew 50.0%"),
        "{}",
        out.stdout
    );
    let out = Cmd::new(&[
        "compare",
        &arg(&base),
        &arg(&slower),
        "--latency-p99",
        "60%",
    ])
    .run();
    assert_eq!(out.code, 0, "{}", out.stdout);

    // A new error class.
    let out = Cmd::new(&["compare", &arg(&base), &arg(&failing), "--json"]).run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["regression"], true);
    assert_eq!(
        v["candidates"][0]["pairs"][0]["new_error_classes"][0],
        "timeout (3)"
    );
    let out = Cmd::new(&["compare", &arg(&base), &arg(&failing), "--allow-new-errors"]).run();
    assert_eq!(out.code, 0, "{}", out.stdout);

    // Several candidates at once: one regression is enough.
    let out = Cmd::new(&["compare", &arg(&base), &arg(&same), &arg(&slower)]).run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("#1 same.json: no regression"),
        "{}",
        out.stdout
    );

    // Bad input: exit 2.
    let out = Cmd::new(&["compare", &arg(&base)]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = Cmd::new(&[
        "compare",
        &arg(&base),
        "no-such-run",
        "--root",
        tmp.path().to_str().unwrap(),
    ])
    .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-run"), "{}", out.stderr);
    let out = Cmd::new(&["compare", &arg(&base), &arg(&same), "--latency-p99", "ten"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn runs_lists_and_filters_the_catalog() {
    let s = sweep();
    let root = s.root.to_str().unwrap();
    let id = s.run.file_name().unwrap().to_str().unwrap().to_string();
    let out = Cmd::new(&["runs", "--root", root]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("sim:llm"),
        "{}",
        out.stdout
    );
    assert!(s.root.join("catalog.sqlite").is_file());

    let count = |args: &[&str]| -> usize {
        let mut all = vec!["runs", "--root", root, "--json"];
        all.extend_from_slice(args);
        let out = Cmd::new(&all).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .len()
    };
    assert_eq!(count(&[]), 1);
    assert_eq!(count(&["--recipe", "knee"]), 1);
    assert_eq!(count(&["--recipe", "other*"]), 0);
    assert_eq!(count(&["--status", "completed"]), 1);
    assert_eq!(count(&["--status", "failed"]), 0);
    assert_eq!(count(&["--service", "sim"]), 1);
    assert_eq!(count(&["--service", "vllm"]), 0);
    assert_eq!(count(&["--since", "2000-01-01"]), 1);
    assert_eq!(count(&["--since", "1d"]), 1);
    assert_eq!(count(&["--since", "2999-01-01"]), 0);
    let out = Cmd::new(&["runs", "--root", root, "--since", "soon"]).run();
    assert_eq!(out.code, 2);
    let out = Cmd::new(&["runs", "--root", root, "--status", "exploded"]).run();
    assert_eq!(out.code, 2);

    // Catalog ids work in compare, a prefix too.
    let out = Cmd::new(&["compare", &id, &id[..id.len() - 2], "--root", root]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

/// A two-repeat run of the simulator at 4 users; `slow` scales every step time by 1.2.
fn repeated_run(base: &Path, name: &str, slow: f64) -> PathBuf {
    let us = |v: f64| format!("{}us", (v * slow).round());
    let recipe = format!(
        "name: {name}
services:
  - name: llm
    kind: sim
    model: noise-sim
    args:
      max-batch: 8
      jitter: 0.1
      seed: 7
      decode-base: {}
      decode-per-seq: {}
      prefill-base: {}
      prefill-per-token: {}
workloads:
  - name: chat
    target: llm
    protocol: openai-completions
    dataset: {{ kind: synthetic, prompt_tokens: 64, output_tokens: 32 }}
    load: {{ pattern: closed-loop, users: 4 }}
    warmup: 1s
    stop: {{ duration: 4s }}
repeat: 2
",
        us(8000.0),
        us(150.0),
        us(2000.0),
        us(50.0),
    );
    std::fs::write(base.join(format!("{name}.yaml")), recipe).unwrap();
    let root = base.join(name);
    let out = Cmd::new(&[
        "run",
        &format!("{name}.yaml"),
        "--out",
        root.to_str().unwrap(),
        "--quiet",
    ])
    .dir(base)
    .env("AIBENCH_HOME", base.join("home").to_str().unwrap())
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("run.json").is_file())
        .expect("a run directory")
}

/// Item: `compare` judges a change with its noise. Two runs of one seeded recipe are not a
/// regression; the same recipe on a simulator 20 % slower is, with an interval beyond the
/// limit. Repeats are grouped and their spread counted.
#[test]
fn compare_tells_noise_from_a_slower_server() {
    let tmp = tempfile::tempdir().unwrap();
    let a = repeated_run(tmp.path(), "same-a", 1.0);
    let b = repeated_run(tmp.path(), "same-b", 1.0);
    let slow = repeated_run(tmp.path(), "slower", 1.2);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("run.json")).unwrap()).unwrap();
    let ids: Vec<&str> = run["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["01_repeat=1", "01_repeat=2"]);
    assert_eq!(run["trials"][1]["repeat"], 2);

    let (a, b, slow) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        slow.to_str().unwrap(),
    );
    let out = Cmd::new(&["compare", a, b]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("no regression") && out.stdout.contains("2 and 2 repeats"),
        "{}",
        out.stdout
    );

    let out = Cmd::new(&["compare", a, slow, "--json"]).run();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pair = &v["candidates"][0]["pairs"][0];
    assert_eq!(pair["repeats"], serde_json::json!([2, 2]));
    assert_eq!(pair["noise_judged"], true);
    let e2e = pair["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "E2E p99")
        .unwrap();
    let (low, high) = (
        e2e["interval"][0].as_f64().unwrap(),
        e2e["interval"][1].as_f64().unwrap(),
    );
    assert!(
        e2e["regression"] == true && low > 10.0 && high < 30.0,
        "{e2e}"
    );
    let out = Cmd::new(&["compare", a, slow]).run();
    assert!(
        out.stdout.contains("E2E p99 grew") && out.stdout.contains("95% interval"),
        "{}",
        out.stdout
    );
}
