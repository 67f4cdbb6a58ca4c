//! The recipe: one YAML file is one experiment.
//!
//! These types are the documentation: every doc comment becomes a description in the JSON Schema
//! (`aibench schema`) and in the recipe reference of the README. Unknown keys are errors.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::interpolate::{Secret, Template};
use crate::units::{Duration, Percent, Rate, Size, SlurmTime};

/// One experiment: the services to deploy, the load to drive at them, and what to measure.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// A short name for the experiment; used in run ids and reports.
    pub name: String,
    /// What the experiment is for, shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where services and load clients run.
    #[serde(default)]
    pub platform: Platform,
    /// The services to deploy. Leave empty to benchmark services that already run (targets as URLs).
    #[serde(default)]
    pub services: Vec<Service>,
    /// The load to drive at the services.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Parameters to vary: each combination is one trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Service-level objectives: what counts as good enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// When `aibench compare` calls a change a regression (its flags override these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
    /// What to watch while the load runs.
    #[serde(default)]
    pub monitor: Monitor,
    /// Where and how results are written.
    #[serde(default)]
    pub output: Output,
    /// Seed for every random choice (arrivals, prompt sampling), so runs repeat exactly.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Run every trial this many times, in rounds (the whole sweep, then again), with the same
    /// seed. `aibench compare` counts the spread between repeats as noise; sweeps plot the
    /// repeat with the median throughput.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 100))]
    pub repeat: u32,
}

fn default_seed() -> u64 {
    42
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

// ---------------------------------------------------------------- platform

/// Where services and load clients run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// `local` runs everything as child processes of aibench on this machine; `slurm` submits jobs.
    #[serde(default)]
    pub kind: PlatformKind,
    /// Slurm settings; required when `kind: slurm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<Slurm>,
    /// The container every service runs in unless the service says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlatformKind {
    /// Child processes on this machine (the default).
    #[default]
    Local,
    /// Jobs on a Slurm cluster, or steps inside the current allocation.
    Slurm,
}

/// Settings for Slurm jobs; each maps onto an `#SBATCH` directive.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slurm {
    /// `--account`: the project to charge, e.g. `p200981`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--partition`, e.g. `gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--qos`, e.g. `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// `--time`: the time limit of each job, `HH:MM:SS` or a duration like `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<SlurmTime>,
    /// `--nodes` for the whole run when aibench runs inside one allocation; services and clients
    /// otherwise ask for their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    /// `--exclusive`: no other job shares the nodes.
    #[serde(default)]
    pub exclusive: bool,
    /// `--constraint`: node features, e.g. `a100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// `--reservation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
    /// Modules to load before anything runs, e.g. `[env/release/2023.1, Apptainer]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// Shell lines run after the modules load, e.g. `source ~/venv/bin/activate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Further `#SBATCH` options passed as written, e.g. `--mail-type=END`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

/// A container to run a service in.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// `none` runs the command directly; `apptainer` (HPC), `docker` or `podman` wrap it.
    #[serde(default)]
    pub runtime: ContainerRuntime,
    /// The image: a `.sif` path for Apptainer, or a reference such as `vllm/vllm-openai:v0.6.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Bind mounts, `host[:container[:opts]]`, e.g. `/project/models:/models:ro`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<String>,
    /// Environment variables set inside the container.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, Template>,
    /// Give the container the GPUs (`--nv` for Apptainer, `--gpus all` for Docker). Default: on
    /// when the service asks for GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<bool>,
    /// Further options for the runtime, passed as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerRuntime {
    /// No container: the command runs as is.
    #[default]
    None,
    /// `apptainer exec` (Singularity's successor, common on HPC systems).
    Apptainer,
    /// `docker run`.
    Docker,
    /// `podman run`.
    Podman,
}

// ---------------------------------------------------------------- services

