//! What to scrape: a named service, its kind, its address, and which of its metrics matter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a target is scraped and which metrics are kept by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Vllm,
    Sglang,
    Tgi,
    Llamacpp,
    /// `aibench sim`: vLLM's metric names, plus its own `aibench_sim:` ones.
    Sim,
    Minio,
    Qdrant,
    /// Redis through `INFO` over its own protocol (no exporter).
    Redis,
    /// PostgreSQL through its `pg_stat` views (no exporter).
    Postgres,
    /// Any other endpoint in the Prometheus text format; everything is kept.
    Prometheus,
}

impl TargetKind {
    pub const ALL: [TargetKind; 10] = [
        TargetKind::Vllm,
        TargetKind::Sglang,
        TargetKind::Tgi,
        TargetKind::Llamacpp,
        TargetKind::Sim,
        TargetKind::Minio,
        TargetKind::Qdrant,
        TargetKind::Redis,
        TargetKind::Postgres,
        TargetKind::Prometheus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Vllm => "vllm",
            TargetKind::Sglang => "sglang",
            TargetKind::Tgi => "tgi",
            TargetKind::Llamacpp => "llamacpp",
            TargetKind::Sim => "sim",
            TargetKind::Minio => "minio",
            TargetKind::Qdrant => "qdrant",
            TargetKind::Redis => "redis",
            TargetKind::Postgres => "postgres",
            TargetKind::Prometheus => "prometheus",
        }
    }

    /// Whether the target is scraped over HTTP in the Prometheus text format.
    pub fn is_http(self) -> bool {
        !matches!(self, TargetKind::Redis | TargetKind::Postgres)
    }

    /// The metrics kept unless everything is asked for.
    pub fn default_filter(self) -> Filter {
        match self {
            TargetKind::Vllm => Filter::Only {
                names: VLLM,
                prefixes: &[],
            },
            TargetKind::Sim => Filter::Only {
                names: VLLM,
                prefixes: &["aibench_sim:"],
            },
            TargetKind::Sglang => Filter::Only {
                names: SGLANG,
                prefixes: &[],
            },
            TargetKind::Tgi => Filter::Only {
                names: TGI,
                prefixes: &[],
            },
            TargetKind::Llamacpp => Filter::Only {
                names: PROCESS,
                prefixes: &["llamacpp:"],
            },
            TargetKind::Minio => Filter::Only {
                names: PROCESS,
                prefixes: MINIO_PREFIXES,
            },
            TargetKind::Qdrant => Filter::Only {
                names: QDRANT,
                prefixes: &["rest_responses_", "grpc_responses_", "collection"],
            },
            TargetKind::Redis => Filter::Only {
                names: REDIS,
                prefixes: &["redis_db_", "redis_commands_"],
            },
            // What the PostgreSQL collector produces is already chosen.
            TargetKind::Postgres | TargetKind::Prometheus => Filter::All,
        }
    }

    /// The kind that watches a service of this recipe kind (`vllm`, `redis`, ...). Ollama and
    /// Chroma serve no metrics and `command` is unknown: with a metrics path given they are read
    /// as plain Prometheus endpoints, without one there is nothing to scrape (`Ok(None)`).
    pub fn for_service(
        kind: &str,
        has_metrics_path: bool,
    ) -> Result<Option<TargetKind>, UnknownKind> {
        match kind {
            "ollama" | "chroma" | "command" => {
                Ok(has_metrics_path.then_some(TargetKind::Prometheus))
            }
            other => other.parse().map(Some),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that is not one of [`TargetKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target kind `{0}`; expected one of vllm, sglang, tgi, llamacpp, sim, minio, qdrant, redis, postgres, prometheus")]
pub struct UnknownKind(pub String);

impl FromStr for TargetKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// Which samples of a scrape are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Families named here (a counter may be named with or without `_total`), or whose name
    /// starts with one of the prefixes.
    Only {
        names: &'static [&'static str],
        prefixes: &'static [&'static str],
    },
}

impl Filter {
    /// Whether a sample of this family is kept.
    pub fn keeps(&self, family: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only { names, prefixes } => {
                let bare = family.strip_suffix("_total").unwrap_or(family);
                names.iter().any(|n| *n == family || *n == bare)
                    || prefixes.iter().any(|p| family.starts_with(p))
            }
        }
    }
}

/// The server process itself, as every Prometheus client library reports it.
const PROCESS: &[&str] = &[
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// vLLM, V0 and V1 engines: scheduler state, KV cache (both names), tokens, request latency
/// histograms, preemptions, prefix caching.
const VLLM: &[&str] = &[
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:num_requests_swapped",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_hit_rate",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:num_preemptions",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:iteration_tokens_total",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
];

const SGLANG: &[&str] = &[
    "sglang:num_running_reqs",
    "sglang:num_queue_reqs",
    "sglang:num_used_tokens",
    "sglang:token_usage",
    "sglang:gen_throughput",
    "sglang:cache_hit_rate",
    "sglang:prompt_tokens",
    "sglang:generation_tokens",
    "sglang:num_requests",
    "sglang:time_to_first_token_seconds",
    "sglang:inter_token_latency_seconds",
    "sglang:time_per_output_token_seconds",
    "sglang:e2e_request_latency_seconds",
    "sglang:queue_time_seconds",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
];

const TGI: &[&str] = &[
    "tgi_request_count",
    "tgi_request_success",
    "tgi_request_failure",
    "tgi_queue_size",
    "tgi_batch_current_size",
    "tgi_batch_current_max_tokens",
    "tgi_request_duration",
    "tgi_request_queue_duration",
    "tgi_request_inference_duration",
    "tgi_request_mean_time_per_token_duration",
    "tgi_request_input_length",
    "tgi_request_generated_tokens",
    "tgi_batch_inference_duration",
    "tgi_batch_forward_duration",
];

const MINIO_PREFIXES: &[&str] = &[
    "minio_s3_requests_",
    "minio_s3_traffic_",
    "minio_s3_time_",
    "minio_cluster_capacity_",
    "minio_cluster_usage_",
    "minio_node_process_",
    "minio_node_drive_",
];

const QDRANT: &[&str] = &[
    "app_info",
    "cluster_enabled",
    "memory_active_bytes",
    "memory_allocated_bytes",
    "memory_resident_bytes",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
];

/// `INFO` fields, as `redis_<field>`.
const REDIS: &[&str] = &[
    "redis_up",
    "redis_connected_clients",
    "redis_blocked_clients",
    "redis_used_memory",
    "redis_used_memory_rss",
    "redis_mem_fragmentation_ratio",
    "redis_instantaneous_ops_per_sec",
    "redis_total_commands_processed",
    "redis_total_connections_received",
    "redis_rejected_connections",
    "redis_keyspace_hits",
    "redis_keyspace_misses",
    "redis_evicted_keys",
    "redis_expired_keys",
    "redis_total_net_input_bytes",
    "redis_total_net_output_bytes",
    "redis_instantaneous_input_kbps",
    "redis_instantaneous_output_kbps",
    "redis_used_cpu_sys",
    "redis_used_cpu_user",
];

/// Credentials for Redis (`AUTH`) and PostgreSQL (user, cleartext password, database).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
    /// PostgreSQL: the database to connect to (default `postgres`).
    pub database: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("database", &self.database)
            .finish()
    }
}

/// One thing to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The service's name; also the CSV's file name (`metrics/<name>.csv`).
    pub name: String,
    pub kind: TargetKind,
    pub host: String,
    pub port: u16,
    /// The HTTP path of the metrics endpoint (HTTP kinds; default `/metrics`).
    pub path: Option<String>,
    pub credentials: Option<Credentials>,
}

impl Target {
    pub fn new(
        name: impl Into<String>,
        kind: TargetKind,
        host: impl Into<String>,
        port: u16,
    ) -> Target {
        Target {
            name: name.into(),
            kind,
            host: host.into(),
            port,
            path: None,
            credentials: None,
        }
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Target {
        self.path = Some(path.into());
        self
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Target {
        self.credentials = Some(credentials);
        self
    }

    /// The target watching a deployed service, from what discovery records about it (`kind` as
    /// the recipe spells it). `None` when the service has nothing to scrape.
    pub fn for_service(
        name: &str,
        kind: &str,
        host: &str,
        port: u16,
        metrics_path: Option<&str>,
    ) -> Result<Option<Target>, UnknownKind> {
        let Some(kind) = TargetKind::for_service(kind, metrics_path.is_some())? else {
            return Ok(None);
        };
        let mut t = Target::new(name, kind, host, port);
        t.path = metrics_path.map(String::from);
        Ok(Some(t))
    }

    /// The HTTP path scraped.
    pub fn http_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/metrics")
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// A file name made from the target name (`/` and other odd characters become `_`).
    pub fn file_stem(&self) -> String {
        safe_file_stem(&self.name)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(crate) fn safe_file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".into(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_an_error() {
        for k in TargetKind::ALL {
            assert_eq!(k.as_str().parse::<TargetKind>().unwrap(), k);
        }
        assert!("vLLM".parse::<TargetKind>().is_err());
    }

    #[test]
    fn services_map_to_targets() {
        let t = Target::for_service("llm", "sim", "127.0.0.1", 8000, Some("/metrics"))
            .unwrap()
            .unwrap();
        assert_eq!(t.kind, TargetKind::Sim);
        assert!(Target::for_service("o", "ollama", "h", 1, None)
            .unwrap()
            .is_none());
        assert_eq!(
            Target::for_service("c", "command", "h", 1, Some("/m"))
                .unwrap()
                .unwrap()
                .kind,
            TargetKind::Prometheus
        );
        assert_eq!(
            Target::for_service("r", "redis", "h", 1, None)
                .unwrap()
                .unwrap()
                .kind,
            TargetKind::Redis
        );
        assert!(Target::for_service("x", "nope", "h", 1, None).is_err());
    }

    #[test]
    fn vllm_filter_keeps_both_cache_names_and_counters_with_or_without_total() {
        let f = TargetKind::Vllm.default_filter();
        assert!(f.keeps("vllm:kv_cache_usage_perc"));
        assert!(f.keeps("vllm:gpu_cache_usage_perc"));
        assert!(f.keeps("vllm:prompt_tokens_total"));
        assert!(f.keeps("vllm:prompt_tokens"));
        assert!(f.keeps("vllm:time_to_first_token_seconds"));
        assert!(!f.keeps("python_gc_objects_collected_total"));
        assert!(!f.keeps("vllm:cache_config_info"));
        let s = TargetKind::Sim.default_filter();
        assert!(s.keeps("aibench_sim:token_lateness_seconds"));
        assert!(Filter::All.keeps("anything"));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(safe_file_stem("llm-2"), "llm-2");
        assert_eq!(safe_file_stem("../x/y"), ".._x_y");
        assert_eq!(safe_file_stem(".."), "_");
        assert_eq!(host_port("::1", 80), "[::1]:80");
    }
}
