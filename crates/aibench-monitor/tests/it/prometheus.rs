//! Against the real Debian `prometheus` and `prometheus-pushgateway`: Prometheus, started by
//! the monitor's code with its generated configuration, scrapes aibench's live endpoint (fed by
//! a real load run) and the simulator; `export` returns the series, during the run and after
//! it from the stored data; the Pushgateway takes pushes and deletes the group.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aibench_load::{Dataset, LengthDist, LoadSpec, Pattern, Protocol, RunOptions, Stop, ThinkTime};
use aibench_monitor::export::{export, ExportFormat, ExportRequest};
use aibench_monitor::prometheus::{LocalPrometheus, PromApi, PrometheusOptions};
use aibench_monitor::push::{PushGroup, Pusher};
use aibench_monitor::{LiveMetrics, LiveServer, Monitor, MonitorConfig, Target};

use crate::util::{free_port, missing, wait_port, ChildGuard, Sim, PATIENCE};

/// Poll an async condition every 200 ms until it holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn has_series(api: &PromApi, query: &str) -> bool {
    match api.instant(query, None).await {
        Ok(r) => !r.series.is_empty(),
        Err(_) => false,
    }
}

/// Drive a short closed-loop load at the simulator, feeding the live metrics.
async fn drive(sim: &Sim, live: &LiveMetrics) {
    let spec = LoadSpec {
        pattern: Pattern::ClosedLoop {
            users: 2,
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            duration: Some(Duration::from_secs(3)),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let mut target =
        aibench_load::Target::new(format!("http://{}", sim.addr), Protocol::OpenAiCompletions);
    target.model = Some("sim".into());
    let data = Dataset::synthetic(LengthDist::Fixed(8), LengthDist::Fixed(16), 20, 1).unwrap();
    let records = tempfile::NamedTempFile::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let fed = live.clone();
    let feeder = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            fed.observe_progress("chat", &p);
        }
    });
    let options = RunOptions {
        records: Some(records.path().to_path_buf()),
        events: Some(tx),
        ..RunOptions::default()
    };
    let out = aibench_load::run(&spec, &target, &data, options)
        .await
        .unwrap();
    feeder.await.unwrap();
    assert!(out.summary.counts.successes > 0);
    for r in aibench_results::read_records(records.path()).unwrap() {
        live.observe_record("chat", &r.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_live_and_sim_metrics_and_export_returns_them() {
    if missing("prometheus", "prometheus") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().to_path_buf();
    let epoch = aibench_monitor::clock::epoch_seconds(SystemTime::now());
    std::fs::write(
        run_dir.join("run.json"),
        serde_json::json!({ "run_id": "it-run", "started_at": epoch }).to_string(),
    )
    .unwrap();

    let sim = Sim::start().await;
    let live = LiveMetrics::new("it-run");
    let server = LiveServer::start("127.0.0.1:0".parse().unwrap(), live.clone())
        .await
        .unwrap();
    let mut opts = PrometheusOptions::new(run_dir.join("prometheus"), "it-run");
    opts.scrape_interval = Duration::from_secs(1);
    let prom = LocalPrometheus::start(opts).await.unwrap();
    let sim_target =
        Target::for_service("llm", "sim", "127.0.0.1", sim.addr.port(), Some("/metrics"))
            .unwrap()
            .unwrap();
    assert!(prom.file_sd().add_service(&sim_target).unwrap());
    prom.file_sd().set_live(&server.addr().to_string()).unwrap();

    // The monitor publishes host samples on the live endpoint too.
    let mut cfg = MonitorConfig::new(
        run_dir.join("trials/t1/metrics"),
        Instant::now(),
        SystemTime::now(),
    );
    cfg.interval = Duration::from_millis(500);
    cfg.scrape_timeout = Some(crate::util::PATIENCE);
    cfg.targets = vec![sim_target.clone()];
    cfg.live = Some(live.clone());
    let monitor = Monitor::start(cfg).unwrap();

    drive(&sim, &live).await;

    let api = prom.api().unwrap();
    for query in [
        "aibench_requests_succeeded_total{workload=\"chat\",job=\"aibench\"} > 0",
        "aibench_ttft_seconds_count > 0",
        "aibench_host_memory_used_bytes",
        "vllm:num_requests_running{service=\"llm\",kind=\"sim\",aibench_run=\"it-run\"}",
        "vllm:generation_tokens_total > 0",
        "vllm:kv_cache_usage_perc",
        // A few scrapes of each, so that a range query finds them.
        "count_over_time(aibench_requests_succeeded_total[1m]) >= 3",
        "count_over_time(vllm:generation_tokens_total[1m]) >= 3",
    ] {
        eventually(query, || has_series(&api, query)).await;
    }
    let targets = api.targets().await.unwrap();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(targets.iter().all(|t| t.1 == "up"), "{targets:?}");

    // Export while the run's Prometheus runs: by run directory, CSV, a range.
    let mut req = ExportRequest {
        source: run_dir.display().to_string(),
        query: "aibench_requests_succeeded_total".into(),
        range: Some("start..now".into()),
        step: Some("1s".into()),
        time: None,
        format: ExportFormat::Csv,
        prometheus: "prometheus".into(),
    };
    let csv = export(&req).await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "timestamp,t_s,name,labels,value");
    assert!(lines.len() > 2, "{csv}");
    assert!(
        lines[1].contains(",aibench_requests_succeeded_total,"),
        "{csv}"
    );
    assert!(lines[1].contains("workload=chat"), "{csv}");
    let t_s: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    assert!(t_s >= -1.0, "{t_s}");
    // By URL, JSON, instant.
    req.source = prom.url().to_string();
    req.range = None;
    req.step = None;
    req.format = ExportFormat::Json;
    req.query = "vllm:num_requests_running".into();
    let json: serde_json::Value = serde_json::from_str(&export(&req).await.unwrap()).unwrap();
    assert_eq!(json["result_type"], "vector");
    assert_eq!(json["series"][0]["metric"]["service"], "llm");
    // A bad query is the user's error.
    req.query = "rate(".into();
    let err = export(&req).await.unwrap_err();
    assert!(err.is_input(), "{err}");

    // Discovery follows the services: the simulator stops, its target file goes, and so does
    // the target.
    prom.file_sd().remove_service("llm").unwrap();
    eventually("the simulator to leave the targets", || async {
        api.targets().await.map(|t| t.len() == 1).unwrap_or(false)
    })
    .await;

    let report = monitor.stop().await;
    assert_eq!(report.targets[0].failures, 0);
    server.stop().await;
    sim.stop().await;
    prom.stop(Duration::from_secs(30)).await;
    assert!(!api.ready().await);

    // After the run: export starts a Prometheus on the stored data.
    let req = ExportRequest {
        source: run_dir.display().to_string(),
        query: "sum(vllm:generation_tokens_total)".into(),
        range: Some("start..now".into()),
        step: Some("2s".into()),
        time: None,
        format: ExportFormat::Json,
        prometheus: "prometheus".into(),
    };
    let json: serde_json::Value = serde_json::from_str(&export(&req).await.unwrap()).unwrap();
    let values = json["series"][0]["values"].as_array().unwrap();
    assert!(!values.is_empty(), "{json}");
    assert!(values.last().unwrap()[1].as_f64().unwrap() > 0.0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_takes_pushes_and_the_group_is_deleted_at_the_end() {
    if missing("prometheus-pushgateway", "prometheus-pushgateway") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _gateway = ChildGuard::spawn(
        "prometheus-pushgateway",
        Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &tmp.path().join("pushgateway.log"),
    );
    wait_port(port).await;
    let url = format!("http://127.0.0.1:{port}");
    let gateway_metrics = || async {
        let call = aibench_monitor::http::Call::get("127.0.0.1", port, "/metrics", PATIENCE);
        call.send().await.map(|r| r.text()).unwrap_or_default()
    };

    let live = LiveMetrics::new("push-run");
    let progress = aibench_results::Progress {
        elapsed: Duration::from_secs(1),
        phase: aibench_results::Phase::Measure,
        sent: 7,
        succeeded: 6,
        errors: 1,
        dropped: 0,
        in_flight: 1,
        rate_rps: 6.0,
        ttft_p99_ms: Some(30.0),
        e2e_p99_ms: Some(90.0),
        done: false,
    };
    live.observe_progress("chat", &progress);
    let group = PushGroup::new(&url, "push-run/1").unwrap();
    let pusher = Pusher::start(group.clone(), live.clone(), Duration::from_millis(200));
    let pushed =
        "aibench_requests_sent_total{instance=\"push-run/1\",job=\"aibench\",workload=\"chat\"} 7";
    let start = Instant::now();
    while !gateway_metrics().await.contains(pushed) {
        assert!(start.elapsed() < PATIENCE, "{}", gateway_metrics().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = pusher.finish(false).await;
    assert!(report.deleted, "{report:?}");
    assert!(report.pushes >= 1 && report.failures == 0, "{report:?}");
    assert!(!gateway_metrics().await.contains("job=\"aibench\""));

    // Kept when asked; a push to a gateway that is gone is counted, never fatal.
    let pusher = Pusher::start(group.clone(), live.clone(), Duration::from_secs(3600));
    let report = pusher.finish(true).await;
    assert!(!report.deleted && report.failures == 0);
    assert!(gateway_metrics().await.contains(pushed));
    group.delete(PATIENCE).await.unwrap();
    let dead = PushGroup::new(&format!("http://127.0.0.1:{}", free_port()), "x").unwrap();
    let report = Pusher::start(dead, live, Duration::from_millis(50))
        .finish(false)
        .await;
    assert!(
        report.failures >= 1 && report.last_error.is_some(),
        "{report:?}"
    );
}
