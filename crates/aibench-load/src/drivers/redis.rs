//! Redis: `GET` and `SET` over RESP, one TCP connection per user, optionally pipelined.
//!
//! An operation is one round trip: `pipeline` commands written at once, all reads or all
//! writes (chosen by `read_share`), each on a key drawn from the key space. Its record covers
//! `pipeline` commands (`batch`): its latency runs from the write to the last reply, its first
//! byte is the first reply's. Keys are preloaded before the clock, so reads hit unless the key
//! space says otherwise; misses are counted (`hit_ratio`).
//!
//! The codec is written here rather than taken from the `redis` crate: the driver needs only
//! two commands and `AUTH`, writes a batch with one system call into a buffer it reuses, and
//! times the first and the last reply of a batch, which a multiplexed client hides.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use aibench_results::{ErrorClass, RequestRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{Clock, Limits};
use crate::driver::{ensure, finish, guarded, Driver, Failure};
use crate::drivers::keys::{KeySpace, ValueBytes};
use crate::error::LoadError;

/// Where and how to drive Redis.
#[derive(Clone)]
pub struct RedisSpec {
    /// `host:port`, `redis://host:port` or `http://host:port` (the port defaults to 6379).
    pub address: String,
    /// ACL user for `AUTH user password` (Redis 6+); None: `AUTH password`.
    pub user: Option<String>,
    /// Sent with `AUTH` when set and not empty; never recorded, logged or printed.
    pub password: Option<String>,
    pub keys: KeySpace,
    /// Commands written per round trip (1: no pipelining).
    pub pipeline: u32,
    /// Write every key once before the clock starts.
    pub preload: bool,
    /// Per-operation limit.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSpec")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keys", &self.keys)
            .field("pipeline", &self.pipeline)
            .field("preload", &self.preload)
            .finish()
    }
}

/// The driver: the resolved address, the credentials and the value bytes.
pub(crate) struct RedisDriver {
    addr: SocketAddr,
    spec: RedisSpec,
    values: ValueBytes,
}

/// One connection: the socket and the buffers it reuses.
pub(crate) struct RedisConn {
    stream: TcpStream,
    out: Vec<u8>,
    inp: Vec<u8>,
}

/// Connections the preload spreads its writes over, and commands per round trip there.
const PRELOAD_CONNECTIONS: u64 = 8;
const PRELOAD_PIPELINE: u64 = 256;

impl RedisSpec {
    fn check(&self) -> Result<(), LoadError> {
        self.keys.check()?;
        if self.pipeline == 0 {
            return Err(LoadError::InvalidSpec(vec![
                "the pipeline depth must be at least 1".into(),
            ]));
        }
        Ok(())
    }
}

