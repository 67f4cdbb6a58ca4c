//! The engine end to end over real loopback HTTP. No wall-clock upper bounds that a busy machine
//! could break: lower bounds from the server's fixed timings, generous tolerances, counts.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aibench_load::{
    run, Arrival, Cancel, CapPolicy, Dataset, LengthDist, LoadSpec, Pattern, Protocol, RunOptions,
    RunOutcome, Shard, Stop, Target, ThinkTime,
};
use aibench_results::{
    read_records, Accumulator, ErrorClass, Phase, RequestRecord, StopReason, TokenSource,
};
use common::{refused_addr, serve, Behavior};

fn dataset(output_tokens: u32) -> Dataset {
    Dataset::synthetic(
        LengthDist::Fixed(8),
        LengthDist::Fixed(output_tokens),
        50,
        1,
    )
    .unwrap()
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

fn openai(url: String) -> Target {
    let mut t = Target::new(url, Protocol::OpenAiCompletions);
    t.model = Some("m".into());
    t
}

async fn run_recorded(
    spec: &LoadSpec,
    target: &Target,
    data: &Dataset,
) -> (RunOutcome, Vec<RequestRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let options = RunOptions {
        records: Some(path.clone()),
        ..RunOptions::default()
    };
    let outcome = run(spec, target, data, options).await.unwrap();
    let records: Vec<RequestRecord> = read_records(&path).unwrap().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, outcome.records_written);
    (outcome, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_timings_match_the_server() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(50),
        itl: Duration::from_millis(10),
    })
    .await;
    let (out, records) = run_recorded(&closed(2, 20), &openai(server.url()), &dataset(10)).await;
    let s = &out.summary;
    assert_eq!(s.counts.successes, 20, "{:?}", s.counts);
    assert_eq!(s.counts.total, 20);
    assert_eq!(out.stop_reason, StopReason::Requests);

    let ttft = s.latency.ttft.unwrap();
    assert!(
        ttft.min_ms >= 50.0,
        "TTFT {} ms is below the server's 50 ms",
        ttft.min_ms
    );
    assert!(
        ttft.p50_ms < 50.0 + 25.0,
        "TTFT p50 {} ms far from 50 ms",
        ttft.p50_ms
    );
    let itl = s.latency.itl.unwrap();
    assert_eq!(itl.count, 20 * 9);
    assert!(
        (itl.mean_ms - 10.0).abs() < 2.0,
        "ITL mean {} ms",
        itl.mean_ms
    );
    let tpot = s.latency.tpot.unwrap();
    assert!(
        (tpot.mean_ms - 10.0).abs() < 2.0,
        "TPOT mean {} ms",
        tpot.mean_ms
    );
    let e2e = s.latency.e2e.unwrap();
    assert!(
        e2e.min_ms >= 140.0,
        "E2E {} ms below 50 + 9 x 10",
        e2e.min_ms
    );
    assert_eq!(s.tokens.output, 200);
    assert_eq!(s.tokens.chunks, 200);
    assert_eq!(s.tokens.source.usage, 20);
    assert_eq!(s.tokens.input, 60);

    for r in &records {
        assert_eq!(r.status, Some(200));
        assert_eq!(r.output_tokens, Some(10));
        assert_eq!(r.token_source, Some(TokenSource::Usage));
        assert_eq!(r.itl_us.len(), 9);
        assert!(r.first_byte_us.unwrap() <= r.first_token_us.unwrap());
        assert!(r.end_us.unwrap() <= r.done_us.unwrap());
        assert!(r.worker.is_some());
    }
    let ids: BTreeSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 20, "ids are unique");
    // Keep-alive: two users, two connections.
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 2);
    assert!(server.stats.max_in_flight.load(Ordering::SeqCst) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ollama_and_non_streaming() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
    })
    .await;
    for (protocol, stream) in [
        (Protocol::OpenAiChat, true),
        (Protocol::OllamaGenerate, true),
        (Protocol::OllamaChat, true),
        (Protocol::OpenAiCompletions, false),
        (Protocol::OpenAiChat, false),
        (Protocol::OllamaGenerate, false),
    ] {
        let mut target = openai(server.url());
        target.protocol = protocol.clone();
        target.stream = stream;
        let out = run(&closed(1, 3), &target, &dataset(6), RunOptions::default())
            .await
            .unwrap();
        let s = out.summary;
        assert_eq!(
            s.counts.successes, 3,
            "{protocol:?} stream={stream}: {:?}",
            s.counts
        );
        assert_eq!(s.tokens.output, 18, "{protocol:?} stream={stream}");
        assert_eq!(s.tokens.source.usage, 3);
        let e2e = s.latency.e2e.unwrap();
        assert!(
            e2e.min_ms >= 45.0,
            "{protocol:?} stream={stream}: e2e {}",
            e2e.min_ms
        );
        if stream {
            assert!(s.latency.ttft.unwrap().min_ms >= 20.0);
            assert_eq!(s.latency.itl.unwrap().count, 15);
        } else {
            assert!(s.latency.ttft.is_none());
            assert!(s.latency.itl.is_none());
        }
    }
}