/// A service to deploy: an LLM server, a database, a store.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// A name unique in the recipe; workloads and sweeps refer to the service by it.
    pub name: String,
    /// What the service is; decides the command, health check and metrics when not given.
    pub kind: ServiceKind,
    /// The model to serve (LLM kinds), e.g. `facebook/opt-125m` or a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The command to run instead of the kind's own; required for `kind: command`. A string is
    /// split like a shell would split it; a list is taken as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandLine>,
    /// Options for the server, rendered as `--key value` (`true` renders `--key`, `false` omits
    /// it). Sweeps address them as `<service>.args.<key>`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, ArgValue>,
    /// Further arguments appended as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Environment variables for the service, expanded when it starts.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, Template>,
    /// The port the service listens on. Default: a free port chosen at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Further named ports, e.g. `{ console: 9001 }` for MinIO or `{ ray: 6379 }`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ports: IndexMap<String, u16>,
    /// How to tell that the service is ready. Default: the kind's own check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Where the service exposes Prometheus metrics. Default: the kind's own endpoint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsEndpoint>,
    /// What the service needs from the machine.
    #[serde(default)]
    pub resources: Resources,
    /// How many identical copies to run; workloads spread their requests over them.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Multi-node serving (vLLM over Ray).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<Distributed>,
    /// The container for this service, replacing the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// User, password and database for the kinds that have them (postgres, redis, minio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Services that must be healthy before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

fn one() -> u32 {
    1
}

pub use crate::kinds::ServiceKind;

impl ServiceKind {
    /// LLM servers: they serve a model and speak an LLM protocol.
    pub fn is_llm(self) -> bool {
        self.spec().llm
    }

    /// Kinds that cannot do useful work without a GPU.
    pub fn needs_gpu(self) -> bool {
        self.spec().needs_gpu
    }

    /// Kinds that can use a GPU at all.
    pub fn can_use_gpu(self) -> bool {
        self.spec().can_use_gpu
    }

    /// The protocols a workload may speak to this kind.
    pub fn protocols(self) -> &'static [Protocol] {
        self.spec().protocols
    }
}

/// A command line: a string run by `sh -c`, or a list of arguments run as is. `${PORT}`,
/// `${HOST}`, `${AIBENCH_DATA_DIR}` and the other runtime variables are expanded when the service
/// starts, as is anything from the environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CommandLine {
    Shell(Template),
    Argv(Vec<Template>),
}

/// A value of a server option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ArgValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// How to tell that a service is ready to take load.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `http` (GET a path, expect 2xx), `tcp` (a connection is accepted), `ping` (the protocol's
    /// own ping: Redis `PING`, PostgreSQL startup), or `none`.
    #[serde(default)]
    pub check: HealthCheck,
    /// The path for `check: http`. Default: the kind's own, e.g. `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How long to wait for readiness before giving up. Loading a large model takes minutes.
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    /// How often to check.
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    /// During the measurement the check goes on at `interval`; a service whose check has
    /// failed (no answer, refused, an error status) for this long is judged hung or down and
    /// the trial fails. `0s`: not checked during the measurement.
    #[serde(default = "default_hung_after")]
    pub hung_after: Duration,
}

fn default_hung_after() -> Duration {
    Duration(std::time::Duration::from_secs(15))
}

fn default_health_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(600))
}

fn default_health_interval() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HealthCheck {
    /// GET `path` and expect a 2xx answer.
    #[default]
    Http,
    /// A TCP connection to the port is accepted.
    Tcp,
    /// The protocol's own ping (Redis `PING`, PostgreSQL startup packet).
    Ping,
    /// Do not check; the service counts as ready once started.
    None,
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl HealthCheck {
    pub fn name(self) -> &'static str {
        match self {
            HealthCheck::Http => "http",
            HealthCheck::Tcp => "tcp",
            HealthCheck::Ping => "ping",
            HealthCheck::None => "none",
        }
    }
}

/// Where a service exposes Prometheus metrics.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsEndpoint {
    /// Scrape this service at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The HTTP path, e.g. `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub path: String,
    /// The port, when it differs from the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

