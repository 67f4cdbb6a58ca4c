//! One spec per service kind: everything aibench knows about a kind, in one place.
//!
//! A kind's spec gives the protocols a workload may speak to it, whether it serves a model and
//! wants a GPU, its default command (a function of the service, rendered by the plan), health
//! check, metrics endpoint and how the monitor reads it, the named ports its command needs, the
//! work between health and load (Ollama's model pull), and how it runs when aibench is root.
//! The recipe's checks, the plan, the platforms and the monitor read these fields instead of
//! comparing kinds. Adding a kind is one line in the `service_kinds!` list below (its variant,
//! recipe name and spec) and its spec constant; then `scripts/regen.sh` updates the schema.
//!
//! Commands use the runtime variables that the platform sets when it starts a service:
//! `${HOST}`, `${PORT}`, `${AIBENCH_DATA_DIR}` (a fresh directory for the service's state),
//! `${AIBENCH_PORT_<NAME>}` for named ports, and `${AIBENCH_EXE}` (this aibench binary).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{HealthCheck, Protocol, Service, VectorEngine};

/// How the monitor reads a kind's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrape {
    /// A Prometheus endpoint with the kind's own metric names and filter.
    Named(MetricNames),
    /// Redis `INFO` over RESP.
    RedisInfo,
    /// PostgreSQL's `pg_stat_*` views.
    PgStat,
    /// No metrics of its own; a plain Prometheus endpoint if the recipe gives a path.
    None,
}

/// What `health: { check: ping }` means for a kind: its protocol's own ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// RESP `PING` (Redis).
    Resp,
    /// A PostgreSQL startup message (SQLSTATE 57P03 means "still starting").
    PostgresStartup,
    /// No ping of its own: a TCP connection.
    Tcp,
}

/// How a service of a kind may span nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiNode {
    /// One node per replica.
    No,
    /// Over a Ray cluster, with `distributed` settings (vLLM).
    Ray,
    /// As its command arranges (`kind: command`, Ray with `distributed`).
    Any,
}

/// Whose metric names a Prometheus endpoint exposes (the monitor keeps a filter for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricNames {
    Vllm,
    Sglang,
    Tgi,
    Llamacpp,
    Sim,
    Minio,
    Qdrant,
}

/// Work a service needs once it is healthy and before any load starts, whatever platform
/// started it (`run`, `up`, Slurm jobs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum PrepareStep {
    /// Ollama: pull the model (`POST /api/pull`) so that the first request does not wait for
    /// a download.
    PullModel { model: String },
}

/// A kind's default command: its argv, environment and set-up commands, runtime variables
/// still to expand.
#[derive(Clone, Debug, Default)]
pub struct KindCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Commands run once before the service starts (PostgreSQL's `initdb`).
    pub setup: Vec<Vec<String>>,
}

/// Everything about one kind.
pub struct KindSpec {
    /// Serves a model and speaks an LLM protocol.
    pub llm: bool,
    /// Cannot do useful work without a GPU.
    pub needs_gpu: bool,
    /// Can use a GPU at all.
    pub can_use_gpu: bool,
    /// The protocols a workload may speak to it.
    pub protocols: &'static [Protocol],
    /// `Some(example)`: a `model` is required (unless the recipe gives the command).
    pub model_required: Option<&'static str>,
    /// The model it serves when the recipe names none.
    pub default_model: Option<&'static str>,
    pub health: HealthCheck,
    pub health_path: Option<&'static str>,
    /// How long it may take to become healthy (a model load), in seconds.
    pub health_timeout_s: f64,
    pub metrics_path: Option<&'static str>,
    pub scrape: Scrape,
    /// The protocol's own ping, for `check: ping`.
    pub ping: Ping,
    /// Whether and how one replica spans several nodes.
    pub multi_node: MultiNode,
    /// Named ports its command needs besides the main one (`${AIBENCH_PORT_<NAME>}`).
    pub named_ports: &'static [&'static str],
    /// The system user the set-up commands and the service run as when aibench runs as root,
    /// for programs that refuse root; that user then owns the data directory.
    pub run_as: Option<&'static str>,
    /// Folders searched for its programs after PATH, a `*` standing for a version (the highest
    /// first).
    pub program_dirs: &'static [&'static str],
    /// The default command for a service of this kind.
    pub command: fn(&Service) -> KindCommand,
    /// Work between health and load.
    pub prepare: fn(&Service) -> Vec<PrepareStep>,
    /// The vector database API it serves, for `protocol: vector` workloads.
    pub vector_engine: Option<VectorEngine>,
    /// The server options `args` may set, with their types, when aibench knows them all
    /// (its own simulator); `None`: any option, passed on as given.
    pub options: Option<&'static [(&'static str, OptionType)]>,
}