/// A cancel signal that fires after `delay`.
fn cancel_after(delay: Duration) -> Cancel {
    let cancel = Cancel::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        c.cancel();
    });
    cancel
}

async fn error_class_of(target: Target, timeout: Duration) -> (RunOutcome, Vec<RequestRecord>) {
    let mut spec = closed(1, 3);
    spec.timeout = timeout;
    run_recorded(&spec, &target, &dataset(4)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class() {
    let refused = format!("http://{}", refused_addr().await);
    let cases: Vec<(String, Behavior, ErrorClass)> = vec![
        (refused, Behavior::Status(200), ErrorClass::Connect),
        (String::new(), Behavior::Hang, ErrorClass::Timeout),
        (String::new(), Behavior::Status(404), ErrorClass::Http4xx),
        (String::new(), Behavior::Status(503), ErrorClass::Http5xx),
        (
            String::new(),
            Behavior::MalformedAfter(2),
            ErrorClass::MalformedStream,
        ),
        (
            String::new(),
            Behavior::CutAfter(2),
            ErrorClass::ClosedMidStream,
        ),
        (
            String::new(),
            Behavior::EndWithoutMarker(2),
            ErrorClass::ClosedMidStream,
        ),
    ];
    for (url, behavior, class) in cases {
        let url = if url.is_empty() {
            serve(behavior.clone()).await.url()
        } else {
            url
        };
        let (out, records) = error_class_of(openai(url), Duration::from_millis(300)).await;
        assert_eq!(
            out.summary.counts.errors, 3,
            "{behavior:?}: {:?}",
            out.summary.counts
        );
        assert_eq!(
            out.summary.counts.errors_by_class.get(&class),
            Some(&3),
            "{behavior:?}: {:?} {:?}",
            out.summary.counts,
            records[0].error_message
        );
        assert_eq!(out.summary.counts.successes, 0);
        assert!(out.summary.latency.e2e.is_none());
        for r in &records {
            assert_eq!(r.error, Some(class), "{behavior:?}: {r:?}");
            assert!(r.error_message.is_some());
            assert!(r.done_us.is_some());
        }
        if class == ErrorClass::Http5xx {
            assert_eq!(records[0].status, Some(503));
            assert!(records[0]
                .error_message
                .as_deref()
                .unwrap()
                .contains("nope"));
        }
    }
    // The same classes over Ollama's NDJSON.
    for (behavior, class) in [
        (Behavior::MalformedAfter(1), ErrorClass::MalformedStream),
        (Behavior::CutAfter(1), ErrorClass::ClosedMidStream),
        (Behavior::EndWithoutMarker(1), ErrorClass::ClosedMidStream),
    ] {
        let server = serve(behavior.clone()).await;
        let mut target = openai(server.url());
        target.protocol = Protocol::OllamaGenerate;
        let (out, _) = error_class_of(target, Duration::from_secs(5)).await;
        assert_eq!(
            out.summary.counts.errors_by_class.get(&class),
            Some(&3),
            "ollama {behavior:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_sent_but_never_recorded() {
    let server = serve(Behavior::Stream {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
    })
    .await;
    let mut target = openai(server.url());
    target.api_key = Some("sk-very-secret".into());
    target.headers = vec![("X-Extra".into(), "also-secret".into())];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let out = run(
        &closed(1, 2),
        &target,
        &dataset(2),
        RunOptions {
            records: Some(path.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(out.summary.counts.successes, 2);
    assert_eq!(
        server.stats.authorization.lock().unwrap().as_slice(),
        ["Bearer sk-very-secret", "Bearer sk-very-secret"]
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("secret"));
    assert!(!format!("{target:?}").contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_constant_rate_is_exact_and_reproducible() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
    })
    .await;
    let spec = LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Constant { rate: 50.0 },
            max_in_flight: None,
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            duration: Some(Duration::from_secs(2)),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let (out, mut records) = run_recorded(&spec, &openai(server.url()), &dataset(3)).await;
    assert_eq!(out.summary.counts.total, 100);
    assert_eq!(out.summary.counts.successes, 100);
    assert_eq!(out.stop_reason, StopReason::Duration);
    records.sort_by_key(|r| r.id);
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r.intended_us, k as u64 * 20_000, "arrival {k}");
        assert!(r.sent_us.unwrap() >= r.intended_us, "never early");
    }
    let lag = out.summary.latency.send_lag.unwrap();
    assert!(lag.min_ms >= 0.0);

    // Poisson with a seed: the same intended times twice.
    let mut spec = spec.clone();
    spec.pattern = Pattern::OpenLoop {
        arrival: Arrival::Poisson { rate: 40.0 },
        max_in_flight: None,
        on_cap: CapPolicy::Drop,
    };
    spec.stop.duration = Some(Duration::from_secs(1));
    spec.seed = 77;
    let times = |mut r: Vec<RequestRecord>| {
        r.sort_by_key(|r| r.id);
        r.into_iter().map(|r| r.intended_us).collect::<Vec<_>>()
    };
    let a = times(
        run_recorded(&spec, &openai(server.url()), &dataset(3))
            .await
            .1,
    );
    let b = times(
        run_recorded(&spec, &openai(server.url()), &dataset(3))
            .await
            .1,
    );
    assert_eq!(a, b);
    assert!(a.len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_cap_drops_or_sends_late() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(200),
        itl: Duration::from_millis(1),
    })
    .await;
    let mut spec = LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Constant { rate: 100.0 },
            max_in_flight: Some(2),
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            requests: Some(40),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let (out, records) = run_recorded(&spec, &openai(server.url()), &dataset(2)).await;
    let c = &out.summary.counts;
    assert_eq!(c.total, 40);
    assert!(c.dropped >= 30, "{c:?}");
    assert_eq!(c.dropped + c.successes, 40, "{c:?}");
    assert!(server.stats.max_in_flight.load(Ordering::SeqCst) <= 2);
    for r in records
        .iter()
        .filter(|r| r.error == Some(ErrorClass::Dropped))
    {
        assert!(r.sent_us.is_none());
    }

    spec.pattern = Pattern::OpenLoop {
        arrival: Arrival::Constant { rate: 100.0 },
        max_in_flight: Some(2),
        on_cap: CapPolicy::Late,
    };
    spec.stop.requests = Some(8);
    let (out, _) = run_recorded(&spec, &openai(server.url()), &dataset(2)).await;
    let s = &out.summary;
    assert_eq!(s.counts.successes, 8);
    assert_eq!(s.counts.dropped, 0);
    assert!(s.counts.late >= 5, "{:?}", s.counts);
    // The queueing shows from the intended time, not from the actual send.
    let from_intended = s.latency.e2e_from_intended.unwrap();
    assert!(from_intended.max_ms >= 600.0, "{from_intended:?}");
    assert!(s.latency.send_lag.unwrap().max_ms >= 500.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_and_cooldown_are_recorded_but_not_summarized() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(1),
    })
    .await;
    let spec = LoadSpec {
        pattern: Pattern::ClosedLoop {
            users: 2,
            think_time: ThinkTime::Fixed(Duration::from_millis(10)),
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            duration: Some(Duration::from_millis(600)),
            ..Stop::default()
        },
        warmup: Duration::from_millis(300),
        cooldown: Duration::from_millis(300),
        ..LoadSpec::default()
    };
    let (out, records) = run_recorded(&spec, &openai(server.url()), &dataset(2)).await;
    let count = |p: Phase| records.iter().filter(|r| r.phase == p).count() as u64;
    let s = &out.summary;
    assert!(count(Phase::Warmup) > 0 && count(Phase::Cooldown) > 0 && count(Phase::Measure) > 0);
    assert_eq!(s.counts.total, count(Phase::Measure));
    assert_eq!(s.counts.warmup, count(Phase::Warmup));
    assert_eq!(s.counts.cooldown, count(Phase::Cooldown));
    for r in &records {
        let want = if r.intended_us < 300_000 {
            Phase::Warmup
        } else if r.intended_us < 900_000 {
            Phase::Measure
        } else {
            Phase::Cooldown
        };
        assert_eq!(r.phase, want, "{r:?}");
    }
    assert!(s.window.unwrap().start_ms >= 300.0);
    assert_eq!(out.stop_reason, StopReason::Duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_keeps_completed_requests_and_marks_the_summary() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(5),
    })
    .await;
    let mut spec = closed(4, 1_000_000);
    spec.stop = Stop {
        duration: Some(Duration::from_secs(600)),
        ..Stop::default()
    };
    spec.grace = Duration::from_secs(10);
    let cancel = cancel_after(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let options = RunOptions {
        records: Some(path.clone()),
        cancel: Some(cancel),
        ..RunOptions::default()
    };
    let out = run(&spec, &openai(server.url()), &dataset(4), options)
        .await
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::Cancelled);
    assert!(out.summary.interrupted);
    // Requests in flight at the cancel finished within the grace period: nothing lost.
    assert_eq!(out.summary.counts.cancelled, 0);
    assert_eq!(
        out.summary.counts.successes, out.sent,
        "{:?}",
        out.summary.counts
    );
    assert!(out.sent >= 4);
    let records: Vec<_> = read_records(&path).unwrap().collect();
    assert_eq!(records.len() as u64, out.sent);

    // A server that never answers: after the grace period the requests are recorded as
    // cancelled, not lost.
    let server = serve(Behavior::Hang).await;
    spec.grace = Duration::from_millis(200);
    let cancel = cancel_after(Duration::from_millis(200));
    let options = RunOptions {
        cancel: Some(cancel),
        ..RunOptions::default()
    };
    let out = run(&spec, &openai(server.url()), &dataset(4), options)
        .await
        .unwrap();
    assert_eq!(out.summary.counts.cancelled, 4, "{:?}", out.summary.counts);
    assert!(out.summary.interrupted);
}

/// Open-loop requests start on the scheduler's thread and are then handed to the runtime: the
/// request's timeout and the run's abort must still wake the task that finishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_requests_time_out_and_abort_after_the_hand_over() {
    let server = serve(Behavior::Hang).await;
    let open = |requests| LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Constant { rate: 20.0 },
            max_in_flight: None,
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            requests: Some(requests),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let mut spec = open(3);
    spec.timeout = Duration::from_millis(300);
    let (out, records) = run_recorded(&spec, &openai(server.url()), &dataset(4)).await;
    assert_eq!(
        out.summary.counts.errors_by_class.get(&ErrorClass::Timeout),
        Some(&3),
        "{:?}",
        out.summary.counts
    );
    for r in &records {
        assert!(r.sent_us.is_some(), "{r:?}");
        let waited = r.done_us.unwrap() - r.sent_us.unwrap();
        assert!(waited >= 300_000, "timed out after {waited} us");
    }

    let mut spec = open(1_000_000);
    spec.timeout = Duration::from_secs(600);
    spec.grace = Duration::from_millis(100);
    let cancel = cancel_after(Duration::from_millis(300));
    let options = RunOptions {
        cancel: Some(cancel),
        ..RunOptions::default()
    };
    let out = run(&spec, &openai(server.url()), &dataset(4), options)
        .await
        .unwrap();
    assert!(out.summary.interrupted);
    assert!(out.sent >= 1);
    assert_eq!(
        out.summary.counts.cancelled, out.sent,
        "{:?}",
        out.summary.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_budget_stops_the_run() {
    let server = serve(Behavior::Status(503)).await;
    let mut spec = closed(2, 1_000_000);
    spec.stop.max_consecutive_errors = Some(10);
    spec.stop.error_backoff = Duration::from_millis(1);
    let out = run(
        &spec,
        &openai(server.url()),
        &dataset(4),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.stop_reason, StopReason::ErrorBudget);
    assert!(out.summary.interrupted);
    assert!(out.summary.counts.errors >= 10);
    assert!(out.summary.counts.errors < 1_000);

    let mut spec = closed(1, 1_000_000);
    spec.stop.max_error_rate = Some(aibench_load::ErrorRate {
        rate: 0.5,
        min_requests: 20,
    });
    let out = run(
        &spec,
        &openai(server.url()),
        &dataset(4),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.stop_reason, StopReason::ErrorBudget);
    assert_eq!(out.summary.counts.errors, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_schedule_and_merge() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
    })
    .await;
    let spec = LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Poisson { rate: 60.0 },
            max_in_flight: None,
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            requests: Some(45),
            ..Stop::default()
        },
        warmup: Duration::from_millis(100),
        seed: 5,
        ..LoadSpec::default()
    };
    let target = openai(server.url());
    let start_at = SystemTime::now() + Duration::from_millis(300);
    let data = dataset(2);
    let shard_run = |index| {
        let (spec, target, data) = (spec.clone(), target.clone(), data.clone());
        async move {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("requests.jsonl");
            let options = RunOptions {
                records: Some(path.clone()),
                shard: Shard { index, count: 3 },
                start_at: Some(start_at),
                ..RunOptions::default()
            };
            let out = run(&spec, &target, &data, options).await.unwrap();
            let recs: Vec<RequestRecord> =
                read_records(&path).unwrap().map(Result::unwrap).collect();
            (out, recs)
        }
    };
    let (a, b, c) = tokio::join!(shard_run(0), shard_run(1), shard_run(2));
    let mut merged = Accumulator::default();
    let mut ids = Vec::new();
    for (i, (out, recs)) in [a, b, c].into_iter().enumerate() {
        assert_eq!(out.started_at, start_at);
        for r in &recs {
            assert_eq!(r.id % 3, i as u64);
            assert_eq!(r.shard, i as u32);
        }
        ids.extend(
            recs.iter()
                .filter(|r| r.phase == Phase::Measure)
                .map(|r| r.id),
        );
        merged
            .merge(&Accumulator::from_json(&out.accumulator.to_json().unwrap()).unwrap())
            .unwrap();
    }
    // Together the shards measured exactly the requests a single process would have.
    assert_eq!(merged.summary().counts.total, 45);
    assert_eq!(merged.summary().counts.successes, 45);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_arrive() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(1),
    })
    .await;
    let mut spec = closed(2, 1_000_000);
    spec.stop = Stop {
        duration: Some(Duration::from_millis(800)),
        ..Stop::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let options = RunOptions {
        events: Some(tx),
        ..RunOptions::default()
    };
    let out = run(&spec, &openai(server.url()), &dataset(2), options)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(events.len() >= 2, "{events:?}");
    let last = events.last().unwrap();
    assert!(last.done);
    assert_eq!(last.succeeded, out.sent);
    assert_eq!(last.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_before_any_request() {
    let server = serve(Behavior::Status(200)).await;
    let spec = LoadSpec {
        stop: Stop::default(),
        ..closed(1, 1)
    };
    let err = run(
        &spec,
        &openai(server.url()),
        &dataset(2),
        RunOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nothing would stop"), "{err}");
    assert_eq!(server.stats.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_keep_the_connection_and_broken_streams_do_not() {
    let server = serve(Behavior::Status(429)).await;
    let out = run(
        &closed(1, 5),
        &openai(server.url()),
        &dataset(2),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.summary.counts.errors, 5);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 1);

    let server = serve(Behavior::CutAfter(1)).await;
    let out = run(
        &closed(1, 3),
        &openai(server.url()),
        &dataset(2),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.summary.counts.errors, 3);
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_http_and_ramp_up() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(2),
    })
    .await;
    let target = Target::new(
        format!("{}/anything", server.url()),
        Protocol::Http {
            method: hyper::Method::POST,
            body_template: Some(r#"{"q": "{{prompt}}", "max_tokens": {{max_tokens}}}"#.into()),
        },
    );
    let spec = LoadSpec {
        pattern: Pattern::ClosedLoop {
            users: 4,
            think_time: ThinkTime::None,
            ramp_up: Duration::from_millis(400),
        },
        stop: Stop {
            duration: Some(Duration::from_millis(700)),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let (out, records) = run_recorded(&spec, &target, &dataset(5)).await;
    let s = &out.summary;
    assert!(s.counts.successes >= 12, "{:?}", s.counts);
    assert_eq!(s.counts.successes, s.counts.total, "{:?}", s.counts);
    // The whole body is the response: E2E covers all five tokens; no TTFT for plain HTTP.
    assert!(s.latency.e2e.unwrap().min_ms >= 28.0);
    assert!(s.latency.ttft.is_none());
    for u in 0..4u32 {
        let first = records
            .iter()
            .filter(|r| r.worker == Some(u))
            .map(|r| r.intended_us)
            .min()
            .unwrap();
        assert!(
            first >= u64::from(u) * 100_000,
            "user {u} started at {first} us"
        );
    }
}

/// A panic in the open-loop scheduler thread (here: an arrival gap too long for a `Duration`)
/// ends the run with `InternalError`, not as if the schedule had simply run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_panic_is_an_internal_error_not_a_normal_end() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
    })
    .await;
    let spec = LoadSpec {
        pattern: Pattern::OpenLoop {
            arrival: Arrival::Constant { rate: 1e-300 },
            max_in_flight: None,
            on_cap: CapPolicy::Drop,
        },
        stop: Stop {
            duration: Some(Duration::from_secs(1)),
            ..Stop::default()
        },
        ..LoadSpec::default()
    };
    let out = run(
        &spec,
        &openai(server.url()),
        &dataset(2),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.stop_reason, StopReason::InternalError);
    assert_eq!(out.summary.stop_reason, Some(StopReason::InternalError));
    assert!(out.summary.interrupted);
}

/// Servers that end kept-alive connections: announced (`Connection: close`, `Keep-Alive: max`)
/// or not (the next request arrives and the connection closes without an answer). No request
/// fails; an unannounced close costs a resend on a fresh connection, counted as a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_close_kept_alive_connections_cost_no_request() {
    use common::Announce;
    for (after, announce) in [
        (1, Announce::ConnectionClose),
        (3, Announce::KeepAliveMax),
        (1, Announce::Nothing),
        (3, Announce::Nothing),
    ] {
        let server = serve(Behavior::Closing { after, announce }).await;
        let out = run(
            &closed(2, 30),
            &openai(server.url()),
            &dataset(2),
            RunOptions::default(),
        )
        .await
        .unwrap();
        let c = &out.summary.counts;
        assert_eq!(
            (c.successes, c.errors),
            (30, 0),
            "{announce:?} after {after}: {:?}",
            c.errors_by_class
        );
        let connections = server.stats.connections.load(Ordering::SeqCst);
        if announce == Announce::Nothing {
            // Every connection but the last ones ends in an unanswered request, sent again.
            assert!(c.reconnects >= 30 / (u64::from(after) + 1) - 2, "{c:?}");
        } else {
            // Told in time, the client never sends into a closing connection.
            assert_eq!(c.reconnects, 0, "{announce:?}: {c:?}");
            assert!(
                connections >= 30 / u64::from(after),
                "{connections} connections"
            );
        }
    }
}

/// Item: a hard deadline ends every measurement. Against a server that never answers, with a
/// request timeout of five minutes and a request count it can never reach, the run stops at
/// `max_duration`, gives what is in flight the grace period, records it as cancelled and says
/// why it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_deadline_ends_a_measurement_that_cannot_finish() {
    let server = serve(Behavior::Hang).await;
    let mut spec = closed(2, 1_000);
    spec.timeout = Duration::from_secs(300);
    spec.grace = Duration::from_millis(200);
    spec.stop.max_duration = Some(Duration::from_millis(500));
    assert_eq!(spec.deadline(), Duration::from_millis(500));
    let (out, records) = run_recorded(&spec, &openai(server.url()), &dataset(4)).await;
    assert_eq!(out.stop_reason, StopReason::Deadline);
    assert_eq!(out.summary.stop_reason, Some(StopReason::Deadline));
    assert!(!out.summary.interrupted);
    assert_eq!(out.summary.counts.cancelled, 2, "{:?}", out.summary.counts);
    assert!(records
        .iter()
        .all(|r| r.error == Some(ErrorClass::Cancelled)));

    // The default deadline: the plan plus one request timeout, or an hour for a count alone.
    let mut d = closed(1, 10);
    d.stop.duration = Some(Duration::from_secs(10));
    d.warmup = Duration::from_secs(2);
    d.timeout = Duration::from_secs(30);
    assert_eq!(d.deadline(), Duration::from_secs(42));
    assert_eq!(closed(1, 10).deadline(), aibench_load::DEFAULT_MAX_DURATION);
}

