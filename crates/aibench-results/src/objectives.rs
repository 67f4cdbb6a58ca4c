//! Service-level objectives as a recipe states them (`slo:`), read by the runner and the
//! report alike: one type, so that the report's verdict and the exit code judge the same
//! thing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{Duration, Percent, Rate};

/// Service-level objectives. Per-request thresholds (`ttft`, `tpot`, `itl`, `e2e`) decide which
/// requests count toward goodput; the percentile and rate gates decide whether a trial passes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// A request is good only if its time to first token is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<Duration>,
    /// ... and its time per output token is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot: Option<Duration>,
    /// ... and its largest gap between tokens is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl: Option<Duration>,
    /// ... and its end-to-end latency is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<Duration>,
    /// The trial passes only if the median TTFT is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50: Option<Duration>,
    /// ... the 90th percentile TTFT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p90: Option<Duration>,
    /// ... the 99th percentile TTFT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p99: Option<Duration>,
    /// ... the 99th percentile TPOT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_p99: Option<Duration>,
    /// ... the 99th percentile gap between tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p99: Option<Duration>,
    /// ... the median end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p50: Option<Duration>,
    /// ... the 99th percentile end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_p99: Option<Duration>,
    /// ... the share of failed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<Percent>,
    /// ... the request rate achieved is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput: Option<Rate>,
    /// ... the share of requests meeting every per-request threshold is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_goodput: Option<Percent>,
}
