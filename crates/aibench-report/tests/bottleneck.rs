//! Bottleneck verdicts on recorded (constructed) monitoring data, one case per verdict.
//!
//! Each run has one trial whose load starts 5 s into the run; it warms up for 2 s and measures
//! for 20 s, so its measure window is 7–27 s on the run's clock, where the metrics are.

mod common;

use aibench_report::model::{BottleneckKind, Confidence, Report, Verdict};
use common::{csv, series, write_run, RunSpec, Server, Trial};
use serde_json::json;

const HEALTHY: Server = Server {
    slots: 4,
    service_s: 0.4,
    output_tokens: 32,
    send_lag_s: 0.0002,
};

fn report(server: Server, rate: f64, metrics: Vec<(f64, &str, &str, f64)>) -> Report {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_run(
        tmp.path(),
        &RunSpec::default(),
        &[Trial {
            id: "01".into(),
            params: json!({}),
            records: server.records(rate, 2.0, 20.0),
            metrics: if metrics.is_empty() {
                Vec::new()
            } else {
                vec![("monitor.csv".into(), csv(&metrics))]
            },
        }],
    );
    aibench_report::analyse(&dir).unwrap().report
}

fn kinds(r: &Report) -> Vec<BottleneckKind> {
    r.bottlenecks.iter().map(|v| v.kind).collect()
}

fn verdict(r: &Report, kind: BottleneckKind) -> &Verdict {
    r.bottlenecks
        .iter()
        .find(|v| v.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} verdict in {:#?}", r.bottlenecks))
}

fn evidence(v: &Verdict, metric: &str) -> f64 {
    v.evidence
        .iter()
        .find(|e| e.metric.contains(metric))
        .unwrap_or_else(|| panic!("no evidence on {metric} in {:#?}", v.evidence))
        .value
}

/// Quiet monitoring data: nothing is near its limit.
fn quiet() -> Vec<(f64, &'static str, &'static str, f64)> {
    let mut m = series("vllm:num_requests_waiting", "model_name=m", 35, |_| 0.0);
    m.extend(series(
        "vllm:num_requests_running",
        "model_name=m",
        35,
        |_| 2.0,
    ));
    m.extend(series(
        "vllm:kv_cache_usage_perc",
        "model_name=m",
        35,
        |_| 0.3,
    ));
    m.extend(series("host_cpu_utilisation", "host=node1", 35, |_| 0.4));
    m.extend(series("host_memory_used_bytes", "host=node1", 35, |_| 4e9));
    m.extend(series("host_memory_total_bytes", "host=node1", 35, |_| {
        16e9
    }));
    m.extend(series("gpu_utilisation", "gpu=0", 35, |_| 55.0));
    m
}

fn with(
    mut base: Vec<(f64, &'static str, &'static str, f64)>,
    name: &str,
    extra: Vec<(f64, &'static str, &'static str, f64)>,
) -> Vec<(f64, &'static str, &'static str, f64)> {
    base.retain(|r| r.1 != name);
    base.extend(extra);
    base
}

#[test]
fn a_healthy_trial_has_no_verdict() {
    assert_eq!(kinds(&report(HEALTHY, 5.0, Vec::new())), vec![]);
    let r = report(HEALTHY, 5.0, quiet());
    assert_eq!(kinds(&r), vec![]);
    // The monitoring series are summarised over the measure window.
    let waiting = r.trials[0]
        .metrics
        .iter()
        .find(|m| m.name == "vllm:num_requests_waiting")
        .unwrap();
    assert_eq!(waiting.samples, 21, "7..=27 s on the run's clock");
}

#[test]
fn server_queue_growth_is_queueing() {
    let m = with(
        quiet(),
        "vllm:num_requests_waiting",
        series("vllm:num_requests_waiting", "model_name=m", 35, |t| t),
    );
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Queueing);
    assert!(evidence(v, "vllm:num_requests_waiting growth") >= 19.0);
    assert!(v.recommendation.contains("replicas"));
}

#[test]
fn client_side_backlog_is_queueing_without_any_metric() {
    // 14/s offered to a service that completes 10/s: in-flight requests pile up.
    let r = report(HEALTHY, 14.0, Vec::new());
    let v = verdict(&r, BottleneckKind::Queueing);
    assert_eq!(v.confidence, Confidence::Likely);
    let first = evidence(v, "in flight, first");
    let last = evidence(v, "in flight, peak");
    assert!(last > 2.0 * first, "{first} -> {last}");
    assert!(evidence(v, "per-second E2E p99, last / first") >= 2.0);
    assert!(!kinds(&r).contains(&BottleneckKind::Client));
}

