//! Protocol drivers: how a prompt becomes a request body, and how a response body becomes
//! token timings.
//!
//! Bodies are serialized before the clock starts ([`prepare`]); while the run is timed the
//! drivers only parse what arrives ([`response::ResponseState`]).

pub mod lines;
mod quick;
pub(crate) mod response;
pub mod sse;

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use serde_json::{json, Map, Value};

use crate::dataset::Dataset;
use crate::error::LoadError;

/// The request/response protocol to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI `/v1/completions` (vLLM, SGLang, TGI, llama.cpp, ...).
    OpenAiCompletions,
    /// OpenAI `/v1/chat/completions`.
    OpenAiChat,
    /// Ollama `/api/generate` (NDJSON stream).
    OllamaGenerate,
    /// Ollama `/api/chat` (NDJSON stream).
    OllamaChat,
    /// Any HTTP endpoint: success is a 2xx status, latency is to the end of the body.
    Http {
        method: Method,
        /// Request body; `{{prompt}}` (JSON-escaped, without quotes), `{{max_tokens}}` and
        /// `{{model}}` are replaced per request. None: no body.
        body_template: Option<String>,
    },
}

impl Protocol {
    /// Speaks to an LLM server (has a model, streams tokens).
    pub fn is_llm(&self) -> bool {
        !matches!(self, Protocol::Http { .. })
    }

    /// The path used when the URL gives none.
    pub fn default_path(&self) -> &'static str {
        match self {
            Protocol::OpenAiCompletions => "/v1/completions",
            Protocol::OpenAiChat => "/v1/chat/completions",
            Protocol::OllamaGenerate => "/api/generate",
            Protocol::OllamaChat => "/api/chat",
            Protocol::Http { .. } => "/",
        }
    }

    fn is_chat(&self) -> bool {
        matches!(self, Protocol::OpenAiChat | Protocol::OllamaChat)
    }
}

/// Where the load goes and how to talk to it.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port` (the protocol's default path is used) or a full URL with its path.
    pub url: String,
    pub protocol: Protocol,
    /// Model name sent in every request (OpenAI and Ollama protocols).
    pub model: Option<String>,
    /// Ask for a streamed response (needed for TTFT and ITL).
    pub stream: bool,
    /// Sent as `Authorization: Bearer <key>`; never recorded, logged or printed.
    pub api_key: Option<String>,
    /// Extra request headers; their values are never recorded, logged or printed.
    pub headers: Vec<(String, String)>,
    /// Ask the server to ignore end-of-sequence so every request produces exactly its
    /// `max_tokens` (a vLLM extension; other servers may reject it).
    pub ignore_eos: bool,
    /// Extra fields merged into every OpenAI/Ollama request body (e.g. `temperature`).
    pub extra_body: Map<String, Value>,
}

