//! Reports of constructed runs whose answers are known.

mod common;

use aibench_report::model::{BucketPhase, Report};
use common::{write_run, RunSpec, Server, Trial};
use serde_json::json;

const SERVER: Server = Server {
    slots: 4,
    service_s: 0.4,
    output_tokens: 32,
    send_lag_s: 0.0002,
};

fn sweep_run(root: &std::path::Path) -> std::path::PathBuf {
    // Capacity 10/s; rates from 2/s to 16/s.
    let trials: Vec<Trial> = [2.0, 4.0, 6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0, 16.0]
        .iter()
        .enumerate()
        .map(|(i, &rate)| Trial {
            id: format!("{:02}_rate={rate}", i + 1),
            params: json!({ "chat.load.rate": format!("{rate}/s") }),
            records: SERVER.records(rate, 2.0, 20.0),
            metrics: Vec::new(),
        })
        .collect();
    write_run(
        root,
        &RunSpec {
            name: "sweep",
            slo: json!({ "ttft": "500ms", "e2e_p99": "1000ms", "error_rate": "1%" }),
            ..RunSpec::default()
        },
        &trials,
    )
}

#[test]
fn sweep_report_finds_the_knee_the_slo_limit_and_the_plateau() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sweep_run(tmp.path());
    let paths = aibench_report::write_reports(&dir).unwrap();
    let report: Report = serde_json::from_slice(&std::fs::read(&paths.json).unwrap()).unwrap();
    assert_eq!(report.trials.len(), 10);
    assert_eq!(report.sweeps.len(), 1, "{:?}", report.notes);
    let s = &report.sweeps[0];
    assert_eq!(s.parameter, "chat.load.rate");
    assert_eq!(s.unit, "requests/s");
    assert_eq!(s.latency_metric, "e2e_from_intended_p99_ms");
    let capacity = SERVER.capacity();
    let sat = s.saturation.as_ref().expect("a saturation knee");
    assert!(
        (sat.x - capacity).abs() <= 1.0,
        "saturation at {} ({}), capacity {capacity}",
        sat.x,
        sat.method
    );
    for k in [
        &s.latency_knee.kneedle,
        &s.latency_knee.max_curvature,
        &s.throughput_knee.kneedle,
        &s.throughput_knee.max_curvature,
    ] {
        let k = k.as_ref().expect("every method finds a knee");
        assert!((k.x - capacity).abs() <= 2.0, "{k:?}");
        assert!(!k.evidence.is_empty());
    }
    let plateau = s.plateau.as_ref().expect("a plateau");
    assert!(plateau.reached);
    assert!(
        (plateau.max_requests_per_s - capacity).abs() / capacity < 0.05,
        "{plateau:?}"
    );
    assert!(
        plateau.from_x >= 9.0 && plateau.from_x <= 11.0,
        "{plateau:?}"
    );
    // Below capacity every SLO holds; above it latency grows without bound.
    let slo_x = s.slo_max_load.x.expect("a load meeting the SLOs");
    assert!((8.0..=10.0).contains(&slo_x), "{:?}", s.slo_max_load);
    assert!(s.slo_max_load.evidence.contains("missed"));
    // Queueing along the sweep, from the client's data alone.
    let q = report
        .bottlenecks
        .iter()
        .find(|v| v.kind == aibench_report::model::BottleneckKind::Queueing)
        .expect("queueing verdict");
    assert!(!q.evidence.is_empty() && !q.recommendation.is_empty());
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("no monitoring data")));
    // Per-second series: warm-up marked, then measured seconds.
    let t0 = &report.trials[0];
    assert_eq!(t0.timeseries[0].phase, BucketPhase::Warmup);
    assert!(t0
        .timeseries
        .iter()
        .any(|b| b.phase == BucketPhase::Measure));
    let measured: Vec<_> = t0
        .timeseries
        .iter()
        .filter(|b| b.phase == BucketPhase::Measure)
        .collect();
    let mid = measured[measured.len() / 2];
    assert_eq!(mid.completed, 2, "2/s, one second");
    // Goodput against the per-request TTFT threshold.
    let g = t0.goodput.as_ref().expect("goodput");
    assert_eq!(g.share, 1.0);
    assert!(
        report
            .trials
            .last()
            .unwrap()
            .goodput
            .as_ref()
            .unwrap()
            .share
            < 0.5
    );

    // Every plot as SVG and PNG, inline in the HTML.
    let ids: Vec<&str> = report.plots.iter().map(|p| p.id.as_str()).collect();
    for want in [
        "sweep",
        "latency-cdf",
        "ttft-itl-distribution",
        "trial-01-01_rate-2",
    ] {
        assert!(ids.contains(&want), "{ids:?}");
    }
    for p in &report.plots {
        let svg = std::fs::read_to_string(dir.join(&p.svg)).unwrap();
        assert!(svg.starts_with("<svg"));
        let png = std::fs::read(dir.join(&p.png)).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert_eq!(html.matches("<svg").count(), report.plots.len());
    // Nothing to fetch: no script, stylesheet, image or font from elsewhere.
    for needle in [
        "<script",
        "<link",
        "src=\"http",
        "href=\"http",
        "url(",
        "@import",
    ] {
        assert!(!html.contains(needle), "report.html contains {needle}");
    }
    assert!(html.contains("Saturation knee"));
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("## Trials") && md.contains("| `01_rate=2` |"));
    assert!(
        md.contains("Saturation knee: 10/s") || md.contains("Saturation knee: "),
        "{md}"
    );
}