/// Item (faults): a hung server is detected on the load side. The server streams a few
/// chunks, then sends nothing while keeping every connection open; the request timeout is five
/// minutes and the plan an hour, yet the run stops once no byte has arrived for `stop.stall`,
/// says why, and keeps every request as a record (cancelled after the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stops_sending_is_a_stall() {
    let server = serve(Behavior::StallAfter(3)).await;
    let mut spec = closed(3, 1_000_000);
    spec.stop.duration = Some(Duration::from_secs(3600));
    spec.timeout = Duration::from_secs(300);
    spec.grace = Duration::from_millis(100);
    spec.stop.stall = Some(Duration::from_millis(400));
    let (out, records) = run_recorded(&spec, &openai(server.url()), &dataset(4)).await;
    assert_eq!(out.stop_reason, StopReason::Stalled);
    assert_eq!(out.summary.stop_reason, Some(StopReason::Stalled));
    assert!(out.summary.interrupted || out.stop_reason.is_interruption());
    assert_eq!(records.len(), 3, "one request per user, each recorded");
    assert!(records
        .iter()
        .all(|r| r.error == Some(ErrorClass::Cancelled) && r.first_byte_us.is_some()));
    // Zero turns the detector off; by default it watches streamed responses for a minute.
    spec.stop.stall = Some(Duration::ZERO);
    assert_eq!(spec.stall(true), None);
    spec.stop.stall = None;
    assert_eq!(spec.stall(true), Some(aibench_load::DEFAULT_STALL));
    assert_eq!(spec.stall(false), None);
}