impl Target {
    /// A streaming target with no key, headers or extras.
    pub fn new(url: impl Into<String>, protocol: Protocol) -> Target {
        Target {
            url: url.into(),
            protocol,
            model: None,
            stream: true,
            api_key: None,
            headers: Vec::new(),
            ignore_eos: false,
            extra_body: Map::new(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| (k.as_str(), "<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("ignore_eos", &self.ignore_eos)
            .field("extra_body", &self.extra_body)
            .finish()
    }
}

/// How a response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    OpenAiSse,
    OpenAiJson,
    OllamaNdjson,
    OllamaJson,
    Raw,
}

impl BodyKind {
    /// Streamed a piece at a time (each piece timed).
    pub fn is_streamed(self) -> bool {
        matches!(self, BodyKind::OpenAiSse | BodyKind::OllamaNdjson)
    }
}

/// A target resolved for sending: socket address, request line and headers, ready to clone.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: Uri,
    pub headers: HeaderMap,
    pub body_kind: BodyKind,
    /// Kept only to scrub it from error messages.
    pub secret: Option<String>,
}

impl Endpoint {
    /// Parse the URL and resolve the host (once, before the clock starts).
    pub async fn resolve(target: &Target) -> Result<Endpoint, LoadError> {
        let bad = |m: String| LoadError::InvalidTarget(m);
        let uri: Uri = target
            .url
            .parse()
            .map_err(|e| bad(format!("{:?} is not a URL: {e}", target.url)))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(format!(
                    "{}: https is not supported; point at the plain-HTTP port or a local TLS-terminating proxy",
                    target.url
                )))
            }
            _ => return Err(bad(format!("{:?} needs to start with http://", target.url))),
        }
        let host = uri
            .host()
            .ok_or_else(|| bad(format!("{:?} has no host", target.url)))?;
        let port = uri.port_u16().unwrap_or(80);
        let host_trimmed = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host_trimmed, port))
            .await
            .map_err(|source| LoadError::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        let addr = pick_address(&addrs)
            .await
            .ok_or_else(|| LoadError::Resolve {
                host: host.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            })?;
        let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => target.protocol.default_path().to_string(),
            Some(p) => p.to_string(),
        };
        let path: Uri = path_and_query
            .parse()
            .map_err(|e| bad(format!("bad path {path_and_query:?}: {e}")))?;

        let mut headers = HeaderMap::new();
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        headers.insert(
            hyper::header::HOST,
            HeaderValue::from_str(authority).map_err(|_| bad(format!("bad host {authority:?}")))?,
        );
        let (method, body_kind) = match &target.protocol {
            Protocol::OpenAiCompletions | Protocol::OpenAiChat => (
                Method::POST,
                if target.stream {
                    BodyKind::OpenAiSse
                } else {
                    BodyKind::OpenAiJson
                },
            ),
            Protocol::OllamaGenerate | Protocol::OllamaChat => (
                Method::POST,
                if target.stream {
                    BodyKind::OllamaNdjson
                } else {
                    BodyKind::OllamaJson
                },
            ),
            Protocol::Http { method, .. } => (method.clone(), BodyKind::Raw),
        };
        if method != Method::GET
            || !matches!(
                target.protocol,
                Protocol::Http {
                    body_template: None,
                    ..
                }
            )
        {
            headers.insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if body_kind == BodyKind::OpenAiSse {
            headers.insert(
                hyper::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        headers.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static(concat!("aibench/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(key) = &target.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                bad("the API key holds characters not allowed in a header".to_string())
            })?;
            v.set_sensitive(true);
            headers.insert(hyper::header::AUTHORIZATION, v);
        }
        for (k, v) in &target.headers {
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| bad(format!("bad header name {k:?}")))?;
            let mut value = HeaderValue::from_str(v.trim())
                .map_err(|_| bad(format!("header {k:?} has a value not allowed in a header")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Endpoint {
            addr,
            method,
            path,
            headers,
            body_kind,
            secret: target.api_key.clone(),
        })
    }

    /// Remove the API key from a message that might quote it.
    pub fn scrub(&self, msg: String) -> String {
        match &self.secret {
            Some(s) if !s.is_empty() && msg.contains(s.as_str()) => {
                msg.replace(s.as_str(), "<redacted>")
            }
            _ => msg,
        }
    }
}

/// The first of a host's addresses that accepts a connection (`localhost` may resolve to `::1`
/// while the server listens on 127.0.0.1 only); the first one if none does.
async fn pick_address(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    if addrs.len() > 1 {
        for a in addrs {
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                tokio::net::TcpStream::connect(a),
            );
            if let Ok(Ok(_)) = probe.await {
                return Some(*a);
            }
        }
    }
    addrs.first().copied()
}

/// One request body, serialized before the clock starts.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    /// Input tokens as the dataset knows them (exact for synthetic prompts under a whitespace
    /// tokenizer, otherwise an estimate); the server's `usage` wins when present.
    pub input_tokens: Option<u32>,
    pub max_tokens: u32,
}