/// The type of a server option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionType {
    /// A whole number, zero or more.
    Count,
    /// Any number.
    Number,
    /// A duration with a unit (`50ms`).
    Duration,
    Text,
}

impl OptionType {
    /// Why `v` is not of this type, if it is not.
    pub fn problem(self, v: &crate::ArgValue) -> Option<String> {
        use crate::ArgValue as A;
        match (self, v) {
            (OptionType::Count, A::Int(i)) if *i >= 0 => None,
            (OptionType::Number, A::Int(_) | A::Float(_)) => None,
            (OptionType::Duration, A::Text(t)) => t
                .parse::<crate::units::Duration>()
                .err()
                .map(|e| format!("expected a duration: {e}")),
            (OptionType::Text, A::Text(_)) => None,
            (OptionType::Count, _) => Some("expected a whole number, 0 or more".into()),
            (OptionType::Number, _) => Some("expected a number".into()),
            (OptionType::Duration, _) => {
                Some("expected a duration with a unit, e.g. `50ms`".into())
            }
            (OptionType::Text, _) => Some("expected text".into()),
        }
    }
}

/// The options of `aibench sim` (its flags, without `--host` and `--port`, which the platform
/// sets); a test in the binary keeps this list equal to the simulator's own.
pub const SIM_OPTIONS: &[(&str, OptionType)] = &[
    ("model", OptionType::Text),
    ("api-key", OptionType::Text),
    ("max-batch", OptionType::Count),
    ("kv-cache-tokens", OptionType::Count),
    ("block-size", OptionType::Count),
    ("max-batched-tokens", OptionType::Count),
    ("max-model-len", OptionType::Count),
    ("prefill-base", OptionType::Duration),
    ("prefill-per-token", OptionType::Duration),
    ("decode-base", OptionType::Duration),
    ("decode-per-seq", OptionType::Duration),
    ("jitter", OptionType::Number),
    ("fixed-ttft", OptionType::Duration),
    ("fixed-itl", OptionType::Duration),
    ("default-max-tokens", OptionType::Count),
    ("eos-probability", OptionType::Number),
    ("failure-rate", OptionType::Number),
    ("seed", OptionType::Count),
    ("pull-time", OptionType::Duration),
    ("shutdown-grace", OptionType::Duration),
];

use Protocol::{
    Http, OllamaChat, OllamaGenerate, OpenaiChat, OpenaiCompletions, Postgres, Redis, Vector, S3,
};

const OPENAI: &[Protocol] = &[OpenaiCompletions, OpenaiChat, Http];
const GPU_LLM_TIMEOUT_S: f64 = 1800.0;

/// The kinds: each variant (its doc is the schema's description), its name in recipes, and
/// its spec. This list is the only place a kind is enumerated.
macro_rules! service_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $spec:ident, )*) => {
        /// The kinds of service aibench knows how to start, check and watch.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum ServiceKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        const KIND_COUNT: usize = [$($name),*].len();

        impl ServiceKind {
            pub const ALL: [ServiceKind; KIND_COUNT] = [$(ServiceKind::$variant),*];

            /// The kind's name in recipes (`kind: vllm`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ServiceKind::$variant => $name,)*
                }
            }

            /// Everything aibench knows about this kind.
            pub fn spec(self) -> &'static KindSpec {
                match self {
                    $(ServiceKind::$variant => &$spec,)*
                }
            }
        }
    };
}

