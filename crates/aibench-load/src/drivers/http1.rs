//! A kept-alive HTTP/1.1 connection for request/response drivers (S3 and the like), whose
//! bodies are payloads rather than token streams: the connection runs as a task of its own,
//! the response body is handed over frame by frame so a driver can count and check it without
//! holding it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use aibench_results::ErrorClass;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, Response};
use tokio::net::TcpStream;

use crate::driver::Failure;

/// A request body of up to two pieces sent as they are (a small header and a slice of a
/// shared buffer), so that large payloads are never copied.
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    parts: [Option<Bytes>; 2],
}

impl Pieces {
    pub fn new(a: Bytes, b: Bytes) -> Pieces {
        Pieces {
            parts: [Some(a), Some(b)],
        }
    }

    pub fn one(a: Bytes) -> Pieces {
        Pieces {
            parts: [Some(a), None],
        }
    }

    pub fn empty() -> Pieces {
        Pieces::default()
    }

    fn remaining(&self) -> u64 {
        self.parts.iter().flatten().map(|b| b.len() as u64).sum()
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        for slot in self.parts.iter_mut() {
            if let Some(b) = slot.take() {
                if !b.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

/// One kept-alive connection, made again when the server closed it (some servers close after
/// every response; some announce it, some do not).
pub(crate) struct Http1 {
    sender: SendRequest<Pieces>,
    addr: SocketAddr,
    host: String,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Responses received on the current connection.
    answered: u64,
}

impl Http1 {
    pub async fn connect(addr: SocketAddr, host: &str) -> Result<Http1, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http1 {
            sender,
            addr,
            host: host.to_string(),
            reconnects: 0,
            answered: 0,
        })
    }

    async fn reconnect(&mut self) -> Result<(), Failure> {
        let fresh = Http1::connect(self.addr, &self.host)
            .await
            .map_err(|m| (ErrorClass::Connect, m))?;
        self.sender = fresh.sender;
        self.reconnects += 1;
        self.answered = 0;
        Ok(())
    }

    pub fn usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Send a request for `path_and_query`; `Err` with `Connect` when it never left, or when a
    /// kept-alive connection that had answered before was closed before any byte of this
    /// response (the server's idle close racing the request): either way nothing was answered,
    /// and the caller may send it again on a new connection.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Pieces,
    ) -> Result<Response<hyper::body::Incoming>, Failure> {
        // A connection the server closed is made again (once) before the request leaves: the
        // request was never sent, so nothing is lost or sent twice.
        if self.sender.is_closed() {
            self.reconnect().await?;
        }
        if self.sender.ready().await.is_err() {
            self.reconnect().await?;
            self.sender.ready().await.map_err(|e| {
                (
                    ErrorClass::Connect,
                    format!("connection closed before sending: {e}"),
                )
            })?;
        }
        // Servers may refuse a PUT or POST without a length, even an empty one.
        let empty = body.remaining() == 0 && matches!(method, Method::PUT | Method::POST);
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = path_and_query
            .parse()
            .map_err(|e| (ErrorClass::Other, format!("bad request path: {e}")))?;
        let h = req.headers_mut();
        h.insert(
            hyper::header::HOST,
            self.host
                .parse()
                .map_err(|_| (ErrorClass::Other, "bad host".to_string()))?,
        );
        if empty {
            h.insert(
                hyper::header::CONTENT_LENGTH,
                hyper::header::HeaderValue::from_static("0"),
            );
        }
        for (k, v) in headers {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| (ErrorClass::Other, format!("bad header name {k}")))?,
                v.parse()
                    .map_err(|_| (ErrorClass::Other, format!("bad value for header {k}")))?,
            );
        }
        let answered_before = self.answered > 0;
        let resp = self.sender.try_send_request(req).await.map_err(|mut e| {
            if e.take_message().is_some() {
                return (
                    ErrorClass::Connect,
                    format!("sending request: {}", e.error()),
                );
            }
            let (class, msg) = classify(e.error(), "sending request");
            if answered_before && class == ErrorClass::ClosedMidStream {
                (
                    ErrorClass::Connect,
                    format!("kept-alive connection closed before the response: {msg}"),
                )
            } else {
                (class, msg)
            }
        })?;
        self.answered += 1;
        Ok(resp)
    }
}

/// Read a whole (small) body: error documents, listings.
pub(crate) async fn read_all(
    resp: Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Bytes, Failure> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(&e, "reading body"))?;
        if let Ok(d) = frame.into_data() {
            if out.len() < limit {
                out.extend_from_slice(&d[..d.len().min(limit - out.len())]);
            }
        }
    }
    Ok(Bytes::from(out))
}

/// A hyper error as an error class and a message with its causes: `closed_mid_stream` when the
/// exchange was cut short (the connection ended, reset or aborted), `other` otherwise. The one
/// classification of every HTTP driver.
pub(crate) fn classify(e: &hyper::Error, context: &str) -> Failure {
    use std::io::ErrorKind;
    let mut msg = format!("{context}: {e}");
    let mut cut =
        e.is_incomplete_message() || e.is_closed() || e.is_canceled() || e.is_body_write_aborted();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            cut |= matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            );
        }
        source = s.source();
    }
    (
        if cut {
            ErrorClass::ClosedMidStream
        } else {
            ErrorClass::Other
        },
        msg,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Read one request head (the requests here have no body).
    async fn read_head(s: &mut TcpStream) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// A server that answers a first request, reads the second, and closes without a word:
    /// the second is reported as never answered (`connect`), which the drivers send again
    /// once on a fresh connection; on a fresh connection the same cut stays
    /// `closed_mid_stream`.
    #[tokio::test]
    async fn a_kept_alive_connection_closed_before_the_answer_is_never_answered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            read_head(&mut s).await;
            drop(s);
            // A fresh connection cut the same way, before its first answer.
            let (mut s, _) = listener.accept().await.unwrap();
            read_head(&mut s).await;
            drop(s);
        });
        let mut c = Http1::connect(addr, "test").await.unwrap();
        let r = c
            .send(Method::GET, "/a", &[], Pieces::empty())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&read_all(r, 100).await.unwrap()[..], b"ok");
        let (class, msg) = c
            .send(Method::GET, "/b", &[], Pieces::empty())
            .await
            .unwrap_err();
        assert_eq!(class, ErrorClass::Connect, "{msg}");
        assert!(msg.contains("closed before the response"), "{msg}");

        let mut fresh = Http1::connect(addr, "test").await.unwrap();
        let (class, msg) = fresh
            .send(Method::GET, "/c", &[], Pieces::empty())
            .await
            .unwrap_err();
        assert_eq!(class, ErrorClass::ClosedMidStream, "{msg}");
    }
}
