//! One line of `requests.jsonl`: what happened to one request, in microseconds from the run's
//! monotonic start.
//!
//! A record never holds a header value, an API key or a prompt: only times, counts and outcome.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The part of the run a request belongs to, decided by its *intended* send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the measure window: recorded, excluded from the summary.
    Warmup,
    /// Counted in the summary.
    Measure,
    /// After the measure window, keeping the load steady while measured requests finish:
    /// recorded, excluded from the summary.
    Cooldown,
}

/// Where a request's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server reported them (`usage`, Ollama's `eval_count`).
    Usage,
    /// Counted by a tokenizer on the client.
    Tokenizer,
    /// Estimated from the text (about four characters per token); treat with care.
    Estimate,
}

impl TokenSource {
    /// Every source, in a fixed order.
    pub const ALL: [TokenSource; 3] = [
        TokenSource::Usage,
        TokenSource::Tokenizer,
        TokenSource::Estimate,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            TokenSource::Usage => 0,
            TokenSource::Tokenizer => 1,
            TokenSource::Estimate => 2,
        }
    }
}

/// Why a request failed. Failed requests are data: counted by class, never dropped silently.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The connection could not be made (refused, unreachable, handshake failed).
    Connect,
    /// The request did not finish within its timeout.
    Timeout,
    /// The server answered 4xx.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The server answered 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// The response body was not what the protocol allows (invalid JSON in a stream event).
    MalformedStream,
    /// The body ended, or the connection closed, before the stream's end marker
    /// (`[DONE]`, `"done": true`).
    ClosedMidStream,
    /// The response ended as it should but held no output: a stream of only its end marker,
    /// or a body without text, and no token counted by the server.
    EmptyResponse,
    /// A stream was asked for and the server answered with a body that is not one (a JSON
    /// document, an HTML page): no event arrived.
    NotAStream,
    /// Open loop: the request could not start on time because the in-flight cap was reached.
    /// It was never sent.
    Dropped,
    /// The run stopped (cancelled or error budget spent) while the request was still in
    /// flight, and the grace period ran out.
    Cancelled,
    /// The server answered with an error of its own protocol (a Redis `-ERR` reply, an SQL
    /// error, an S3 or vector-database error document).
    ServerError,
    /// The response did not hold what was asked for or written (an object read back whose
    /// checksum differs from the one written, a vector query answering the wrong number of
    /// neighbours).
    Mismatch,
    /// A response line, event or body beyond aibench's size cap (16 MiB): a stream that
    /// never ends its line, a body far larger than any answer.
    TooLarge,
    /// Anything else (an error object inside a stream, an unexpected status, ...).
    Other,
}

impl ErrorClass {
    /// Every class, in a fixed order.
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::MalformedStream,
        ErrorClass::ClosedMidStream,
        ErrorClass::EmptyResponse,
        ErrorClass::NotAStream,
        ErrorClass::Dropped,
        ErrorClass::Cancelled,
        ErrorClass::ServerError,
        ErrorClass::Mismatch,
        ErrorClass::TooLarge,
        ErrorClass::Other,
    ];

    /// The name used in files (`http_5xx`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::MalformedStream => "malformed_stream",
            ErrorClass::ClosedMidStream => "closed_mid_stream",
            ErrorClass::EmptyResponse => "empty_response",
            ErrorClass::NotAStream => "not_a_stream",
            ErrorClass::Dropped => "dropped",
            ErrorClass::Cancelled => "cancelled",
            ErrorClass::ServerError => "server_error",
            ErrorClass::Mismatch => "mismatch",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Other => "other",
        }
    }

    /// The class of an HTTP status that is not a success, if it is an error status.
    pub fn from_status(status: u16) -> Option<ErrorClass> {
        match status {
            200..=299 => None,
            400..=499 => Some(ErrorClass::Http4xx),
            500..=599 => Some(ErrorClass::Http5xx),
            _ => Some(ErrorClass::Other),
        }
    }

    /// Whether this is a failure of the request itself. `Dropped` and `Cancelled` are decisions
    /// of the client, so they are counted apart from errors.
    pub fn is_failure(self) -> bool {
        !matches!(self, ErrorClass::Dropped | ErrorClass::Cancelled)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request. All times are microseconds from the run's monotonic start (`run.json` holds the
/// wall-clock epoch of that start); a time the request never reached is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestRecord {
    /// Sequence number of the request in the run's schedule (unique across shards).
    pub id: u64,
    /// Which client process (shard) sent it; 0 with a single process.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub shard: u32,
    /// Closed loop: the user (virtual client) that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    pub phase: Phase,
    /// When the schedule meant to send it.
    pub intended_us: u64,
    /// When it was actually written to the connection (absent if never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_us: Option<u64>,
    /// When the response head arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_us: Option<u64>,
    /// When the first chunk carrying non-empty content arrived (streaming only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_us: Option<u64>,
    /// When the last content chunk arrived (streaming) or the body ended (non-streaming);
    /// E2E is measured to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_us: Option<u64>,
    /// When the response was over and the connection free again (end of body, or the failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_us: Option<u64>,
    /// Gaps between consecutive content chunks, in microseconds (`chunks - 1` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub itl_us: Vec<u32>,
    /// Number of chunks that carried content (not the number of tokens).
    #[serde(default)]
    pub chunks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u32>,
    /// Where `output_tokens` (and `input_tokens`, when the server reported it) came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_source: Option<TokenSource>,
    /// HTTP status of the response, if one arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorClass>,
    /// A short description of the failure (never a header value or a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The operation, for protocols that have several (`GET`, `SET`, `PUT`, `query`,
    /// `tpcb`); absent for LLM and plain HTTP requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Cow<'static, str>>,
    /// Commands this record covers: a pipelined batch of Redis commands is one round trip
    /// and one record; absent means one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// Payload bytes sent (values, objects, vectors, statement parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Payload bytes received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Reads of this record that found their key (cache hits); the rest of its `batch`
    /// missed. Absent for writes and protocols without lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits: Option<u32>,
    /// The parts of a compound operation (the statements of a PostgreSQL transaction), each
    /// with its own latency; the accumulator reports them as operations of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// A nearest-neighbour query: how many of the true `k` nearest neighbours it returned
    /// (recall@k is `found / expected`, summed exactly over queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours_found: Option<u32>,
    /// A nearest-neighbour query: the `k` it asked for (the size of the true neighbour set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours_expected: Option<u32>,
    /// It was sent again on a fresh connection: the kept-alive one it first went out on was
    /// closed by the server before any byte of a response (its times are the second send's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconnected: bool,
}