#[test]
fn regenerating_replaces_the_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sweep_run(tmp.path());
    std::fs::create_dir_all(dir.join("plots")).unwrap();
    std::fs::write(dir.join("plots/stale.svg"), "<svg/>").unwrap();
    let a = aibench_report::write_reports(&dir).unwrap();
    let first = std::fs::read_to_string(&a.json).unwrap();
    let b = aibench_report::write_reports(&dir).unwrap();
    assert_eq!(
        first,
        std::fs::read_to_string(&b.json).unwrap(),
        "same input, same report"
    );
    assert!(!dir.join("plots/stale.svg").exists());
}

#[test]
fn a_single_trial_without_records_or_recipe_still_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_run(
        tmp.path(),
        &RunSpec::default(),
        &[Trial {
            id: "01".into(),
            params: json!({}),
            records: SERVER.records(5.0, 1.0, 5.0),
            metrics: Vec::new(),
        }],
    );
    std::fs::remove_file(dir.join("trials/01/requests.jsonl")).unwrap();
    std::fs::remove_file(dir.join("resolved.yaml")).unwrap();
    let paths = aibench_report::write_reports(&dir).unwrap();
    let report: Report = serde_json::from_slice(&std::fs::read(&paths.json).unwrap()).unwrap();
    assert!(report.sweeps.is_empty());
    assert!(report.trials[0].timeseries.is_empty());
    assert!(report.notes.iter().any(|n| n.contains("requests.jsonl")));
    assert!(report.notes.iter().any(|n| n.contains("resolved.yaml")));
    assert!(!report.trials[0].slo.evaluated);
}

#[test]
fn not_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let err = aibench_report::write_reports(tmp.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("is not a run directory"),
        "{err:#}"
    );
}

/// The Markdown report of a known sweep, whole: any change to its wording, tables or figures is
/// a diff to review. (The run is constructed with fixed times, so nothing needs redacting but
/// the temporary folder.)
#[test]
fn the_sweep_report_reads_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sweep_run(tmp.path());
    let paths = aibench_report::write_reports(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.markdown)
        .unwrap()
        .replace(&tmp.path().display().to_string(), "<tmp>");
    insta::assert_snapshot!("sweep-report-md", md);
}

/// The report says what the objectives were, and never that "the service kept up" of a run
/// that did not complete.
#[test]
fn a_failed_run_is_not_said_to_have_kept_up_and_objectives_are_stated() {
    let tmp = tempfile::tempdir().unwrap();
    let trial = || Trial {
        id: "01".into(),
        params: json!({}),
        records: SERVER.records(2.0, 1.0, 5.0),
        metrics: Vec::new(),
    };
    let ok = write_run(
        &tmp.path().join("a"),
        &RunSpec {
            slo: json!({ "ttft": "500ms", "e2e_p99": "1000ms" }),
            ..RunSpec::default()
        },
        &[trial()],
    );
    let md = std::fs::read_to_string(aibench_report::write_reports(&ok).unwrap().markdown).unwrap();
    assert!(md.contains("No bottleneck found"), "{md}");
    assert!(
        md.contains("Objectives: per request TTFT ≤ 500 ms") && md.contains("E2E p99 ≤ 1000 ms"),
        "{md}"
    );

    let failed = write_run(&tmp.path().join("b"), &RunSpec::default(), &[trial()]);
    let run_json = failed.join("run.json");
    let text = std::fs::read_to_string(&run_json)
        .unwrap()
        .replace("\"status\": \"completed\"", "\"status\": \"failed\"")
        .replace("\"status\":\"completed\"", "\"status\":\"failed\"");
    assert!(text.contains("failed"), "{text}");
    std::fs::write(&run_json, text).unwrap();
    let paths = aibench_report::write_reports(&failed).unwrap();
    for text in [
        std::fs::read_to_string(&paths.markdown).unwrap(),
        std::fs::read_to_string(&paths.html).unwrap(),
    ] {
        assert!(!text.contains("kept up"), "{text}");
        assert!(
            text.contains("No bottleneck verdict: the run is failed"),
            "{text}"
        );
    }
}
