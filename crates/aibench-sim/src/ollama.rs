//! The Ollama-compatible API: /api/generate, /api/chat (NDJSON streams), /api/tags, /api/pull,
//! /api/version.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::http::{self, ApiError, Dialect, SimBody};
use crate::openai::{count_words, gen_request};
use crate::stream::{write_token_text, Format, Summary, Token, TokenBody};

const NDJSON: &str = "application/x-ndjson";

#[derive(Debug, Deserialize)]
struct GenerateRequest {
    model: Option<String>,
    prompt: Option<String>,
    system: Option<String>,
    stream: Option<bool>,
    options: Option<Options>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    stream: Option<bool>,
    options: Option<Options>,
}

#[derive(Debug, Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Options {
    num_predict: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    model: Option<String>,
    name: Option<String>,
    stream: Option<bool>,
}

impl Options {
    /// `num_predict`; zero or negative (Ollama's "until end of sequence") means the default.
    fn max_tokens(options: Option<&Options>) -> Option<u32> {
        let n = options?.num_predict?;
        if n <= 0 {
            None
        } else {
            Some(u32::try_from(n).unwrap_or(u32::MAX))
        }
    }
}

fn check_model(app: &App, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        None | Some("") => Err(ApiError::bad_request("model is required")),
        Some(m) if !app.serves_ollama(m) => Err(ApiError::model_not_found(m, Dialect::Ollama)),
        Some(_) => Ok(()),
    }
}

/// `POST /api/generate`.
pub(crate) async fn generate<B>(app: &App, req: Request<B>, arrival: Instant) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let result = async {
        let body: GenerateRequest = http::read_json(req).await?;
        check_model(app, body.model.as_deref())?;
        let prompt = body.prompt.as_deref().unwrap_or("");
        if prompt.is_empty() {
            return Ok(loaded(app, false));
        }
        let words = count_words(prompt) + body.system.as_deref().map_or(0, count_words);
        let max_tokens = Options::max_tokens(body.options.as_ref());
        let request = gen_request(app, arrival, vec![words], max_tokens, None, false)?;
        let generation = app.generate(&request).map_err(|_| ApiError::injected())?;
        Ok(respond(app, false, generation, body.stream.unwrap_or(true)).await)
    };
    let result: Result<Response<SimBody>, ApiError> = result.await;
    result.unwrap_or_else(|e| e.into_response(Dialect::Ollama))
}

/// `POST /api/chat`.
pub(crate) async fn chat<B>(app: &App, req: Request<B>, arrival: Instant) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let result = async {
        let body: ChatRequest = http::read_json(req).await?;
        check_model(app, body.model.as_deref())?;
        let messages = body.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(loaded(app, true));
        }
        let words = messages
            .iter()
            .filter_map(|m| m.content.as_deref())
            .map(count_words)
            .sum();
        let max_tokens = Options::max_tokens(body.options.as_ref());
        let request = gen_request(app, arrival, vec![words], max_tokens, None, false)?;
        let generation = app.generate(&request).map_err(|_| ApiError::injected())?;
        Ok(respond(app, true, generation, body.stream.unwrap_or(true)).await)
    };
    let result: Result<Response<SimBody>, ApiError> = result.await;
    result.unwrap_or_else(|e| e.into_response(Dialect::Ollama))
}

/// An empty prompt only loads the model, as in Ollama.
fn loaded(app: &App, chat: bool) -> Response<SimBody> {
    let mut value = json!({"model": app.config.model, "created_at": rfc3339_now()});
    if chat {
        value["message"] = json!({"role": "assistant", "content": ""});
    } else {
        value["response"] = json!("");
    }
    value["done_reason"] = json!("load");
    value["done"] = json!(true);
    http::json_response(StatusCode::OK, &value)
}

async fn respond(
    app: &App,
    chat: bool,
    mut generation: crate::stream::Generation,
    stream: bool,
) -> Response<SimBody> {
    let format = ChunkFormat {
        chat,
        model_json: app.model_json.clone(),
    };
    if stream {
        let body = TokenBody::new(generation, Format::Ollama(format));
        return http::stream_response(NDJSON, SimBody::Tokens(Box::new(body)));
    }
    let mut text = Vec::new();
    while let Some(token) = generation.next_token().await {
        write_token_text(&mut text, token.index);
    }
    if !generation.is_complete() {
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is shutting down".into(),
            param: None,
        }
        .into_response(Dialect::Ollama);
    }
    let text = String::from_utf8(text).unwrap_or_default();
    let value = format.final_object(&generation.summary(), &text);
    http::json_response(StatusCode::OK, &value)
}

/// NDJSON lines with one token each and a final summary object, as Ollama streams them.
pub(crate) struct ChunkFormat {
    chat: bool,
    model_json: String,
}

impl ChunkFormat {
    pub(crate) fn token(&mut self, buf: &mut Vec<u8>, token: &Token) {
        buf.reserve(self.model_json.len() + 128);
        buf.extend_from_slice(b"{\"model\":");
        buf.extend_from_slice(self.model_json.as_bytes());
        buf.extend_from_slice(b",\"created_at\":\"");
        write_rfc3339(buf, SystemTime::now());
        if self.chat {
            buf.extend_from_slice(b"\",\"message\":{\"role\":\"assistant\",\"content\":\"");
            write_token_text(buf, token.index);
            buf.extend_from_slice(b"\"},\"done\":false}\n");
        } else {
            buf.extend_from_slice(b"\",\"response\":\"");
            write_token_text(buf, token.index);
            buf.extend_from_slice(b"\",\"done\":false}\n");
        }
    }

    pub(crate) fn end(&mut self, buf: &mut Vec<u8>, summary: &Summary) {
        let value = self.final_object(summary, "");
        let _ = serde_json::to_writer(&mut *buf, &value);
        buf.push(b'\n');
    }

