//! Readiness checks: an HTTP GET answered 2xx, a TCP connection accepted, or the protocol's own
//! ping (Redis `PING`, the PostgreSQL SSL request). Each check is one short attempt; callers
//! repeat it at the recipe's interval until its timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Http { path: String },
    Tcp,
    RedisPing,
    PostgresPing,
    None,
}

impl Check {
    /// The check a plan asks for, for a service of `kind`.
    pub fn from_plan(check: &str, path: Option<&str>, kind: &str) -> Check {
        match check {
            "http" => Check::Http {
                path: path.unwrap_or("/health").to_string(),
            },
            "tcp" => Check::Tcp,
            "ping" if kind == "redis" => Check::RedisPing,
            "ping" if kind == "postgres" => Check::PostgresPing,
            "ping" => Check::Tcp,
            _ => Check::None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Check::Http { path } => format!("GET {path}"),
            Check::Tcp => "TCP connect".into(),
            Check::RedisPing => "Redis PING".into(),
            Check::PostgresPing => "PostgreSQL ping".into(),
            Check::None => "no check".into(),
        }
    }
}

/// One attempt; `Ok(())` when ready, `Err(reason)` otherwise.
pub async fn probe(check: &Check, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe_inner(check, addr)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn probe_inner(check: &Check, addr: SocketAddr) -> Result<(), String> {
    if *check == Check::None {
        return Ok(());
    }
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    match check {
        Check::None | Check::Tcp => Ok(()),
        Check::Http { path } => {
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: aibench\r\nConnection: close\r\n\r\n");
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let mut n = 0;
            while n < 12 {
                let m = stream
                    .read(&mut buf[n..])
                    .await
                    .map_err(|e| e.to_string())?;
                if m == 0 {
                    break;
                }
                n += m;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("GET {path} answered {status}"))
            }
        }
        Check::RedisPing => {
            stream
                .write_all(b"*1\r\n$4\r\nPING\r\n")
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            let answer = String::from_utf8_lossy(&buf[..n]);
            // `-NOAUTH` also proves the server is up and speaking Redis.
            if answer.starts_with("+PONG") || answer.starts_with("-NOAUTH") {
                Ok(())
            } else {
                Err(format!("PING answered {answer:?}"))
            }
        }
        Check::PostgresPing => {
            // SSLRequest: length 8, code 80877103. A ready server answers `S` or `N`.
            stream
                .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
                .await
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            match b[0] {
                b'S' | b'N' => Ok(()),
                other => Err(format!("unexpected answer {other:#x} to the SSL request")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_status_decides() {
        let ok = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let bad = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let c = Check::Http {
            path: "/health".into(),
        };
        assert!(probe(&c, ok, Duration::from_secs(5)).await.is_ok());
        assert!(probe(&c, bad, Duration::from_secs(5))
            .await
            .unwrap_err()
            .contains("503"));
    }

    #[tokio::test]
    async fn refused_connection_is_not_ready() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(probe(&Check::Tcp, addr, Duration::from_secs(5))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn redis_and_postgres_pings() {
        let redis = serve_once(b"+PONG\r\n").await;
        assert!(probe(&Check::RedisPing, redis, Duration::from_secs(5))
            .await
            .is_ok());
        let pg = serve_once(b"N").await;
        assert!(probe(&Check::PostgresPing, pg, Duration::from_secs(5))
            .await
            .is_ok());
    }
}
