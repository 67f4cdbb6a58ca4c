//! The HTTP/1.1 client: one connection per in-flight slot (closed-loop user or open-loop pool
//! entry), `TCP_NODELAY`, keep-alive, reconnect when the server closed it.
//!
//! The connection is driven inside the request's own task (not a spawned one), so a body frame
//! is timestamped in the same wake-up in which it is read from the socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aibench_results::{ErrorClass, RequestRecord};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::Request;
use tokio::net::TcpStream;

use crate::cancel::AbortWatch;
use crate::protocol::response::{truncate, ResponseState};
use crate::protocol::{BodyKind, Endpoint, Prepared};
use crate::stamped::Stamped;

/// An error body is read up to this size for its message (and to keep the connection usable).
const MAX_ERROR_BODY: usize = 8 << 10;
/// Longest wait for a TCP connection (the request's own timeout applies if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Microseconds since the run's monotonic start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub start: Instant,
}

impl Clock {
    pub fn now_us(&self) -> u64 {
        // Whole seconds and the microseconds within: no 128-bit division (`as_micros`) on a
        // path taken for every chunk.
        let d = Instant::now().saturating_duration_since(self.start);
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()))
    }

    pub fn instant(&self, us: u64) -> Instant {
        self.start + Duration::from_micros(us)
    }

    /// When data the kernel stamped at `arrived_unix_ns` (see [`crate::stamped`]) arrived, on
    /// this clock: now, less the data's age. The age is taken on the realtime clock the kernel
    /// stamps with, read alongside, so that a realtime clock stepped or slewed during the run
    /// cannot shift it. `None` when there is no stamp, or one that makes no sense.
    fn arrival_us(&self, arrived_unix_ns: u64, now_us: u64) -> Option<u64> {
        if arrived_unix_ns == 0 {
            return None;
        }
        let real_now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let real_now_ns = u64::try_from(real_now.as_nanos()).ok()?;
        let age_us = real_now_ns.checked_sub(arrived_unix_ns)? / 1_000;
        (age_us < MAX_STAMP_AGE_US).then(|| now_us.saturating_sub(age_us))
    }
}

/// An arrival stamp older than this (10 s) is taken for a stale or broken one.
const MAX_STAMP_AGE_US: u64 = 10_000_000;

type Driver = Pin<Box<Connection<Stamped, Full<Bytes>>>>;

/// One kept-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// None once the connection has ended.
    driver: Option<Driver>,
    /// The kernel's arrival time of the last data read (see [`crate::stamped`]).
    arrivals: Arc<AtomicU64>,
    /// What the server said about keeping the connection (`Connection`, `Keep-Alive`).
    keep: KeepAlive,
}

/// What the server announced about reusing a connection: `Connection: close` ends it after
/// the response; `Keep-Alive: timeout=T, max=M` allows M more requests while it is idle less
/// than T. A connection is not reused past either, so no request is sent into a close.
#[derive(Debug, Default, Clone, Copy)]
struct KeepAlive {
    closing: bool,
    /// Requests the server still accepts on this connection.
    remaining: Option<u32>,
    /// When the server may close it for being idle (with a margin).
    idle_until: Option<std::time::Instant>,
}

impl KeepAlive {
    /// What the response's headers say; the clock is read only when they give a timeout.
    fn from_headers(h: &hyper::HeaderMap) -> KeepAlive {
        let mut k = KeepAlive {
            closing: h
                .get_all(hyper::header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("close")),
            ..KeepAlive::default()
        };
        if let Some(v) = h.get("keep-alive").and_then(|v| v.to_str().ok()) {
            for part in v.split(',') {
                let Some((name, value)) = part.split_once('=') else {
                    continue;
                };
                let Ok(n) = value.trim().parse::<u32>() else {
                    continue;
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "max" => k.remaining = Some(n),
                    "timeout" => {
                        // Leave a quarter of the timeout (at most a second) for the request
                        // to reach the server before it gives up on the connection.
                        let t = Duration::from_secs(u64::from(n));
                        let margin = (t / 4).min(Duration::from_secs(1));
                        k.idle_until = Some(std::time::Instant::now() + t - margin);
                    }
                    _ => {}
                }
            }
        }
        k
    }

