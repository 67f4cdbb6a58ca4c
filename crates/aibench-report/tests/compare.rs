//! Comparing runs: regressions found, no regression when nothing changed, thresholds applied.

mod common;

use aibench_report::compare::{compare, load, recipe_overrides, Thresholds};
use aibench_results::ErrorClass;
use common::{write_run, RunSpec, Server, Trial};
use serde_json::json;

const BASE: Server = Server {
    slots: 4,
    service_s: 0.4,
    output_tokens: 32,
    send_lag_s: 0.0002,
};

fn run(
    root: &std::path::Path,
    name: &str,
    server: Server,
    fail_every: Option<u64>,
) -> std::path::PathBuf {
    let trials: Vec<Trial> = [2.0, 4.0]
        .iter()
        .enumerate()
        .map(|(i, &rate)| {
            let mut records = server.records(rate, 1.0, 10.0);
            if let Some(n) = fail_every {
                for r in records.iter_mut().filter(|r| r.id % n == 0) {
                    r.error = Some(ErrorClass::Http5xx);
                    r.status = Some(503);
                    r.first_token_us = None;
                    r.itl_us.clear();
                    r.output_tokens = None;
                }
            }
            Trial {
                id: format!("{:02}_rate={rate}", i + 1),
                params: json!({ "chat.load.rate": rate }),
                records,
                metrics: Vec::new(),
            }
        })
        .collect();
    write_run(
        root,
        &RunSpec {
            name,
            ..RunSpec::default()
        },
        &trials,
    )
}

#[test]
fn the_same_run_is_no_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let a = load(&run(tmp.path(), "a", BASE, None)).unwrap();
    let b = load(&run(tmp.path(), "b", BASE, None)).unwrap();
    let c = compare(&a, &[b], &Thresholds::default());
    assert!(!c.regression, "{c:#?}");
    assert_eq!(c.candidates[0].pairs.len(), 2);
    assert!(c.candidates[0].unmatched.is_empty());
    let text = aibench_report::compare::render_text(&c);
    assert!(text.contains("no regression"), "{text}");
}

#[test]
fn slower_service_is_a_latency_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let a = load(&run(tmp.path(), "a", BASE, None)).unwrap();
    let slow = Server {
        service_s: 0.5,
        ..BASE
    };
    let b = load(&run(tmp.path(), "b", slow, None)).unwrap();
    let c = compare(&a, std::slice::from_ref(&b), &Thresholds::default());
    assert!(c.regression);
    let p = &c.candidates[0].pairs[0];
    let e2e = p.metrics.iter().find(|m| m.metric == "E2E p99").unwrap();
    assert!(e2e.regression);
    assert!((e2e.delta_pct.unwrap() - 25.0).abs() < 1.0, "{e2e:?}");
    assert!(
        p.regressions.iter().any(|r| r.starts_with("E2E p99 grew")),
        "{:?}",
        p.regressions
    );
    let text = aibench_report::compare::render_text(&c);
    assert!(text.contains("REGRESSION"), "{text}");
    // A looser threshold lets it pass.
    let loose = Thresholds {
        latency_p99_pct: 30.0,
        ..Thresholds::default()
    };
    assert!(!compare(&a, &[b], &loose).regression);
}

#[test]
fn errors_are_a_success_rate_and_new_class_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let a = load(&run(tmp.path(), "a", BASE, None)).unwrap();
    let b = load(&run(tmp.path(), "b", BASE, Some(5))).unwrap();
    let c = compare(&a, std::slice::from_ref(&b), &Thresholds::default());
    assert!(c.regression);
    let p = &c.candidates[0].pairs[0];
    assert_eq!(p.new_error_classes, vec!["http_5xx (4)".to_string()]);
    assert!(p
        .regressions
        .iter()
        .any(|r| r.starts_with("success rate fell")));
    assert!(p
        .regressions
        .iter()
        .any(|r| r.starts_with("new error class")));
    // With the gates off, the same comparison passes... except throughput, which fell too.
    let off = Thresholds {
        success_rate_pct: 100.0,
        new_error_class: false,
        throughput_pct: 100.0,
        ..Thresholds::default()
    };
    assert!(!compare(&a, &[b], &off).regression);
}

#[test]
fn baseline_files_and_pairing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run(tmp.path(), "a", BASE, None);
    let paths = aibench_report::write_reports(&dir).unwrap();
    // report.json: every trial, paired by id.
    let from_report = load(&paths.json).unwrap();
    assert_eq!(from_report.entries.len(), 2);
    assert_eq!(from_report.label, "a-20261123-124500");
    let run_side = load(&dir).unwrap();
    let c = compare(
        &from_report,
        std::slice::from_ref(&run_side),
        &Thresholds::default(),
    );
    assert!(!c.regression);
    assert_eq!(c.candidates[0].pairs.len(), 2);
    // summary.json: one trial against a run with two: nothing pairs by key.
    let summary = load(&dir.join("trials/01_rate=2/summary.json")).unwrap();
    let c = compare(&summary, &[run_side], &Thresholds::default());
    assert!(c.candidates[0].pairs.is_empty());
    assert_eq!(c.candidates[0].unmatched.len(), 3);
    // Two single-trial inputs pair whatever their ids.
    let other = load(&dir.join("trials/02_rate=4/summary.json")).unwrap();
    let c = compare(&summary, &[other], &Thresholds::default());
    assert_eq!(c.candidates[0].pairs.len(), 1);
    let rps = &c.candidates[0].pairs[0].metrics[0];
    assert_eq!(rps.metric, "requests/s");
    assert!(rps.delta_pct.unwrap() > 90.0, "{rps:?}");
    assert!(
        !c.regression,
        "more throughput at the same latency is no regression"
    );
}

#[test]
fn unreadable_inputs_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("x.json");
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    assert!(load(&bad)
        .unwrap_err()
        .to_string()
        .contains("neither a report.json"));
    assert!(load(&tmp.path().join("absent.json")).is_err());
    assert!(load(tmp.path())
        .unwrap_err()
        .to_string()
        .contains("not a run directory"));
}

#[test]
fn thresholds_from_a_recipe_section() {
    let o = recipe_overrides(&json!({"regression": {"latency_p99": "5%", "throughput": 20, "new_errors": false, "min_latency_delta": "2ms"}})).unwrap();
    let t = Thresholds::default().apply(&o);
    assert_eq!(t.latency_p99_pct, 5.0);
    assert_eq!(t.throughput_pct, 20.0);
    assert_eq!(t.success_rate_pct, 1.0);
    assert!(!t.new_error_class);
    assert_eq!(t.min_latency_delta_ms, 2.0);
    assert!(recipe_overrides(&json!({"regression": {"latency": "5%"}})).is_err());
    assert_eq!(recipe_overrides(&json!({})).unwrap(), Default::default());
}