/// A closed loop whose users think longer than `stop.stall` between requests is not a stall:
/// nothing is in flight while they think.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_users_are_not_a_stall() {
    let server = serve(Behavior::Stream {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
    })
    .await;
    let mut spec = closed(2, 4);
    spec.pattern = Pattern::ClosedLoop {
        users: 2,
        think_time: ThinkTime::Fixed(Duration::from_millis(300)),
        ramp_up: Duration::ZERO,
    };
    spec.stop.stall = Some(Duration::from_millis(100));
    let (out, _) = run_recorded(&spec, &openai(server.url()), &dataset(4)).await;
    assert_eq!(out.stop_reason, StopReason::Requests);
    assert_eq!(out.summary.counts.successes, 4);
}

/// Item (faults): a refused connection is not retried at once. Closed-loop users back off
/// (10 ms, doubling, at most 1 s), so a service that is down costs a handful of records per
/// user and second instead of thousands; each attempt is still recorded as `connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_back_off_instead_of_spinning() {
    let url = format!("http://{}", refused_addr().await);
    let mut spec = closed(4, 1_000_000);
    spec.stop = Stop {
        duration: Some(Duration::from_secs(1)),
        ..Stop::default()
    };
    let (out, records) = run_recorded(&spec, &openai(url), &dataset(4)).await;
    let c = &out.summary.counts;
    assert!(c.errors > 0, "{c:?}");
    assert!(records.iter().all(|r| r.error == Some(ErrorClass::Connect)));
    // The pauses after 1..=7 refusals add up to 1.27 s: at most 7 attempts per user fit in the
    // 1 s window, however fast the machine.
    assert!(c.total <= 4 * 7, "{c:?}");
}
