//! The OpenAI-compatible API, shaped like vLLM's: /v1/completions, /v1/chat/completions,
//! /v1/models.

use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::app::{unix_now, App, GenRequest};
use crate::http::{self, ApiError, Dialect, SimBody};
use crate::stream::{write_token_text, Format, Generation, Summary, Token, TokenBody};

/// Most completions one request may ask for (`n` times the number of prompts).
const MAX_CHOICES: usize = 1024;

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Prompt,
    max_tokens: Option<u32>,
    n: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    n: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// A completion prompt: text, a batch of texts, token ids, or a batch of token id lists.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u64>),
    IdLists(Vec<Vec<u64>>),
}

impl Prompt {
    /// Prompt length of each prompt: whitespace-separated words, or token ids.
    fn lengths(&self) -> Vec<u32> {
        match self {
            Prompt::Text(text) => vec![count_words(text)],
            Prompt::Texts(texts) => texts.iter().map(|t| count_words(t)).collect(),
            Prompt::Ids(ids) => vec![saturate(ids.len())],
            Prompt::IdLists(lists) => lists.iter().map(|l| saturate(l.len())).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    content: Option<Content>,
}

/// Message content: a string, or a list of parts of which the text parts count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    text: Option<String>,
}

/// The token model: a prompt has one token per whitespace-separated word.
pub(crate) fn count_words(text: &str) -> u32 {
    saturate(text.split_whitespace().count())
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn chat_prompt_tokens(messages: &[ChatMessage]) -> u32 {
    let words: u64 = messages
        .iter()
        .filter_map(|m| m.content.as_ref())
        .map(|content| match content {
            Content::Text(text) => u64::from(count_words(text)),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(|t| u64::from(count_words(t)))
                .sum(),
        })
        .sum();
    u32::try_from(words).unwrap_or(u32::MAX)
}

/// Check lengths against `--max-model-len` the way vLLM does, and fill in defaults.
pub(crate) fn gen_request(
    app: &App,
    arrival: Instant,
    prompts: Vec<u32>,
    max_tokens: Option<u32>,
    n: Option<u32>,
    ignore_eos: bool,
) -> Result<GenRequest, ApiError> {
    let max_len = app.config.max_model_len;
    if prompts.is_empty() {
        return Err(ApiError::bad_request("prompt must not be empty"));
    }
    let n = n.unwrap_or(1);
    if n == 0 || prompts.len() * n as usize > MAX_CHOICES {
        return Err(ApiError::bad_request(format!(
            "n must be between 1 and {MAX_CHOICES} completions per request, got {n}"
        )));
    }
    let longest = prompts.iter().copied().max().unwrap_or(0);
    let max_tokens = match max_tokens {
        Some(0) => {
            return Err(ApiError::bad_request(
                "max_tokens must be at least 1, got 0.",
            ))
        }
        Some(m) => m,
        None => app
            .config
            .default_max_tokens
            .min(max_len.saturating_sub(longest))
            .max(1),
    };
    let requested = u64::from(longest) + u64::from(max_tokens);
    if requested > u64::from(max_len) {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {max_len} tokens. However, you requested \
             {requested} tokens ({longest} in the messages, {max_tokens} in the completion). \
             Please reduce the length of the messages or completion."
        )));
    }
    Ok(GenRequest {
        arrival,
        prompts,
        n,
        max_tokens,
        ignore_eos,
    })
}

/// Generate for a checked request and answer in the endpoint's shape, streamed or whole.
async fn answer(
    app: &App,
    kind: Kind,
    request: &GenRequest,
    stream: Option<bool>,
    options: Option<StreamOptions>,
) -> Result<Response<SimBody>, ApiError> {
    let generation = app.generate(request).map_err(|_| ApiError::injected())?;
    let include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
    Ok(respond(
        app,
        kind,
        generation,
        stream.unwrap_or(false),
        include_usage,
    )
    .await)
}

/// `POST /v1/completions`.
pub(crate) async fn completions<B>(
    app: &App,
    req: Request<B>,
    arrival: Instant,
) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let result = async {
        let body: CompletionRequest = http::read_json(req).await?;
        if !app.serves(body.model.as_deref()) {
            return Err(ApiError::model_not_found(
                body.model.as_deref().unwrap_or(""),
                Dialect::OpenAi,
            ));
        }
        let request = gen_request(
            app,
            arrival,
            body.prompt.lengths(),
            body.max_tokens,
            body.n,
            body.ignore_eos.unwrap_or(false),
        )?;
        answer(
            app,
            Kind::Completion,
            &request,
            body.stream,
            body.stream_options,
        )
        .await
    };
    result
        .await
        .unwrap_or_else(|e| e.into_response(Dialect::OpenAi))
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat<B>(app: &App, req: Request<B>, arrival: Instant) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let result = async {
        let body: ChatRequest = http::read_json(req).await?;
        if !app.serves(body.model.as_deref()) {
            return Err(ApiError::model_not_found(
                body.model.as_deref().unwrap_or(""),
                Dialect::OpenAi,
            ));
        }
        if body.messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty"));
        }
        let request = gen_request(
            app,
            arrival,
            vec![chat_prompt_tokens(&body.messages)],
            body.max_completion_tokens.or(body.max_tokens),
            body.n,
            body.ignore_eos.unwrap_or(false),
        )?;
        answer(app, Kind::Chat, &request, body.stream, body.stream_options).await
    };
    result
        .await
        .unwrap_or_else(|e| e.into_response(Dialect::OpenAi))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Completion,
    Chat,
}