#[test]
fn a_full_kv_cache_with_preemptions_is_kv_cache_bound() {
    let mut m = with(
        quiet(),
        "vllm:kv_cache_usage_perc",
        series("vllm:kv_cache_usage_perc", "model_name=m", 35, |_| 0.97),
    );
    m.extend(series(
        "vllm:num_preemptions_total",
        "model_name=m",
        35,
        |t| 2.0 * t,
    ));
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::KvCache);
    assert_eq!(v.confidence, Confidence::Likely);
    assert!((evidence(v, "vllm:kv_cache_usage_perc p95") - 0.97).abs() < 1e-9);
    assert_eq!(evidence(v, "preemptions_total increase"), 40.0);
    assert!(v.recommendation.contains("--gpu-memory-utilization"));
}

#[test]
fn the_older_kv_cache_gauge_name_works_too() {
    let mut m = quiet();
    m.retain(|r| r.1 != "vllm:kv_cache_usage_perc");
    m.extend(series(
        "vllm:gpu_cache_usage_perc",
        "model_name=m",
        35,
        |_| 0.95,
    ));
    let r = report(HEALTHY, 5.0, m);
    assert_eq!(kinds(&r), vec![BottleneckKind::KvCache]);
}

#[test]
fn nearly_exhausted_host_memory_is_memory_bound() {
    let m = with(
        quiet(),
        "host_memory_used_bytes",
        series("host_memory_used_bytes", "host=node1", 35, |_| 15.5e9),
    );
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Memory);
    assert!((evidence(v, "host memory used") - 15.5 / 16.0).abs() < 1e-9);
    assert_eq!(kinds(&r), vec![BottleneckKind::Memory]);
}

#[test]
fn a_busy_gpu_is_gpu_bound() {
    // Percent, as NVML reports it; two GPUs, one busy.
    let mut m = with(
        quiet(),
        "gpu_utilisation",
        series("gpu_utilisation", "gpu=0", 35, |_| 97.0),
    );
    m.extend(series("gpu_utilisation", "gpu=1", 35, |_| 40.0));
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Gpu);
    assert!((evidence(v, "gpu_utilisation mean (gpu=0)") - 0.97).abs() < 1e-9);
    assert_eq!(kinds(&r), vec![BottleneckKind::Gpu]);
}

#[test]
fn busy_host_cpus_are_cpu_bound() {
    let m = with(
        quiet(),
        "host_cpu_utilisation",
        series("host_cpu_utilisation", "host=node1", 35, |_| 0.96),
    );
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Cpu);
    assert!((evidence(v, "host_cpu_utilisation mean") - 0.96).abs() < 1e-9);
    assert_eq!(kinds(&r), vec![BottleneckKind::Cpu]);
}

/// Item: a host-CPU verdict says when the CPUs were busy with other processes than the
/// services and aibench, from the monitor's `process_cpu_cores`.
#[test]
fn a_cpu_verdict_names_other_processes_that_kept_the_host_busy() {
    let host = |service: f64| {
        let mut m = with(
            quiet(),
            "host_cpu_utilisation_ratio",
            series("host_cpu_utilisation_ratio", "cpu=total", 35, |_| 0.95),
        );
        m.extend(series("host_cpu_utilisation_ratio", "cpu=0", 35, |_| 0.95));
        m.extend(series("host_cpu_utilisation_ratio", "cpu=1", 35, |_| 0.95));
        m.extend(series("process_cpu_cores", "process=aibench", 35, |_| 0.2));
        m.extend(series("process_cpu_cores", "process=llm", 35, move |_| {
            service
        }));
        m
    };
    // 1.9 of 2 cores busy, 0.5 of them by the service and aibench: 1.4 by others.
    let r = report(HEALTHY, 5.0, host(0.3));
    let v = verdict(&r, BottleneckKind::Cpu);
    assert!(
        v.summary
            .contains("74% of it by other processes than the services and aibench"),
        "{}",
        v.summary
    );
    assert!((evidence(v, "other processes' CPU (cores)") - 1.4).abs() < 1e-9);
    assert!(v
        .recommendation
        .starts_with("Other processes kept the CPUs busy"));
    // The service itself busy: nobody else is named.
    let r = report(HEALTHY, 5.0, host(1.6));
    let v = verdict(&r, BottleneckKind::Cpu);
    assert!(!v.summary.contains("other processes"), "{}", v.summary);
    assert!((evidence(v, "services' CPU (cores)") - 1.6).abs() < 1e-9);
}

#[test]
fn busy_cpus_outside_the_measure_window_do_not_count() {
    // Busy only during warm-up and after the end: the clocks must line up for this to pass.
    let m = with(
        quiet(),
        "host_cpu_utilisation",
        series("host_cpu_utilisation", "host=node1", 35, |t| {
            if (2.0..=22.0).contains(&t) {
                0.3
            } else {
                1.0
            }
        }),
    );
    assert_eq!(kinds(&report(HEALTHY, 5.0, m)), vec![]);
}

#[test]
fn a_late_client_is_client_bound() {
    let late = Server {
        send_lag_s: 0.05,
        ..HEALTHY
    };
    let r = report(late, 5.0, Vec::new());
    let v = verdict(&r, BottleneckKind::Client);
    assert_eq!(v.confidence, Confidence::Likely);
    assert!((evidence(v, "send lag p99") - 50.0).abs() < 0.5);
    assert_eq!(evidence(v, "requests sent late"), 1.0);
    assert!(v.recommendation.contains("clients.processes"));
}

