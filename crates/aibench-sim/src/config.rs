//! The simulator's settings: one struct whose fields are the flags of `aibench sim`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the simulated server. Every field is a command-line flag of `aibench sim`, and the
/// same struct deserializes from a recipe (`snake_case` keys, durations as strings like `50ms`).
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Model name served at /v1/models and /api/tags; requests naming any other model get 404
    #[arg(long, default_value = "sim", value_name = "NAME")]
    pub model: String,

    /// Require `Authorization: Bearer KEY` on /v1/* and /api/* (401 otherwise); /health and
    /// /metrics stay open
    #[arg(long, value_name = "KEY")]
    #[serde(skip_serializing)]
    pub api_key: Option<String>,

    /// Most sequences decoded together in one engine step (like vLLM's --max-num-seqs)
    #[arg(
        long,
        default_value_t = 256,
        value_name = "N",
        help_heading = "Performance model"
    )]
    pub max_batch: u32,

    /// KV-cache capacity in tokens; every running sequence holds its prompt and generated tokens,
    /// rounded up to whole blocks. When it runs out, the newest sequence is preempted
    #[arg(
        long,
        default_value_t = 262_144,
        value_name = "TOKENS",
        help_heading = "Performance model"
    )]
    pub kv_cache_tokens: u32,

    /// KV-cache block size in tokens
    #[arg(
        long,
        default_value_t = 16,
        value_name = "TOKENS",
        help_heading = "Performance model"
    )]
    pub block_size: u32,

    /// Most prompt tokens prefilled in one engine step (like vLLM's --max-num-batched-tokens);
    /// a single longer prompt is still admitted alone
    #[arg(
        long,
        default_value_t = 8192,
        value_name = "TOKENS",
        help_heading = "Performance model"
    )]
    pub max_batched_tokens: u32,

    /// Longest prompt + output a request may ask for; longer requests get 400 like vLLM's
    #[arg(
        long,
        default_value_t = 8192,
        value_name = "TOKENS",
        help_heading = "Performance model"
    )]
    pub max_model_len: u32,

    /// Fixed cost added to an engine step that prefills newly admitted sequences
    #[arg(
        long,
        default_value = "2ms",
        value_name = "DURATION",
        help_heading = "Performance model"
    )]
    pub prefill_base: SimDuration,

    /// Prefill cost per prompt token of newly admitted (or recomputed) sequences
    #[arg(
        long,
        default_value = "50us",
        value_name = "DURATION",
        help_heading = "Performance model"
    )]
    pub prefill_per_token: SimDuration,

    /// Fixed cost of one decode step
    #[arg(
        long,
        default_value = "8ms",
        value_name = "DURATION",
        help_heading = "Performance model"
    )]
    pub decode_base: SimDuration,

    /// Decode cost per running sequence in the step
    #[arg(
        long,
        default_value = "150us",
        value_name = "DURATION",
        help_heading = "Performance model"
    )]
    pub decode_per_seq: SimDuration,

    /// Relative step-time noise: each step lasts its modelled time times a uniform factor in
    /// [1 - J, 1 + J] (0 <= J < 1); the mean is unchanged
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "J",
        help_heading = "Performance model"
    )]
    pub jitter: f64,

    /// Fixed-timing mode: every request's first token is sent exactly this long after it
    /// arrived, whatever the load (needs --fixed-itl; the performance model is off)
    #[arg(
        long,
        value_name = "DURATION",
        requires = "fixed_itl",
        help_heading = "Fixed timing"
    )]
    pub fixed_ttft: Option<SimDuration>,

    /// Fixed-timing mode: token k is sent at arrival + TTFT + k x ITL (needs --fixed-ttft)
    #[arg(
        long,
        value_name = "DURATION",
        requires = "fixed_ttft",
        help_heading = "Fixed timing"
    )]
    pub fixed_itl: Option<SimDuration>,

    /// Output tokens of a request that names no `max_tokens` (Ollama: `num_predict`)
    #[arg(long, default_value_t = 16, value_name = "N", help_heading = "Outputs")]
    pub default_max_tokens: u32,

    /// Chance that each output token ends the sequence early (finish_reason `stop`), unless the
    /// request sets `ignore_eos`; 0 means every request generates exactly `max_tokens`
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "P",
        help_heading = "Outputs"
    )]
    pub eos_probability: f64,

    /// Fraction of generation requests answered with HTTP 500 (counted in
    /// aibench_sim:injected_failures_total)
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub failure_rate: f64,

    /// Seed for jitter, early stops and injected failures (random when absent)
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub seed: Option<u64>,

    /// How long /api/pull takes to stream its progress lines
    #[arg(
        long,
        default_value = "100ms",
        value_name = "DURATION",
        help_heading = "Server"
    )]
    pub pull_time: SimDuration,

    /// After shutdown is asked for, how long in-flight streams may run before they are cut
    #[arg(
        long,
        default_value = "1s",
        value_name = "DURATION",
        help_heading = "Server"
    )]
    pub shutdown_grace: SimDuration,
}