async fn respond(
    app: &App,
    kind: Kind,
    mut generation: Generation,
    stream: bool,
    include_usage: bool,
) -> Response<SimBody> {
    let id = app.request_id(match kind {
        Kind::Completion => "cmpl-",
        Kind::Chat => "chatcmpl-",
    });
    let created = unix_now();
    if stream {
        let format = ChunkFormat::new(kind, &id, created, &app.model_json, include_usage);
        let body = TokenBody::new(generation, Format::OpenAi(format));
        return http::stream_response(
            "text/event-stream; charset=utf-8",
            SimBody::Tokens(Box::new(body)),
        );
    }
    let mut texts = vec![Vec::new(); generation.choice_count()];
    while let Some(token) = generation.next_token().await {
        if let Some(text) = texts.get_mut(token.choice as usize) {
            write_token_text(text, token.index);
        }
    }
    if !generation.is_complete() {
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is shutting down".into(),
            param: None,
        }
        .into_response(Dialect::OpenAi);
    }
    let summary = generation.summary();
    let choices: Vec<_> = texts
        .into_iter()
        .zip(generation.finishes())
        .enumerate()
        .map(|(index, (text, finish))| {
            let text = String::from_utf8(text).unwrap_or_default();
            match kind {
                Kind::Completion => json!({
                    "index": index, "text": text, "logprobs": null,
                    "finish_reason": finish.as_str(), "stop_reason": null,
                }),
                Kind::Chat => json!({
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": null, "finish_reason": finish.as_str(), "stop_reason": null,
                }),
            }
        })
        .collect();
    let object = match kind {
        Kind::Completion => "text_completion",
        Kind::Chat => "chat.completion",
    };
    http::json_response(
        StatusCode::OK,
        &json!({
            "id": id, "object": object, "created": created, "model": app.config.model,
            "choices": choices, "usage": usage(&summary),
        }),
    )
}

fn usage(summary: &Summary) -> serde_json::Value {
    json!({
        "prompt_tokens": summary.prompt_tokens,
        "total_tokens": summary.prompt_tokens + summary.completion_tokens,
        "completion_tokens": summary.completion_tokens,
    })
}

/// Server-sent events with one chunk per token, as vLLM streams them.
pub(crate) struct ChunkFormat {
    kind: Kind,
    /// `data: {"id":…,"object":…,"created":…,"model":…,"choices":[`
    prefix: String,
    include_usage: bool,
}

impl ChunkFormat {
    pub(crate) fn new(
        kind: Kind,
        id: &str,
        created: u64,
        model_json: &str,
        include_usage: bool,
    ) -> ChunkFormat {
        let object = match kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion.chunk",
        };
        let prefix = format!(
            "data: {{\"id\":\"{id}\",\"object\":\"{object}\",\"created\":{created},\"model\":{model_json},\"choices\":["
        );
        ChunkFormat {
            kind,
            prefix,
            include_usage,
        }
    }

    pub(crate) fn token(&mut self, buf: &mut Vec<u8>, token: &Token) {
        buf.reserve(self.prefix.len() + 128);
        buf.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(buf, "{{\"index\":{}", token.choice);
        match self.kind {
            Kind::Completion => buf.extend_from_slice(b",\"text\":\""),
            Kind::Chat if token.index == 0 => {
                buf.extend_from_slice(b",\"delta\":{\"role\":\"assistant\",\"content\":\"")
            }
            Kind::Chat => buf.extend_from_slice(b",\"delta\":{\"content\":\""),
        }
        write_token_text(buf, token.index);
        match self.kind {
            Kind::Completion => buf.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":"),
            Kind::Chat => buf.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":"),
        }
        match token.finish {
            None => buf.extend_from_slice(b"null"),
            Some(reason) => {
                let _ = write!(buf, "\"{}\"", reason.as_str());
            }
        }
        buf.extend_from_slice(b",\"stop_reason\":null}]");
        if self.include_usage {
            buf.extend_from_slice(b",\"usage\":null");
        }
        buf.extend_from_slice(b"}\n\n");
    }

    pub(crate) fn end(&mut self, buf: &mut Vec<u8>, summary: &Summary) {
        if self.include_usage {
            buf.extend_from_slice(self.prefix.as_bytes());
            let _ = write!(buf, "],\"usage\":{}}}\n\n", usage(summary));
        }
        buf.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// `GET /v1/models`.
pub(crate) fn models(app: &App) -> Response<SimBody> {
    let model = &app.config.model;
    http::json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [{
            "id": model, "object": "model", "created": unix_now(), "owned_by": "aibench-sim",
            "root": model, "parent": null, "max_model_len": app.config.max_model_len,
        }]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::FinishReason;

    #[test]
    fn chunks_look_like_vllm() {
        let mut f = ChunkFormat::new(Kind::Chat, "chatcmpl-1", 7, "\"sim\"", true);
        let mut buf = Vec::new();
        f.token(
            &mut buf,
            &Token {
                choice: 0,
                index: 0,
                finish: None,
            },
        );
        f.token(
            &mut buf,
            &Token {
                choice: 0,
                index: 1,
                finish: Some(FinishReason::Length),
            },
        );
        let text = String::from_utf8(buf).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2);
        let first: serde_json::Value =
            serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["delta"]["content"], "t0 ");
        assert!(first["choices"][0]["finish_reason"].is_null());
        assert!(first["usage"].is_null());
        let second: serde_json::Value =
            serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert!(second["choices"][0]["delta"].get("role").is_none());
        assert_eq!(second["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn prompts_count_words() {
        assert_eq!(count_words("  one two\tthree\nfour "), 4);
        assert_eq!(count_words(""), 0);
        let p: Prompt = serde_json::from_str("[[1,2,3],[4]]").unwrap();
        assert_eq!(p.lengths(), vec![3, 1]);
        let p: Prompt = serde_json::from_str("[\"a b\", \"c\"]").unwrap();
        assert_eq!(p.lengths(), vec![2, 1]);
    }
}
