//! Reading a response body as it arrives: content-chunk timestamps, token usage, end markers,
//! and the error class when something is wrong.

use std::borrow::Cow;

use aibench_results::ErrorClass;
use serde::Deserialize;

use super::lines::LineSplitter;
use super::quick;
use super::sse::{SseEvent, SseParser};
use super::BodyKind;

/// Bodies of non-streaming responses (and error bodies) are kept up to this size.
const MAX_BUFFERED_BODY: usize = 16 << 20;
/// Characters per token when no count is available (the usual rule of thumb for English).
const CHARS_PER_TOKEN: u64 = 4;

/// What a response body told us.
#[derive(Debug, Default)]
pub(crate) struct ResponseState {
    kind: Option<BodyKind>,
    sse: Option<SseParser>,
    lines: Option<LineSplitter>,
    buffered: Vec<u8>,
    pub first_token_us: Option<u64>,
    pub last_token_us: Option<u64>,
    pub itl_us: Vec<u32>,
    pub chunks: u32,
    pub text_chars: u64,
    pub usage_input: Option<u32>,
    pub usage_output: Option<u32>,
    /// The stream's end marker arrived (`[DONE]`, `"done": true`).
    pub done: bool,
    pub failure: Option<(ErrorClass, String)>,
    /// SSE events seen (any `data:` field), to tell a stream from a body that is not one.
    events: u32,
    /// The first bytes of an SSE body that has shown no event yet, quoted when it turns out
    /// not to be a stream.
    head: Vec<u8>,
}

/// How much of a body is kept to quote when it is not a stream.
const HEAD_BYTES: usize = 80;

impl ResponseState {
    pub fn new(kind: BodyKind) -> Self {
        ResponseState {
            kind: Some(kind),
            sse: (kind == BodyKind::OpenAiSse).then(SseParser::new),
            lines: (kind == BodyKind::OllamaNdjson).then(LineSplitter::new),
            itl_us: Vec::new(),
            ..ResponseState::default()
        }
    }

    /// Whether reading should stop (a failure was found).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// A line or event that grows past the cap without ending fails the request, rather than
    /// the machine's memory.
    fn check_pending(&mut self, pending: usize) {
        if pending > MAX_BUFFERED_BODY && !self.failed() {
            self.fail(
                ErrorClass::TooLarge,
                format!(
                    "a line or event of more than {} MiB that does not end",
                    MAX_BUFFERED_BODY >> 20
                ),
            );
        }
    }

