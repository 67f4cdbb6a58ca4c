//! What each service kind runs by default: its command, health check and metrics endpoint.
//!
//! Commands use the runtime variables that the platform sets when it starts a service:
//! `${HOST}`, `${PORT}`, `${AIBENCH_DATA_DIR}` (a fresh directory for the service's state),
//! `${AIBENCH_PORT_<NAME>}` for named ports, and `${AIBENCH_EXE}` (this aibench binary).

use aibench_recipe::{ArgValue, HealthCheck, Service, ServiceKind};

#[derive(Clone, Debug)]
pub struct KindDefaults {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub setup: Vec<Vec<String>>,
    pub health: HealthCheck,
    pub health_path: Option<String>,
    pub health_timeout_s: f64,
    pub metrics_path: Option<String>,
    /// Named ports the command needs besides the main one (`${AIBENCH_PORT_<NAME>}`).
    pub named_ports: Vec<&'static str>,
    /// The system user the setup commands and the service run as when aibench runs as root,
    /// for programs that refuse root (PostgreSQL's `initdb` and `postgres`); that user then
    /// owns the data directory.
    pub run_as: Option<&'static str>,
    /// Folders searched for the programs after PATH, a `*` standing for a version (the
    /// highest first): Debian keeps PostgreSQL's server programs in
    /// `/usr/lib/postgresql/<version>/bin`, off PATH.
    pub program_dirs: Vec<&'static str>,
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// argv, env, setup commands, (health check, path), health timeout in seconds, metrics path.
type KindParts = (
    Vec<String>,
    Vec<(String, String)>,
    Vec<Vec<String>>,
    (HealthCheck, Option<String>),
    f64,
    Option<&'static str>,
);

/// The defaults for a service's kind, with its model filled in.
pub fn defaults(s: &Service) -> KindDefaults {
    let model = s.model.clone().unwrap_or_default();
    let http = |path: &str| (HealthCheck::Http, Some(path.to_string()));
    let (argv, env, setup, (health, health_path), timeout, metrics): KindParts = match s.kind {
        ServiceKind::Vllm => {
            let mut a = v(&[
                "vllm", "serve", &model, "--host", "${HOST}", "--port", "${PORT}",
            ]);
            if let Some(d) = &s.distributed {
                a.extend([
                    "--tensor-parallel-size".into(),
                    d.tensor_parallel_size.to_string(),
                    "--pipeline-parallel-size".into(),
                    d.pipeline_parallel_size.to_string(),
                    "--distributed-executor-backend".into(),
                    "ray".into(),
                ]);
            }
            (a, vec![], vec![], http("/health"), 1800.0, Some("/metrics"))
        }
        ServiceKind::Sglang => (
            v(&[
                "python3",
                "-m",
                "sglang.launch_server",
                "--model-path",
                &model,
                "--host",
                "${HOST}",
                "--port",
                "${PORT}",
                "--enable-metrics",
            ]),
            vec![],
            vec![],
            http("/health"),
            1800.0,
            Some("/metrics"),
        ),
        ServiceKind::Tgi => (
            v(&[
                "text-generation-launcher",
                "--model-id",
                &model,
                "--hostname",
                "${HOST}",
                "--port",
                "${PORT}",
            ]),
            vec![],
            vec![],
            http("/health"),
            1800.0,
            Some("/metrics"),
        ),
        ServiceKind::Llamacpp => (
            v(&[
                "llama-server",
                "--model",
                &model,
                "--host",
                "${HOST}",
                "--port",
                "${PORT}",
                "--metrics",
            ]),
            vec![],
            vec![],
            http("/health"),
            600.0,
            Some("/metrics"),
        ),
        ServiceKind::Ollama => (
            v(&["ollama", "serve"]),
            vec![
                ("OLLAMA_HOST".into(), "${HOST}:${PORT}".into()),
                ("OLLAMA_MODELS".into(), "${AIBENCH_DATA_DIR}/models".into()),
            ],
            vec![],
            http("/api/version"),
            120.0,
            None,
        ),
        ServiceKind::Sim => {
            let mut a = v(&[
                "${AIBENCH_EXE}",
                "sim",
                "--host",
                "${HOST}",
                "--port",
                "${PORT}",
            ]);
            if !model.is_empty() {
                a.extend(["--model".into(), model.clone()]);
            }
            (a, vec![], vec![], http("/health"), 30.0, Some("/metrics"))
        }
        ServiceKind::Redis => {
            let mut a = v(&[
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
                a.extend(["--requirepass".into(), p.display().to_string()]);
            }
            (a, vec![], vec![], (HealthCheck::Ping, None), 30.0, None)
        }
        ServiceKind::Postgres => {
            let user = s
                .credentials
                .as_ref()
                .and_then(|c| c.user.clone())
                .unwrap_or_else(|| "aibench".into());
            (
                v(&[
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
                vec![],
                vec![v(&[
                    "initdb",
                    "-D",
                    "${AIBENCH_DATA_DIR}/pgdata",
                    "-U",
                    &user,
                    "--auth=trust",
                    "--no-sync",
                ])],
                (HealthCheck::Ping, None),
                60.0,
                None,
            )
        }
        ServiceKind::Minio => {
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
            (
                v(&[
                    "minio",
                    "server",
                    "${AIBENCH_DATA_DIR}",
                    "--address",
                    "${HOST}:${PORT}",
                    "--console-address",
                    "${HOST}:${AIBENCH_PORT_CONSOLE}",
                ]),
                env,
                vec![],
                http("/minio/health/live"),
                60.0,
                Some("/minio/v2/metrics/cluster"),
            )
        }
        ServiceKind::Chroma => (
            v(&[
                "chroma",
                "run",
                "--host",
                "${HOST}",
                "--port",
                "${PORT}",
                "--path",
                "${AIBENCH_DATA_DIR}",
            ]),
            vec![],
            vec![],
            http("/api/v2/heartbeat"),
            120.0,
            None,
        ),
        ServiceKind::Qdrant => (
            v(&["qdrant"]),
            vec![
                ("QDRANT__SERVICE__HOST".into(), "${HOST}".into()),
                ("QDRANT__SERVICE__HTTP_PORT".into(), "${PORT}".into()),
                (
                    "QDRANT__STORAGE__STORAGE_PATH".into(),
                    "${AIBENCH_DATA_DIR}".into(),
                ),
            ],
            vec![],
            http("/readyz"),
            120.0,
            Some("/metrics"),
        ),
        ServiceKind::Command => (
            vec![],
            vec![],
            vec![],
            (HealthCheck::Tcp, None),
            600.0,
            None,
        ),
    };
    KindDefaults {
        argv,
        env,
        setup,
        health,
        health_path,
        health_timeout_s: timeout,
        metrics_path: metrics.map(String::from),
        named_ports: if s.kind == ServiceKind::Minio {
            vec!["console"]
        } else {
            vec![]
        },
        run_as: (s.kind == ServiceKind::Postgres).then_some("postgres"),
        program_dirs: if s.kind == ServiceKind::Postgres {
            vec!["/usr/lib/postgresql/*/bin"]
        } else {
            vec![]
        },
    }
}

/// Append the service's `args` (`--key value`, `true` as a bare flag) and `extra_args`.
pub fn render_args(s: &Service, mut argv: Vec<String>) -> Vec<String> {
    for (key, value) in &s.args {
        let flag = if key.starts_with('-') {
            key.clone()
        } else {
            format!("--{key}")
        };
        match value {
            ArgValue::Bool(true) => argv.push(flag),
            ArgValue::Bool(false) => {}
            ArgValue::Int(i) => argv.extend([flag, i.to_string()]),
            ArgValue::Float(f) => argv.extend([flag, f.to_string()]),
            ArgValue::Text(t) => argv.extend([flag, t.clone()]),
        }
    }
    argv.extend(s.extra_args.iter().cloned());
    argv
}

/// The kind's work between health and load (a model pull), for every platform to run.
pub fn prepare_steps(s: &Service) -> Vec<crate::PrepareStep> {
    match (s.kind, &s.model) {
        (ServiceKind::Ollama, Some(model)) => {
            vec![crate::PrepareStep::PullModel {
                model: model.clone(),
            }]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    fn service(kind: &str) -> aibench_recipe::Service {
        let yaml = format!("name: t\nservices:\n  - name: s\n    kind: {kind}\n");
        let loaded = aibench_recipe::load_str("r.yaml", &yaml, &|_: &str| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        loaded.recipe.services[0].clone()
    }

    #[test]
    fn postgres_runs_as_its_own_user_and_is_looked_for_where_debian_keeps_it() {
        let d = super::defaults(&service("postgres"));
        assert_eq!(d.run_as, Some("postgres"));
        assert_eq!(d.program_dirs, ["/usr/lib/postgresql/*/bin"]);
        assert_eq!(d.setup[0][0], "initdb");
        let r = super::defaults(&service("redis"));
        assert_eq!(r.run_as, None);
        assert!(r.program_dirs.is_empty());
    }
}
