//! Drive a fixed-timing simulator with many concurrent streams and report how late tokens were.
//!
//! ```text
//! aibench sim --port 8000 --fixed-ttft 50ms --fixed-itl 10ms &
//! cargo run --release -p aibench-sim --example fixed_load -- --streams 1024 --duration 10s
//! ```
//!
//! Client-side lateness is `received - (sent + ttft + k x itl)` for token k: what the server's
//! schedule promised against what this client saw, so it includes the network and this client's
//! own overhead. Server-side lateness comes from the `aibench_sim:token_lateness_seconds`
//! histogram (scraped before and after), i.e. how late the server handed each token to the
//! socket.

use std::net::SocketAddr;
use std::time::Instant;

use aibench_sim::SimDuration;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Simulator address
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Concurrent streams, each on its own keep-alive connection
    #[arg(long, default_value_t = 256)]
    streams: usize,
    /// How long to send new requests
    #[arg(long, default_value = "10s")]
    duration: SimDuration,
    /// The simulator's --fixed-ttft
    #[arg(long, default_value = "50ms")]
    ttft: SimDuration,
    /// The simulator's --fixed-itl
    #[arg(long, default_value = "10ms")]
    itl: SimDuration,
    /// Output tokens per request
    #[arg(long, default_value_t = 100)]
    max_tokens: u32,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One stream: requests back to back until `until`; returns per-token lateness in µs.
async fn stream(args: &Args, until: Instant) -> anyhow::Result<Vec<u32>> {
    let mut sender = connect(args.addr).await?;
    let body = Bytes::from(
        serde_json::json!({"prompt": "a b c d", "max_tokens": args.max_tokens, "stream": true})
            .to_string(),
    );
    let mut lateness = Vec::with_capacity(4096);
    while Instant::now() < until {
        let request = Request::post("/v1/completions")
            .header("host", "sim")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        let mut body = response.into_body();
        let mut events = 0u32;
        let mut newline = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let now = Instant::now();
            for &byte in data.iter() {
                if byte == b'\n' && newline {
                    if events < args.max_tokens {
                        let due = sent + args.ttft.0 + args.itl.0 * events;
                        let late = now.saturating_duration_since(due).as_micros();
                        lateness.push(u32::try_from(late).unwrap_or(u32::MAX));
                    }
                    events += 1;
                    newline = false;
                } else {
                    newline = byte == b'\n';
                }
            }
        }
        anyhow::ensure!(
            events == args.max_tokens + 1,
            "short stream: {events} events"
        );
    }
    Ok(lateness)
}

/// Cumulative `(le, count)` of the server's lateness histogram.
async fn server_lateness(addr: SocketAddr) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut sender = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(
        TcpStream::connect(addr).await?,
    ))
    .await
    .map(|(sender, connection)| {
        tokio::spawn(connection);
        sender
    })?;
    let request = Request::get("/metrics")
        .header("host", "sim")
        .body(Empty::new())?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    let text = String::from_utf8(body.to_vec())?;
    let mut buckets = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("aibench_sim:token_lateness_seconds_bucket"))
    {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let count: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        buckets.push((le, count));
    }
    Ok(buckets)
}

/// Upper bound of the bucket holding quantile `q`.
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|b| b.1 >= q * total)
        .map_or(f64::NAN, |b| b.0)
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = std::sync::Arc::new(Args::parse());
    let before = server_lateness(args.addr).await?;
    let until = Instant::now() + args.duration.0;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.streams {
        let args = args.clone();
        tasks.push(tokio::spawn(async move { stream(&args, until).await }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let after = server_lateness(args.addr).await?;
    all.sort_unstable();
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.0, a.1 - b.1))
        .collect();
    println!(
        "streams {} tokens {} in {:.1}s ({:.0} tokens/s)",
        args.streams,
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "client-side lateness  p50 {}us  p90 {}us  p99 {}us  p99.9 {}us  max {}us",
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(0)
    );
    println!(
        "server-side lateness  p50 <= {}us  p99 <= {}us  p99.9 <= {}us  (bucket upper bounds)",
        bucket_quantile(&delta, 0.5) * 1e6,
        bucket_quantile(&delta, 0.99) * 1e6,
        bucket_quantile(&delta, 0.999) * 1e6
    );
    Ok(())
}