fn yes() -> bool {
    true
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// What a service needs from the machine. On Slurm these become the job's request.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Nodes the service spans (more than one for multi-node serving).
    #[serde(default = "one")]
    pub nodes: u32,
    /// GPUs per node.
    #[serde(default)]
    pub gpus: u32,
    /// CPU cores per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory per node, e.g. `64GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            nodes: 1,
            gpus: 0,
            cpus: None,
            memory: None,
        }
    }
}

/// Multi-node serving: vLLM over a Ray cluster (head on the first node, workers on the others).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Distributed {
    /// The distributed executor; only `ray` today.
    #[serde(default)]
    pub backend: DistributedBackend,
    /// GPUs a model layer is split across (`--tensor-parallel-size`).
    #[serde(default = "one")]
    pub tensor_parallel_size: u32,
    /// Nodes the layers are split across (`--pipeline-parallel-size`).
    #[serde(default = "one")]
    pub pipeline_parallel_size: u32,
    /// The Ray head's port.
    #[serde(default = "default_ray_port")]
    pub ray_port: u16,
}

fn default_ray_port() -> u16 {
    6379
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DistributedBackend {
    /// A Ray cluster started by aibench.
    #[default]
    Ray,
}

/// Credentials for a service that has them.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name (PostgreSQL role, MinIO access key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (PostgreSQL, Redis `requirepass`, MinIO secret key): give it as `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Database name (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

// ---------------------------------------------------------------- workloads

/// Load driven at one target.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// A name unique in the recipe; sweeps refer to the workload by it.
    pub name: String,
    /// A service name from `services`, or a URL such as `http://gpu-node-3:8000`.
    pub target: String,
    /// How requests are made.
    pub protocol: Protocol,
    /// The API path, when it differs from the protocol's own (e.g. `/v1/completions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The model name sent in requests. Default: the target service's `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Stream responses (LLM protocols); needed to measure TTFT and ITL.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Ask the server to ignore end-of-sequence so that every request yields its full output
    /// length (`ignore_eos`, a vLLM and SGLang extension of the OpenAI API; OpenAI protocols).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
    /// An API key, sent as `Authorization: Bearer ...`; give it as `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Extra request headers. Values are treated as secrets and never recorded.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, Secret>,
    /// The request for `protocol: http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequest>,
    /// Options for `protocol: redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisOptions>,
    /// Options for `protocol: s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Options>,
    /// Options for `protocol: vector` (which engine, when the target is a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<VectorOptions>,
    /// Where prompts, keys or queries come from.
    #[serde(default)]
    pub dataset: Dataset,
    /// How requests arrive.
    pub load: Load,
    /// When the workload stops; the first condition met ends it.
    #[serde(default)]
    pub stop: Stop,
    /// A first period whose requests are sent but left out of the statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Duration>,
    /// A last period whose requests are sent but left out of the statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// How long one request may take before it counts as a timeout.
    #[serde(default = "default_request_timeout")]
    pub timeout: Duration,
    /// The load client processes: `nodes` x `processes`, each driving an equal share.
    #[serde(default)]
    pub clients: Clients,
}

impl Workload {
    /// How long its load runs, warm-up and cool-down included, when a duration bounds it
    /// (`None`: it stops after a number of requests, or when its schedule ends).
    pub fn load_time(&self) -> Option<std::time::Duration> {
        let d = |x: Option<Duration>| x.map(|d| d.std()).unwrap_or_default();
        self.stop
            .duration
            .map(|m| d(self.warmup) + m.std() + d(self.cooldown))
    }
}

fn default_request_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(300))
}

/// How a workload talks to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// OpenAI `/v1/completions`.
    OpenaiCompletions,
    /// OpenAI `/v1/chat/completions`.
    OpenaiChat,
    /// Ollama `/api/generate`.
    OllamaGenerate,
    /// Ollama `/api/chat`.
    OllamaChat,
    /// Any HTTP request, given by `http`.
    Http,
    /// Redis commands (`GET`/`SET`).
    Redis,
    /// PostgreSQL queries.
    Postgres,
    /// S3 object `PUT`/`GET` (MinIO).
    S3,
    /// Vector database insert and query (ChromaDB, Qdrant).
    Vector,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenaiCompletions => "openai-completions",
            Protocol::OpenaiChat => "openai-chat",
            Protocol::OllamaGenerate => "ollama-generate",
            Protocol::OllamaChat => "ollama-chat",
            Protocol::Http => "http",
            Protocol::Redis => "redis",
            Protocol::Postgres => "postgres",
            Protocol::S3 => "s3",
            Protocol::Vector => "vector",
        }
    }

    pub fn is_llm(self) -> bool {
        matches!(
            self,
            Protocol::OpenaiCompletions
                | Protocol::OpenaiChat
                | Protocol::OllamaGenerate
                | Protocol::OllamaChat
        )
    }
}

