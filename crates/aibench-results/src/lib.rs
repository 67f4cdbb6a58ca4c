//! The aibench run-directory data model: what every stage after the load reads.
//!
//! - [`RequestRecord`]: one line of `requests.jsonl`, one request's times and outcome.
//! - [`Accumulator`]: HDR histograms and exact counters fed by records; merges across client
//!   processes into exactly what one process would have produced, and saves to a shard file.
//! - [`Summary`]: `summary.json`, versioned, with a JSON Schema from [`summary_schema`]
//!   committed as `schema/summary.schema.json`.
//! - [`RecordWriter`]: writes `requests.jsonl` on its own thread, off the hot path.
//!
//! Times in records are microseconds from the run's monotonic start; figures in the summary are
//! milliseconds, seconds and per-second rates, as their field names say.

mod accumulator;
mod record;
mod summary;
mod writer;

pub use accumulator::{
    Accumulator, AccumulatorConfig, AccumulatorError, Slo, DEFAULT_LATE_AFTER_US, HISTOGRAM_SIGFIG,
};
pub use record::{ErrorClass, Phase, RequestRecord, Step, TokenSource};
pub use summary::{
    summary_schema, Counts, Latencies, LatencyStats, OperationStats, SloMs, StopReason, Summary,
    Throughput, TimelineBucket, TokenSourceTally, Tokens, Window, SUMMARY_SCHEMA_VERSION,
};
pub use writer::{read_records, RecordWriter};