#[test]
fn the_monitors_clock_scrape_failures_and_power_are_used() {
    // The monitor's zero is the workload's start (clock.json), not the run's: t_s 2..=22 is
    // the measure window, where the CPUs are busy.
    let rows: Vec<(f64, &str, &str, f64)> = (0..30)
        .map(|t| {
            let t = f64::from(t);
            (
                t,
                "host_cpu_utilisation_ratio",
                "cpu=total",
                if (2.0..=22.0).contains(&t) { 0.97 } else { 0.3 },
            )
        })
        .chain((0..30).map(|t| (f64::from(t), "host_cpu_utilisation_ratio", "cpu=0", 1.0)))
        .collect();
    let epoch = common::RUN_START + common::TRIAL_OFFSET_S;
    let monitor = json!({
        "interval_s": 1.0,
        "epoch_s": epoch,
        "targets": [{"name": "llm", "kind": "vllm", "address": "x", "file": "llm.csv",
                     "attempts": 40, "failures": 3, "last_error": "connection refused",
                     "last_error_t_s": 12.5, "rows": 100, "unreadable_lines": 0}],
        "power": (0..30).map(|t| (f64::from(t), 300.0)).collect::<Vec<_>>(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_run(
        tmp.path(),
        &RunSpec::default(),
        &[Trial {
            id: "01".into(),
            params: json!({}),
            records: HEALTHY.records(5.0, 2.0, 20.0),
            metrics: vec![
                ("host.csv".into(), csv(&rows)),
                ("clock.json".into(), json!({"epoch_s": epoch}).to_string()),
                ("monitor.json".into(), monitor.to_string()),
            ],
        }],
    );
    let r = aibench_report::analyse(&dir).unwrap().report;
    let v = verdict(&r, BottleneckKind::Cpu);
    assert!((evidence(v, "host_cpu_utilisation_ratio mean (cpu=total)") - 0.97).abs() < 1e-9);
    assert!(
        r.notes.iter().any(|n| n.contains(
            "scrapes of `llm` (vllm) failed 3 of 40 times, last at t=12.5 s: connection refused"
        )),
        "{:?}",
        r.notes
    );
    let e = r.trials[0]
        .energy
        .as_ref()
        .expect("energy from power samples");
    let window = r.trials[0].summary.window.unwrap();
    let span = (window.end_ms - window.start_ms) / 1000.0;
    // Whole seconds of samples inside the window, at 300 W.
    assert!((e.mean_power_watts - 300.0).abs() < 1e-9);
    assert!(
        (e.joules - 300.0 * span.floor()).abs() <= 300.0,
        "{e:?} over {span} s"
    );
    let tokens = r.trials[0].summary.tokens.output as f64;
    assert!((e.joules_per_output_token.unwrap() - e.joules / tokens).abs() < 1e-9);
}

#[test]
fn a_redis_thread_using_a_whole_core_is_cpu_bound() {
    // INFO's CPU counters grow by 0.6 + 0.38 s per second: the command thread is saturated,
    // although the host as a whole is not.
    let mut m = quiet();
    m.extend(series("redis_used_cpu_sys", "", 35, |t| 0.6 * t));
    m.extend(series("redis_used_cpu_user", "", 35, |t| 0.38 * t));
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Cpu);
    assert!((evidence(v, "redis_used_cpu_sys + redis_used_cpu_user rate") - 0.98).abs() < 1e-6);
    assert!(v.summary.contains("single command thread"), "{}", v.summary);

    // Half a core: no verdict.
    let mut m = quiet();
    m.extend(series("redis_used_cpu_sys", "", 35, |t| 0.3 * t));
    m.extend(series("redis_used_cpu_user", "", 35, |t| 0.2 * t));
    assert_eq!(kinds(&report(HEALTHY, 5.0, m)), vec![]);
}

#[test]
fn postgres_backends_waiting_on_locks_are_queueing() {
    let mut m = quiet();
    m.extend(series(
        "pg_stat_activity_wait_count",
        "wait_event_type=Lock",
        35,
        |_| 5.0,
    ));
    m.extend(series(
        "pg_stat_activity_wait_count",
        "wait_event_type=none",
        35,
        |_| 3.0,
    ));
    let r = report(HEALTHY, 5.0, m);
    let v = verdict(&r, BottleneckKind::Queueing);
    assert!((evidence(v, "wait_event_type=Lock") - 5.0).abs() < 1e-9);
    assert!(v.summary.contains("waited for locks"), "{}", v.summary);

    let mut m = quiet();
    m.extend(series(
        "pg_stat_activity_wait_count",
        "wait_event_type=Lock",
        35,
        |_| 0.2,
    ));
    assert_eq!(kinds(&report(HEALTHY, 5.0, m)), vec![]);
}
