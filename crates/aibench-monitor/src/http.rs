//! A small HTTP/1.1 client on hyper: one connection per request, a deadline on the whole
//! exchange and a cap on the body. Enough for scrapes, pushes and the Prometheus API.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::target::host_port;

/// Largest body read (a vLLM exposition is ~100 KB; Prometheus answers can be larger).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("`{0}` is not an http:// URL (https is not supported: use a plain-HTTP address or a local tunnel)")]
    BadUrl(String),
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A request to `host:port` with `path` (path and query).
pub struct Call<'a> {
    pub method: Method,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub accept: Option<&'a str>,
    pub body: Option<(&'a str, Bytes)>,
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn get(host: &'a str, port: u16, path: &'a str, timeout: Duration) -> Call<'a> {
        Call {
            method: Method::GET,
            host,
            port,
            path,
            accept: None,
            body: None,
            timeout,
        }
    }

    pub async fn send(self) -> Result<Response, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    async fn exchange(self) -> Result<Response, HttpError> {
        let address = host_port(self.host, self.port);
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, self.port))
            .await
            .map_err(|source| HttpError::Connect {
                address: address.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = if self.path.is_empty() { "/" } else { self.path };
        let mut builder = Request::builder()
            .method(self.method)
            .uri(path)
            .header(HOST, address.as_str())
            .header("user-agent", concat!("aibench/", env!("CARGO_PKG_VERSION")));
        if let Some(accept) = self.accept {
            builder = builder.header(ACCEPT, accept);
        }
        let body = match self.body {
            Some((content_type, bytes)) => {
                let v = HeaderValue::from_str(content_type)
                    .map_err(|e| HttpError::Protocol(e.to_string()))?;
                builder = builder.header(CONTENT_TYPE, v);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::Protocol(e.to_string()))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpError::TooLarge
                } else {
                    HttpError::Protocol(e.to_string())
                }
            })?
            .to_bytes();
        driver.abort();
        Ok(Response {
            status,
            content_type,
            body,
        })
    }
}

/// A parsed `http://host[:port][/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Without a trailing slash; empty for the root.
    pub prefix: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let rest = url.trim().strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let prefix = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        Ok(HttpUrl {
            host,
            port,
            prefix: prefix.to_string(),
        })
    }

    /// The path under the prefix.
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    pub fn base(&self) -> String {
        format!("http://{}{}", host_port(&self.host, self.port), self.prefix)
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base())
    }
}

/// Percent-encode for a query value or a path segment (RFC 3986 unreserved kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://localhost:9091").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("localhost", 9091, "")
        );
        let u = HttpUrl::parse("http://h/prom/").unwrap();
        assert_eq!((u.port, u.prefix.as_str()), (80, "/prom"));
        assert_eq!(u.path("/api/v1/query"), "/prom/api/v1/query");
        let u = HttpUrl::parse("http://[::1]:9090/x?y").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("::1", 9090, "/x")
        );
        assert_eq!(u.base(), "http://[::1]:9090/x");
        assert!(HttpUrl::parse("https://h").is_err());
        assert!(HttpUrl::parse("http://:80").is_err());
        assert!(HttpUrl::parse("http://h:port").is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(
            percent_encode("rate(x[1m]) > 0"),
            "rate%28x%5B1m%5D%29%20%3E%200"
        );
        assert_eq!(percent_encode("a-b_c.d~"), "a-b_c.d~");
    }
}