/// A generic HTTP request.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// The method.
    #[serde(default)]
    pub method: HttpMethod,
    /// The path and query, e.g. `/v1/embeddings`.
    #[serde(default = "default_http_path")]
    pub path: String,
    /// The body. `{{prompt}}` is replaced by a prompt from the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

fn default_http_path() -> String {
    "/".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Delete,
    Head,
    Patch,
}

/// Where requests come from.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dataset {
    /// Generated prompts of chosen lengths, the same text for the same seed.
    Synthetic {
        /// Prompt length in tokens: a number, `{ min, max }` (uniform) or `{ mean, stddev }`.
        #[serde(default = "default_prompt_tokens")]
        prompt_tokens: Length,
        /// Output length in tokens (`max_tokens`), in the same forms.
        #[serde(default = "default_output_tokens")]
        output_tokens: Length,
        /// Tokens of a prefix shared by every prompt (exercises prefix caching).
        #[serde(default)]
        shared_prefix_tokens: u32,
    },
    /// A JSON Lines file, one prompt per line: `{"prompt": ...}` or `{"text": ...}`.
    Jsonl {
        /// Path to the file.
        path: String,
        /// The field holding the prompt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// Output tokens to ask for when a line does not say.
        #[serde(default = "default_output_tokens")]
        output_tokens: Length,
    },
    /// ShareGPT-style conversations (`conversations: [{from, value}]`).
    Sharegpt {
        /// Path to the JSON or JSON Lines file.
        path: String,
        /// Output tokens to ask for; default: the length of the recorded answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_tokens: Option<Length>,
    },
    /// HellaSwag-format items (`ctx` and `endings`), as JSON Lines.
    Hellaswag {
        /// Path to the file.
        path: String,
        /// Output tokens to ask for.
        #[serde(default = "default_output_tokens")]
        output_tokens: Length,
    },
    /// Keys and values for key-value and object stores (Redis, S3).
    KeyValue {
        /// Distinct keys (objects for S3), written once before the clock starts unless
        /// `preload: false`.
        #[serde(default = "default_keys")]
        keys: u64,
        /// Size of each value or object: a size (`1KiB`) or `{ min, max }` (uniform).
        #[serde(default = "default_value_size")]
        value_size: SizeRange,
        /// Share of reads; the rest are writes.
        #[serde(default = "default_read_share")]
        read_share: Percent,
        /// How operations pick keys: `uniform`, or `zipfian` (a few hot keys, a long tail).
        #[serde(default)]
        access: KeyAccess,
        /// The Zipfian exponent (`access: zipfian`): 0 is uniform, YCSB uses 0.99.
        #[serde(default = "default_zipf_exponent")]
        zipf_exponent: f64,
        /// Write every key before the clock starts, so that reads find their values.
        #[serde(default = "yes")]
        preload: bool,
    },
    /// Vectors for vector databases.
    Vectors {
        /// Dimensions of each vector. Default: 384 for generated vectors; with `path`, the
        /// file's (if given, it must agree with the file).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dimensions: Option<u32>,
        /// Vectors inserted before the load starts (ids `0..collection_size`). Default: 10000
        /// generated vectors; with `path`, every vector of the file (if given, the first
        /// `collection_size`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection_size: Option<u64>,
        /// Neighbours asked for in each query (recall@k is judged at this k).
        #[serde(default = "default_top_k")]
        top_k: u32,
        /// Distinct query vectors; operation `n` asks for the neighbours of query `n mod
        /// queries`. Default: 1000 generated; with `queries_path`, every vector of the file
        /// (if given, the first `queries`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queries: Option<u32>,
        /// The distance the collection is created with, and the exact neighbours computed by:
        /// `cosine`, `l2` or `dot`.
        #[serde(default)]
        metric: VectorMetric,
        /// Vectors per insert request, in the load and in the preload before it.
        #[serde(default = "default_insert_batch")]
        insert_batch: u32,
        /// Share of operations that are queries; the rest insert `insert_batch` new vectors,
        /// which queries never see (they then filter on the preloaded set), so recall stays
        /// exact.
        #[serde(default = "hundred_percent")]
        query_share: Percent,
        /// Filtered queries: every vector carries the payload `bucket = id mod filter_buckets`,
        /// and each query asks for its neighbours within one bucket. Absent: unfiltered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter_buckets: Option<u32>,
        /// The collection's vectors from a file instead of generated ones: a NumPy `.npy`
        /// (2-D float32) or an `.fvecs` file. Relative to the recipe's folder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// The query vectors from a file (`.npy` or `.fvecs`). Default: generated like the
        /// collection's from their own seed, or, with `path`, midpoints of two collection
        /// vectors.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queries_path: Option<String>,
        /// The collection's name; it is dropped and created again before each trial.
        #[serde(default = "default_collection")]
        collection: String,
    },
    /// SQL for PostgreSQL: give exactly one of `queries`, `scripts` and `builtin`. Every
    /// statement is prepared once per connection; `{{name}}` in a statement is a parameter
    /// (see `params`), sent as a bound value in the type PostgreSQL infers for it.
    Sql {
        /// Single statements: each operation runs one of them, picked with equal weights; its
        /// operation name is the statement's verb and table (`SELECT docs`). `{{n}}` is a
        /// number drawn uniformly from 1 to 1000000 unless `params` declares `n`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        queries: Vec<String>,
        /// A built-in workload: `tpcb`, pgbench's TPC-B-like transaction (update an account,
        /// read its balance, update a teller and a branch, append to the history) on pgbench's
        /// tables at `scale`, created and filled before the clock unless they already hold
        /// that scale (so tables made by `pgbench -i -s N` are used as they are).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        builtin: Option<SqlBuiltin>,
        /// Size of the built-in workload's data: `scale` branches, 10 tellers and 100000
        /// accounts per branch, as pgbench's `-s`.
        #[serde(default = "default_sql_scale")]
        scale: u32,
        /// Weighted scripts: each operation picks one by weight and runs its statements, as
        /// one transaction when there are several. Operations and their statements are
        /// reported apart (`transfer`, and `transfer: UPDATE accounts` for each step).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scripts: Vec<SqlScript>,
        /// Integer parameters the statements use as `{{name}}`: drawn once per operation
        /// (the same value in every statement of a script), uniformly from `min..=max` or,
        /// with `zipf_exponent`, Zipfian over it (`min` the most frequent).
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        params: IndexMap<String, SqlParam>,
        /// Statements run once before the load starts (create and fill tables); with
        /// `builtin`, after its tables are made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        setup: Vec<String>,
    },
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset::Synthetic {
            prompt_tokens: default_prompt_tokens(),
            output_tokens: default_output_tokens(),
            shared_prefix_tokens: 0,
        }
    }
}

