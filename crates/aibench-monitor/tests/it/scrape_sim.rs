//! The monitor against a real `aibench sim` over TCP: vLLM metrics land in the CSV on the run's
//! clock, host samples beside them, and a target that dies is counted while the rest goes on.

use std::time::{Duration, Instant, SystemTime};

use aibench_monitor::clock::ClockInfo;
use aibench_monitor::{Monitor, MonitorConfig, MonitorEvent, MonitorReport, Target, TargetKind};

use crate::util::{read_csv, scrape_times, wait_until, Sim};

fn config(dir: &std::path::Path, targets: Vec<Target>) -> MonitorConfig {
    let mut c = MonitorConfig::new(dir.join("metrics"), Instant::now(), SystemTime::now());
    c.interval = Duration::from_millis(100);
    // A loaded machine may be slow to answer; only real failures should count.
    c.scrape_timeout = Some(crate::util::PATIENCE);
    c.targets = targets;
    c
}

fn sim_target(name: &str, sim: &Sim) -> Target {
    Target::for_service(name, "sim", "127.0.0.1", sim.addr.port(), Some("/metrics"))
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_metrics_and_host_samples_land_in_the_trial_csvs() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start().await;
    sim.load(3).await;
    let monitor = Monitor::start(config(tmp.path(), vec![sim_target("llm", &sim)])).unwrap();
    let csv = tmp.path().join("metrics/llm.csv");
    let host = tmp.path().join("metrics/host.csv");
    wait_until(
        "three scrapes of the simulator and two host samples",
        || {
            scrape_times(&read_csv(&csv)).len() >= 3
                && read_csv(&host)
                    .iter()
                    .any(|r| r.name == "host_cpu_utilisation_ratio")
        },
    )
    .await;
    sim.load(2).await;
    let report: MonitorReport = monitor.stop().await;
    sim.stop().await;

    let rows = read_csv(&csv);
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_count",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    let running = rows
        .iter()
        .find(|r| r.name == "vllm:num_requests_running")
        .unwrap();
    assert_eq!(
        running.labels,
        vec![("model_name".to_string(), "sim".to_string())]
    );
    // On the run's clock: from zero on, in order.
    let times = scrape_times(&rows);
    assert!(times[0] >= 0.0);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // The final scrape at stop saw all five requests.
    let done: f64 = rows
        .iter()
        .filter(|r| r.name == "vllm:request_success_total" && r.t_s == *times.last().unwrap())
        .map(|r| r.value)
        .sum();
    assert_eq!(done, 5.0);

    let host_rows = read_csv(&host);
    for want in [
        "host_cpu_utilisation_ratio",
        "host_memory_used_bytes",
        "host_memory_available_bytes",
        "host_load1",
        "host_network_receive_bytes_per_second",
    ] {
        assert!(
            host_rows.iter().any(|r| r.name == want),
            "{want} missing from host.csv"
        );
    }
    assert!(host_rows
        .iter()
        .filter(|r| r.name == "host_cpu_utilisation_ratio")
        .all(|r| (0.0..=1.0).contains(&r.value)));

    let clock: ClockInfo =
        serde_json::from_slice(&std::fs::read(tmp.path().join("metrics/clock.json")).unwrap())
            .unwrap();
    assert!((clock.epoch_s - report.epoch_s).abs() < 1e-6);
    let saved: MonitorReport =
        serde_json::from_slice(&std::fs::read(tmp.path().join("metrics/monitor.json")).unwrap())
            .unwrap();
    assert_eq!(saved.targets, report.targets);
    assert_eq!(saved.host, report.host);
    assert_eq!(saved.gpu_note, report.gpu_note);
    assert!((saved.epoch_s - report.epoch_s).abs() < 1e-6);
    let t = &report.targets[0];
    assert_eq!(
        (t.name.as_str(), t.kind.as_str(), t.failures),
        ("llm", "sim", 0)
    );
    assert!(t.attempts >= 3);
    assert_eq!(t.rows as usize, rows.len());
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    // No NVIDIA driver here: a note, not an error; with one, GPUs are listed.
    assert!(report.gpu_note.is_some() || !report.gpus.is_empty());
    if let Some(note) = &report.gpu_note {
        eprintln!("gpu note: {note}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_is_counted_and_monitoring_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let doomed = Sim::start().await;
    let steady = Sim::start().await;
    let doomed_addr = doomed.addr;
    let mut cfg = config(
        tmp.path(),
        vec![sim_target("doomed", &doomed), sim_target("steady", &steady)],
    );
    cfg.system = false;
    cfg.gpu = false;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    cfg.events = Some(tx);
    let live = aibench_monitor::LiveMetrics::new("t");
    cfg.live = Some(live.clone());
    let monitor = Monitor::start(cfg).unwrap();

    let attempts = |name: &str| {
        monitor
            .report()
            .targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.attempts, t.failures))
            .unwrap()
    };
    wait_until("two good scrapes of the doomed target", || {
        attempts("doomed").0 >= 2
    })
    .await;
    doomed.stop().await;
    wait_until("three failed scrapes of the dead target", || {
        attempts("doomed").1 >= 3
    })
    .await;
    let steady_then = attempts("steady").0;
    let doomed_then = attempts("doomed").0;
    wait_until("monitoring to go on", || {
        attempts("steady").0 >= steady_then + 3 && attempts("doomed").0 >= doomed_then + 3
    })
    .await;
    assert_eq!(attempts("steady").1, 0);

    // The service comes back on the same port: the monitor picks it up again.
    let back = Sim::start_on(doomed_addr).await;
    let failures = attempts("doomed").1;
    wait_until("the target to answer again", || {
        let (a, f) = attempts("doomed");
        f == failures && a >= doomed_then + 6
    })
    .await;
    let report = monitor.stop().await;
    back.stop().await;
    steady.stop().await;

    let doomed = report.targets.iter().find(|t| t.name == "doomed").unwrap();
    assert!(doomed.failures >= 3 && doomed.attempts > doomed.failures);
    let err = doomed.last_error.as_deref().unwrap();
    assert!(err.contains("could not connect"), "{err}");
    assert!(doomed.last_error_t_s.unwrap() > 0.0);
    let problems = report.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`doomed`"), "{}", problems[0]);

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        matches!(&seen[..], [MonitorEvent::TargetDown { target, .. }, MonitorEvent::TargetUp { failed_scrapes, .. }] if target == "doomed" && *failed_scrapes >= 3),
        "{seen:?}"
    );
    // The doomed CSV has rows before and after the gap.
    let rows = read_csv(&tmp.path().join("metrics/doomed.csv"));
    let times = scrape_times(&rows);
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(gap >= 0.3, "no gap in {times:?}");
    // Live exposition counts the failures too.
    let text = live.render();
    let e = aibench_monitor::expo::parse(&text, aibench_monitor::expo::Format::Prometheus);
    let failed = e
        .find("aibench_scrape_failures_total", &[("target", "doomed")])
        .unwrap();
    assert_eq!(failed.value, doomed.failures as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_all_and_targets_added_later() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Sim::start().await;
    let mut cfg = config(tmp.path(), vec![]);
    cfg.system = false;
    cfg.gpu = false;
    cfg.keep_all = true;
    let mut monitor = Monitor::start(cfg).unwrap();
    // `host` is the monitor's own file name: the service's file gets a suffix.
    let t = Target::new("host", TargetKind::Sim, "127.0.0.1", sim.addr.port());
    monitor.add_target(t.clone()).unwrap();
    assert!(monitor.add_target(t).is_err());
    let csv = tmp.path().join("metrics/host-service.csv");
    // Names that make the same file name get distinct files.
    monitor
        .add_target(Target::new(
            "a/b",
            TargetKind::Sim,
            "127.0.0.1",
            sim.addr.port(),
        ))
        .unwrap();
    monitor
        .add_target(Target::new(
            "a_b",
            TargetKind::Sim,
            "127.0.0.1",
            sim.addr.port(),
        ))
        .unwrap();
    let files: Vec<String> = monitor
        .report()
        .targets
        .iter()
        .map(|t| t.file.clone())
        .collect();
    assert!(
        files.contains(&"a_b.csv".to_string()) && files.contains(&"a_b-2.csv".to_string()),
        "{files:?}"
    );
    wait_until("a scrape", || !read_csv(&csv).is_empty()).await;
    let removed = monitor.remove_target("host").await.unwrap();
    assert!(removed.attempts >= 1);
    let report = monitor.stop().await;
    sim.stop().await;
    assert_eq!(report.targets.len(), 3);
    assert!(read_csv(&csv)
        .iter()
        .any(|r| r.name == "aibench_sim:injected_failures_total"));
}