impl Default for SimConfig {
    /// The same defaults as the command line.
    fn default() -> Self {
        SimConfig::from_args(std::iter::empty::<&str>()).expect("the flag defaults are valid")
    }
}

/// Expected throughput of the batching model at saturation, from [`SimConfig::capacity`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capacity {
    /// Sequences running in each step at saturation (`--max-batch`, or fewer when the KV cache
    /// cannot hold that many).
    pub batch: u32,
    /// Mean engine step time at saturation, in seconds.
    pub step_seconds: f64,
    /// Output tokens per second.
    pub tokens_per_second: f64,
    /// Completed requests per second.
    pub requests_per_second: f64,
}

impl SimConfig {
    /// Parse flags (without the program name) into a config, as `aibench sim` would.
    pub fn from_args<I, T>(args: I) -> Result<SimConfig, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        #[command(name = "aibench-sim", no_binary_name = true)]
        struct Flags {
            #[command(flatten)]
            config: SimConfig,
        }
        Flags::try_parse_from(args).map(|flags| flags.config)
    }

    /// The fixed timing (TTFT, ITL) when the server runs in fixed-timing mode.
    pub fn fixed_timing(&self) -> Option<(Duration, Duration)> {
        match (self.fixed_ttft, self.fixed_itl) {
            (Some(ttft), Some(itl)) => Some((ttft.0, itl.0)),
            _ => None,
        }
    }

    /// KV-cache capacity in whole blocks.
    pub fn kv_blocks(&self) -> u32 {
        self.kv_cache_tokens / self.block_size.max(1)
    }

    /// Check the settings together and report every problem at once, each with its fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                problems.push(msg);
            }
        };
        check(!self.model.is_empty(), "--model must not be empty".into());
        check(self.max_batch >= 1, "--max-batch must be at least 1".into());
        check(
            self.block_size >= 1,
            "--block-size must be at least 1".into(),
        );
        check(
            self.max_batched_tokens >= 1,
            "--max-batched-tokens must be at least 1".into(),
        );
        check(
            self.max_model_len >= 1,
            "--max-model-len must be at least 1".into(),
        );
        check(
            self.default_max_tokens >= 1,
            "--default-max-tokens must be at least 1".into(),
        );
        if self.block_size >= 1 {
            let needed = self.max_model_len.div_ceil(self.block_size);
            check(
                needed <= self.kv_blocks(),
                format!(
                    "--max-model-len {} needs {needed} KV blocks of {} tokens but \
                     --kv-cache-tokens {} holds {}; raise --kv-cache-tokens or lower --max-model-len",
                    self.max_model_len,
                    self.block_size,
                    self.kv_cache_tokens,
                    self.kv_blocks()
                ),
            );
        }
        check(
            (0.0..1.0).contains(&self.jitter),
            format!("--jitter {} must be in [0, 1), e.g. 0.1", self.jitter),
        );
        check(
            (0.0..=1.0).contains(&self.eos_probability),
            format!(
                "--eos-probability {} must be in [0, 1]",
                self.eos_probability
            ),
        );
        check(
            (0.0..=1.0).contains(&self.failure_rate),
            format!(
                "--failure-rate {} must be in [0, 1], e.g. 0.01",
                self.failure_rate
            ),
        );
        check(
            self.fixed_ttft.is_some() == self.fixed_itl.is_some(),
            "fixed-timing mode needs both --fixed-ttft and --fixed-itl".into(),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Throughput of the batching model at saturation for requests of `prompt_tokens` in and
    /// `output_tokens` out; `None` in fixed-timing mode, which has no capacity limit.
    ///
    /// See the crate documentation for the formula.
    pub fn capacity(&self, prompt_tokens: u32, output_tokens: u32) -> Option<Capacity> {
        if self.fixed_timing().is_some() {
            return None;
        }
        let out = f64::from(output_tokens.max(1));
        let prompt = f64::from(prompt_tokens);
        let block = self.block_size.max(1);
        let seq_tokens = (prompt_tokens + output_tokens).div_ceil(block).max(1) * block;
        let kv_batch = (self.kv_cache_tokens / seq_tokens).max(1);
        let batch = self.max_batch.min(kv_batch).max(1);
        let b = f64::from(batch);
        // In steady state each sequence runs for `out` steps, so batch/out sequences finish and
        // are admitted per step; a step with admissions also pays the prefill base cost.
        let admitted_per_step = b / out;
        let prefill = self.prefill_base.secs() * admitted_per_step.min(1.0)
            + self.prefill_per_token.secs() * prompt * admitted_per_step;
        let step = self.decode_base.secs() + self.decode_per_seq.secs() * b + prefill;
        let tokens_per_second = b / step;
        Some(Capacity {
            batch,
            step_seconds: step,
            tokens_per_second,
            requests_per_second: tokens_per_second / out,
        })
    }
}

