//! The NVML binding against a stand-in library built from `tests/data/fake_nvml.c`, and the
//! Grafana dashboards checked against the metrics aibench and the simulator really expose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use aibench_monitor::expo::{parse, Format};
use aibench_monitor::gpu::GpuSampler;
use aibench_monitor::grafana::{self, promql_metric_names, DATASOURCE_UID};
use aibench_monitor::host::HostSampler;
use aibench_monitor::{LiveMetrics, Monitor, MonitorConfig};

use crate::util::{read_csv, wait_until, Sim};

/// Build the stand-in NVML into `dir`; None (with a note) without a C compiler.
fn fake_nvml(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fake_nvml.c");
    let out = dir.join("libnvidia-ml.so.1");
    match std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
    {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("cc failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIPPED: no C compiler to build the stand-in NVML ({e})");
            None
        }
    }
}

#[test]
fn nvml_binding_reads_every_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(lib) = fake_nvml(tmp.path()) else {
        return;
    };
    let mut g = GpuSampler::open_library(&lib).unwrap();
    let gpus = g.gpus();
    assert_eq!(gpus.len(), 2);
    assert_eq!(
        (gpus[1].index, gpus[1].name.as_str(), gpus[1].uuid.as_str()),
        (1, "Fake GPU B", "GPU-0000-b")
    );
    let first = g.sample();
    let v = |s: &aibench_monitor::gpu::GpuSample, name: &str, gpu: &str| {
        s.samples
            .iter()
            .find(|x| x.name == name && x.labels == vec![("gpu".to_string(), gpu.to_string())])
            .map(|x| x.value)
    };
    assert_eq!(v(&first, "gpu_utilisation_ratio", "0"), Some(0.75));
    assert_eq!(v(&first, "gpu_utilisation_ratio", "1"), Some(0.76));
    assert_eq!(v(&first, "gpu_memory_utilisation_ratio", "0"), Some(0.4));
    assert_eq!(
        v(&first, "gpu_memory_used_bytes", "0"),
        Some((20u64 << 30) as f64)
    );
    assert_eq!(
        v(&first, "gpu_memory_total_bytes", "1"),
        Some((80u64 << 30) as f64)
    );
    assert_eq!(v(&first, "gpu_power_watts", "1"), Some(300.0));
    assert_eq!(v(&first, "gpu_temperature_celsius", "0"), Some(61.0));
    assert_eq!(v(&first, "gpu_sm_clock_hertz", "0"), Some(1.41e9));
    assert_eq!(v(&first, "gpu_memory_clock_hertz", "0"), Some(1.593e9));
    assert_eq!(v(&first, "gpu_energy_joules", "0"), Some(0.0));
    assert_eq!(first.power_watts, Some(550.0));
    let second = g.sample();
    assert!(v(&second, "gpu_energy_joules", "0").unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_samples_gpus_and_reports_energy_per_token() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(lib) = fake_nvml(tmp.path()) else {
        return;
    };
    let mut cfg = MonitorConfig::new(
        tmp.path().join("metrics"),
        Instant::now(),
        SystemTime::now(),
    );
    cfg.interval = Duration::from_millis(100);
    cfg.scrape_timeout = Some(crate::util::PATIENCE);
    cfg.system = false;
    cfg.nvml_library = Some(lib);
    let live = LiveMetrics::new("gpu-run");
    cfg.live = Some(live.clone());
    let monitor = Monitor::start(cfg).unwrap();
    let csv = tmp.path().join("metrics/gpu.csv");
    wait_until("four GPU samples", || {
        read_csv(&csv)
            .iter()
            .filter(|r| r.name == "gpu_power_watts")
            .count()
            >= 8
    })
    .await;
    let report = monitor.stop().await;
    assert!(report.gpu_note.is_none());
    assert_eq!(report.gpus.len(), 2);
    assert!(report.power.len() >= 4);
    assert!(report.power.iter().all(|(_, w)| *w == 550.0));
    let (t0, t1) = (report.power[0].0, report.power.last().unwrap().0);
    let joules = report.energy_joules(None).unwrap();
    assert!((joules - 550.0 * (t1 - t0)).abs() < 1e-6, "{joules}");
    let per_token = report.joules_per_output_token(1000, None).unwrap();
    assert!((per_token - joules / 1000.0).abs() < 1e-12);
    assert!(report.joules_per_output_token(0, None).is_none());
    let e = parse(&live.render(), Format::Prometheus);
    assert_eq!(
        e.find("aibench_gpu_power_watts", &[("gpu", "1")])
            .map(|s| s.value),
        Some(300.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_name_only_metrics_that_aibench_or_the_sim_expose() {
    let tmp = tempfile::tempdir().unwrap();
    let mut known: BTreeSet<String> = BTreeSet::new();

    // The simulator's own exposition, after some requests.
    let sim = Sim::start().await;
    sim.load(2).await;
    let call = aibench_monitor::http::Call::get(
        "127.0.0.1",
        sim.addr.port(),
        "/metrics",
        crate::util::PATIENCE,
    );
    let text = call.send().await.unwrap().text();
    sim.stop().await;
    known.extend(
        parse(&text, Format::Prometheus)
            .samples
            .into_iter()
            .map(|s| s.name),
    );

    // aibench's live exposition with every source fed.
    let live = LiveMetrics::new("r");
    let p = aibench_results::Progress {
        elapsed: Duration::from_secs(1),
        phase: aibench_results::Phase::Measure,
        sent: 2,
        succeeded: 1,
        errors: 1,
        dropped: 0,
        in_flight: 0,
        rate_rps: 1.0,
        ttft_p99_ms: Some(1.0),
        e2e_p99_ms: Some(2.0),
        done: false,
    };
    live.observe_progress("w", &p);
    let mut ok = aibench_results::RequestRecord::new(1, aibench_results::Phase::Measure, 0);
    (
        ok.sent_us,
        ok.first_token_us,
        ok.end_us,
        ok.output_tokens,
        ok.itl_us,
    ) = (Some(1), Some(2), Some(9), Some(3), vec![3, 4]);
    live.observe_record("w", &ok);
    let mut bad = aibench_results::RequestRecord::new(2, aibench_results::Phase::Measure, 0);
    bad.error = Some(aibench_results::ErrorClass::Timeout);
    live.observe_record("w", &bad);
    let later = aibench_results::Progress {
        elapsed: Duration::from_secs(2),
        ..p.clone()
    };
    live.observe_progress("w", &later);
    live.observe_scrape("llm", true);
    let mut host = HostSampler::new();
    host.sample(Instant::now()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    live.set_gauges("host", host.sample(Instant::now()).unwrap());
    let gpu_checked = match fake_nvml(tmp.path()) {
        Some(lib) => {
            let mut g = GpuSampler::open_library(&lib).unwrap();
            g.sample();
            live.set_gauges("gpu", g.sample().samples);
            true
        }
        None => false,
    };
    known.extend(
        parse(&live.render(), Format::Prometheus)
            .samples
            .into_iter()
            .map(|s| s.name),
    );

    let files = grafana::write(tmp.path(), "http://127.0.0.1:9090", 5.0).unwrap();
    let mut checked = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let d: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for panel in d["panels"].as_array().unwrap() {
            assert_eq!(
                panel["datasource"]["uid"],
                DATASOURCE_UID,
                "{}",
                path.display()
            );
            assert_eq!(panel["datasource"]["type"], "prometheus");
            for t in panel["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], DATASOURCE_UID);
                let expr = t["expr"].as_str().unwrap();
                for name in promql_metric_names(expr) {
                    if name.starts_with("aibench_gpu_") && !gpu_checked {
                        continue;
                    }
                    assert!(
                        known.contains(&name),
                        "{}: `{name}` in `{expr}` is exposed by nothing",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "{checked}");
    let ds = std::fs::read_to_string(
        tmp.path()
            .join("grafana/provisioning/datasources/aibench.yaml"),
    )
    .unwrap();
    assert!(ds.contains(&format!("uid: \"{DATASOURCE_UID}\"")));
}