/// Serialize a request body for every prompt of the dataset.
pub fn prepare(target: &Target, dataset: &Dataset) -> Result<Vec<Prepared>, LoadError> {
    let model = target.model.clone().unwrap_or_default();
    let needs_model = !matches!(target.protocol, Protocol::Http { .. });
    if needs_model
        && model.is_empty()
        && matches!(
            target.protocol,
            Protocol::OllamaGenerate | Protocol::OllamaChat
        )
    {
        return Err(LoadError::InvalidTarget(
            "Ollama needs a model name".to_string(),
        ));
    }
    dataset
        .prompts()
        .iter()
        .map(|p| {
            let body = match &target.protocol {
                Protocol::Http { body_template, .. } => match body_template {
                    None => Bytes::new(),
                    Some(t) => {
                        let prompt_json =
                            serde_json::to_string(&p.text).expect("strings serialize");
                        Bytes::from(
                            t.replace("{{prompt}}", &prompt_json[1..prompt_json.len() - 1])
                                .replace("{{max_tokens}}", &p.output_tokens.to_string())
                                .replace("{{model}}", &model),
                        )
                    }
                },
                proto => {
                    let mut body = Map::new();
                    if !model.is_empty() {
                        body.insert("model".into(), json!(model));
                    }
                    let messages = json!([{ "role": "user", "content": p.text }]);
                    match proto {
                        Protocol::OpenAiCompletions | Protocol::OpenAiChat => {
                            if proto.is_chat() {
                                body.insert("messages".into(), messages);
                            } else {
                                body.insert("prompt".into(), json!(p.text));
                            }
                            body.insert("max_tokens".into(), json!(p.output_tokens));
                            body.insert("stream".into(), json!(target.stream));
                            if target.stream {
                                body.insert(
                                    "stream_options".into(),
                                    json!({ "include_usage": true }),
                                );
                            }
                            if target.ignore_eos {
                                body.insert("ignore_eos".into(), json!(true));
                            }
                        }
                        _ => {
                            if proto.is_chat() {
                                body.insert("messages".into(), messages);
                            } else {
                                body.insert("prompt".into(), json!(p.text));
                            }
                            body.insert("stream".into(), json!(target.stream));
                            body.insert(
                                "options".into(),
                                json!({ "num_predict": p.output_tokens }),
                            );
                        }
                    }
                    for (k, v) in &target.extra_body {
                        body.insert(k.clone(), v.clone());
                    }
                    Bytes::from(
                        serde_json::to_vec(&Value::Object(body)).expect("JSON values serialize"),
                    )
                }
            };
            // A generic HTTP request carries the prompt only if its body template places it; a
            // plain GET has no input tokens to count.
            let input_tokens = match &target.protocol {
                Protocol::Http { body_template, .. } => body_template
                    .as_deref()
                    .filter(|t| t.contains("{{prompt}}"))
                    .and(p.input_tokens),
                _ => p.input_tokens,
            };
            Ok(Prepared {
                body,
                input_tokens,
                max_tokens: p.output_tokens,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Prompt;

    fn one_prompt() -> Dataset {
        Dataset::from_prompts(vec![Prompt {
            text: "say \"hi\"".into(),
            input_tokens: Some(2),
            output_tokens: 5,
        }])
    }

    #[test]
    fn openai_completions_body() {
        let mut t = Target::new("http://127.0.0.1:1", Protocol::OpenAiCompletions);
        t.model = Some("m".into());
        let p = prepare(&t, &one_prompt()).unwrap();
        let v: Value = serde_json::from_slice(&p[0].body).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "prompt": "say \"hi\"", "max_tokens": 5, "stream": true,
                   "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn chat_and_ollama_bodies() {
        let mut t = Target::new("http://127.0.0.1:1", Protocol::OllamaChat);
        t.model = Some("llama".into());
        t.stream = false;
        let v: Value =
            serde_json::from_slice(&prepare(&t, &one_prompt()).unwrap()[0].body).unwrap();
        assert_eq!(v["messages"][0]["content"], "say \"hi\"");
        assert_eq!(v["options"]["num_predict"], 5);
        assert_eq!(v["stream"], false);
        t.model = None;
        assert!(prepare(&t, &one_prompt()).is_err());
    }

    #[test]
    fn http_template_escapes_prompt() {
        let t = Target::new(
            "http://127.0.0.1:1/x",
            Protocol::Http {
                method: Method::POST,
                body_template: Some(r#"{"q":"{{prompt}}","n":{{max_tokens}}}"#.into()),
            },
        );
        let v: Value =
            serde_json::from_slice(&prepare(&t, &one_prompt()).unwrap()[0].body).unwrap();
        assert_eq!(v, json!({"q": "say \"hi\"", "n": 5}));
        assert_eq!(prepare(&t, &one_prompt()).unwrap()[0].input_tokens, Some(2));
    }

    #[test]
    fn http_without_the_prompt_counts_no_input_tokens() {
        for template in [None, Some(r#"{"n":{{max_tokens}}}"#.to_string())] {
            let t = Target::new(
                "http://127.0.0.1:1/x",
                Protocol::Http {
                    method: Method::GET,
                    body_template: template,
                },
            );
            let p = prepare(&t, &one_prompt()).unwrap();
            assert_eq!(p[0].input_tokens, None);
        }
    }

    #[tokio::test]
    async fn resolve_uses_default_path_and_hides_secrets() {
        let mut t = Target::new("http://127.0.0.1:8000", Protocol::OpenAiChat);
        t.api_key = Some("sk-secret".into());
        t.headers = vec![("X-Token".into(), "tok-secret".into())];
        let e = Endpoint::resolve(&t).await.unwrap();
        assert_eq!(e.path, "/v1/chat/completions");
        assert_eq!(e.headers["host"], "127.0.0.1:8000");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert_eq!(e.scrub("bad key sk-secret".into()), "bad key <redacted>");
        let t = Target::new("https://example.invalid", Protocol::OpenAiChat);
        assert!(matches!(
            Endpoint::resolve(&t).await,
            Err(LoadError::InvalidTarget(_))
        ));
    }
}