/// Settings that do not fit together, all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One message per problem, each naming the flag and the fix.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid sim settings: {}", self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// A duration written with a unit: `150us`, `50ms`, `1.5s`, `2m` (also `ns`, `µs`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SimDuration(pub Duration);

impl SimDuration {
    /// The duration in seconds.
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl From<Duration> for SimDuration {
    fn from(d: Duration) -> Self {
        SimDuration(d)
    }
}

impl From<SimDuration> for Duration {
    fn from(d: SimDuration) -> Self {
        d.0
    }
}

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

impl FromStr for SimDuration {
    type Err = DurationError;

    /// A number and a unit (`150us`, `50ms`, `1.5s`, `2m`; also `ns`, `µs`, `h`); `0` alone.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        aibench_results::time::parse_duration(s, aibench_results::time::BareNumber::Refused)
            .map(SimDuration)
            .map_err(DurationError)
    }
}

impl fmt::Display for SimDuration {
    /// The largest unit that shows the value exactly: `150us`, `50ms`, `2s`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&aibench_results::time::format_duration(self.0))
    }
}

impl Serialize for SimDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SimDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<SimDuration>().unwrap().0
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(d("50ms"), Duration::from_millis(50));
        assert_eq!(d("150us"), Duration::from_micros(150));
        assert_eq!(d("150µs"), Duration::from_micros(150));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("0.25ms"), Duration::from_micros(250));
        assert_eq!(d("0"), Duration::ZERO);
        assert!("50".parse::<SimDuration>().is_err());
        assert!("ms".parse::<SimDuration>().is_err());
        assert!("5 parsecs".parse::<SimDuration>().is_err());
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit() {
        for text in ["150us", "50ms", "2s", "1500ms", "2m", "0s", "7ns"] {
            assert_eq!(text.parse::<SimDuration>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn defaults_are_valid_and_match_the_flags() {
        let config = SimConfig::default();
        config.validate().unwrap();
        assert_eq!(config.model, "sim");
        assert_eq!(config.max_batch, 256);
        assert_eq!(config.decode_base.0, Duration::from_millis(8));
        assert!(config.fixed_timing().is_none());
    }

    #[test]
    fn fixed_timing_flags_come_in_pairs() {
        let config = SimConfig::from_args(["--fixed-ttft", "50ms", "--fixed-itl", "10ms"]).unwrap();
        assert_eq!(
            config.fixed_timing(),
            Some((Duration::from_millis(50), Duration::from_millis(10)))
        );
        assert!(SimConfig::from_args(["--fixed-ttft", "50ms"]).is_err());
    }

    #[test]
    fn validation_reports_every_problem() {
        let config = SimConfig {
            max_batch: 0,
            jitter: 1.5,
            kv_cache_tokens: 1024,
            ..SimConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("--kv-cache-tokens"));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = SimConfig::from_args(["--decode-base", "12ms", "--seed", "7"]).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"decode_base\":\"12ms\""), "{json}");
        let back: SimConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let partial: SimConfig = serde_json::from_str(r#"{"max_batch": 8}"#).unwrap();
        assert_eq!(partial.max_batch, 8);
        assert_eq!(partial.model, "sim");
    }

    #[test]
    fn capacity_follows_the_formula() {
        let config = SimConfig {
            prefill_base: SimDuration::default(),
            prefill_per_token: SimDuration::default(),
            ..SimConfig::default()
        };
        let cap = config.capacity(128, 128).unwrap();
        // 256 / (8ms + 0.15ms x 256)
        assert!(
            (cap.tokens_per_second - 256.0 / 0.0464).abs() < 1e-6,
            "{cap:?}"
        );
        assert!((cap.requests_per_second - cap.tokens_per_second / 128.0).abs() < 1e-9);
        let fixed = SimConfig::from_args(["--fixed-ttft", "1ms", "--fixed-itl", "1ms"]).unwrap();
        assert!(fixed.capacity(1, 1).is_none());
    }
}
