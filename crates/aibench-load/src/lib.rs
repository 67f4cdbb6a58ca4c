//! The aibench load engine: arrival process -> scheduler -> protocol driver -> recorder.
//!
//! - [`LoadSpec`]: the load (closed loop of users, or open loop with an [`Arrival`] process),
//!   warm-up, cool-down, stop conditions. Plain Rust types: durations and requests per second.
//! - [`Target`] and [`Protocol`]: where the load goes and how to talk to it (OpenAI completions
//!   and chat over SSE, Ollama generate and chat over NDJSON, any HTTP endpoint).
//! - [`Dataset`]: the prompts (synthetic or from a JSONL, ShareGPT or HellaSwag file).
//! - [`run`]: runs it and returns the [`aibench_results::Accumulator`] with its summary; every
//!   request can be written to `requests.jsonl`.
//!
//! Timing: an open loop's scheduler is a thread of its own that sleeps to each absolute
//! deadline ([`pacing`]) and starts the request right there, writing it to a pooled connection
//! before the runtime takes over the response; it hands requests to the runtime's workers only
//! when it falls behind. Closed-loop users are tasks. Every chunk is timed when the kernel
//! received it (`SO_TIMESTAMPNS`, see `stamped`), or else in the wake-up that reads it.
//!
//! Nothing here prints: progress goes out as [`Progress`] events on a channel.

mod arrival;
mod cancel;
mod client;
mod dataset;
mod driver;
pub mod drivers;
mod engine;
mod error;
pub mod pacing;
pub mod protocol;
mod spec;
mod stamped;

pub use aibench_results::Progress;
pub use arrival::Schedule;
pub use cancel::Cancel;
pub use client::discover_model;
pub use dataset::{Dataset, DatasetError, DatasetFormat, LengthDist, Prompt};
pub use drivers::keys::{KeyAccess, KeySpace, ValueSize};
pub use drivers::postgres::{Builtin as SqlBuiltin, PostgresSpec, SqlParam, SqlScript};
pub use drivers::redis::RedisSpec;
pub use drivers::s3::S3Spec;
pub use drivers::vector::{Metric, VectorEngine, VectorSource, VectorSpec};
pub use drivers::Workload;
pub use engine::{run, RunOptions, RunOutcome, PROGRESS_INTERVAL};
pub use error::LoadError;
pub use protocol::{prepare, Prepared, Protocol, Target};
pub use spec::{
    Arrival, CapPolicy, ErrorRate, LoadSpec, Pattern, Process, Shard, Stop, ThinkTime,
    DEFAULT_MAX_DURATION, DEFAULT_STALL,
};
