//! PostgreSQL through its statistics views, spoken in the frontend/backend protocol (version
//! 3, simple queries) over TCP: no exporter, no client library.
//!
//! Authentication: `trust` (what aibench's own PostgreSQL services use) and cleartext
//! passwords. MD5 and SCRAM are refused with a message saying so.
//!
//! Series, one per numeric column (text and timestamp columns are skipped):
//!
//! | query                                   | series                                                      |
//! |-----------------------------------------|-------------------------------------------------------------|
//! | `pg_stat_database`                      | `pg_stat_database_<column>{datname}` (xact_commit, blks_hit, tup_*, deadlocks, temp_bytes, ...) |
//! | `pg_database_size()`                    | `pg_database_size_bytes{datname}`                           |
//! | `pg_stat_activity` by state             | `pg_stat_activity_count{state}`, `pg_stat_activity_max_tx_duration_seconds{state}` (client backends, the monitor's own session excluded) |
//! | `pg_stat_activity` by wait event        | `pg_stat_activity_wait_count{wait_event_type}` (active client backends) |
//! | `pg_stat_bgwriter`                      | `pg_stat_bgwriter_<column>`                                 |
//! | `pg_stat_checkpointer` (17+)            | `pg_stat_checkpointer_<column>`                             |
//! | `pg_locks` by mode                      | `pg_locks_count{mode}`                                      |
//! | `max_connections`                       | `pg_settings_max_connections`                               |
//!
//! plus `pg_up 1` on every successful scrape. One query failing (a view missing in an old
//! version, a privilege) does not spoil the others; the scrape then reports the first error.

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::Scraped;
use crate::expo::Sample;
use crate::target::{Filter, Target};

/// The longest backend message accepted.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

struct Query {
    sql: &'static str,
    /// Series name prefix: `<prefix>_<column>`.
    prefix: &'static str,
    /// Columns that become labels.
    labels: &'static [&'static str],
    /// Columns never turned into series.
    skip: &'static [&'static str],
    /// Lowest `server_version_num` that has the view.
    min_version: u32,
}

const QUERIES: &[Query] = &[
    Query {
        sql: "SELECT * FROM pg_stat_database WHERE datname IS NOT NULL",
        prefix: "pg_stat_database",
        labels: &["datname"],
        skip: &["datid"],
        min_version: 0,
    },
    Query {
        sql: "SELECT datname, pg_database_size(datname) AS bytes FROM pg_database \
              WHERE datallowconn AND has_database_privilege(datname, 'CONNECT')",
        prefix: "pg_database_size",
        labels: &["datname"],
        skip: &[],
        min_version: 0,
    },
    Query {
        sql: "SELECT coalesce(state, 'unknown') AS state, count(*) AS count, \
              coalesce(max(extract(epoch FROM now() - xact_start)), 0) AS max_tx_duration_seconds \
              FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
              GROUP BY 1",
        prefix: "pg_stat_activity",
        labels: &["state"],
        skip: &[],
        min_version: 100_000,
    },
    Query {
        sql: "SELECT coalesce(wait_event_type, 'none') AS wait_event_type, count(*) AS wait_count \
              FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' \
              AND pid <> pg_backend_pid() GROUP BY 1",
        prefix: "pg_stat_activity",
        labels: &["wait_event_type"],
        skip: &[],
        min_version: 100_000,
    },
    Query {
        sql: "SELECT * FROM pg_stat_bgwriter",
        prefix: "pg_stat_bgwriter",
        labels: &[],
        skip: &[],
        min_version: 0,
    },
    Query {
        sql: "SELECT * FROM pg_stat_checkpointer",
        prefix: "pg_stat_checkpointer",
        labels: &[],
        skip: &[],
        min_version: 170_000,
    },
    Query {
        sql: "SELECT mode, count(*) AS count FROM pg_locks GROUP BY mode",
        prefix: "pg_locks",
        labels: &["mode"],
        skip: &[],
        min_version: 0,
    },
    Query {
        sql: "SELECT setting AS max_connections FROM pg_settings WHERE name = 'max_connections'",
        prefix: "pg_settings",
        labels: &[],
        skip: &[],
        min_version: 0,
    },
];

/// A PostgreSQL collector; keeps its session between scrapes.
#[derive(Default)]
pub struct Postgres {
    conn: Option<Conn>,
}