service_kinds! {
    /// vLLM's OpenAI-compatible server (`vllm serve`).
    Vllm = "vllm" => VLLM,
    /// Ollama (`ollama serve`); the model is pulled before the load starts.
    Ollama = "ollama" => OLLAMA,
    /// SGLang (`python -m sglang.launch_server`).
    Sglang = "sglang" => SGLANG,
    /// Hugging Face Text Generation Inference (`text-generation-launcher`).
    Tgi = "tgi" => TGI,
    /// llama.cpp's server (`llama-server`).
    Llamacpp = "llamacpp" => LLAMACPP,
    /// aibench's own simulated LLM server (`aibench sim`): no GPU needed.
    Sim = "sim" => SIM,
    /// Redis (`redis-server`).
    Redis = "redis" => REDIS,
    /// PostgreSQL (`postgres`, with a fresh data directory).
    Postgres = "postgres" => POSTGRES,
    /// MinIO, an S3-compatible object store (`minio server`).
    Minio = "minio" => MINIO,
    /// ChromaDB (`chroma run`).
    Chroma = "chroma" => CHROMA,
    /// Qdrant (`qdrant`).
    Qdrant = "qdrant" => QDRANT,
    /// Any other program, given by `command`.
    Command = "command" => COMMAND,
}

/// A spec's defaults, for kinds that differ from them in a few fields.
const BASE: KindSpec = KindSpec {
    llm: false,
    needs_gpu: false,
    can_use_gpu: false,
    protocols: &[Http],
    model_required: None,
    default_model: None,
    health: HealthCheck::Http,
    health_path: Some("/health"),
    health_timeout_s: 120.0,
    metrics_path: None,
    scrape: Scrape::None,
    ping: Ping::Tcp,
    multi_node: MultiNode::No,
    named_ports: &[],
    run_as: None,
    program_dirs: &[],
    command: |_| KindCommand::default(),
    prepare: |_| Vec::new(),
    vector_engine: None,
    options: None,
};

/// A GPU LLM server speaking the OpenAI API, with Prometheus metrics at `/metrics`.
const GPU_LLM: KindSpec = KindSpec {
    llm: true,
    needs_gpu: true,
    can_use_gpu: true,
    protocols: OPENAI,
    model_required: Some("add `model: facebook/opt-125m` (a Hugging Face id or a local path)"),
    health_timeout_s: GPU_LLM_TIMEOUT_S,
    metrics_path: Some("/metrics"),
    ..BASE
};

static VLLM: KindSpec = KindSpec {
    scrape: Scrape::Named(MetricNames::Vllm),
    multi_node: MultiNode::Ray,
    command: |s| {
        let mut argv = words(&[
            "vllm",
            "serve",
            &model(s),
            "--host",
            "${HOST}",
            "--port",
            "${PORT}",
        ]);
        if let Some(d) = &s.distributed {
            argv.extend([
                "--tensor-parallel-size".into(),
                d.tensor_parallel_size.to_string(),
                "--pipeline-parallel-size".into(),
                d.pipeline_parallel_size.to_string(),
                "--distributed-executor-backend".into(),
                "ray".into(),
            ]);
        }
        plain(argv)
    },
    ..GPU_LLM
};

static SGLANG: KindSpec = KindSpec {
    scrape: Scrape::Named(MetricNames::Sglang),
    command: |s| {
        plain(words(&[
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            &model(s),
            "--host",
            "${HOST}",
            "--port",
            "${PORT}",
            "--enable-metrics",
        ]))
    },
    ..GPU_LLM
};