    /// One body frame, all of it arrived at `now_us`.
    pub fn on_frame(&mut self, data: &[u8], now_us: u64) {
        if self.failed() {
            return;
        }
        match self.kind.expect("constructed with a kind") {
            BodyKind::OpenAiSse => {
                let mut sse = self.sse.take().expect("SSE parser");
                sse.feed(data, &mut |e: SseEvent<'_>| {
                    self.on_openai_event(e.data, now_us)
                });
                let pending = sse.pending();
                self.sse = Some(sse);
                self.check_pending(pending);
                // Keep the first bytes only while no event has come: a real stream never
                // copies (or allocates) here.
                if self.events == 0 && self.head.len() < HEAD_BYTES {
                    let take = (HEAD_BYTES - self.head.len()).min(data.len());
                    self.head.extend_from_slice(&data[..take]);
                }
            }
            BodyKind::OllamaNdjson => {
                let mut lines = self.lines.take().expect("line splitter");
                lines.feed(data, &mut |l: &[u8]| self.on_ollama_line(l, now_us, true));
                let pending = lines.pending();
                self.lines = Some(lines);
                self.check_pending(pending);
            }
            BodyKind::OpenAiJson | BodyKind::OllamaJson => {
                if self.buffered.len() + data.len() > MAX_BUFFERED_BODY {
                    self.fail(
                        ErrorClass::TooLarge,
                        format!(
                            "a response body of more than {} MiB",
                            MAX_BUFFERED_BODY >> 20
                        ),
                    );
                } else {
                    self.buffered.extend_from_slice(data);
                }
            }
            BodyKind::Raw => {}
        }
    }

    /// The body ended cleanly at `now_us`.
    pub fn on_end(&mut self, now_us: u64) {
        if self.failed() {
            return;
        }
        match self.kind.expect("constructed with a kind") {
            BodyKind::OpenAiSse => {
                let mut sse = self.sse.take().expect("SSE parser");
                sse.finish(&mut |e: SseEvent<'_>| self.on_openai_event(e.data, now_us));
                if !self.failed() && !self.done {
                    if self.events == 0 && !self.head.is_empty() {
                        let head = String::from_utf8_lossy(&self.head).into_owned();
                        self.fail(
                            ErrorClass::NotAStream,
                            format!("a stream was asked for; the body is not one: {head:?}"),
                        );
                    } else {
                        self.fail(
                            ErrorClass::ClosedMidStream,
                            "stream ended before [DONE]".into(),
                        );
                    }
                }
            }
            BodyKind::OllamaNdjson => {
                let mut lines = self.lines.take().expect("line splitter");
                lines.finish(&mut |l: &[u8]| self.on_ollama_line(l, now_us, true));
                if !self.failed() && !self.done {
                    self.fail(
                        ErrorClass::ClosedMidStream,
                        "stream ended before \"done\": true".into(),
                    );
                }
            }
            BodyKind::OpenAiJson => {
                let body = std::mem::take(&mut self.buffered);
                match serde_json::from_slice::<OaChunk<'_>>(&body) {
                    Ok(chunk) => {
                        self.on_openai_chunk(chunk, now_us);
                        self.done = true;
                        // Without streaming, the first token reaches the client with the rest.
                        self.first_token_us = None;
                    }
                    Err(e) => self.fail(
                        ErrorClass::MalformedStream,
                        format!("invalid JSON body: {e}"),
                    ),
                }
            }
            BodyKind::OllamaJson => {
                let body = std::mem::take(&mut self.buffered);
                self.on_ollama_line(&body, now_us, false);
                if !self.failed() && !self.done {
                    self.fail(
                        ErrorClass::ClosedMidStream,
                        "response without \"done\": true".into(),
                    );
                }
                self.first_token_us = None;
            }
            BodyKind::Raw => self.done = true,
        }
        let llm = !matches!(self.kind, Some(BodyKind::Raw));
        if llm && !self.failed() && self.chunks == 0 && self.usage_output.unwrap_or(0) == 0 {
            self.fail(
                ErrorClass::EmptyResponse,
                "the response ended as it should but held no output".into(),
            );
        }
    }

    /// The output token count and where it came from.
    pub fn output_tokens(&self) -> Option<(u32, aibench_results::TokenSource)> {
        use aibench_results::TokenSource;
        if let Some(n) = self.usage_output {
            return Some((n, TokenSource::Usage));
        }
        if self.text_chars > 0 {
            let n = self.text_chars.div_ceil(CHARS_PER_TOKEN);
            return Some((u32::try_from(n).unwrap_or(u32::MAX), TokenSource::Estimate));
        }
        None
    }

    fn fail(&mut self, class: ErrorClass, msg: String) {
        if self.failure.is_none() {
            self.failure = Some((class, msg));
        }
    }

    fn content(&mut self, chars: u64, now_us: u64) {
        if chars == 0 {
            return;
        }
        self.text_chars += chars;
        match self.last_token_us {
            None => self.first_token_us = Some(now_us),
            Some(last) => self
                .itl_us
                .push(u32::try_from(now_us.saturating_sub(last)).unwrap_or(u32::MAX)),
        }
        self.last_token_us = Some(now_us);
        self.chunks += 1;
    }

    fn on_openai_event(&mut self, data: &[u8], now_us: u64) {
        self.events += 1;
        if self.failed() {
            return;
        }
        if self.done {
            // Anything after [DONE] is ignored.
            return;
        }
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return;
        }
        if trimmed.is_empty() {
            return;
        }
        if let Some(q) = quick::scan(trimmed) {
            self.content(q.chars, now_us);
            self.usage_input = q.prompt_tokens.or(self.usage_input);
            self.usage_output = q.completion_tokens.or(self.usage_output);
            return;
        }
        match serde_json::from_slice::<OaChunk<'_>>(trimmed) {
            Ok(chunk) => self.on_openai_chunk(chunk, now_us),
            Err(e) => self.fail(
                ErrorClass::MalformedStream,
                format!("invalid JSON in stream: {e}"),
            ),
        }
    }

    fn on_openai_chunk(&mut self, chunk: OaChunk<'_>, now_us: u64) {
        if let Some(err) = chunk.error {
            self.fail(
                ErrorClass::Other,
                format!("server error in response: {}", error_text(&err)),
            );
            return;
        }
        if chunk.object.as_deref() == Some("error") {
            let msg = chunk
                .message
                .as_deref()
                .unwrap_or("(no message)")
                .to_string();
            self.fail(
                ErrorClass::Other,
                format!("server error in response: {msg}"),
            );
            return;
        }
        self.content(chunk.content_chars(), now_us);
        if let Some(u) = chunk.usage {
            self.usage_input = u.prompt_tokens.or(self.usage_input);
            self.usage_output = u.completion_tokens.or(self.usage_output);
        }
    }

    fn on_ollama_line(&mut self, line: &[u8], now_us: u64, streaming: bool) {
        if self.failed() || (streaming && self.done) {
            return;
        }
        let chunk = match serde_json::from_slice::<OlChunk<'_>>(line) {
            Ok(c) => c,
            Err(e) => {
                let what = if streaming { "in stream" } else { "body" };
                self.fail(
                    ErrorClass::MalformedStream,
                    format!("invalid JSON {what}: {e}"),
                );
                return;
            }
        };
        if let Some(err) = chunk.error {
            self.fail(
                ErrorClass::Other,
                format!("server error in response: {}", error_text(&err)),
            );
            return;
        }
        let mut chars = text_len(&chunk.response) + text_len(&chunk.thinking);
        if let Some(m) = &chunk.message {
            chars += text_len(&m.content) + text_len(&m.thinking);
        }
        self.content(chars, now_us);
        if chunk.done == Some(true) {
            self.done = true;
            self.usage_input = chunk.prompt_eval_count.or(self.usage_input);
            self.usage_output = chunk.eval_count.or(self.usage_output);
        }
    }
}