impl Postgres {
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn collect(&mut self, target: &Target, filter: Filter) -> Result<Scraped, String> {
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(target).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let mut samples = vec![Sample::new("pg_up", vec![], 1.0)];
        let mut first_error: Option<String> = None;
        let version = conn.version_num;
        for q in QUERIES {
            if version < q.min_version {
                continue;
            }
            match conn.query(q.sql).await {
                Ok(rows) => samples.extend(to_samples(q, &rows)),
                Err(QueryError::Server(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(QueryError::Io(e)) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
        if let (Some(e), 1) = (&first_error, samples.len()) {
            return Err(e.clone());
        }
        samples.retain(|s| filter.keeps(&s.name));
        Ok(Scraped {
            samples,
            partial_failures: usize::from(first_error.is_some()),
            first_partial_failure: first_error,
        })
    }
}

/// Column names and rows of text values.
#[derive(Debug, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

fn to_samples(q: &Query, rows: &Rows) -> Vec<Sample> {
    let mut out = Vec::new();
    for row in &rows.rows {
        let labels: Vec<(String, String)> = q
            .labels
            .iter()
            .filter_map(|l| {
                let i = rows.columns.iter().position(|c| c == l)?;
                Some((l.to_string(), row.get(i)?.clone().unwrap_or_default()))
            })
            .collect();
        for (i, col) in rows.columns.iter().enumerate() {
            if q.labels.contains(&col.as_str()) || q.skip.contains(&col.as_str()) {
                continue;
            }
            let Some(Some(text)) = row.get(i) else {
                continue;
            };
            let Ok(v) = text.parse::<f64>() else {
                continue;
            };
            let name = if q.prefix == "pg_database_size" {
                "pg_database_size_bytes".to_string()
            } else {
                format!("{}_{}", q.prefix, super::sanitize(col))
            };
            out.push(Sample::new(name, labels.clone(), v));
        }
    }
    out
}

enum QueryError {
    /// The server answered with an error; the session is still good.
    Server(String),
    /// The connection is broken.
    Io(String),
}

struct Conn {
    stream: BufStream<TcpStream>,
    version_num: u32,
}

impl Conn {
    async fn connect(target: &Target) -> Result<Conn, String> {
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, target.port))
            .await
            .map_err(|e| format!("could not connect to {}: {e}", target.address()))?;
        let _ = stream.set_nodelay(true);
        let mut stream = BufStream::new(stream);
        let creds = target.credentials.clone().unwrap_or_default();
        let user = creds.user.clone().unwrap_or_else(|| "postgres".into());
        let database = creds.database.clone().unwrap_or_else(|| "postgres".into());
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        for (k, v) in [
            ("user", user.as_str()),
            ("database", database.as_str()),
            ("application_name", "aibench-monitor"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        write(&mut stream, &msg).await?;
        let mut version_num = 0;
        loop {
            let (tag, payload) = read_message(&mut stream).await?;
            match tag {
                b'R' => {
                    let code = be_u32(&payload, 0).unwrap_or(u32::MAX);
                    match code {
                        0 => {}
                        3 => {
                            let Some(password) = creds.password.as_deref() else {
                                return Err(format!(
                                    "PostgreSQL asks user `{user}` for a password: give it in the service's `credentials`"
                                ));
                            };
                            let mut p = password.as_bytes().to_vec();
                            p.push(0);
                            write(&mut stream, &frame(b'p', &p)).await?;
                        }
                        5 | 10 => {
                            return Err(format!(
                                "PostgreSQL asks user `{user}` for {} authentication, which the monitor does not speak; allow `trust` (or `password`) for it in pg_hba.conf",
                                if code == 5 { "MD5" } else { "SASL (SCRAM)" }
                            ))
                        }
                        other => {
                            return Err(format!("unsupported authentication request {other}"))
                        }
                    }
                }
                b'S' => {
                    let mut parts = payload.split(|b| *b == 0);
                    let key = parts.next().unwrap_or_default();
                    let value = parts.next().unwrap_or_default();
                    if key == b"server_version" {
                        version_num = version_number(&String::from_utf8_lossy(value));
                    }
                }
                b'E' => {
                    return Err(format!(
                        "PostgreSQL refused the connection: {}",
                        error_text(&payload)
                    ))
                }
                b'Z' => break,
                // BackendKeyData, notices, negotiation of minor versions.
                _ => {}
            }
        }
        Ok(Conn {
            stream,
            version_num,
        })
    }

    async fn query(&mut self, sql: &str) -> Result<Rows, QueryError> {
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        write(&mut self.stream, &frame(b'Q', &q))
            .await
            .map_err(QueryError::Io)?;
        let mut rows = Rows::default();
        let mut error = None;
        loop {
            let (tag, payload) = read_message(&mut self.stream)
                .await
                .map_err(QueryError::Io)?;
            match tag {
                b'T' => rows.columns = row_description(&payload),
                b'D' => rows.rows.push(data_row(&payload)),
                b'E' => error = Some(error_text(&payload)),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(QueryError::Server(e)),
            None => Ok(rows),
        }
    }
}

/// `15.14 (Debian 15.14-0+deb12u1)` -> 150014; `9.6.24` -> 90624.
fn version_number(text: &str) -> u32 {
    let nums: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums.as_slice() {
        [major, minor, patch, ..] if *major < 10 => major * 10_000 + minor * 100 + patch,
        [major, minor, ..] => major * 10_000 + minor,
        [major] => major * 10_000,
        [] => 0,
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

async fn write(stream: &mut BufStream<TcpStream>, bytes: &[u8]) -> Result<(), String> {
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

async fn read_message(stream: &mut BufStream<TcpStream>) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 5];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("the connection broke: {e}"))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(format!("bad message length {len}"));
    }
    let mut payload = vec![0u8; len - 4];
    stream
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("the connection broke: {e}"))?;
    Ok((head[0], payload))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn row_description(p: &[u8]) -> Vec<String> {
    let n = be_u16(p, 0).unwrap_or(0) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(rest) = p.get(at..) else { break };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        // name, NUL, then table oid (4), column (2), type oid (4), size (2), modifier (4), format (2).
        at += end + 1 + 18;
    }
    out
}

fn data_row(p: &[u8]) -> Vec<Option<String>> {
    let n = be_u16(p, 0).unwrap_or(0) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(len) = be_u32(p, at) else { break };
        at += 4;
        if len == u32::MAX {
            out.push(None);
            continue;
        }
        let len = len as usize;
        let Some(v) = p.get(at..at + len) else { break };
        out.push(Some(String::from_utf8_lossy(v).into_owned()));
        at += len;
    }
    out
}

/// The severity, code and message of an ErrorResponse.
fn error_text(p: &[u8]) -> String {
    let mut severity = String::new();
    let mut message = String::new();
    let mut code = String::new();
    for field in p.split(|b| *b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'S' => severity = value,
            b'M' => message = value,
            b'C' => code = value,
            _ => {}
        }
    }
    format!("{severity} {code}: {message}").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version_number("15.14 (Debian 15.14-0+deb12u1)"), 150_014);
        assert_eq!(version_number("17.0"), 170_000);
        assert_eq!(version_number("9.6.24"), 90_624);
        assert_eq!(version_number("16devel"), 160_000);
        assert_eq!(version_number(""), 0);
    }

    #[test]
    fn messages_decode_and_truncated_ones_do_not_panic() {
        let mut t = 2u16.to_be_bytes().to_vec();
        for name in ["datname", "xact_commit"] {
            t.extend_from_slice(name.as_bytes());
            t.push(0);
            t.extend_from_slice(&[0u8; 18]);
        }
        assert_eq!(row_description(&t), vec!["datname", "xact_commit"]);
        let mut d = 2u16.to_be_bytes().to_vec();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"abc");
        d.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(data_row(&d), vec![Some("abc".into()), None]);
        for cut in 0..d.len() {
            let _ = data_row(&d[..cut]);
        }
        for cut in 0..t.len() {
            let _ = row_description(&t[..cut]);
        }
        assert_eq!(
            error_text(b"SERROR\0C42P01\0Mrelation does not exist\0\0"),
            "ERROR 42P01: relation does not exist"
        );
    }

    #[test]
    fn rows_become_samples() {
        let rows = Rows {
            columns: vec![
                "datname".into(),
                "datid".into(),
                "xact_commit".into(),
                "stats_reset".into(),
            ],
            rows: vec![vec![
                Some("postgres".into()),
                Some("5".into()),
                Some("12".into()),
                Some("2025-01-01 00:00:00+00".into()),
            ]],
        };
        let s = to_samples(&QUERIES[0], &rows);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "pg_stat_database_xact_commit");
        assert_eq!(
            s[0].labels,
            vec![("datname".to_string(), "postgres".to_string())]
        );
        assert_eq!(s[0].value, 12.0);
    }
}