    /// The clock is read only when the server gave an idle timeout (most do not).
    fn allows_another(&self) -> bool {
        !self.closing
            && self.remaining != Some(0)
            && self
                .idle_until
                .is_none_or(|until| std::time::Instant::now() < until)
    }
}

impl Conn {
    /// Connect to `addr`. With `stamp`, the kernel's receive stamps are read (streamed
    /// responses time their chunks by them); a plain request/response does not need them.
    pub async fn connect(addr: SocketAddr, stamp: bool) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let stream = Stamped::new(stream, stamp);
        let arrivals = stream.arrivals();
        let (sender, conn) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(conn)),
            arrivals,
            keep: KeepAlive::default(),
        })
    }

    fn usable(&self) -> bool {
        self.driver.is_some() && !self.sender.is_closed() && self.keep.allows_another()
    }
}

/// What one exchange needs besides the connection.
pub(crate) struct Exchange<'a> {
    pub endpoint: &'a Endpoint,
    pub prepared: &'a Prepared,
    pub clock: Clock,
    pub timeout: Duration,
}

enum Failure {
    /// The request never left (the kept-alive connection had closed): safe to retry.
    NotSent(String),
    /// The server answered with an error status; the connection is still good.
    Status(ErrorClass, String),
    Failed(ErrorClass, String),
}

/// What ends a request early: the run's abort (an interrupted run's grace period is over) and
/// the request's timeout. A task keeps one for all its requests, so that neither is registered
/// anew for each: the abort is armed once, and moving the timer's deadline later is an atomic
/// store, where entering a timer takes the timer wheel's lock and, while the runtime is busy, a
/// system call to wake its driver. The timer enters the wheel here, so a closed-loop run makes
/// its users' `Limits` before its clock starts and their first requests leave without that cost.
pub(crate) struct Limits {
    abort: AbortWatch,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Where a streamed response says it is still arriving (see [`Activity`]).
    pub activity: Activity,
}

/// When the run last saw progress, in microseconds on its clock: a byte of a streamed
/// response, a request that ended, or the first request after an idle spell. Every request of
/// a run shares it; the engine's stall detector reads it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Activity(Arc<AtomicU64>);

impl Activity {
    /// Progress at `at_us`. Stored at most once a millisecond: every stream shares the value.
    pub fn touch(&self, at_us: u64) {
        if self.0.load(Ordering::Relaxed).saturating_add(1000) <= at_us {
            self.0.fetch_max(at_us, Ordering::Relaxed);
        }
    }

    /// Progress now, whenever the last was (the first request after an idle spell).
    pub fn reset(&self, at_us: u64) {
        self.0.fetch_max(at_us, Ordering::Relaxed);
    }

    pub fn last_us(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Limits {
    /// The abort watch and the timer, re-armed for an operation of at most `timeout`.
    pub fn parts(&mut self, timeout: Duration) -> (&mut AbortWatch, Pin<&mut tokio::time::Sleep>) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + timeout);
        (&mut self.abort, self.timer.as_mut())
    }

    pub fn new(cancel: &crate::cancel::Cancel, timeout: Duration, activity: &Activity) -> Limits {
        let mut timer = Box::pin(tokio::time::sleep(timeout));
        timer.as_mut().reset(tokio::time::Instant::now() + timeout);
        Limits {
            abort: AbortWatch::new(cancel),
            timer,
            activity: activity.clone(),
        }
    }
}

