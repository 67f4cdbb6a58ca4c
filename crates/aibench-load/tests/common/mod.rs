//! A tiny HTTP/1.1 server on loopback that answers like an LLM server, or misbehaves on purpose.
//! Written on raw TCP so that every failure (cut connection, broken JSON, hang) is exact.

#![allow(dead_code)]

pub mod servers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub enum Behavior {
    /// Stream tokens (OpenAI SSE or Ollama NDJSON, by path): the first after `ttft`, then one
    /// every `itl`, as many as the request's max_tokens; usage at the end.
    Stream { ttft: Duration, itl: Duration },
    /// Answer with this status and a small JSON error body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Stream `n` good chunks, then one with broken JSON.
    MalformedAfter(u32),
    /// Stream `n` good chunks, then cut the connection (no terminating chunk).
    CutAfter(u32),
    /// Stream `n` good chunks, then end the body properly but without the end marker.
    EndWithoutMarker(u32),
    /// Stream `n` good chunks, then send nothing more, keeping the connection open (a server
    /// whose generation hung).
    StallAfter(u32),
    /// Stream as `Stream` (1 ms TTFT and ITL), but end each connection after `after`
    /// responses, saying so as `announce` tells.
    Closing { after: u32, announce: Announce },
}

/// How a `Closing` server tells the client that it will close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// It does not: it reads the next request and closes without an answer (a server closing
    /// an idle kept-alive connection as a request arrives).
    Nothing,
    /// `Connection: close` on the last response.
    ConnectionClose,
    /// `Keep-Alive: timeout=5, max=<requests left>` on every response, then it closes after
    /// the last without a word more.
    KeepAliveMax,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub authorization: Mutex<Vec<String>>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub async fn serve(behavior: Behavior) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            sock.set_nodelay(true).unwrap();
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(sock, behavior.clone(), Arc::clone(&s)));
        }
    });
    TestServer { addr, stats }
}

/// A port with nothing listening on it.
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

async fn handle(mut sock: TcpStream, behavior: Behavior, stats: Arc<Stats>) {
    let mut buf = Vec::new();
    let mut served = 0u32;
    loop {
        if let Behavior::Closing {
            after,
            announce: Announce::Nothing,
        } = behavior
        {
            if served == after {
                // Wait for the next request to arrive, then close without a byte of answer.
                let _ = sock.read_buf(&mut buf).await;
                return;
            }
        }
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut len = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => stats
                        .authorization
                        .lock()
                        .unwrap()
                        .push(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + len {
            match sock.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
        buf.drain(..head_end + len);
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        served += 1;
        let keep = match behavior {
            Behavior::Closing { after, announce } => {
                let extra = match announce {
                    Announce::Nothing => String::new(),
                    Announce::ConnectionClose if served == after => "connection: close\r\n".into(),
                    Announce::ConnectionClose => String::new(),
                    Announce::KeepAliveMax => {
                        format!("keep-alive: timeout=5, max={}\r\n", after - served)
                    }
                };
                let stream = Behavior::Stream {
                    ttft: Duration::from_millis(1),
                    itl: Duration::from_millis(1),
                };
                respond(&mut sock, &path, &body, &stream, &extra).await
                    && (announce == Announce::Nothing || served < after)
            }
            _ => respond(&mut sock, &path, &body, &behavior, "").await,
        };
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep {
            return;
        }
    }
}

async fn chunk(sock: &mut TcpStream, data: &str) -> bool {
    sock.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await
        .is_ok()
}

/// Returns whether the connection stays open.
async fn respond(
    sock: &mut TcpStream,
    path: &str,
    body: &serde_json::Value,
    behavior: &Behavior,
    extra_headers: &str,
) -> bool {
    let start = Instant::now();
    let ollama = path.starts_with("/api/");
    let chat = path.contains("chat");
    let stream = body["stream"].as_bool().unwrap_or(true);
    let tokens = body["max_tokens"]
        .as_u64()
        .or(body["options"]["num_predict"].as_u64())
        .unwrap_or(4) as u32;
    let piece = |i: u32| -> String {
        let text = format!("t{i} ");
        match (ollama, chat) {
            (true, true) => format!(
                "{}\n",
                serde_json::json!({"message": {"role": "assistant", "content": text}, "done": false})
            ),
            (true, false) => format!("{}\n", serde_json::json!({"response": text, "done": false})),
            (false, true) => format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}}]})
            ),
            (false, false) => format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"index": 0, "text": text}]})
            ),
        }
    };
    let end = |n: u32| -> String {
        if ollama {
            format!(
                "{}\n",
                serde_json::json!({"response": "", "done": true, "eval_count": n, "prompt_eval_count": 3})
            )
        } else {
            format!(
                "data: {}\n\ndata: [DONE]\n\n",
                serde_json::json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}})
            )
        }
    };
    let stream_head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n{extra_headers}\r\n",
        if ollama {
            "application/x-ndjson"
        } else {
            "text/event-stream"
        }
    );
    match behavior {
        Behavior::Status(code) => {
            let b = r#"{"error": {"message": "nope"}}"#;
            let r = format!("HTTP/1.1 {code} Nope\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len());
            sock.write_all(r.as_bytes()).await.is_ok()
        }
        Behavior::Closing { .. } => unreachable!("answered as a stream by `handle`"),
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            false
        }
        Behavior::Stream { ttft, itl } if !stream => {
            tokio::time::sleep_until(start + *ttft + *itl * tokens.saturating_sub(1)).await;
            let text: String = (0..tokens).map(|i| format!("t{i} ")).collect();
            let b = if ollama {
                serde_json::json!({"response": text, "done": true, "eval_count": tokens, "prompt_eval_count": 3})
            } else if chat {
                serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}],
                                   "usage": {"prompt_tokens": 3, "completion_tokens": tokens}})
            } else {
                serde_json::json!({"choices": [{"text": text}], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}})
            }
            .to_string();
            let r = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}", b.len());
            sock.write_all(r.as_bytes()).await.is_ok()
        }
        Behavior::Stream { ttft, itl } => {
            if sock.write_all(stream_head.as_bytes()).await.is_err() {
                return false;
            }
            for i in 0..tokens {
                tokio::time::sleep_until(start + *ttft + *itl * i).await;
                if !chunk(sock, &piece(i)).await {
                    return false;
                }
            }
            chunk(sock, &end(tokens)).await && sock.write_all(b"0\r\n\r\n").await.is_ok()
        }
        Behavior::MalformedAfter(n)
        | Behavior::CutAfter(n)
        | Behavior::EndWithoutMarker(n)
        | Behavior::StallAfter(n) => {
            if sock.write_all(stream_head.as_bytes()).await.is_err() {
                return false;
            }
            for i in 0..*n {
                if !chunk(sock, &piece(i)).await {
                    return false;
                }
            }
            match behavior {
                Behavior::MalformedAfter(_) => {
                    let bad = if ollama {
                        "{\"response\": \"x\", \"do\n"
                    } else {
                        "data: {\"choices\": [{\"te\n\n"
                    };
                    chunk(sock, bad).await && sock.write_all(b"0\r\n\r\n").await.is_ok()
                }
                Behavior::CutAfter(_) => {
                    let _ = sock.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    false
                }
                Behavior::StallAfter(_) => {
                    let _ = sock.flush().await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    false
                }
                _ => sock.write_all(b"0\r\n\r\n").await.is_ok(),
            }
        }
    }
}
