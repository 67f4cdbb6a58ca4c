//! Readiness checks: an HTTP GET answered 2xx, a TCP connection accepted, or the protocol's own
//! ping (Redis `PING`, the PostgreSQL SSL request). Each check is one short attempt; callers
//! repeat it at the recipe's interval until its timeout.

use aibench_recipe::{HealthCheck, ServiceKind};
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
    pub fn from_plan(check: HealthCheck, path: Option<&str>, kind: ServiceKind) -> Check {
        use aibench_recipe::kinds::Ping;
        match check {
            HealthCheck::Http => Check::Http {
                path: path.unwrap_or("/health").to_string(),
            },
            HealthCheck::Tcp => Check::Tcp,
            // The protocol's own ping where the kind has one; a connection otherwise.
            HealthCheck::Ping => match kind.spec().ping {
                Ping::Resp => Check::RedisPing,
                Ping::PostgresStartup => Check::PostgresPing,
                Ping::Tcp => Check::Tcp,
            },
            HealthCheck::None => Check::None,
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

/// The SQLSTATE and message of a PostgreSQL ErrorResponse body.
fn postgres_error(body: &[u8]) -> (Option<String>, String) {
    let (mut code, mut message) = (None, String::new());
    for field in body.split(|b| *b == 0) {
        if let Some((&t, v)) = field.split_first() {
            let v = String::from_utf8_lossy(v).into_owned();
            match t {
                b'C' => code = Some(v),
                b'M' => message = v,
                _ => {}
            }
        }
    }
    (code, message)
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
            // A startup message, as `pg_isready` sends: a server that accepts connections asks
            // for authentication or refuses the (made-up) role or database; one starting up,
            // shutting down or in recovery refuses with SQLSTATE 57P03 and is not ready.
            let mut body = Vec::new();
            body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
            for part in ["user", "aibench-health", "database", "postgres"] {
                body.extend_from_slice(part.as_bytes());
                body.push(0);
            }
            body.push(0);
            let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
            msg.extend_from_slice(&body);
            stream.write_all(&msg).await.map_err(|e| e.to_string())?;
            let mut head = [0u8; 5];
            stream
                .read_exact(&mut head)
                .await
                .map_err(|e| e.to_string())?;
            match head[0] {
                b'R' => Ok(()),
                b'E' => {
                    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    let mut rest = vec![0u8; len.saturating_sub(4).min(8192)];
                    stream
                        .read_exact(&mut rest)
                        .await
                        .map_err(|e| e.to_string())?;
                    match postgres_error(&rest) {
                        (Some(code), message) if code == "57P03" => {
                            Err(format!("not accepting connections yet: {message}"))
                        }
                        _ => Ok(()),
                    }
                }
                other => Err(format!("unexpected answer {other:#x} to a startup message")),
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn postgres_errors_give_their_sqlstate() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0";
        let (code, message) = postgres_error(body);
        assert_eq!(code.as_deref(), Some("57P03"));
        assert_eq!(message, "the database system is starting up");
    }

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
        // Asked for a password: accepting connections.
        let pg = serve_once(b"R\0\0\0\x08\0\0\0\x03").await;
        assert!(probe(&Check::PostgresPing, pg, Duration::from_secs(5))
            .await
            .is_ok());
        // An unknown role: accepting connections all the same.
        let pg = serve_once(b"E\0\0\0\x1cSFATAL\0C28000\0Mno role\0\0").await;
        assert!(probe(&Check::PostgresPing, pg, Duration::from_secs(5))
            .await
            .is_ok());
        // Starting up: not ready.
        let pg =
            serve_once(b"E\0\0\0\x37SFATAL\0C57P03\0Mthe database system is starting up\0\0").await;
        assert!(probe(&Check::PostgresPing, pg, Duration::from_secs(5))
            .await
            .unwrap_err()
            .contains("starting up"));
    }
}