/// Send one request over `slot` (connecting if needed) and fill `rec` with what happened.
/// On return `slot` holds the connection if it can be used again.
pub(crate) async fn execute(
    slot: &mut Option<Conn>,
    ex: &Exchange<'_>,
    rec: &mut RequestRecord,
    limits: &mut Limits,
) {
    let mut state = ResponseState::new(ex.endpoint.body_kind);
    let Limits {
        abort,
        timer,
        activity,
    } = limits;
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + ex.timeout);
    // The timer is polled once per request, which registers this task's waker with it; after
    // that a look at its state is enough (a poll would register the waker again at every
    // wake-up, once per streamed chunk) as long as the waker is the same. An open-loop request
    // is first polled on the scheduler's thread, then by its task: that registers again.
    let mut timer_waker: Option<Waker> = None;
    let expired = std::future::poll_fn(|cx| {
        if !timer_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            timer_waker = Some(cx.waker().clone());
            return timer.as_mut().poll(cx);
        }
        if timer.is_elapsed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let result = tokio::select! {
        biased;
        () = abort => Err((ErrorClass::Cancelled, "run stopped and the grace period ran out".to_string())),
        r = attempt(slot, ex, rec, &mut state, activity) => r,
        () = expired => Err((ErrorClass::Timeout, format!("no complete response within {:?}", ex.timeout))),
    };
    let now = ex.clock.now_us();
    rec.done_us = Some(now);
    rec.first_token_us = state.first_token_us;
    rec.itl_us = std::mem::take(&mut state.itl_us);
    rec.chunks = state.chunks;
    rec.input_tokens = state.usage_input.or(ex.prepared.input_tokens);
    if let Some((n, source)) = state.output_tokens() {
        rec.output_tokens = Some(n);
        rec.token_source = Some(source);
    }
    match result {
        Ok(()) => {
            rec.end_us = match ex.endpoint.body_kind {
                BodyKind::OpenAiSse | BodyKind::OllamaNdjson => state.last_token_us.or(Some(now)),
                _ => Some(now),
            };
        }
        Err((class, msg)) => {
            rec.error = Some(class);
            rec.error_message = Some(ex.endpoint.scrub(truncate(msg, 300)));
        }
    }
}

async fn attempt(
    slot: &mut Option<Conn>,
    ex: &Exchange<'_>,
    rec: &mut RequestRecord,
    state: &mut ResponseState,
    activity: &Activity,
) -> Result<(), (ErrorClass, String)> {
    for retry in [false, true] {
        let (mut conn, reused) = match slot.take() {
            Some(c) if c.usable() => (c, true),
            _ => {
                let limit = CONNECT_TIMEOUT.min(ex.timeout);
                let conn = tokio::time::timeout(
                    limit,
                    Conn::connect(ex.endpoint.addr, ex.endpoint.body_kind.is_streamed()),
                )
                .await
                .map_err(|_| {
                    (
                        ErrorClass::Connect,
                        format!(
                            "connect to {}: no answer within {limit:?}",
                            ex.endpoint.addr
                        ),
                    )
                })?
                .map_err(|m| (ErrorClass::Connect, m))?;
                (conn, false)
            }
        };
        match exchange(&mut conn, ex, rec, state, activity).await {
            Ok(reusable) => {
                if reusable && conn.usable() {
                    *slot = Some(conn);
                }
                return Ok(());
            }
            Err(Failure::NotSent(msg)) => {
                if !reused || retry {
                    return Err((ErrorClass::Connect, msg));
                }
                // A kept-alive connection the server had closed: reconnect and send again.
                rec.sent_us = None;
            }
            Err(Failure::Status(class, msg)) => {
                if conn.usable() {
                    *slot = Some(conn);
                }
                return Err((class, msg));
            }
            // The server closed a kept-alive connection before any byte of an answer (it closed
            // it for being idle as the request arrived): send again, once, on a fresh one.
            Err(Failure::Failed(ErrorClass::ClosedMidStream, _))
                if reused && !retry && rec.first_byte_us.is_none() =>
            {
                rec.sent_us = None;
                rec.reconnected = true;
            }
            Err(Failure::Failed(class, msg)) => return Err((class, msg)),
        }
    }
    unreachable!("the second attempt always returns")
}

/// Most rounds of "drive the connection, then the exchange" in one wake-up (see [`exchange`]).
const MAX_ROUNDS: u32 = 16;