fn default_sql_scale() -> u32 {
    1
}

/// A built-in SQL workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SqlBuiltin {
    /// pgbench's default TPC-B-like transaction on `pgbench_accounts`, `pgbench_tellers`,
    /// `pgbench_branches` and `pgbench_history`.
    Tpcb,
}

/// Statements run together as one operation.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlScript {
    /// The operation's name in results; unique in the workload.
    pub name: String,
    /// Relative weight in the mix (at least 1): a script of weight 3 runs three times as
    /// often as one of weight 1.
    #[serde(default = "default_sql_weight")]
    pub weight: u32,
    /// The statements, with `{{name}}` parameters; several run as one transaction.
    pub statements: Vec<String>,
}

fn default_sql_weight() -> u32 {
    1
}

/// An integer parameter of SQL statements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlParam {
    /// The smallest value.
    pub min: i64,
    /// The largest value.
    pub max: i64,
    /// Draw Zipfian over `min..=max` with this exponent (`min` the most frequent; YCSB uses
    /// 0.99) instead of uniformly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipf_exponent: Option<f64>,
}

fn default_prompt_tokens() -> Length {
    Length::Fixed(256)
}
fn default_output_tokens() -> Length {
    Length::Fixed(128)
}
fn default_keys() -> u64 {
    10_000
}
fn default_value_size() -> SizeRange {
    SizeRange::Fixed(Size(1024))
}
fn default_zipf_exponent() -> f64 {
    0.99
}

