//! The load engine's periodic snapshot, read by progress displays and the live metrics endpoint.

use std::time::Duration;

use crate::Phase;

/// A progress snapshot for displays. Counts cover every phase; percentiles only the measure
/// window so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub phase: Phase,
    /// Requests written to a connection.
    pub sent: u64,
    pub succeeded: u64,
    pub errors: u64,
    pub dropped: u64,
    pub in_flight: u64,
    /// Successful requests per second over the last 5 s (since the start, until then).
    pub rate_rps: f64,
    pub ttft_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// The last snapshot of the run.
    pub done: bool,
}
