//! The simulator over real HTTP on loopback (port 0). Timing checks use strict lower bounds and
//! generous upper bounds so that a busy machine cannot make them fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aibench_sim::{SimConfig, SimServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running simulator; shut down and awaited on [`Sim::stop`].
struct Sim {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Sim {
    async fn start(args: &[&str]) -> Sim {
        let config = SimConfig::from_args(args.iter().copied()).expect("valid flags");
        let server = SimServer::bind(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Sim {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("serve returns after shutdown")
                .expect("serve task")
                .expect("serve ok");
        }
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.addr, "GET", path, None, &[]).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        send(self.addr, "POST", path, Some(body.to_string()), &[]).await
    }

    /// Prometheus samples: `name{labels}` -> value.
    async fn metrics(&self) -> HashMap<String, f64> {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        parse_metrics(&reply.text())
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    /// Body frames with the time each arrived.
    frames: Vec<(Instant, Bytes)>,
    sent: Instant,
}

impl Reply {
    fn text(&self) -> String {
        let bytes: Vec<u8> = self.frames.iter().flat_map(|f| f.1.to_vec()).collect();
        String::from_utf8(bytes).expect("utf-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text()).expect("JSON body")
    }

    /// Server-sent events: the payload of every `data: ` line, with the arrival time of the frame
    /// that completed it.
    fn sse(&self) -> Vec<(Instant, String)> {
        let mut events = Vec::new();
        let mut pending = String::new();
        for (at, frame) in &self.frames {
            pending.push_str(std::str::from_utf8(frame).unwrap());
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let data = event
                    .trim_end()
                    .strip_prefix("data: ")
                    .expect("data: prefix");
                events.push((*at, data.to_string()));
            }
        }
        assert!(
            pending.is_empty(),
            "trailing bytes after the last event: {pending:?}"
        );
        events
    }

    fn ndjson(&self) -> Vec<Value> {
        let text = self.text();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut sender = connect(addr).await;
    send_on(&mut sender, method, path, body, headers).await
}

async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "sim");
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let sent = Instant::now();
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            frames.push((Instant::now(), data));
        }
    }
    Reply {
        status,
        content_type,
        frames,
        sent,
    }
}

fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        samples.insert(key.to_string(), value.parse::<f64>().expect("sample value"));
    }
    samples
}

