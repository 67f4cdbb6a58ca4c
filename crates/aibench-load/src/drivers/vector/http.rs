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
                    classify(e.error(), "sending request")
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
            Err(Failed::NotSent(_)) => {}
            Err(Failed::Other(class, m)) => return Err((class, m)),
        }
    }
    unreachable!("the second attempt always returns")
}