    /// The last object: `done: true` with counts and durations in nanoseconds. The durations
    /// add up: load (queueing) + prompt eval (prefill) + eval (decode) = total.
    fn final_object(&self, s: &Summary, text: &str) -> serde_json::Value {
        let ns = |from: Instant, to: Instant| to.saturating_duration_since(from).as_nanos() as u64;
        let model: serde_json::Value =
            serde_json::from_str(&self.model_json).unwrap_or(serde_json::Value::Null);
        let mut value = json!({"model": model, "created_at": rfc3339_now()});
        if self.chat {
            value["message"] = json!({"role": "assistant", "content": text});
        } else {
            value["response"] = json!(text);
        }
        value["done"] = json!(true);
        value["done_reason"] = json!(s.finish.as_str());
        value["total_duration"] = json!(ns(s.arrival, s.last_token));
        value["load_duration"] = json!(ns(s.arrival, s.scheduled));
        value["prompt_eval_count"] = json!(s.prompt_tokens);
        value["prompt_eval_duration"] = json!(ns(s.scheduled, s.first_token));
        value["eval_count"] = json!(s.completion_tokens);
        value["eval_duration"] = json!(ns(s.first_token, s.last_token));
        value
    }
}

/// `GET /api/tags`.
pub(crate) fn tags(app: &App) -> Response<SimBody> {
    let model = &app.config.model;
    let name = if model.contains(':') {
        model.clone()
    } else {
        format!("{model}:latest")
    };
    http::json_response(
        StatusCode::OK,
        &json!({"models": [{
            "name": name, "model": name, "modified_at": rfc3339_now(), "size": 0,
            "digest": digest(model),
            "details": {
                "parent_model": "", "format": "gguf", "family": "sim", "families": ["sim"],
                "parameter_size": "0B", "quantization_level": "none",
            },
        }]}),
    )
}

/// `GET /api/version`.
pub(crate) fn version() -> Response<SimBody> {
    http::json_response(
        StatusCode::OK,
        &json!({"version": env!("CARGO_PKG_VERSION")}),
    )
}

/// `POST /api/pull`: progress lines spread over `--pull-time`, then `{"status":"success"}`.
pub(crate) async fn pull<B>(app: &App, req: Request<B>) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let result = async {
        let body: PullRequest = http::read_json(req).await?;
        let model = body.model.or(body.name);
        let model = model.as_deref().unwrap_or("");
        if model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        if !app.serves_ollama(model) {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: "pull model manifest: file does not exist".into(),
                param: None,
            });
        }
        let duration = app.config.pull_time.0;
        if !body.stream.unwrap_or(true) {
            tokio::time::sleep(duration).await;
            return Ok(http::json_response(
                StatusCode::OK,
                &json!({"status": "success"}),
            ));
        }
        let digest = digest(model);
        let total: u64 = 1 << 30;
        let mut lines = vec![json!({"status": "pulling manifest"})];
        for part in 0..=4u64 {
            lines.push(json!({
                "status": format!("pulling {}", &digest[7..19]), "digest": digest,
                "total": total, "completed": total * part / 4,
            }));
        }
        lines.push(json!({"status": "verifying sha256 digest"}));
        lines.push(json!({"status": "writing manifest"}));
        lines.push(json!({"status": "success"}));
        let start = Instant::now();
        let last = (lines.len() - 1) as u32;
        let timed = lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                (
                    start + duration * i as u32 / last.max(1),
                    Bytes::from(bytes),
                )
            })
            .collect();
        Ok(http::stream_response(
            NDJSON,
            SimBody::Script(Box::new(PullBody::new(timed))),
        ))
    };
    let result: Result<Response<SimBody>, ApiError> = result.await;
    result.unwrap_or_else(|e| e.into_response(Dialect::Ollama))
}

/// A body of lines each sent at its own time.
pub(crate) struct PullBody {
    lines: VecDeque<(Instant, Bytes)>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl PullBody {
    fn new(lines: VecDeque<(Instant, Bytes)>) -> PullBody {
        let first = lines.front().map_or_else(Instant::now, |l| l.0);
        PullBody {
            lines,
            sleep: Box::pin(tokio::time::sleep_until(first.into())),
        }
    }

    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(&(at, _)) = self.lines.front() else {
            return Poll::Ready(None);
        };
        if at > Instant::now() {
            if self.sleep.deadline() != at.into() {
                self.sleep.as_mut().reset(at.into());
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.lines.pop_front().map(|l| l.1))
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lines.is_empty()
    }
}

/// A stable fake `sha256:` digest for a model name.
fn digest(model: &str) -> String {
    let mut state = 0xcbf2_9ce4_8422_2325u64;
    for byte in model.bytes() {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = String::from("sha256:");
    for i in 0..4u64 {
        let mut x = state.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        out.push_str(&format!("{x:016x}"));
    }
    out
}

fn rfc3339_now() -> String {
    let mut buf = Vec::with_capacity(32);
    write_rfc3339(&mut buf, SystemTime::now());
    String::from_utf8(buf).unwrap_or_default()
}

/// `2024-05-01T12:34:56.123456789Z`, written without allocating.
fn write_rfc3339(buf: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = aibench_results::time::civil_from_days(days as i64);
    let _ = write!(
        buf,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_nanos()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        let mut buf = Vec::new();
        write_rfc3339(&mut buf, UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 5));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2000-02-29T01:02:03.000000005Z"
        );
    }

    #[test]
    fn digests_are_stable_and_well_formed() {
        let d = digest("sim");
        assert_eq!(d, digest("sim"));
        assert_eq!(d.len(), 7 + 64);
        assert_ne!(d, digest("other"));
    }
}