fn sample(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    *metrics
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

fn chunk_json(data: &str) -> Value {
    serde_json::from_str(data).expect("chunk JSON")
}

#[tokio::test]
async fn completions_stream_one_chunk_per_token() {
    let sim = Sim::start(&["--decode-base", "1ms"]).await;
    let reply = sim
        .post(
            "/v1/completions",
            &json!({"model": "sim", "prompt": "one two three", "max_tokens": 5, "stream": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type.starts_with("text/event-stream"),
        "{}",
        reply.content_type
    );
    let events = reply.sse();
    assert_eq!(events.len(), 6, "5 tokens and [DONE]");
    assert_eq!(events[5].1, "[DONE]");
    let first = chunk_json(&events[0].1);
    for (k, (_, data)) in events[..5].iter().enumerate() {
        let chunk = chunk_json(data);
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(chunk["id"], first["id"]);
        assert!(chunk["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(chunk["model"], "sim");
        assert!(chunk["created"].as_u64().unwrap() > 1_600_000_000);
        let choice = &chunk["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["text"], format!("t{k} "));
        if k == 4 {
            assert_eq!(choice["finish_reason"], "length");
        } else {
            assert!(choice["finish_reason"].is_null());
        }
        assert!(chunk.get("usage").is_none());
    }
    sim.stop().await;
}

#[tokio::test]
async fn chat_stream_carries_the_role_first_and_usage_last() {
    let sim = Sim::start(&["--decode-base", "1ms"]).await;
    let request = json!({
        "model": "sim",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
        ],
        "max_completion_tokens": 3,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let reply = sim.post("/v1/chat/completions", &request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = reply.sse();
    assert_eq!(events.len(), 5, "3 tokens, usage and [DONE]");
    let chunks: Vec<Value> = events[..4].iter().map(|e| chunk_json(&e.1)).collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert!(chunks[0]["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "t0 ");
    assert!(chunks[0]["usage"].is_null() && chunks[0].get("usage").is_some());
    assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "t2 ");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    let usage_chunk = &chunks[3];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["id"], chunks[0]["id"]);
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 8, "completion_tokens": 3})
    );
    assert_eq!(events[4].1, "[DONE]");
    sim.stop().await;
}

#[tokio::test]
async fn non_streaming_answers_carry_usage() {
    let sim = Sim::start(&["--decode-base", "1ms", "--default-max-tokens", "4"]).await;
    let reply = sim
        .post(
            "/v1/completions",
            &json!({"prompt": "a b", "max_tokens": 3}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "t0 t1 t2 ");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 2, "total_tokens": 5, "completion_tokens": 3})
    );

    let reply = sim
        .post(
            "/v1/chat/completions",
            &json!({"model": "sim", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "t0 t1 t2 t3 "})
    );
    assert_eq!(
        body["usage"]["completion_tokens"], 4,
        "--default-max-tokens applies"
    );

    // A batch of prompts, two completions each.
    let reply = sim
        .post(
            "/v1/completions",
            &json!({"prompt": ["a", "b c d"], "n": 2, "max_tokens": 2}),
        )
        .await;
    let body = reply.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert_eq!(choice["text"], "t0 t1 ");
    }
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 8);
    sim.stop().await;
}

#[tokio::test]
async fn early_stops_follow_eos_probability_unless_ignored() {
    let sim = Sim::start(&[
        "--decode-base",
        "1ms",
        "--eos-probability",
        "1",
        "--seed",
        "3",
    ])
    .await;
    let body = sim
        .post("/v1/completions", &json!({"prompt": "x", "max_tokens": 8}))
        .await
        .json();
    assert_eq!(body["choices"][0]["text"], "t0 ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let body = sim
        .post(
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 8, "ignore_eos": true}),
        )
        .await
        .json();
    assert_eq!(body["usage"]["completion_tokens"], 8);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    sim.stop().await;
}