/// A size, or a range of sizes drawn uniformly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SizeRange {
    Fixed(Size),
    Uniform { min: Size, max: Size },
}

/// How operations pick keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAccess {
    /// Every key equally likely.
    #[default]
    Uniform,
    /// Key k with probability proportional to 1/k^zipf_exponent.
    Zipfian,
}

/// S3 options of a workload.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// The bucket, created before the clock if it does not exist.
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// The region requests are signed for (MinIO accepts any).
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key; default: the target service's `credentials.user`, else MinIO's default
    /// `minioadmin`. Give it as `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    /// Secret key; default: the target service's `credentials.password`, else `minioadmin`.
    /// Give it as `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// Share of operations that list objects (`ListObjectsV2`); taken first, then
    /// `delete_share`; the rest are GETs and PUTs split by the dataset's `read_share`.
    #[serde(default)]
    pub list_share: Percent,
    /// Share of operations that delete an object (a later GET of it is a miss).
    #[serde(default)]
    pub delete_share: Percent,
    /// Keys asked for per list.
    #[serde(default = "default_list_max_keys")]
    pub list_max_keys: u32,
    /// Objects larger than this are written as multipart uploads.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: Size,
    /// Size of each part of a multipart upload (at least 5MiB).
    #[serde(default = "default_part_size")]
    pub part_size: Size,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            bucket: default_bucket(),
            region: default_region(),
            access_key: None,
            secret_key: None,
            list_share: Percent(0.0),
            delete_share: Percent(0.0),
            list_max_keys: default_list_max_keys(),
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
        }
    }
}

fn default_bucket() -> String {
    "aibench".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_list_max_keys() -> u32 {
    100
}
fn default_multipart_threshold() -> Size {
    Size(64 << 20)
}
fn default_part_size() -> Size {
    Size(16 << 20)
}

/// Redis options of a workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisOptions {
    /// Commands sent per round trip (`redis-benchmark -P`); each record covers the batch.
    #[serde(default = "one")]
    pub pipeline: u32,
}
fn default_read_share() -> Percent {
    Percent(90.0)
}
/// Dimensions of generated vectors when the recipe does not say.
pub const DEFAULT_VECTOR_DIMENSIONS: u32 = 384;
/// Generated collection vectors when the recipe does not say.
pub const DEFAULT_COLLECTION_SIZE: u64 = 10_000;
/// Generated query vectors when the recipe does not say.
pub const DEFAULT_VECTOR_QUERIES: u32 = 1000;
fn default_top_k() -> u32 {
    10
}
fn default_insert_batch() -> u32 {
    256
}
fn hundred_percent() -> Percent {
    Percent(100.0)
}
fn default_collection() -> String {
    "aibench".into()
}

/// The distance of a vector collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VectorMetric {
    /// 1 - cosine similarity (ChromaDB `cosine`, Qdrant `Cosine`).
    #[default]
    Cosine,
    /// Euclidean distance (ChromaDB `l2`, Qdrant `Euclid`).
    L2,
    /// Inner product, larger is nearer (ChromaDB `ip`, Qdrant `Dot`).
    Dot,
}

/// Which vector database a `protocol: vector` workload talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VectorEngine {
    /// ChromaDB 1.x (REST API v2).
    Chroma,
    /// Qdrant 1.10 or later (REST API).
    Qdrant,
}

