//! A simulated vLLM-like LLM server, so that the whole aibench pipeline runs on a laptop
//! without a GPU (`aibench sim`).
//!
//! # APIs
//!
//! - OpenAI, shaped like vLLM's: `POST /v1/completions` (prompt as a string, a list of strings,
//!   token ids or lists of token ids) and `POST /v1/chat/completions`, streaming
//!   (`"stream": true`: server-sent events, one chunk per token, `data: [DONE]` at the end, a
//!   usage chunk with `stream_options.include_usage`) or not (one JSON body with `usage`);
//!   `max_tokens` (chat: also `max_completion_tokens`), `n`, `ignore_eos`, `model`. Unknown
//!   model: 404; malformed JSON: 400; prompt + `max_tokens` over `--max-model-len`: 400.
//!   `GET /v1/models`.
//! - Ollama: `POST /api/generate` and `POST /api/chat` (NDJSON stream unless
//!   `"stream": false`; `options.num_predict`; a final `done: true` object with counts and
//!   nanosecond durations), `GET /api/tags`, `POST /api/pull`, `GET /api/version`, `GET /`.
//! - `GET /health` (200, empty), `GET /metrics` (Prometheus text with vLLM's metric names and
//!   a `model_name` label, plus `aibench_sim:token_lateness_seconds` and
//!   `aibench_sim:injected_failures_total`).
//! - With `--api-key KEY`, requests to `/v1/*` and `/api/*` without
//!   `Authorization: Bearer KEY` get 401.
//!
//! # Token model
//!
//! A prompt has one token per whitespace-separated word (chat: the words of all message
//! contents; a token-id prompt: one token per id). A sequence generates `max_tokens` tokens
//! (default `--default-max-tokens`, 16 like vLLM's completions), unless `--eos-probability P`
//! ends it earlier: each token is the last with chance P (finish reason `stop`), which
//! `ignore_eos` turns off. Token k of the output is the text `t{k} ` (`t0 `, `t1 `, ...),
//! one token per stream chunk.
//!
//! # Timing models
//!
//! **Batching (default)** — one engine loop, on a thread of its own so that its steps keep
//! sub-millisecond deadlines, steps like vLLM's continuous batching
//! (see the `engine` module): requests wait in a queue; each step admits waiting sequences while
//! fewer than `--max-batch` run, the KV cache (`--kv-cache-tokens`, in `--block-size` blocks) has
//! room for their prompt, and the step's prefill stays within `--max-batched-tokens`; then every
//! running sequence gets one token. A step lasts
//!
//! ```text
//! decode_base + decode_per_seq x running  [+ prefill_base + prefill_per_token x admitted prompt tokens]
//! ```
//!
//! times a uniform jitter factor in `[1 - jitter, 1 + jitter]`, scheduled on absolute deadlines
//! (no drift). When the KV cache cannot hold the next token of every running sequence, the
//! newest one is preempted back to the head of the queue and later recomputes its prompt and
//! output so far (`vllm:num_preemptions_total`).
//!
//! **Capacity.** With `B` sequences running, prompts of `P` tokens and outputs of `O` tokens,
//! each sequence stays `O` steps, so `B/O` sequences finish and are admitted per step:
//!
//! ```text
//! step     = decode_base + decode_per_seq·B + prefill_base·min(1, B/O) + prefill_per_token·P·B/O
//! tokens/s = B / step          requests/s = tokens/s / O
//! B        = min(max_batch, kv_cache_tokens / (P + O rounded up to block_size))
//! ```
//!
//! When prefill is small next to decoding this is `max_batch / (decode_base + decode_per_seq ·
//! max_batch)` tokens/s: with the defaults 256 / (8 ms + 0.15 ms · 256) ≈ 5517 tokens/s.
//! [`SimConfig::capacity`] computes it. A single stream sees an inter-token latency of
//! `decode_base + decode_per_seq` (8.15 ms by default).
//!
//! **Fixed timing** (`--fixed-ttft 50ms --fixed-itl 10ms`) — no batching model and no jitter:
//! each request's first token is sent exactly at arrival + TTFT and token k at arrival + TTFT +
//! k·ITL, whatever the load. It is the reference target for measuring a load generator's own
//! overhead. Tokens are never sent early. The deadlines are kept by a dedicated thread on the
//! OS's high-resolution timer (tokio's timer rounds up to whole milliseconds), so a token leaves
//! within the OS's wake-up latency of its deadline; when tokens are dense (hundreds of streams)
//! that thread releases them in batches at most every 250 µs, which keeps its cost per token
//! low. `aibench_sim:token_lateness_seconds` shows how late tokens actually left.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use aibench_sim::{SimConfig, SimServer};
//! let config = SimConfig::from_args(["--fixed-ttft", "50ms", "--fixed-itl", "10ms"])?;
//! let server = SimServer::bind(config, "127.0.0.1:0".parse()?).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod app;
mod config;
mod engine;
mod http;
mod metrics;
mod ollama;
mod openai;
mod pacer;
mod server;
mod stream;

pub use config::{Capacity, ConfigError, DurationError, SimConfig, SimDuration};
#[cfg(unix)]
pub use server::raise_open_file_limit;
pub use server::SimServer;