fn text_len(s: &Option<Cow<'_, str>>) -> u64 {
    s.as_deref().map_or(0, |s| s.chars().count() as u64)
}

fn error_text(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => match o.get("message") {
            Some(serde_json::Value::String(m)) => m.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    };
    truncate(s, 200)
}

/// Cut a message to at most `max` characters.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// An OpenAI stream chunk as serde reads it (the `quick` reader's tests check against this).
#[derive(Deserialize)]
pub(super) struct OaChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<OaChoice<'a>>,
    #[serde(default)]
    pub usage: Option<OaUsage>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default, borrow)]
    pub object: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

impl OaChunk<'_> {
    /// Characters of content (text, content, reasoning) over all choices.
    pub fn content_chars(&self) -> u64 {
        let mut chars = 0u64;
        for c in &self.choices {
            chars += text_len(&c.text);
            for d in [&c.delta, &c.message].into_iter().flatten() {
                chars +=
                    text_len(&d.content) + text_len(&d.reasoning_content) + text_len(&d.reasoning);
            }
        }
        chars
    }
}

#[derive(Deserialize)]
struct OaChoice<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<OaDelta<'a>>,
    #[serde(default, borrow)]
    message: Option<OaDelta<'a>>,
}

#[derive(Deserialize)]
struct OaDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct OaUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct OlChunk<'a> {
    #[serde(default, borrow)]
    response: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<OlMessage<'a>>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    eval_count: Option<u32>,
    #[serde(default)]
    prompt_eval_count: Option<u32>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OlMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aibench_results::TokenSource;

    fn feed(kind: BodyKind, frames: &[(&str, u64)], end: u64) -> ResponseState {
        let mut s = ResponseState::new(kind);
        for (f, t) in frames {
            s.on_frame(f.as_bytes(), *t);
        }
        s.on_end(end);
        s
    }

    #[test]
    fn openai_completion_stream_timings_and_usage() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[
                ("data: {\"choices\":[{\"text\":\"\"}]}\n\n", 10),
                ("data: {\"choices\":[{\"text\":\"Hello\"}]}\n\ndata: {\"choices\":[{\"te", 50),
                ("xt\":\" world\"}]}\n\n", 60),
                ("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n", 61),
                ("data: [DONE]\n\n", 62),
            ],
            63,
        );
        assert!(s.failure.is_none(), "{:?}", s.failure);
        assert_eq!(s.first_token_us, Some(50));
        assert_eq!(s.last_token_us, Some(60));
        assert_eq!(s.itl_us, vec![10]);
        assert_eq!(s.chunks, 2);
        assert_eq!(s.output_tokens(), Some((2, TokenSource::Usage)));
        assert_eq!(s.usage_input, Some(3));
    }

    #[test]
    fn chat_role_only_chunk_is_not_a_token() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[
                ("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n", 5),
                ("data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\n\n", 9),
                ("data: [DONE]\n\n", 12),
            ],
            12,
        );
        assert_eq!(s.first_token_us, Some(9));
        assert_eq!(s.output_tokens(), Some((2, TokenSource::Estimate)));
    }

    #[test]
    fn missing_done_is_closed_mid_stream() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[("data: {\"choices\":[{\"text\":\"a\"}]}\n\n", 1)],
            2,
        );
        assert_eq!(s.failure.unwrap().0, ErrorClass::ClosedMidStream);
    }

    /// A stream of only its end marker is no answer (vLLM's client counts it failed too).
    #[test]
    fn a_stream_without_output_is_an_empty_response() {
        let s = feed(BodyKind::OpenAiSse, &[("data: [DONE]\n\n", 1)], 2);
        assert_eq!(s.failure.unwrap().0, ErrorClass::EmptyResponse);
        let s = feed(
            BodyKind::OllamaNdjson,
            &[("{\"response\":\"\",\"done\":true}\n", 1)],
            2,
        );
        assert_eq!(s.failure.unwrap().0, ErrorClass::EmptyResponse);
        // The server's own count of tokens makes it an answer even without text.
        let s = feed(
            BodyKind::OpenAiSse,
            &[
                (
                    "data: {\"choices\":[],\"usage\":{\"completion_tokens\":3}}\n\n",
                    1,
                ),
                ("data: [DONE]\n\n", 2),
            ],
            3,
        );
        assert!(s.failure.is_none(), "{:?}", s.failure);
    }

    /// A 200 whose body is a JSON document when a stream was asked for.
    #[test]
    fn a_body_that_is_not_a_stream_says_so() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[("{\"choices\":[{\"text\":\"hello\"}]}", 1)],
            2,
        );
        let (class, msg) = s.failure.unwrap();
        assert_eq!(class, ErrorClass::NotAStream);
        assert!(msg.contains("choices"), "{msg}");
        // A stream cut short after its first event is still closed mid-stream.
        let s = feed(
            BodyKind::OpenAiSse,
            &[("data: {\"choices\":[{\"text\":\"a\"}]}\n\n", 1)],
            2,
        );
        assert_eq!(s.failure.unwrap().0, ErrorClass::ClosedMidStream);
    }

    #[test]
    fn a_line_that_never_ends_is_too_large_not_a_leak() {
        for kind in [BodyKind::OpenAiSse, BodyKind::OllamaNdjson] {
            let mut s = ResponseState::new(kind);
            let piece = vec![b'x'; 1 << 20];
            s.on_frame(b"data: ", 1);
            for t in 0..20 {
                s.on_frame(&piece, t);
            }
            assert_eq!(
                s.failure.as_ref().map(|f| f.0),
                Some(ErrorClass::TooLarge),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn invalid_json_is_malformed() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[("data: {\"choices\":[{\"text\":\"a\"}\n\n", 1)],
            2,
        );
        assert_eq!(s.failure.unwrap().0, ErrorClass::MalformedStream);
    }

    #[test]
    fn error_object_in_stream_is_other() {
        let s = feed(
            BodyKind::OpenAiSse,
            &[("data: {\"error\":{\"message\":\"boom\"}}\n\n", 1)],
            2,
        );
        let (class, msg) = s.failure.unwrap();
        assert_eq!(class, ErrorClass::Other);
        assert!(msg.contains("boom"));
    }

    #[test]
    fn ollama_ndjson_stream() {
        let s = feed(
            BodyKind::OllamaNdjson,
            &[
                ("{\"response\":\"Hi\",\"done\":false}\n{\"resp", 100),
                ("onse\":\" there\",\"done\":false}\n", 130),
                (
                    "{\"response\":\"\",\"done\":true,\"eval_count\":2,\"prompt_eval_count\":7}\n",
                    131,
                ),
            ],
            132,
        );
        assert!(s.failure.is_none());
        assert_eq!(s.first_token_us, Some(100));
        assert_eq!(s.itl_us, vec![30]);
        assert_eq!(s.output_tokens(), Some((2, TokenSource::Usage)));
        assert_eq!(s.usage_input, Some(7));
        let s = feed(
            BodyKind::OllamaNdjson,
            &[("{\"message\":{\"content\":\"x\"},\"done\":false}\n", 1)],
            2,
        );
        assert_eq!(s.failure.unwrap().0, ErrorClass::ClosedMidStream);
    }

    #[test]
    fn non_streaming_bodies() {
        let s = feed(
            BodyKind::OpenAiJson,
            &[
                ("{\"choices\":[{\"message\":{\"content\":\"hey\"}}],", 1),
                ("\"usage\":{\"completion_tokens\":1}}", 2),
            ],
            3,
        );
        assert!(s.failure.is_none());
        assert_eq!(s.first_token_us, None);
        assert_eq!(s.output_tokens(), Some((1, TokenSource::Usage)));
        let s = feed(BodyKind::OpenAiJson, &[("{\"choices\":", 1)], 3);
        assert_eq!(s.failure.unwrap().0, ErrorClass::MalformedStream);
        let s = feed(
            BodyKind::OllamaJson,
            &[("{\"response\":\"abc\",\"done\":true,\"eval_count\":9}", 1)],
            3,
        );
        assert_eq!(s.output_tokens(), Some((9, TokenSource::Usage)));
    }
}