impl VectorEngine {
    pub fn name(self) -> &'static str {
        match self {
            VectorEngine::Chroma => "chroma",
            VectorEngine::Qdrant => "qdrant",
        }
    }

    /// The engine a service kind is, if it is a vector database.
    pub fn of_kind(kind: ServiceKind) -> Option<VectorEngine> {
        kind.spec().vector_engine
    }
}

/// Options of a `protocol: vector` workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorOptions {
    /// `chroma` or `qdrant`. Default: the target service's kind; needed when the target is a
    /// URL or a `command` service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<VectorEngine>,
    /// ChromaDB tenant (default `default_tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// ChromaDB database (default `default_database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// A length in tokens: a number, `{ min, max }` (uniform) or `{ mean, stddev }` (normal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Length {
    Fixed(u32),
    Uniform { min: u32, max: u32 },
    Normal { mean: u32, stddev: u32 },
}

/// How requests arrive.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "pattern", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Load {
    /// A fixed number of users, each sending its next request when the last one ends (plus think
    /// time). Measures the throughput at a concurrency.
    ClosedLoop {
        /// Concurrent users (requests in flight), 1 to 100000 (a connection each).
        #[schemars(range(min = 1, max = 100000))]
        users: u32,
        /// Pause between a response and the user's next request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        think_time: Option<Duration>,
        /// How think times vary around `think_time`.
        #[serde(default)]
        think_time_distribution: ThinkTime,
        /// Start the users evenly over this period instead of all at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ramp_up: Option<Duration>,
    },
    /// Requests arrive on a schedule whatever the service does, as real users do. Latency is
    /// measured from the scheduled time, so a slow service cannot hide (no coordinated omission).
    OpenLoop {
        /// The arrival process.
        #[serde(default)]
        arrival: Arrival,
        /// Requests per second (`constant`, `poisson`, `gamma`, `bursts`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<Rate>,
        /// Gamma burstiness as vLLM defines it: 1 is Poisson, below 1 burstier, above 1 steadier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burstiness: Option<f64>,
        /// `arrival: step`: rates held for a time each, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<RateStep>,
        /// `arrival: ramp`: the rate goes linearly from `from` to `to` over `over`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ramp: Option<Ramp>,
        /// `arrival: bursts`: `on` at `rate`, then `off` silent, repeated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bursts: Option<Bursts>,
        /// `arrival: trace`: a file with one send offset per line (seconds from the start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
        /// Most requests in flight at once. A request that cannot start on time is counted as
        /// dropped, never silently delayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_in_flight: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ThinkTime {
    /// Exactly `think_time`.
    #[default]
    Fixed,
    /// Exponentially distributed with mean `think_time`.
    Exponential,
    /// Uniform between zero and twice `think_time`.
    Uniform,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Evenly spaced at `rate`.
    Constant,
    /// A Poisson process at `rate` (exponential gaps).
    #[default]
    Poisson,
    /// Gamma-distributed gaps at `rate` with `burstiness`.
    Gamma,
    /// Piecewise-constant rate, from `steps`.
    Step,
    /// Linearly changing rate, from `ramp`.
    Ramp,
    /// On/off bursts, from `bursts`.
    Bursts,
    /// Replay of recorded send times, from `trace`.
    Trace,
}

/// One step of a stepped rate.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    pub rate: Rate,
    pub duration: Duration,
}

/// A linear ramp of the rate.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub from: Rate,
    pub to: Rate,
    pub over: Duration,
}

/// On/off bursts.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    /// Length of each burst.
    pub on: Duration,
    /// Silence between bursts.
    pub off: Duration,
}

