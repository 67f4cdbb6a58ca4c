//! What load to apply: the engine's own plain types (durations, requests per second), onto
//! which a recipe or the command line is mapped.

use std::time::Duration;

use crate::error::LoadError;

/// Everything about the load except where it goes and what it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub pattern: Pattern,
    pub stop: Stop,
    /// Requests whose intended send time falls in this first stretch are recorded as `warmup`
    /// and left out of the summary.
    pub warmup: Duration,
    /// After the measure window ends, keep the load going this long (recorded as `cooldown`,
    /// left out of the summary) so measured requests finish under the same load.
    pub cooldown: Duration,
    /// Seed of every random choice (arrivals, think times, dataset sampling).
    pub seed: u64,
    /// Per-request limit, from the start of the attempt (connect included) to the end of the body.
    pub timeout: Duration,
    /// When the run is cancelled or its error budget is spent, requests in flight get this long
    /// to finish before they are abandoned (and recorded as `cancelled`).
    pub grace: Duration,
}

impl LoadSpec {
    /// When the measurement ends whatever happens, from its start: `stop.max_duration` if
    /// given; else, with a duration, warm-up + window + cool-down + one request timeout (the
    /// longest a request sent in the window may take); else [`DEFAULT_MAX_DURATION`].
    pub fn deadline(&self) -> Duration {
        match (self.stop.max_duration, self.stop.duration) {
            (Some(d), _) => d,
            (None, Some(d)) => self
                .warmup
                .saturating_add(d)
                .saturating_add(self.cooldown)
                .saturating_add(self.timeout),
            (None, None) => DEFAULT_MAX_DURATION,
        }
    }

    /// How long requests in flight may go without a byte (`None`: never). By default only
    /// `streamed` responses are watched: they show progress byte by byte, where a slow
    /// unstreamed answer is silent until it ends (its request timeout bounds a hang).
    pub fn stall(&self, streamed: bool) -> Option<Duration> {
        match self.stop.stall {
            Some(d) => Some(d).filter(|d| !d.is_zero()),
            None => streamed.then_some(DEFAULT_STALL),
        }
    }
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            pattern: Pattern::ClosedLoop {
                users: 1,
                think_time: ThinkTime::None,
                ramp_up: Duration::ZERO,
            },
            stop: Stop::default(),
            warmup: Duration::ZERO,
            cooldown: Duration::ZERO,
            seed: 0,
            timeout: Duration::from_secs(300),
            grace: Duration::from_secs(10),
        }
    }
}

/// How requests are started.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `users` virtual clients, each sending a request, waiting for its response, thinking,
    /// and sending the next.
    ClosedLoop {
        users: usize,
        think_time: ThinkTime,
        /// Users start one after another, evenly spread over this stretch (zero: all at once).
        ramp_up: Duration,
    },
    /// Requests start at times drawn from an arrival process, whatever the responses do.
    OpenLoop {
        arrival: Arrival,
        /// At most this many requests in flight; see [`CapPolicy`] for what happens beyond it.
        max_in_flight: Option<usize>,
        on_cap: CapPolicy,
    },
}

/// Open loop: what to do with a request due while `max_in_flight` requests are in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapPolicy {
    /// Do not send it; record it as `dropped`.
    #[default]
    Drop,
    /// Send it as soon as a slot frees (first come, first served). Its lateness shows in
    /// `send_lag` and in the latencies measured from the intended time.
    Late,
}

/// Closed loop: how long a user waits between a response and its next request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ThinkTime {
    #[default]
    None,
    Fixed(Duration),
    /// Exponentially distributed with this mean.
    Exponential {
        mean: Duration,
    },
    Uniform {
        min: Duration,
        max: Duration,
    },
}

/// The shape of inter-arrival gaps, independent of the rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Process {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (coefficient of variation 1).
    #[default]
    Poisson,
    /// Gamma gaps with shape `burstiness` (vLLM's definition): 1 is Poisson, below 1 burstier,
    /// above 1 more regular; coefficient of variation 1/√burstiness.
    Gamma { burstiness: f64 },
}