#[tokio::test]
async fn ollama_streams_ndjson_with_a_final_summary() {
    let sim = Sim::start(&["--decode-base", "1ms", "--pull-time", "20ms"]).await;
    let reply = sim
        .post("/api/generate", &json!({"model": "sim", "prompt": "why is the sky blue", "options": {"num_predict": 4}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, "application/x-ndjson");
    let lines = reply.ndjson();
    assert_eq!(lines.len(), 5);
    for (k, line) in lines[..4].iter().enumerate() {
        assert_eq!(line["model"], "sim");
        assert_eq!(line["response"], format!("t{k} "));
        assert_eq!(line["done"], false);
        assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let last = &lines[4];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["prompt_eval_count"], 5);
    assert_eq!(last["eval_count"], 4);
    let total = last["total_duration"].as_u64().unwrap();
    let parts = ["load_duration", "prompt_eval_duration", "eval_duration"]
        .iter()
        .map(|k| last[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(total, parts);
    assert!(
        last["eval_duration"].as_u64().unwrap() >= 3_000_000,
        "3 steps of at least 1ms"
    );

    let reply = sim
        .post(
            "/api/chat",
            &json!({"model": "sim:latest", "messages": [{"role": "user", "content": "hi you"}], "stream": false, "options": {"num_predict": 2}}),
        )
        .await;
    let body = reply.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "t0 t1 "})
    );
    assert_eq!(body["done"], true);
    assert_eq!(body["prompt_eval_count"], 2);

    let tags = sim.get("/api/tags").await.json();
    assert_eq!(tags["models"][0]["name"], "sim:latest");
    assert!(sim.get("/api/version").await.json()["version"].is_string());
    assert_eq!(sim.get("/").await.text(), "Ollama is running");

    let pull = sim.post("/api/pull", &json!({"model": "sim"})).await;
    let lines = pull.ndjson();
    assert!(lines.len() >= 3);
    assert_eq!(lines.last().unwrap(), &json!({"status": "success"}));
    assert!(pull.frames.last().unwrap().0 - pull.sent >= Duration::from_millis(20));

    let missing = sim
        .post("/api/generate", &json!({"model": "llama3", "prompt": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"].as_str().unwrap().contains("llama3"));
    sim.stop().await;
}

#[tokio::test]
async fn health_models_and_metrics() {
    let sim = Sim::start(&["--model", "opt-125m", "--decode-base", "1ms"]).await;
    let health = sim.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.text().is_empty());
    let models = sim.get("/v1/models").await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "opt-125m");

    let label = "model_name=\"opt-125m\"";
    let before = sim.metrics().await;
    assert_eq!(
        sample(&before, &format!("vllm:generation_tokens_total{{{label}}}")),
        0.0
    );
    let text = sim.get("/metrics").await.text();
    for family in [
        "vllm:num_requests_running gauge",
        "vllm:num_requests_waiting gauge",
        "vllm:kv_cache_usage_perc gauge",
        "vllm:gpu_cache_usage_perc gauge",
        "vllm:prompt_tokens_total counter",
        "vllm:generation_tokens_total counter",
        "vllm:request_success_total counter",
        "vllm:num_preemptions_total counter",
        "vllm:time_to_first_token_seconds histogram",
        "vllm:inter_token_latency_seconds histogram",
        "vllm:time_per_output_token_seconds histogram",
        "vllm:e2e_request_latency_seconds histogram",
        "vllm:request_queue_time_seconds histogram",
        "vllm:request_prefill_time_seconds histogram",
        "vllm:request_decode_time_seconds histogram",
        "vllm:request_prompt_tokens histogram",
        "vllm:request_generation_tokens histogram",
        "aibench_sim:token_lateness_seconds histogram",
        "aibench_sim:injected_failures_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "missing {family}"
        );
        let name = family.split(' ').next().unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "missing HELP for {name}"
        );
    }

    for _ in 0..2 {
        let reply = sim
            .post(
                "/v1/completions",
                &json!({"model": "opt-125m", "prompt": "a b c", "max_tokens": 6, "stream": true}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let after = sim.metrics().await;
    assert_eq!(
        sample(&after, &format!("vllm:generation_tokens_total{{{label}}}")),
        12.0
    );
    assert_eq!(
        sample(&after, &format!("vllm:prompt_tokens_total{{{label}}}")),
        6.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("vllm:request_success_total{{{label},finished_reason=\"length\"}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("vllm:time_to_first_token_seconds_count{{{label}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("vllm:inter_token_latency_seconds_count{{{label}}}")
        ),
        10.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("vllm:e2e_request_latency_seconds_count{{{label}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("vllm:request_generation_tokens_sum{{{label}}}")
        ),
        12.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("aibench_sim:token_lateness_seconds_bucket{{{label},le=\"+Inf\"}}")
        ),
        12.0
    );
    assert!(
        sample(
            &after,
            &format!("vllm:inter_token_latency_seconds_sum{{{label}}}")
        ) >= 10.0 * 0.0011
    );
    sim.stop().await;
}

#[tokio::test]
async fn bad_requests_get_vllm_like_errors() {
    let sim = Sim::start(&[
        "--decode-base",
        "1ms",
        "--max-model-len",
        "64",
        "--kv-cache-tokens",
        "1024",
    ])
    .await;
    let missing = sim
        .post("/v1/completions", &json!({"model": "gpt-4", "prompt": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let error = &missing.json()["error"];
    assert_eq!(error["type"], "NotFoundError");
    assert_eq!(error["code"], 404);
    assert!(error["message"].as_str().unwrap().contains("gpt-4"));

    let malformed = send(
        sim.addr,
        "POST",
        "/v1/chat/completions",
        Some("{\"model\": ".into()),
        &[],
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"]["type"], "BadRequestError");

    let too_long = sim
        .post("/v1/completions", &json!({"prompt": "x", "max_tokens": 64}))
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert!(too_long.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 64"));

    let zero = sim
        .post("/v1/completions", &json!({"prompt": "x", "max_tokens": 0}))
        .await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);

    assert_eq!(sim.get("/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.get("/v1/completions").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_api_key_guards_the_apis_but_not_health() {
    let sim = Sim::start(&["--decode-base", "1ms", "--api-key", "s3cret"]).await;
    let body = json!({"prompt": "x", "max_tokens": 1}).to_string();
    let denied = send(sim.addr, "POST", "/v1/completions", Some(body.clone()), &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let wrong = send(
        sim.addr,
        "POST",
        "/v1/completions",
        Some(body.clone()),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = send(
        sim.addr,
        "POST",
        "/v1/completions",
        Some(body),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(sim.get("/api/tags").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.get("/health").await.status, StatusCode::OK);
    assert_eq!(sim.get("/metrics").await.status, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn connections_are_kept_alive() {
    let sim = Sim::start(&["--decode-base", "1ms"]).await;
    let mut sender = connect(sim.addr).await;
    for _ in 0..5 {
        let body = json!({"prompt": "x", "max_tokens": 2, "stream": true}).to_string();
        let reply = send_on(&mut sender, "POST", "/v1/completions", Some(body), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.sse().len(), 3);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_timing_keeps_its_deadlines() {
    let ttft = Duration::from_millis(50);
    let itl = Duration::from_millis(10);
    let sim = Sim::start(&["--fixed-ttft", "50ms", "--fixed-itl", "10ms"]).await;
    let tokens = 20;
    let mut streams = Vec::new();
    for _ in 0..8 {
        let addr = sim.addr;
        streams.push(tokio::spawn(async move {
            let body = json!({"prompt": "x y", "max_tokens": tokens, "stream": true}).to_string();
            send(addr, "POST", "/v1/completions", Some(body), &[]).await
        }));
    }
    for stream in streams {
        let reply = stream.await.unwrap();
        let events = reply.sse();
        assert_eq!(events.len(), tokens as usize + 1);
        for (k, (at, _)) in events[..tokens as usize].iter().enumerate() {
            let due = ttft + itl * k as u32;
            let elapsed = *at - reply.sent;
            // Never early: the request left the client before it arrived at the server.
            assert!(
                elapsed >= due,
                "token {k} after {elapsed:?}, due at {due:?}"
            );
            // Generous: a loaded machine may be late, but not by seconds.
            assert!(
                elapsed < due + Duration::from_secs(5),
                "token {k} after {elapsed:?}"
            );
        }
    }
    let metrics = sim.metrics().await;
    let label = "model_name=\"sim\"";
    assert_eq!(
        sample(
            &metrics,
            &format!("aibench_sim:token_lateness_seconds_count{{{label}}}")
        ),
        160.0
    );
    // The server's own view: every gap is exactly the fixed ITL.
    let itl_sum = sample(
        &metrics,
        &format!("vllm:inter_token_latency_seconds_sum{{{label}}}"),
    );
    assert!(
        (itl_sum - 8.0 * 19.0 * 0.01).abs() < 1e-6,
        "server-side ITL is exactly the fixed one: {itl_sum}"
    );
    let ttft_sum = sample(
        &metrics,
        &format!("vllm:time_to_first_token_seconds_sum{{{label}}}"),
    );
    assert!(
        (ttft_sum - 8.0 * 0.05).abs() < 1e-6,
        "server-side TTFT is exactly the fixed one: {ttft_sum}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_one_makes_requests_queue() {
    let sim = Sim::start(&[
        "--max-batch",
        "1",
        "--decode-base",
        "10ms",
        "--decode-per-seq",
        "0ms",
    ])
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let addr = sim.addr;
        streams.push(tokio::spawn(async move {
            let body = json!({"prompt": "a b c", "max_tokens": 10, "stream": true}).to_string();
            send(addr, "POST", "/v1/completions", Some(body), &[]).await
        }));
    }
    let mut waiting_seen = 0.0f64;
    let label = "model_name=\"sim\"";
    let watch_start = Instant::now();
    while streams.iter().any(|s| !s.is_finished())
        && watch_start.elapsed() < Duration::from_secs(60)
    {
        let metrics = sim.metrics().await;
        waiting_seen = waiting_seen.max(sample(
            &metrics,
            &format!("vllm:num_requests_waiting{{{label}}}"),
        ));
        assert!(sample(&metrics, &format!("vllm:num_requests_running{{{label}}}")) <= 1.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(waiting_seen > 0.0, "requests never waited");
    let mut first_sent: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for stream in streams {
        let reply = stream.await.unwrap();
        assert_eq!(reply.sse().len(), 11);
        let end = reply.frames.last().unwrap().0;
        first_sent = Some(first_sent.map_or(reply.sent, |t| t.min(reply.sent)));
        last_end = Some(last_end.map_or(end, |t| t.max(end)));
    }
    // One at a time: all three need 3 x 10 steps of 10ms after the first was sent.
    let span = last_end.unwrap() - first_sent.unwrap();
    assert!(span >= Duration::from_millis(300), "{span:?}");
    let metrics = sim.metrics().await;
    assert!(
        sample(
            &metrics,
            &format!("vllm:request_queue_time_seconds_sum{{{label}}}")
        ) >= 0.2
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_cache_pressure_preempts_and_recovers() {
    // Room for 8 blocks of 16 tokens; four sequences of 16 + 40 tokens cannot all fit.
    let sim = Sim::start(&[
        "--kv-cache-tokens",
        "128",
        "--block-size",
        "16",
        "--max-model-len",
        "64",
        "--decode-base",
        "1ms",
        "--decode-per-seq",
        "0ms",
    ])
    .await;
    let prompt = vec!["w"; 16].join(" ");
    let mut streams = Vec::new();
    for _ in 0..4 {
        let addr = sim.addr;
        let body = json!({"prompt": prompt, "max_tokens": 40, "stream": true}).to_string();
        streams.push(tokio::spawn(async move {
            send(addr, "POST", "/v1/completions", Some(body), &[]).await
        }));
    }
    for stream in streams {
        let reply = stream.await.unwrap();
        let events = reply.sse();
        assert_eq!(
            events.len(),
            41,
            "every token arrives once despite recomputation"
        );
        let texts: Vec<String> = events[..40]
            .iter()
            .map(|e| {
                chunk_json(&e.1)["choices"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(texts, (0..40).map(|k| format!("t{k} ")).collect::<Vec<_>>());
    }
    let metrics = sim.metrics().await;
    let label = "model_name=\"sim\"";
    assert!(sample(&metrics, &format!("vllm:num_preemptions_total{{{label}}}")) > 0.0);
    assert_eq!(
        sample(&metrics, &format!("vllm:kv_cache_usage_perc{{{label}}}")),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("vllm:request_success_total{{{label},finished_reason=\"length\"}}")
        ),
        4.0
    );
    sim.stop().await;
}

#[tokio::test]
async fn injected_failures_answer_500() {
    let sim = Sim::start(&[
        "--decode-base",
        "1ms",
        "--failure-rate",
        "0.5",
        "--seed",
        "42",
    ])
    .await;
    let mut failed = 0;
    for _ in 0..40 {
        let reply = sim
            .post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1}))
            .await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::INTERNAL_SERVER_ERROR => {
                assert_eq!(reply.json()["error"]["code"], 500);
                failed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(failed > 0 && failed < 40, "{failed} of 40 failed");
    let metrics = sim.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "aibench_sim:injected_failures_total{model_name=\"sim\"}"
        ),
        f64::from(failed)
    );
    sim.stop().await;

    let sim = Sim::start(&["--failure-rate", "1"]).await;
    let reply = sim
        .post("/api/generate", &json!({"model": "sim", "prompt": "x"}))
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.json()["error"].is_string());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_long_streams_after_the_grace_period() {
    let sim = Sim::start(&[
        "--fixed-ttft",
        "1ms",
        "--fixed-itl",
        "1s",
        "--shutdown-grace",
        "100ms",
    ])
    .await;
    let addr = sim.addr;
    let stream = tokio::spawn(async move {
        let body = json!({"prompt": "x", "max_tokens": 1000, "stream": true}).to_string();
        let mut sender = connect(addr).await;
        let request = Request::post("/v1/completions")
            .header("host", "sim")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let mut body = response.into_body();
        let mut frames = 0;
        while let Some(Ok(_)) = body.frame().await {
            frames += 1;
        }
        frames
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = Instant::now();
    sim.stop().await;
    assert!(
        stopping.elapsed() >= Duration::from_millis(100),
        "waited for the grace period"
    );
    let frames = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .unwrap()
        .unwrap();
    assert!(frames < 1000, "the stream was cut");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
