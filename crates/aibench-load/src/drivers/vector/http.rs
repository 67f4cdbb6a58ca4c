//! One kept-alive HTTP/1.1 connection (hyper's `client::conn::http1`) and one JSON
//! request/response over it, driven inside the caller's task (no spawned connection task:
//! a response is timed in the wake-up that reads it).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use aibench_results::ErrorClass;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::Clock;
use crate::driver::Failure;

type Driving = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One connection.
pub(crate) struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    /// None once the connection has ended.
    driver: Option<Driving>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        Ok(HttpConn {
            sender,
            driver: Some(Box::pin(conn)),
        })
    }

    pub fn usable(&self) -> bool {
        self.driver.is_some() && !self.sender.is_closed()
    }
}

/// The fixed parts of every request: the `Host` header, the content type, credentials.
#[derive(Clone)]
pub(crate) struct Headers(pub HeaderMap);

impl Headers {
    pub fn new(addr: &str, extra: &[(String, String)]) -> Result<Headers, String> {
        let mut h = HeaderMap::new();
        h.insert(
            HOST,
            HeaderValue::from_str(addr).map_err(|_| format!("bad host `{addr}`"))?,
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in extra {
            let name = hyper::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("bad header name `{k}`"))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|_| format!("bad value for header `{k}`"))?;
            value.set_sensitive(true);
            h.insert(name, value);
        }
        Ok(Headers(h))
    }
}

/// A complete response.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// Why an exchange failed.
pub(crate) enum Failed {
    /// The request never left (a kept-alive connection the server had closed): safe to send again.
    NotSent(String),
    /// The request left on a connection that closed before any byte of the answer (a server
    /// closing an idle kept-alive connection as the request arrived): safe to send again once
    /// when the connection was reused, else `closed_mid_stream`.
    NoAnswer(String),
    Other(ErrorClass, String),
}

/// When a request left and when its answer began to arrive, on the run's clock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Times {
    pub sent_us: Option<u64>,
    pub head_us: Option<u64>,
}

/// Send one request and read the whole response, noting in `times` when the request was handed
/// to the connection and when the response head arrived.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange(
    conn: &mut HttpConn,
    method: Method,
    uri: &hyper::Uri,
    headers: &Headers,
    body: Bytes,
    clock: Clock,
    times: &mut Times,
) -> Result<Reply, Failed> {
    let HttpConn { sender, driver } = conn;
    let work = async {
        sender
            .ready()
            .await
            .map_err(|e| Failed::NotSent(format!("connection closed before sending: {e}")))?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.0.clone();
        times.sent_us = Some(clock.now_us());
        let resp = match sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => {
                return Err(if e.take_message().is_some() {
                    Failed::NotSent(format!("sending request: {}", e.error()))
                } else {
                    // Cut before the response head: nothing was answered.
                    match classify(e.error(), "sending request") {
                        Failed::Other(ErrorClass::ClosedMidStream, m) => Failed::NoAnswer(m),
                        other => other,
                    }
                });
            }
        };
        times.head_us = Some(clock.now_us());
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| classify(&e, "reading body"))?
            .to_bytes();
        Ok(Reply { status, body })
    };
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        // The connection first: what it reads reaches the exchange in the same wake-up.
        if let Some(d) = driver.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                // The connection ended; the exchange learns it from the sender.
                *driver = None;
            }
        }
        work.as_mut().poll(cx)
    })
    .await
}

/// Classify a hyper error (see [`crate::drivers::http1::classify`]).
fn classify(e: &hyper::Error, context: &str) -> Failed {
    let (class, msg) = crate::drivers::http1::classify(e, context);
    Failed::Other(class, msg)
}

/// One request outside the clock (setup, preload): connect if needed, send, and fail unless
/// the answer is a success; returns the body.
pub(crate) async fn call(
    conn: &mut Option<HttpConn>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &Headers,
    body: Bytes,
) -> Result<Reply, Failure> {
    let clock = Clock {
        start: std::time::Instant::now(),
    };
    let uri: hyper::Uri = path
        .parse()
        .map_err(|_| (ErrorClass::Other, format!("bad path `{path}`")))?;
    for retry in [false, true] {
        let (mut c, reused) = match conn.take() {
            Some(c) if c.usable() => (c, true),
            _ => (
                HttpConn::connect(addr)
                    .await
                    .map_err(|m| (ErrorClass::Connect, m))?,
                false,
            ),
        };
        match exchange(
            &mut c,
            method.clone(),
            &uri,
            headers,
            body.clone(),
            clock,
            &mut Times::default(),
        )
        .await
        {
            Ok(r) => {
                if c.usable() {
                    *conn = Some(c);
                }
                return Ok(r);
            }
            Err(Failed::NotSent(m)) if !reused || retry => return Err((ErrorClass::Connect, m)),
            Err(Failed::NoAnswer(m)) if !reused || retry => {
                return Err((ErrorClass::ClosedMidStream, m))
            }
            Err(Failed::NotSent(_) | Failed::NoAnswer(_)) => {}
            Err(Failed::Other(class, m)) => return Err((class, m)),
        }
    }
    unreachable!("the second attempt always returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Read one request head and its body (`content-length` bytes).
    async fn read_request(s: &mut tokio::net::TcpStream) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// A server that closes an idle kept-alive connection as the next request arrives: the
    /// request is sent again, once, on a new connection, and answered.
    #[tokio::test]
    async fn a_request_cut_on_a_reused_connection_is_sent_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            s.write_all(answer).await.unwrap();
            read_request(&mut s).await;
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            s.write_all(answer).await.unwrap();
            // Then a fresh connection cut before its first answer: not sent again.
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            drop(s);
        });
        let headers = Headers::new(&addr.to_string(), &[]).unwrap();
        let mut conn = None;
        for _ in 0..2 {
            let r = call(
                &mut conn,
                addr,
                Method::POST,
                "/q",
                &headers,
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
            assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        }
        let mut fresh = None;
        let Err((class, msg)) = call(
            &mut fresh,
            addr,
            Method::POST,
            "/q",
            &headers,
            Bytes::from_static(b"{}"),
        )
        .await
        else {
            panic!("a fresh connection cut before its answer must fail");
        };
        assert_eq!(class, ErrorClass::ClosedMidStream, "{msg}");
    }
}
