//! The aibench run-directory data model: what every stage after the load reads.
//!
//! - [`RequestRecord`]: one line of `requests.jsonl`, one request's times and outcome.
//! - [`Accumulator`]: HDR histograms and exact counters fed by records; merges across client
//!   processes into exactly what one process would have produced, and saves to a shard file.
//! - [`Summary`]: `summary.json`, versioned, with a JSON Schema from [`summary_schema`]
//!   committed as `schema/summary.schema.json`.
//! - [`RecordWriter`]: writes `requests.jsonl` on its own thread, off the hot path.
//! - [`RunInfo`]: `run.json`, the run's and its trials' [`Status`], with a JSON Schema from
//!   [`run_schema`] committed as `schema/run.schema.json`.
//! - [`Progress`]: the load engine's periodic snapshot, for progress displays and live metrics.
//! - [`time`]: wall-clock text (UTC) and durations with units, one parser for the workspace.
//!
//! Times in records are microseconds from the run's monotonic start; figures in the summary are
//! milliseconds, seconds and per-second rates, as their field names say.

mod accumulator;
pub mod objectives;
mod progress;
mod record;
mod run;
mod summary;
pub mod time;
pub mod units;
mod writer;

pub use accumulator::{
    Accumulator, AccumulatorConfig, AccumulatorError, Slo, DEFAULT_LATE_AFTER_US, HISTOGRAM_SIGFIG,
};
pub use progress::Progress;
pub use record::{ErrorClass, Phase, RequestRecord, Step, TokenSource};
pub use run::{
    point_of, run_id, run_schema, write_atomic, write_json, Calibration, Command, ErrorStats, Host,
    Owner, RunInfo, Status, TrialInfo, REPEAT_SUFFIX, RUN_SCHEMA_VERSION,
};
pub use summary::{
    summary_schema, Counts, Latencies, LatencyStats, OperationStats, SloMs, StopReason, Summary,
    Throughput, TimelineBucket, TokenSourceTally, Tokens, Window, SUMMARY_SCHEMA_VERSION,
};
pub use writer::{read_records, RecordWriter};
