//! Routing, response bodies and errors shared by the OpenAI and Ollama endpoints.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::stream::TokenBody;
use crate::{ollama, openai};

/// Largest request body accepted.
const MAX_BODY: usize = 64 << 20;

/// Every response body the server sends.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Tokens(Box<TokenBody>),
    Script(Box<ollama::PullBody>),
}

impl SimBody {
    pub(crate) fn empty() -> SimBody {
        SimBody::Full(None)
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take()),
            SimBody::Tokens(body) => body.poll_data(cx),
            SimBody::Script(body) => body.poll_data(cx),
        };
        data.map(|d| d.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(bytes) => bytes.is_none(),
            SimBody::Tokens(body) => body.is_done(),
            SimBody::Script(body) => body.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Which API's error shape to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Ollama,
}

/// A request that cannot be served, answered in the dialect of its endpoint.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: None,
        }
    }

    pub(crate) fn model_not_found(model: &str, dialect: Dialect) -> ApiError {
        let message = match dialect {
            Dialect::OpenAi => format!("The model `{model}` does not exist."),
            Dialect::Ollama => format!("model \"{model}\" not found, try pulling it first"),
        };
        ApiError {
            status: StatusCode::NOT_FOUND,
            message,
            param: Some("model"),
        }
    }

    pub(crate) fn injected() -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "injected failure (--failure-rate)".into(),
            param: None,
        }
    }

    pub(crate) fn into_response(self, dialect: Dialect) -> Response<SimBody> {
        let body = match dialect {
            Dialect::OpenAi => {
                let kind = match self.status {
                    StatusCode::BAD_REQUEST => "BadRequestError",
                    StatusCode::NOT_FOUND => "NotFoundError",
                    StatusCode::PAYLOAD_TOO_LARGE => "BadRequestError",
                    _ => "InternalServerError",
                };
                serde_json::json!({"error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": self.status.as_u16(),
                }})
            }
            Dialect::Ollama => serde_json::json!({"error": self.message}),
        };
        json_response(self.status, &body)
    }
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<SimBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, "application/json", Bytes::from(body))
}

pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<SimBody> {
    let mut response = Response::new(SimBody::Full(Some(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn stream_response(content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// Read and parse a JSON request body; malformed JSON is a 400 that says what is wrong.
pub(crate) async fn read_json<T, B>(req: Request<B>) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let collected = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!("request body is larger than {MAX_BODY} bytes"),
                    param: None,
                }
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
    let bytes = collected.to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON request body: {e}")))
}

/// Answer one request.
pub(crate) async fn handle<B>(app: Arc<App>, req: Request<B>) -> Response<SimBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let arrival = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let dialect = if path.starts_with("/api/") {
        Dialect::Ollama
    } else {
        Dialect::OpenAi
    };
    let protected = path.starts_with("/v1/") || path.starts_with("/api/");
    if protected && !app.authorized(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes())) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "Unauthorized"}),
        );
    }
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/health") => Response::new(SimBody::empty()),
        (&Method::GET, "/metrics") => bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(app.metrics.render()),
        ),
        (&Method::GET, "/version") => json_response(
            StatusCode::OK,
            &serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
        ),
        (&Method::GET, "/v1/models") => openai::models(&app),
        (&Method::POST, "/v1/completions") => openai::completions(&app, req, arrival).await,
        (&Method::POST, "/v1/chat/completions") => openai::chat(&app, req, arrival).await,
        (&Method::GET | &Method::HEAD, "/") => bytes_response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"Ollama is running"),
        ),
        (&Method::POST, "/api/generate") => ollama::generate(&app, req, arrival).await,
        (&Method::POST, "/api/chat") => ollama::chat(&app, req, arrival).await,
        (&Method::GET, "/api/tags") => ollama::tags(&app),
        (&Method::POST, "/api/pull") => ollama::pull(&app, req).await,
        (&Method::GET, "/api/version") => ollama::version(),
        (_, known) if KNOWN_PATHS.contains(&known) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"detail": "Method Not Allowed"}),
        ),
        _ => match dialect {
            Dialect::OpenAi => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"detail": "Not Found"}),
            ),
            Dialect::Ollama => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not found"}),
            ),
        },
    }
}

const KNOWN_PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/version",
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/",
    "/api/generate",
    "/api/chat",
    "/api/tags",
    "/api/pull",
    "/api/version",
];