static TGI: KindSpec = KindSpec {
    scrape: Scrape::Named(MetricNames::Tgi),
    command: |s| {
        plain(words(&[
            "text-generation-launcher",
            "--model-id",
            &model(s),
            "--hostname",
            "${HOST}",
            "--port",
            "${PORT}",
        ]))
    },
    ..GPU_LLM
};

static LLAMACPP: KindSpec = KindSpec {
    needs_gpu: false,
    model_required: Some("add `model: /models/model.gguf`"),
    health_timeout_s: 600.0,
    scrape: Scrape::Named(MetricNames::Llamacpp),
    command: |s| {
        plain(words(&[
            "llama-server",
            "--model",
            &model(s),
            "--host",
            "${HOST}",
            "--port",
            "${PORT}",
            "--metrics",
        ]))
    },
    ..GPU_LLM
};

static OLLAMA: KindSpec = KindSpec {
    needs_gpu: false,
    protocols: &[
        OllamaGenerate,
        OllamaChat,
        OpenaiCompletions,
        OpenaiChat,
        Http,
    ],
    model_required: Some("add `model: llama3.2:1b`"),
    health_path: Some("/api/version"),
    health_timeout_s: 120.0,
    metrics_path: None,
    command: |_| KindCommand {
        argv: words(&["ollama", "serve"]),
        env: vec![
            ("OLLAMA_HOST".into(), "${HOST}:${PORT}".into()),
            ("OLLAMA_MODELS".into(), "${AIBENCH_DATA_DIR}/models".into()),
        ],
        setup: Vec::new(),
    },
    prepare: |s| match &s.model {
        Some(model) => vec![PrepareStep::PullModel {
            model: model.clone(),
        }],
        None => Vec::new(),
    },
    ..GPU_LLM
};

static SIM: KindSpec = KindSpec {
    llm: true,
    default_model: Some("sim"),
    protocols: &[
        OpenaiCompletions,
        OpenaiChat,
        OllamaGenerate,
        OllamaChat,
        Http,
    ],
    health_timeout_s: 30.0,
    metrics_path: Some("/metrics"),
    scrape: Scrape::Named(MetricNames::Sim),
    options: Some(SIM_OPTIONS),
    command: |s| {
        let mut argv = words(&[
            "${AIBENCH_EXE}",
            "sim",
            "--host",
            "${HOST}",
            "--port",
            "${PORT}",
        ]);
        if let Some(m) = &s.model {
            argv.extend(["--model".into(), m.clone()]);
        }
        plain(argv)
    },
    ..BASE
};

static REDIS: KindSpec = KindSpec {
    protocols: &[Redis],
    health: HealthCheck::Ping,
    health_path: None,
    health_timeout_s: 30.0,
    scrape: Scrape::RedisInfo,
    ping: Ping::Resp,
    command: |s| {
        let mut argv = words(&[
            "redis-server",
            "--bind",
            "${HOST}",
            "--port",
            "${PORT}",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "${AIBENCH_DATA_DIR}",
        ]);
        if let Some(p) = s.credentials.as_ref().and_then(|c| c.password.as_ref()) {
            argv.extend(["--requirepass".into(), p.display().to_string()]);
        }
        plain(argv)
    },
    ..BASE
};

static POSTGRES: KindSpec = KindSpec {
    protocols: &[Postgres],
    health: HealthCheck::Ping,
    health_path: None,
    health_timeout_s: 60.0,
    scrape: Scrape::PgStat,
    ping: Ping::PostgresStartup,
    // initdb and postgres refuse to run as root.
    run_as: Some("postgres"),
    // Debian keeps the server programs off PATH.
    program_dirs: &["/usr/lib/postgresql/*/bin"],
    command: |s| {
        let user = s
            .credentials
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_else(|| "aibench".into());
        KindCommand {
            argv: words(&[
                "postgres",
                "-D",
                "${AIBENCH_DATA_DIR}/pgdata",
                "-h",
                "${HOST}",
                "-p",
                "${PORT}",
                "-k",
                "${AIBENCH_DATA_DIR}",
            ]),
            env: Vec::new(),
            setup: vec![words(&[
                "initdb",
                "-D",
                "${AIBENCH_DATA_DIR}/pgdata",
                "-U",
                &user,
                "--auth=trust",
                "--no-sync",
            ])],
        }
    },
    ..BASE
};

