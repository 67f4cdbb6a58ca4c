//! Redis through `INFO all`, spoken in RESP over TCP: no exporter, no client library.
//!
//! Every numeric field becomes `redis_<field>` (`redis_connected_clients`,
//! `redis_instantaneous_ops_per_sec`, ...). Fields made of `k=v,...` pairs become one series
//! per pair with the field's subject as a label:
//!
//! | INFO line                                  | series                                        |
//! |--------------------------------------------|-----------------------------------------------|
//! | `db0:keys=3,expires=0,avg_ttl=0`           | `redis_db_keys{db="db0"}`, ...                |
//! | `cmdstat_get:calls=2,usec=10,...`          | `redis_commands_calls{cmd="get"}`, ...        |
//! | `errorstat_ERR:count=1`                    | `redis_errorstat_count{error="ERR"}`          |
//! | `latency_percentiles_usec_get:p50=1.0,...` | `redis_latency_percentiles_usec_p50{cmd="get"}` |
//!
//! plus `redis_up 1` on every successful scrape.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{sanitize, Scraped};
use crate::expo::Sample;
use crate::target::{Filter, Target};

/// The longest `INFO` reply accepted.
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// A Redis collector; keeps its connection between scrapes.
#[derive(Default)]
pub struct Redis {
    conn: Option<BufStream<TcpStream>>,
}

impl Redis {
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn collect(&mut self, target: &Target, filter: Filter) -> Result<Scraped, String> {
        let result = self.info(target).await;
        if result.is_err() {
            self.conn = None;
        }
        let text = result?;
        let samples = parse_info(&text)
            .into_iter()
            .filter(|s| filter.keeps(&s.name))
            .collect();
        Ok(Scraped {
            samples,
            ..Scraped::default()
        })
    }

    async fn info(&mut self, target: &Target) -> Result<String, String> {
        if self.conn.is_none() {
            let host = target.host.trim_start_matches('[').trim_end_matches(']');
            let stream = TcpStream::connect((host, target.port))
                .await
                .map_err(|e| format!("could not connect to {}: {e}", target.address()))?;
            let _ = stream.set_nodelay(true);
            let mut conn = BufStream::new(stream);
            if let Some(password) = target
                .credentials
                .as_ref()
                .and_then(|c| c.password.as_deref())
                .filter(|p| !p.is_empty())
            {
                let mut args = vec!["AUTH"];
                if let Some(user) = target.credentials.as_ref().and_then(|c| c.user.as_deref()) {
                    args.push(user);
                }
                args.push(password);
                send(&mut conn, &args).await?;
                match read_reply(&mut conn).await? {
                    Reply::Simple => {}
                    Reply::Error(e) => return Err(format!("AUTH was refused: {e}")),
                    other => return Err(format!("unexpected reply to AUTH: {other:?}")),
                }
            }
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        send(conn, &["INFO", "all"]).await?;
        match read_reply(conn).await? {
            Reply::Bulk(text) => Ok(text),
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!(
                "{e}: give the service's password in the recipe's `credentials`"
            )),
            Reply::Error(e) => Err(format!("INFO failed: {e}")),
            other => Err(format!("unexpected reply to INFO: {other:?}")),
        }
    }
}

#[derive(Debug)]
enum Reply {
    Simple,
    Error(String),
    Bulk(String),
    Other,
}

async fn send(conn: &mut BufStream<TcpStream>, args: &[&str]) -> Result<(), String> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    conn.write_all(&out).await.map_err(|e| e.to_string())?;
    conn.flush().await.map_err(|e| e.to_string())
}

async fn read_reply(conn: &mut BufStream<TcpStream>) -> Result<Reply, String> {
    let mut line = String::new();
    let n = conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Simple),
        "-" => Ok(Reply::Error(rest.to_string())),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| format!("bad bulk length `{rest}`"))?;
            if len < 0 {
                return Ok(Reply::Other);
            }
            let len = usize::try_from(len).map_err(|_| "bad bulk length".to_string())?;
            if len > MAX_REPLY {
                return Err(format!("reply of {len} bytes is too large"));
            }
            let mut buf = vec![0u8; len + 2];
            conn.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Reply::Bulk(String::from_utf8_lossy(&buf).into_owned()))
        }
        _ => Ok(Reply::Other),
    }
}

/// Samples from the text of an `INFO` reply.
pub fn parse_info(text: &str) -> Vec<Sample> {
    let mut out = vec![Sample::new("redis_up", vec![], 1.0)];
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('#') {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !value.contains('=') {
            if let Ok(v) = value.parse::<f64>() {
                out.push(Sample::new(format!("redis_{}", sanitize(key)), vec![], v));
            }
            continue;
        }
        let (group, label, subject) = if section == "keyspace" {
            ("db".to_string(), "db", key.to_string())
        } else if let Some(cmd) = key.strip_prefix("cmdstat_") {
            ("commands".to_string(), "cmd", cmd.to_string())
        } else if let Some(err) = key.strip_prefix("errorstat_") {
            ("errorstat".to_string(), "error", err.to_string())
        } else if let Some(cmd) = key.strip_prefix("latency_percentiles_usec_") {
            (
                "latency_percentiles_usec".to_string(),
                "cmd",
                cmd.to_string(),
            )
        } else {
            (sanitize(key), "", String::new())
        };
        for pair in value.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<f64>() else {
                continue;
            };
            let labels = if label.is_empty() {
                vec![]
            } else {
                vec![(label.to_string(), subject.clone())]
            };
            out.push(Sample::new(
                format!("redis_{group}_{}", sanitize(k)),
                labels,
                v,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_become_samples() {
        let text = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n# Clients\r\nconnected_clients:3\r\n\
            # Memory\r\nmem_fragmentation_ratio:5.12\r\n# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
            # Errorstats\r\nerrorstat_ERR:count=1\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=2.007,p99.9=2.007\r\n\
            # Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5000\r\n";
        let s = parse_info(text);
        let find = |n: &str| {
            s.iter()
                .find(|x| x.name == n)
                .map(|x| (x.labels.clone(), x.value))
        };
        assert_eq!(find("redis_up"), Some((vec![], 1.0)));
        assert_eq!(find("redis_connected_clients"), Some((vec![], 3.0)));
        assert_eq!(
            find("redis_mem_fragmentation_ratio").map(|x| x.1),
            Some(5.12)
        );
        assert!(find("redis_redis_version").is_none());
        assert_eq!(
            find("redis_commands_calls"),
            Some((vec![("cmd".into(), "get".into())], 2.0))
        );
        assert_eq!(
            find("redis_errorstat_count"),
            Some((vec![("error".into(), "ERR".into())], 1.0))
        );
        assert_eq!(
            find("redis_latency_percentiles_usec_p99_9").map(|x| x.1),
            Some(2.007)
        );
        assert_eq!(
            find("redis_db_keys"),
            Some((vec![("db".into(), "db0".into())], 3.0))
        );
    }
}