/// One part of a compound operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// Its name, reported as an operation of its own (`tpcb: UPDATE pgbench_accounts`).
    pub op: Cow<'static, str>,
    /// How long it took, in microseconds.
    pub latency_us: u64,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl RequestRecord {
    /// A record that was scheduled but has no outcome yet.
    pub fn new(id: u64, phase: Phase, intended_us: u64) -> Self {
        RequestRecord {
            id,
            shard: 0,
            worker: None,
            phase,
            intended_us,
            sent_us: None,
            first_byte_us: None,
            first_token_us: None,
            end_us: None,
            done_us: None,
            itl_us: Vec::new(),
            chunks: 0,
            input_tokens: None,
            output_tokens: None,
            token_source: None,
            status: None,
            error: None,
            error_message: None,
            op: None,
            batch: None,
            bytes_out: None,
            bytes_in: None,
            hits: None,
            steps: Vec::new(),
            neighbours_found: None,
            neighbours_expected: None,
            reconnected: false,
        }
    }

    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.sent_us.is_some() && self.end_us.is_some()
    }

    /// Time to first token from the actual send, in µs.
    pub fn ttft_us(&self) -> Option<u64> {
        Some(self.first_token_us?.saturating_sub(self.sent_us?))
    }

    /// End-to-end latency from the actual send, in µs.
    pub fn e2e_us(&self) -> Option<u64> {
        Some(self.end_us?.saturating_sub(self.sent_us?))
    }

    /// Time to first token from the intended send (coordinated-omission-free), in µs.
    pub fn ttft_from_intended_us(&self) -> Option<u64> {
        Some(self.first_token_us?.saturating_sub(self.intended_us))
    }

    /// End-to-end latency from the intended send (coordinated-omission-free), in µs.
    pub fn e2e_from_intended_us(&self) -> Option<u64> {
        Some(self.end_us?.saturating_sub(self.intended_us))
    }

    /// How late the client sent the request (actual − intended), in µs.
    pub fn send_lag_us(&self) -> Option<u64> {
        Some(self.sent_us?.saturating_sub(self.intended_us))
    }

    /// Time per output token after the first: (E2E − TTFT) / (output_tokens − 1), in µs,
    /// rounded to the nearest µs. Needs a TTFT and at least two output tokens.
    pub fn tpot_us(&self) -> Option<u64> {
        let out = u64::from(self.output_tokens?);
        if out < 2 {
            return None;
        }
        let decode = self.end_us?.saturating_sub(self.first_token_us?);
        let n = out - 1;
        Some((decode + n / 2) / n)
    }

    /// The largest gap between content chunks, in µs.
    pub fn max_itl_us(&self) -> Option<u32> {
        self.itl_us.iter().copied().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_omits_absent_fields() {
        let mut r = RequestRecord::new(7, Phase::Measure, 1_000);
        r.sent_us = Some(1_010);
        r.first_token_us = Some(51_010);
        r.end_us = Some(91_010);
        r.itl_us = vec![10_000; 4];
        r.chunks = 5;
        r.output_tokens = Some(5);
        r.token_source = Some(TokenSource::Usage);
        r.status = Some(200);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("error"), "{line}");
        assert!(!line.contains("shard"), "{line}");
        let back: RequestRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.ttft_us(), Some(50_000));
        assert_eq!(r.e2e_us(), Some(90_000));
        assert_eq!(r.tpot_us(), Some(10_000));
        assert_eq!(r.send_lag_us(), Some(10));
        assert_eq!(r.e2e_from_intended_us(), Some(90_010));
    }

    #[test]
    fn error_class_names_match_serde() {
        for c in ErrorClass::ALL {
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(s, format!("\"{}\"", c.as_str()));
            assert_eq!(ErrorClass::ALL[c.index()], c);
        }
        // Every class is in ALL: `Other` is declared last.
        assert_eq!(ErrorClass::Other.index() + 1, ErrorClass::ALL.len());
        assert_eq!(ErrorClass::from_status(503), Some(ErrorClass::Http5xx));
        assert_eq!(ErrorClass::from_status(429), Some(ErrorClass::Http4xx));
        assert_eq!(ErrorClass::from_status(204), None);
    }
}