/// One request/response on `conn`, driving the connection alongside. Returns whether the
/// connection may carry another request.
///
/// The connection and the exchange are polled in rounds within one wake-up: the connection first
/// (so that a body frame it reads is handed over, and timestamped, in the same wake-up), then the
/// exchange, and again as long as the exchange moved on. Without the second round a request
/// queued by the exchange would only be written at the task's next turn, behind every other
/// ready task (at 256 streams, milliseconds after its recorded send time), and a frame already
/// waiting in the socket would wait for the next turn too.
async fn exchange(
    conn: &mut Conn,
    ex: &Exchange<'_>,
    rec: &mut RequestRecord,
    state: &mut ResponseState,
    activity: &Activity,
) -> Result<bool, Failure> {
    let Conn {
        sender,
        driver,
        arrivals,
        keep,
    } = conn;
    // This request uses one of those the server still accepts.
    keep.remaining = keep.remaining.map(|n| n.saturating_sub(1));
    // A piece of the response is timed when the kernel received it, if it says (see
    // `crate::stamped`), else when it is read here; never before the request left or before
    // the piece ahead of it.
    // (Atomics only because the future must be Send; they never leave this task.)
    let floor_us = AtomicU64::new(0);
    let received = || {
        let now = ex.clock.now_us();
        let at = ex
            .clock
            .arrival_us(arrivals.load(Ordering::Relaxed), now)
            .unwrap_or(now)
            .max(floor_us.load(Ordering::Relaxed));
        floor_us.store(at, Ordering::Relaxed);
        at
    };
    // Bumped whenever the exchange hands something to the connection or takes something from it.
    // (An atomic only because the future must be Send; it never leaves this task.)
    let moved = AtomicU32::new(0);
    let work = async {
        sender
            .ready()
            .await
            .map_err(|e| Failure::NotSent(format!("connection closed before sending: {e}")))?;
        let mut req = Request::new(Full::new(ex.prepared.body.clone()));
        *req.method_mut() = ex.endpoint.method.clone();
        *req.uri_mut() = ex.endpoint.path.clone();
        *req.headers_mut() = ex.endpoint.headers.clone();
        let sent = ex.clock.now_us();
        rec.sent_us = Some(sent);
        floor_us.store(sent, Ordering::Relaxed);
        let sending = sender.try_send_request(req);
        moved.fetch_add(1, Ordering::Relaxed);
        let resp = match sending.await {
            Ok(r) => r,
            Err(mut e) => {
                return Err(if e.take_message().is_some() {
                    Failure::NotSent(format!("sending request: {}", e.error()))
                } else {
                    classify(e.error(), "sending request")
                });
            }
        };
        let first = received();
        rec.first_byte_us = Some(first);
        activity.touch(first);
        let announced = KeepAlive::from_headers(resp.headers());
        if announced.closing || announced.remaining.is_some() || announced.idle_until.is_some() {
            *keep = announced;
        }
        let status = resp.status().as_u16();
        rec.status = Some(status);
        let mut body = resp.into_body();
        if let Some(class) = ErrorClass::from_status(status) {
            let mut snippet = Vec::new();
            let mut whole = true;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Ok(d) = f.into_data() {
                            snippet.extend_from_slice(&d);
                        }
                    }
                    Err(_) => whole = false,
                }
                if !whole || snippet.len() > MAX_ERROR_BODY {
                    whole = false;
                    break;
                }
            }
            let text = String::from_utf8_lossy(&snippet);
            let failure = if whole {
                Failure::Status
            } else {
                Failure::Failed
            };
            return Err(failure(class, format!("HTTP {status}: {}", text.trim())));
        }
        // Only streamed bodies time their pieces.
        let timed = ex.endpoint.body_kind.is_streamed();
        let now = || if timed { received() } else { 0 };
        while let Some(frame) = body.frame().await {
            moved.fetch_add(1, Ordering::Relaxed);
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        let at = now();
                        if timed {
                            activity.touch(at);
                        }
                        state.on_frame(&data, at);
                        if let Some((class, msg)) = &state.failure {
                            return Err(Failure::Failed(*class, msg.clone()));
                        }
                    }
                }
                Err(e) => return Err(classify(&e, "reading body")),
            }
        }
        state.on_end(now());
        if let Some((class, msg)) = &state.failure {
            return Err(Failure::Failed(*class, msg.clone()));
        }
        Ok(true)
    };
    let mut work = pin!(work);
    // The very first round starts with the exchange: the connection is idle until it has a
    // request to write.
    let mut started = false;
    std::future::poll_fn(|cx| {
        for _ in 0..MAX_ROUNDS {
            let drove = started;
            if started {
                if let Some(d) = driver.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        // The connection ended; dropping it wakes the request with an error if
                        // it is still waiting on it.
                        *driver = None;
                    }
                }
            }
            started = true;
            let before = moved.load(Ordering::Relaxed);
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if drove && moved.load(Ordering::Relaxed) == before {
                return Poll::Pending;
            }
        }
        // Still moving: let other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Classify a hyper error (see [`crate::drivers::http1::classify`]).