/// Resolve `host:port` (with an optional scheme) to a socket address.
pub(crate) async fn resolve(address: &str, default_port: u16) -> Result<SocketAddr, LoadError> {
    let rest = address
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(address)
        .trim_end_matches('/');
    let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_string()
    } else {
        format!("{rest}:{default_port}")
    };
    let mut addrs = tokio::net::lookup_host(hostport.as_str())
        .await
        .map_err(|e| LoadError::InvalidTarget(format!("cannot resolve `{hostport}`: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| LoadError::InvalidTarget(format!("`{hostport}` resolves to no address")))
}

impl RedisDriver {
    pub(crate) async fn new(spec: &RedisSpec) -> Result<RedisDriver, LoadError> {
        spec.check()?;
        Ok(RedisDriver {
            addr: resolve(&spec.address, 6379).await?,
            values: ValueBytes::new(spec.keys.value_size.max(), spec.keys.seed),
            spec: spec.clone(),
        })
    }

    /// Write every key once (before the clock), over a few pipelined connections. Returns
    /// the number of keys written.
    pub(crate) async fn preload(self: &std::sync::Arc<Self>) -> Result<u64, LoadError> {
        let keys = self.spec.keys.keys;
        let lanes = PRELOAD_CONNECTIONS.min(keys).max(1);
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..lanes {
            let me = std::sync::Arc::clone(self);
            tasks.spawn(async move { me.preload_lane(lane, lanes).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| LoadError::Runtime(format!("preload task: {e}")))??;
        }
        Ok(keys)
    }

    /// Write keys `lane`, `lane + lanes`, ... over one connection.
    async fn preload_lane(&self, lane: u64, lanes: u64) -> Result<(), LoadError> {
        let fail = |m: String| LoadError::InvalidTarget(format!("preloading Redis keys: {m}"));
        let space = &self.spec.keys;
        let mut conn = self.connect().await.map_err(fail)?;
        let mut k = lane;
        while k < space.keys {
            conn.out.clear();
            let mut n = 0;
            while k < space.keys && n < PRELOAD_PIPELINE {
                let len = space.preload_size(k);
                encode_set(&mut conn.out, space, k, self.values.value(k, 0, len));
                k += lanes;
                n += 1;
            }
            conn.stream
                .write_all(&conn.out)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut replies = Replies::default();
            read_replies(&mut conn, n as u32, &mut replies, || {})
                .await
                .map_err(|(_, m)| fail(m))?;
            if let Some(e) = replies.error {
                return Err(fail(e));
            }
        }
        Ok(())
    }
}

/// Append `SET key value` in RESP.
fn encode_set(out: &mut Vec<u8>, space: &KeySpace, k: u64, value: &[u8]) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    bulk_key(out, space, k);
    bulk(out, value);
}

/// Append `GET key` in RESP.
fn encode_get(out: &mut Vec<u8>, space: &KeySpace, k: u64) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
    bulk_key(out, space, k);
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    decimal(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A key as a bulk string, written in place (no buffer of its own: this runs for every
/// command of every batch).
fn bulk_key(out: &mut Vec<u8>, space: &KeySpace, k: u64) {
    out.push(b'$');
    decimal(out, (space.prefix.len() + digits(k)) as u64);
    out.extend_from_slice(b"\r\n");
    space.key_into(k, out);
    out.extend_from_slice(b"\r\n");
}

/// Append `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// How many decimal digits `n` has.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// What a batch of replies held.
#[derive(Debug, Default, PartialEq)]
struct Replies {
    /// Bulk strings received (values read).
    found: u32,
    /// Nil replies (keys not found).
    nil: u32,
    /// Payload bytes of the bulk strings.
    bytes: u64,
    /// The first error reply, if any.
    error: Option<String>,
}

/// One reply parsed from the front of `buf`: its length in bytes, or None if incomplete.
fn parse_reply(buf: &[u8], out: &mut Replies) -> Result<Option<usize>, String> {
    let Some(first) = buf.first() else {
        return Ok(None);
    };
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[1..eol];
    let head = eol + 2;
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length in reply: {:?}", String::from_utf8_lossy(line)))
    };
    match first {
        b'+' | b':' | b',' | b'#' => Ok(Some(head)),
        b'_' => {
            out.nil += 1;
            Ok(Some(head))
        }
        b'-' => {
            if out.error.is_none() {
                out.error = Some(String::from_utf8_lossy(line).into_owned());
            }
            Ok(Some(head))
        }
        b'$' => {
            let n = number()?;
            if n < 0 {
                out.nil += 1;
                return Ok(Some(head));
            }
            let end = head + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            out.found += 1;
            out.bytes += n as u64;
            Ok(Some(end))
        }
        b'*' => {
            let n = number()?;
            let mut at = head;
            let mut inner = Replies::default();
            for _ in 0..n.max(0) {
                match parse_reply(&buf[at..], &mut inner)? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            if out.error.is_none() {
                out.error = inner.error;
            }
            Ok(Some(at))
        }
        other => Err(format!(
            "not a RESP reply (starts with byte {other:#04x}): is this a Redis server?"
        )),
    }
}

/// Read until `n` replies are complete; `on_first_byte` is called when the first data arrive.
async fn read_replies(
    conn: &mut RedisConn,
    n: u32,
    replies: &mut Replies,
    mut on_first_byte: impl FnMut(),
) -> Result<(), Failure> {
    conn.inp.clear();
    let (mut at, mut done) = (0usize, 0u32);
    let mut first = true;
    while done < n {
        if conn.inp.capacity() - conn.inp.len() < 16 << 10 {
            conn.inp.reserve(64 << 10);
        }
        let read = conn
            .stream
            .read_buf(&mut conn.inp)
            .await
            .map_err(|e| (ErrorClass::ClosedMidStream, format!("reading replies: {e}")))?;
        if read == 0 {
            return Err((
                if first {
                    ErrorClass::Connect
                } else {
                    ErrorClass::ClosedMidStream
                },
                format!("the server closed the connection after {done} of {n} replies"),
            ));
        }
        if first {
            on_first_byte();
            first = false;
        }
        while done < n {
            match parse_reply(&conn.inp[at..], replies)
                .map_err(|m| (ErrorClass::MalformedStream, m))?
            {
                Some(len) => {
                    at += len;
                    done += 1;
                }
                None => break,
            }
        }
    }
    if at != conn.inp.len() {
        return Err((
            ErrorClass::MalformedStream,
            "more replies than commands sent".into(),
        ));
    }
    Ok(())
}

impl Driver for RedisDriver {
    type Conn = RedisConn;

    async fn connect(&self) -> Result<RedisConn, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let mut conn = RedisConn {
            stream,
            out: Vec::with_capacity(4096),
            inp: Vec::with_capacity(64 << 10),
        };
        if let Some(password) = self.spec.password.as_deref().filter(|p| !p.is_empty()) {
            conn.out.clear();
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = self.spec.user.as_deref().filter(|u| !u.is_empty()) {
                args.push(u.as_bytes());
            }
            args.push(password.as_bytes());
            conn.out
                .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                bulk(&mut conn.out, a);
            }
            conn.stream
                .write_all(&conn.out)
                .await
                .map_err(|e| format!("AUTH: {e}"))?;
            let mut r = Replies::default();
            read_replies(&mut conn, 1, &mut r, || {})
                .await
                .map_err(|(_, m)| format!("AUTH: {m}"))?;
            if let Some(e) = r.error {
                return Err(format!(
                    "AUTH was refused ({e}): check the service's `credentials`"
                ));
            }
        }
        Ok(conn)
    }

    async fn execute<'a>(
        &'a self,
        slot: &'a mut Option<RedisConn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) {
        let space = &self.spec.keys;
        let depth = self.spec.pipeline;
        let read = space.draw(id).is_read(space);
        rec.op = Some(Cow::Borrowed(if read { "GET" } else { "SET" }));
        if depth > 1 {
            rec.batch = Some(depth);
        }
        let timeout = self.spec.timeout;
        let work = async {
            let reused = slot.is_some();
            for retry in [false, true] {
                let mut conn = ensure(self, slot, timeout).await?;
                conn.out.clear();
                // The same draws on a retry: the read/write choice first, then the keys.
                let mut draw = space.draw(id);
                draw.is_read(space);
                let mut bytes_out = 0u64;
                for _ in 0..depth {
                    let k = draw.key(space);
                    if read {
                        encode_get(&mut conn.out, space, k);
                    } else {
                        let len = draw.size(space);
                        bytes_out += len;
                        encode_set(&mut conn.out, space, k, self.values.value(k, id + 1, len));
                    }
                }
                rec.sent_us = Some(clock.now_us());
                let mut replies = Replies::default();
                let sent = conn.stream.write_all(&conn.out).await;
                let outcome = match sent {
                    Err(e) => Err((ErrorClass::Connect, format!("sending: {e}"))),
                    Ok(()) => {
                        // The first reply of a pipelined batch; of a single command, it is the end.
                        read_replies(&mut conn, depth, &mut replies, || {
                            if depth > 1 {
                                rec.first_byte_us = Some(clock.now_us());
                            }
                        })
                        .await
                    }
                };
                match outcome {
                    Ok(()) => {
                        rec.end_us = Some(clock.now_us());
                        rec.bytes_out = Some(bytes_out);
                        rec.bytes_in = Some(replies.bytes);
                        if read {
                            rec.hits = Some(replies.found);
                        }
                        *slot = Some(conn);
                        if let Some(e) = replies.error {
                            return Err((ErrorClass::ServerError, e));
                        }
                        return Ok(());
                    }
                    // A kept-alive connection the server had closed before answering: once,
                    // reconnect and send again.
                    Err((ErrorClass::Connect, _)) if reused && !retry => {
                        rec.sent_us = None;
                        rec.first_byte_us = None;
                    }
                    Err(f) => return Err(f),
                }
            }
            unreachable!("the second attempt always returns")
        };
        let outcome = guarded(limits, timeout, work).await;
        finish(rec, clock, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> (Replies, usize) {
        let mut r = Replies::default();
        let mut at = 0;
        while let Some(n) = parse_reply(&buf[at..], &mut r).unwrap() {
            at += n;
            if at == buf.len() {
                break;
            }
        }
        (r, at)
    }

    #[test]
    fn replies_are_counted_by_kind() {
        let buf = b"+OK\r\n$5\r\nhello\r\n$-1\r\n-ERR wrong\r\n:7\r\n*2\r\n$1\r\na\r\n_\r\n";
        let (r, n) = parse_all(buf);
        assert_eq!(n, buf.len());
        assert_eq!(r.found, 1);
        assert_eq!(r.nil, 1);
        assert_eq!(r.bytes, 5);
        assert_eq!(r.error.as_deref(), Some("ERR wrong"));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(digits(n), n.to_string().len());
        }
    }

    #[test]
    fn incomplete_replies_wait_for_more() {
        let mut r = Replies::default();
        assert_eq!(parse_reply(b"$5\r\nhel", &mut r).unwrap(), None);
        assert_eq!(parse_reply(b"+O", &mut r).unwrap(), None);
        assert_eq!(parse_reply(b"*2\r\n$1\r\na\r\n", &mut r).unwrap(), None);
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n", &mut r).is_err());
    }

    #[test]
    fn commands_are_encoded_in_resp() {
        let space = KeySpace {
            keys: 10,
            prefix: "p:".into(),
            access: crate::drivers::keys::KeyAccess::Uniform,
            value_size: crate::drivers::keys::ValueSize::Fixed(3),
            read_share: 0.5,
            seed: 1,
        };
        let mut out = Vec::new();
        encode_get(&mut out, &space, 42);
        encode_set(&mut out, &space, 7, b"abc");
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$4\r\np:42\r\n*3\r\n$3\r\nSET\r\n$3\r\np:7\r\n$3\r\nabc\r\n"
        );
    }

    #[tokio::test]
    async fn addresses_take_a_scheme_and_a_default_port() {
        assert_eq!(
            resolve("redis://127.0.0.1", 6379).await.unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert_eq!(
            resolve("http://127.0.0.1:7000/", 6379).await.unwrap(),
            "127.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1:7001", 6379).await.unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        );
    }
}
