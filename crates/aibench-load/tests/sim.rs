//! Against the project's simulated LLM server: its fixed-timing mode gives known TTFT and ITL.

use std::net::SocketAddr;
use std::time::Duration;

use aibench_load::{
    discover_model, run, Arrival, CapPolicy, Dataset, LengthDist, LoadSpec, Pattern, Protocol,
    RunOptions, Stop, Target, ThinkTime,
};
use aibench_results::{ErrorClass, TokenSource};
use aibench_sim::{SimConfig, SimServer};

async fn start(flags: &[&str]) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = SimConfig::from_args(flags.iter().copied()).unwrap();
    let server = SimServer::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn closed(users: usize, requests: u64) -> LoadSpec {
    LoadSpec {
        pattern: Pattern::ClosedLoop {
            users,
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            requests: Some(requests),
            ..Stop::default()
        },
        timeout: Duration::from_secs(30),
        ..LoadSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_timing_is_measured_faithfully() {
    let (addr, _stop) = start(&["--fixed-ttft", "50ms", "--fixed-itl", "10ms"]).await;
    let data = Dataset::synthetic(LengthDist::Fixed(16), LengthDist::Fixed(20), 64, 3).unwrap();
    for protocol in [
        Protocol::OpenAiCompletions,
        Protocol::OpenAiChat,
        Protocol::OllamaGenerate,
        Protocol::OllamaChat,
    ] {
        let mut target = Target::new(format!("http://{addr}"), protocol.clone());
        target.model = discover_model(&target, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(target.model.is_some(), "{protocol:?}: no model listed");
        target.ignore_eos = matches!(protocol, Protocol::OpenAiCompletions | Protocol::OpenAiChat);
        let out = run(&closed(4, 24), &target, &data, RunOptions::default())
            .await
            .unwrap();
        let s = out.summary;
        assert_eq!(s.counts.successes, 24, "{protocol:?}: {:?}", s.counts);
        let ttft = s.latency.ttft.unwrap();
        assert!(
            ttft.min_ms >= 49.0,
            "{protocol:?}: TTFT min {}",
            ttft.min_ms
        );
        assert!(ttft.p50_ms < 80.0, "{protocol:?}: TTFT p50 {}", ttft.p50_ms);
        let itl = s.latency.itl.unwrap();
        assert!(
            (itl.mean_ms - 10.0).abs() < 2.0,
            "{protocol:?}: ITL mean {}",
            itl.mean_ms
        );
        assert!((s.latency.tpot.unwrap().mean_ms - 10.0).abs() < 2.0);
        assert_eq!(s.tokens.output, 24 * 20, "{protocol:?}");
        assert_eq!(s.tokens.source.usage, 24);
        assert_eq!(
            s.tokens.input,
            24 * 16,
            "{protocol:?}: the sim counts one token per word"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_against_the_batching_model() {
    let (addr, _stop) = start(&[]).await;
    let mut target = Target::new(format!("http://{addr}"), Protocol::OpenAiCompletions);
    target.model = discover_model(&target, Duration::from_secs(5))
        .await
        .unwrap();
    let data = Dataset::synthetic(
        LengthDist::Uniform { min: 8, max: 32 },
        LengthDist::Fixed(16),
        64,
        3,
    )
    .unwrap();
    let spec = LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Poisson { rate: 40.0 },
            max_in_flight: Some(64),
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            duration: Some(Duration::from_secs(2)),
            ..Stop::default()
        },
        warmup: Duration::from_millis(250),
        ..LoadSpec::default()
    };
    let out = run(&spec, &target, &data, RunOptions::default())
        .await
        .unwrap();
    let s = out.summary;
    assert!(s.counts.total > 40, "{:?}", s.counts);
    assert_eq!(s.counts.errors, 0, "{:?}", s.counts);
    assert_eq!(s.counts.successes + s.counts.dropped, s.counts.total);
    assert!(s.tokens.source.usage > 0);
    assert_eq!(s.tokens.source.estimate, 0);
    let _ = TokenSource::Usage;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_a_4xx() {
    let (addr, _stop) = start(&["--api-key", "right"]).await;
    let mut target = Target::new(format!("http://{addr}"), Protocol::OpenAiCompletions);
    target.model = Some("anything".into());
    target.api_key = Some("wrong".into());
    let data = Dataset::synthetic(LengthDist::Fixed(4), LengthDist::Fixed(4), 4, 3).unwrap();
    let out = run(&closed(1, 2), &target, &data, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        out.summary.counts.errors_by_class.get(&ErrorClass::Http4xx),
        Some(&2)
    );
}