/// When requests arrive (open loop). Rates are requests per second of the whole run (all shards
/// together); time-varying rates apply the process in rescaled time, so a Poisson process under
/// a ramp is a true non-homogeneous Poisson process.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    Constant {
        rate: f64,
    },
    Poisson {
        rate: f64,
    },
    /// Gamma-distributed gaps: shape = burstiness, scale = 1 / (rate · burstiness).
    Gamma {
        rate: f64,
        burstiness: f64,
    },
    /// Piecewise-constant rate: each `(rate, duration)` in turn; the schedule ends after the last.
    Step {
        steps: Vec<(f64, Duration)>,
        process: Process,
    },
    /// Rate rising (or falling) linearly from `from` to `to` over `over`, then holding `to`.
    Ramp {
        from: f64,
        to: f64,
        over: Duration,
        process: Process,
    },
    /// `rate` for `on`, silence for `off`, repeated.
    OnOff {
        rate: f64,
        on: Duration,
        off: Duration,
        process: Process,
    },
    /// Replay: one request at each offset from the start (sorted); the schedule ends after the last.
    Trace {
        offsets: Vec<Duration>,
    },
}

impl Arrival {
    /// The highest rate this arrival pattern reaches (requests per second).
    pub fn peak_rate(&self) -> f64 {
        match self {
            Arrival::Constant { rate }
            | Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. } => *rate,
            Arrival::Step { steps, .. } => steps.iter().map(|s| s.0).fold(0.0, f64::max),
            Arrival::Ramp { from, to, .. } => from.max(*to),
            Arrival::OnOff { rate, .. } => *rate,
            Arrival::Trace { offsets } => {
                let span = offsets
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64();
                if span > 0.0 {
                    offsets.len() as f64 / span
                } else {
                    offsets.len() as f64
                }
            }
        }
    }
}

/// When to stop. At least one of `duration` and `requests` must be set unless the arrival
/// schedule ends by itself (a trace, steps).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stop {
    /// Length of the measure window (after warm-up).
    pub duration: Option<Duration>,
    /// Number of measured requests (warm-up and cool-down ones not counted).
    pub requests: Option<u64>,
    /// Stop after this many failed requests in a row.
    pub max_consecutive_errors: Option<u64>,
    /// Stop when the share of failed requests passes a threshold.
    pub max_error_rate: Option<ErrorRate>,
    /// Closed loop: after a failure, a user waits this long before its next request, doubling
    /// with each further failure in a row (at most 8×). Zero: no wait.
    pub error_backoff: Duration,
    /// The hard deadline, from the start: when it passes, scheduling stops and requests in
    /// flight get the grace period. `None`: [`LoadSpec::deadline`]'s default.
    pub max_duration: Option<Duration>,
    /// A hung server: requests are in flight, yet none has received a byte or ended for this
    /// long. The measurement stops ([`aibench_results::StopReason::Stalled`]) and what is in
    /// flight gets the grace period. `None`: [`DEFAULT_STALL`] for streamed responses, never
    /// otherwise (see [`LoadSpec::stall`]); zero: never.
    pub stall: Option<Duration>,
}

/// A measurement stopped by a request count alone ends at the latest after this.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);

/// How long requests in flight may go without a byte before the server is judged hung.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

/// An error-rate threshold, judged only once enough requests have completed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRate {
    /// Fraction of completed requests (0..1) that may fail.
    pub rate: f64,
    /// Number of completed requests before the rate is judged.
    pub min_requests: u64,
}

/// This process's part of a load spread over several client processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this process.
    pub index: u32,
    /// Number of processes.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether the `k`-th item of a round-robin split belongs to this shard.
    pub fn owns(&self, k: u64) -> bool {
        k % u64::from(self.count) == u64::from(self.index)
    }

    /// This shard's share of `n` items split round-robin.
    pub fn share(&self, n: u64) -> u64 {
        let c = u64::from(self.count);
        n / c + u64::from(u64::from(self.index) < n % c)
    }
}

fn check_rate(what: &str, rate: f64, errors: &mut Vec<String>) {
    if !(rate.is_finite() && rate > 0.0) {
        errors.push(format!(
            "{what} must be a positive, finite number of requests per second (got {rate}); \
             for as-fast-as-possible load use a closed loop with a number of users"
        ));
    }
}

fn check_process(p: &Process, errors: &mut Vec<String>) {
    if let Process::Gamma { burstiness } = p {
        if !(burstiness.is_finite() && *burstiness > 0.0) {
            errors.push(format!(
                "burstiness must be a positive number (got {burstiness})"
            ));
        }
    }
}