/// When a workload stops. The first condition met ends it; at least `duration` or `requests`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Run for this long (after warm-up, before cool-down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Stop after this many requests (warm-up excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Abort after this many errors in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_errors: Option<u32>,
    /// Abort when the error rate rises above this (checked once 100 requests have ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Percent>,
    /// Pause of a closed-loop user after a failed request, doubling on each failure in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_backoff: Option<Duration>,
    /// Hard deadline from the workload's start, drain included: when it passes, requests in
    /// flight get 10 s, then are cancelled. Default: warm-up + duration + cool-down + the
    /// request timeout with `duration`; one hour with `requests` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<Duration>,
    /// A hung server: when requests are in flight and none has received a byte or ended for
    /// this long, the workload stops and fails (`stalled`). Default 60s for streamed responses
    /// (LLM streams); otherwise off unless set, since an unstreamed answer is silent until it
    /// ends. `0s`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Duration>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            duration: Some(Duration(std::time::Duration::from_secs(60))),
            requests: None,
            max_consecutive_errors: None,
            max_error_rate: None,
            error_backoff: None,
            max_duration: None,
            stall: None,
        }
    }
}

/// The load client processes.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// Nodes running client processes (Slurm).
    #[serde(default = "one")]
    pub nodes: u32,
    /// Client processes per node.
    #[serde(default = "one")]
    pub processes: u32,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            nodes: 1,
            processes: 1,
        }
    }
}

// ---------------------------------------------------------------- sweep, slo, monitor, output

/// Parameters to vary. Every combination of the `matrix` values is one trial; each `zip` group
/// varies its parameters together (the n-th values go in the same trial) and multiplies in as one
/// axis. A parameter is addressed as `<service or workload name>.<field path>`, e.g.
/// `chat.load.users` or `llm.args.max-num-seqs`, or a section path such as `slo.ttft_p99`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Parameters whose values combine in every way (Cartesian product).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub matrix: IndexMap<String, Vec<serde_json::Value>>,
    /// Groups of parameters that vary together; lists in a group have equal lengths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zip: Vec<IndexMap<String, Vec<serde_json::Value>>>,
}

pub use aibench_results::objectives::Slo;

/// Thresholds for `aibench compare`: a change beyond any of them is a regression (exit code 1).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    /// Largest allowed rise of p99 latencies (default `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<Percent>,
    /// Largest allowed fall of throughput (default `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Percent>,
    /// Largest allowed fall of the success rate, in percentage points (default `1%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<Percent>,
    /// Any error class absent from the baseline is a regression (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_errors: Option<bool>,
    /// Latency changes smaller than this are noise, whatever their percentage (default `2ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_latency_delta: Option<Duration>,
}

/// What to watch while the load runs.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    /// How often to scrape service metrics and sample the hosts.
    #[serde(default = "default_monitor_interval")]
    pub interval: Duration,
    /// Scrape each service's metrics endpoint.
    #[serde(default = "yes")]
    pub services: bool,
    /// Sample CPU, memory, network and disk of every host.
    #[serde(default = "yes")]
    pub system: bool,
    /// Sample GPUs through NVML where present.
    #[serde(default = "yes")]
    pub gpu: bool,
    /// Serve aibench's own load metrics for Prometheus on this port during the run (0: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_port: Option<u16>,
    /// Push aibench's load metrics to this Prometheus Pushgateway URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushgateway: Option<String>,
    /// Deploy a Prometheus server beside the services.
    #[serde(default)]
    pub prometheus: bool,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            interval: default_monitor_interval(),
            services: true,
            system: true,
            gpu: true,
            expose_port: None,
            pushgateway: None,
            prometheus: false,
        }
    }
}

fn default_monitor_interval() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}

/// Where and how results are written.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The results root; each run gets `<dir>/<run-id>/`.
    #[serde(default = "default_output_dir")]
    pub dir: String,
    /// Keep one line per request (`requests.jsonl`); summaries are always written.
    #[serde(default = "yes")]
    pub requests: bool,
    /// Report formats to write.
    #[serde(default = "default_formats")]
    pub formats: Vec<ReportFormat>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            dir: default_output_dir(),
            requests: true,
            formats: default_formats(),
        }
    }
}

fn default_output_dir() -> String {
    "results".into()
}

fn default_formats() -> Vec<ReportFormat> {
    vec![
        ReportFormat::Markdown,
        ReportFormat::Html,
        ReportFormat::Json,
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}