fn classify(e: &hyper::Error, context: &str) -> Failure {
    let (class, msg) = crate::drivers::http1::classify(e, context);
    Failure::Failed(class, msg)
}

/// Ask an OpenAI-compatible server (`/v1/models`) or Ollama (`/api/tags`) for the first model
/// it serves. `Ok(None)` when it answers but lists none.
pub async fn discover_model(
    target: &crate::protocol::Target,
    timeout: Duration,
) -> Result<Option<String>, crate::error::LoadError> {
    use crate::error::LoadError;
    use crate::protocol::Protocol;
    let (path, list_key, id_key) = match target.protocol {
        Protocol::OllamaGenerate | Protocol::OllamaChat => ("/api/tags", "models", "name"),
        _ => ("/v1/models", "data", "id"),
    };
    let mut endpoint = Endpoint::resolve(target).await?;
    endpoint.method = hyper::Method::GET;
    endpoint.path = hyper::Uri::from_static(path);
    endpoint.headers.remove(hyper::header::CONTENT_TYPE);
    endpoint.body_kind = BodyKind::OpenAiJson;
    let fetch = async {
        let mut conn = Conn::connect(endpoint.addr, false)
            .await
            .map_err(LoadError::InvalidTarget)?;
        let Conn { sender, driver, .. } = &mut conn;
        let mut driver = driver.take().expect("fresh connection");
        let work = async {
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = endpoint.path.clone();
            *req.headers_mut() = endpoint.headers.clone();
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| LoadError::InvalidTarget(format!("GET {path}: {e}")))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| LoadError::InvalidTarget(format!("GET {path}: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(LoadError::InvalidTarget(format!(
                    "GET {path} answered {status}"
                )));
            }
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| LoadError::InvalidTarget(format!("GET {path}: invalid JSON: {e}")))?;
            Ok(v[list_key][0][id_key].as_str().map(str::to_string))
        };
        tokio::select! {
            r = work => r,
            _ = driver.as_mut() => Err(LoadError::InvalidTarget(format!("GET {path}: connection closed"))),
        }
    };
    tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        LoadError::InvalidTarget(format!("GET {path}: no answer within {timeout:?}"))
    })?
}

/// The LLM and plain-HTTP driver: request bodies serialized before the clock, one kept-alive
/// HTTP/1.1 connection per user.
pub(crate) struct HttpDriver {
    pub endpoint: Endpoint,
    pub prepared: Vec<Prepared>,
    pub timeout: Duration,
}

impl crate::driver::Driver for HttpDriver {
    type Conn = Conn;

    fn streams(&self) -> bool {
        self.endpoint.body_kind.is_streamed()
    }

    async fn connect(&self) -> Result<Conn, String> {
        Conn::connect(self.endpoint.addr, self.endpoint.body_kind.is_streamed()).await
    }

    async fn execute<'a>(
        &'a self,
        slot: &'a mut Option<Conn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) {
        let ex = Exchange {
            endpoint: &self.endpoint,
            prepared: &self.prepared[(id % self.prepared.len() as u64) as usize],
            clock,
            timeout: self.timeout,
        };
        execute(slot, &ex, rec, limits).await
    }
}