impl LoadSpec {
    /// Check the spec, reporting every problem at once.
    pub fn validate(&self, shard: Shard) -> Result<(), LoadError> {
        let mut e = Vec::new();
        let mut ends_by_itself = false;
        match &self.pattern {
            Pattern::ClosedLoop {
                users, think_time, ..
            } => {
                if *users == 0 {
                    e.push("a closed loop needs at least one user".to_string());
                }
                if let ThinkTime::Uniform { min, max } = think_time {
                    if min > max {
                        e.push(format!(
                            "think time: uniform min {min:?} is above max {max:?}"
                        ));
                    }
                }
            }
            Pattern::OpenLoop {
                arrival,
                max_in_flight,
                ..
            } => {
                if *max_in_flight == Some(0) {
                    e.push("max_in_flight must be at least 1".to_string());
                }
                match arrival {
                    Arrival::Constant { rate } | Arrival::Poisson { rate } => {
                        check_rate("rate", *rate, &mut e)
                    }
                    Arrival::Gamma { rate, burstiness } => {
                        check_rate("rate", *rate, &mut e);
                        check_process(
                            &Process::Gamma {
                                burstiness: *burstiness,
                            },
                            &mut e,
                        );
                    }
                    Arrival::Step { steps, process } => {
                        ends_by_itself = true;
                        if steps.is_empty() {
                            e.push("a step arrival needs at least one step".to_string());
                        }
                        for (rate, _) in steps {
                            if !(rate.is_finite() && *rate >= 0.0) {
                                e.push(format!(
                                    "step rate must be zero or positive and finite (got {rate})"
                                ));
                            }
                        }
                        if steps.iter().all(|s| s.0 == 0.0 || s.1.is_zero()) {
                            e.push(
                                "a step arrival needs a step with a positive rate and duration"
                                    .to_string(),
                            );
                        }
                        check_process(process, &mut e);
                    }
                    Arrival::Ramp {
                        from, to, process, ..
                    } => {
                        for r in [from, to] {
                            if !(r.is_finite() && *r >= 0.0) {
                                e.push(format!(
                                    "ramp rates must be zero or positive and finite (got {r})"
                                ));
                            }
                        }
                        if *to <= 0.0 {
                            e.push("a ramp must end at a positive rate".to_string());
                        }
                        check_process(process, &mut e);
                    }
                    Arrival::OnOff {
                        rate, on, process, ..
                    } => {
                        check_rate("rate", *rate, &mut e);
                        if on.is_zero() {
                            e.push("an on/off arrival needs a positive `on` duration".to_string());
                        }
                        check_process(process, &mut e);
                    }
                    Arrival::Trace { offsets } => {
                        ends_by_itself = true;
                        if offsets.is_empty() {
                            e.push("a trace needs at least one offset".to_string());
                        }
                    }
                }
            }
        }
        if self.stop.duration.is_none() && self.stop.requests.is_none() && !ends_by_itself {
            e.push(
                "nothing would stop the load: give a duration or a number of requests".to_string(),
            );
        }
        if self.stop.duration == Some(Duration::ZERO) {
            e.push("duration must be positive".to_string());
        }
        if self.stop.requests == Some(0) {
            e.push("the number of requests must be at least 1".to_string());
        }
        if let Some(r) = self.stop.max_error_rate {
            if !(0.0..=1.0).contains(&r.rate) {
                e.push(format!(
                    "max error rate must be between 0 and 1 (got {})",
                    r.rate
                ));
            }
        }
        if self.timeout.is_zero() {
            e.push("timeout must be positive".to_string());
        }
        if shard.count == 0 || shard.index >= shard.count {
            e.push(format!(
                "shard {} of {} does not exist",
                shard.index, shard.count
            ));
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(LoadError::InvalidSpec(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_reports_every_problem() {
        let spec = LoadSpec {
            pattern: Pattern::OpenLoop {
                arrival: Arrival::Gamma {
                    rate: -1.0,
                    burstiness: 0.0,
                },
                max_in_flight: Some(0),
                on_cap: CapPolicy::Drop,
            },
            ..LoadSpec::default()
        };
        let Err(LoadError::InvalidSpec(errors)) = spec.validate(Shard::default()) else {
            panic!()
        };
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn shares_add_up() {
        for count in 1..7 {
            let total: u64 = (0..count)
                .map(|index| Shard { index, count }.share(100))
                .sum();
            assert_eq!(total, 100);
        }
    }
}