static MINIO: KindSpec = KindSpec {
    protocols: &[S3, Http],
    health_path: Some("/minio/health/live"),
    health_timeout_s: 60.0,
    metrics_path: Some("/minio/v2/metrics/cluster"),
    scrape: Scrape::Named(MetricNames::Minio),
    named_ports: &["console"],
    command: |s| {
        let mut env = vec![(
            "MINIO_PROMETHEUS_AUTH_TYPE".to_string(),
            "public".to_string(),
        )];
        if let Some(c) = &s.credentials {
            if let Some(u) = &c.user {
                env.push(("MINIO_ROOT_USER".into(), u.clone()));
            }
            if let Some(p) = &c.password {
                env.push(("MINIO_ROOT_PASSWORD".into(), p.display().to_string()));
            }
        }
        KindCommand {
            argv: words(&[
                "minio",
                "server",
                "${AIBENCH_DATA_DIR}",
                "--address",
                "${HOST}:${PORT}",
                "--console-address",
                "${HOST}:${AIBENCH_PORT_CONSOLE}",
            ]),
            env,
            setup: Vec::new(),
        }
    },
    ..BASE
};

static CHROMA: KindSpec = KindSpec {
    protocols: &[Vector, Http],
    vector_engine: Some(VectorEngine::Chroma),
    health_path: Some("/api/v2/heartbeat"),
    command: |_| {
        plain(words(&[
            "chroma",
            "run",
            "--host",
            "${HOST}",
            "--port",
            "${PORT}",
            "--path",
            "${AIBENCH_DATA_DIR}",
        ]))
    },
    ..BASE
};

static QDRANT: KindSpec = KindSpec {
    can_use_gpu: true,
    protocols: &[Vector, Http],
    vector_engine: Some(VectorEngine::Qdrant),
    health_path: Some("/readyz"),
    metrics_path: Some("/metrics"),
    scrape: Scrape::Named(MetricNames::Qdrant),
    command: |_| KindCommand {
        argv: words(&["qdrant"]),
        env: vec![
            ("QDRANT__SERVICE__HOST".into(), "${HOST}".into()),
            ("QDRANT__SERVICE__HTTP_PORT".into(), "${PORT}".into()),
            (
                "QDRANT__STORAGE__STORAGE_PATH".into(),
                "${AIBENCH_DATA_DIR}".into(),
            ),
        ],
        setup: Vec::new(),
    },
    ..BASE
};

static COMMAND: KindSpec = KindSpec {
    can_use_gpu: true,
    protocols: &[
        OpenaiCompletions,
        OpenaiChat,
        OllamaGenerate,
        OllamaChat,
        Http,
        Redis,
        Postgres,
        S3,
        Vector,
    ],
    health: HealthCheck::Tcp,
    health_path: None,
    health_timeout_s: 600.0,
    multi_node: MultiNode::Any,
    ..BASE
};

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn plain(argv: Vec<String>) -> KindCommand {
    KindCommand {
        argv,
        ..KindCommand::default()
    }
}

fn model(s: &Service) -> String {
    s.model.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_consistent_spec() {
        for kind in ServiceKind::ALL {
            let s = kind.spec();
            assert!(!s.protocols.is_empty(), "{kind:?}");
            assert!(!s.needs_gpu || s.can_use_gpu, "{kind:?}");
            assert!(s.model_required.is_none() || s.llm, "{kind:?}");
            assert_eq!(
                s.health_path.is_some(),
                s.health == HealthCheck::Http,
                "{kind:?}"
            );
            if let Scrape::Named(_) = s.scrape {
                assert!(s.metrics_path.is_some(), "{kind:?}");
            }
        }
    }
}
