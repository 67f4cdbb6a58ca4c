//! Prometheus beside a run: its configuration, file-based discovery that follows the services,
//! a local `prometheus` process, and queries of its HTTP API.
//!
//! ```text
//! <run>/prometheus/
//!   prometheus.yml         two jobs: `aibench` (the live endpoint) and `services`
//!   targets/aibench/*.json file_sd target groups, written atomically
//!   targets/services/*.json  one file per service; removed when the service stops
//!   data/                  the TSDB (kept: `aibench export` reads it after the run)
//!   prometheus.json        where the server listens, for `aibench export`
//!   prometheus.log
//! ```
//!
//! Each service's target group carries `__metrics_path__` (so MinIO's
//! `/minio/v2/metrics/cluster` works beside vLLM's `/metrics`) and the labels `service`,
//! `kind` and `aibench_run`. Redis and PostgreSQL have no HTTP endpoint and are not listed:
//! the monitor's CSVs hold their series.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::{epoch_seconds, write_atomic};
use crate::expo::parse_value;
use crate::http::{percent_encode, Call, HttpError, HttpUrl};
use crate::target::{host_port, safe_file_stem, Target};

pub const CONFIG_FILE: &str = "prometheus.yml";
pub const STATE_FILE: &str = "prometheus.json";
pub const DATA_DIR: &str = "data";
pub const TARGETS_DIR: &str = "targets";
/// Long enough that Prometheus never deletes a run's data, even when restarted years later.
pub const RETENTION: &str = "100y";

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("could not start `{binary}`: {source}; install Prometheus (Debian: apt-get install prometheus) or give its path")]
    Spawn { binary: String, source: io::Error },
    #[error("prometheus exited before it was ready ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("prometheus at {url} was not ready after {waited:?}; see {log}")]
    NotReady {
        url: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("Prometheus answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("could not read Prometheus' answer: {0}")]
    Decode(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PrometheusError + '_ {
    move |source| PrometheusError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ------------------------------------------------------------------------------ configuration

/// What goes into `prometheus.yml`.
#[derive(Clone, Debug)]
pub struct ConfigOptions {
    pub scrape_interval: Duration,
    pub run_id: String,
}

/// `prometheus.yml` for a run; target files are found relative to the file itself.
pub fn render_config(opts: &ConfigOptions) -> String {
    let interval = format!("{}ms", opts.scrape_interval.as_millis().max(1));
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        "# Prometheus for aibench run {run}: it scrapes aibench's live load metrics and every\n\
         # service of the run. Targets follow the services through the files in targets/.\n\
         global:\n\
         \x20 scrape_interval: {interval}\n\
         \x20 scrape_timeout: {interval}\n\
         \x20 evaluation_interval: {interval}\n\
         scrape_configs:\n\
         \x20 - job_name: aibench\n\
         \x20   file_sd_configs:\n\
         \x20     - files: [\"{targets}/aibench/*.json\"]\n\
         \x20       refresh_interval: 5s\n\
         \x20 - job_name: services\n\
         \x20   file_sd_configs:\n\
         \x20     - files: [\"{targets}/services/*.json\"]\n\
         \x20       refresh_interval: 5s\n",
        run = q(&opts.run_id),
        targets = TARGETS_DIR,
    )
}

/// The file_sd target files of one Prometheus configuration directory.
#[derive(Clone, Debug)]
pub struct FileSd {
    dir: PathBuf,
    run_id: String,
}

impl FileSd {
    /// Target files under `<prom_dir>/targets/`; the folders are created.
    pub fn new(prom_dir: &Path, run_id: &str) -> Result<FileSd, PrometheusError> {
        let dir = prom_dir.join(TARGETS_DIR);
        for sub in ["aibench", "services"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(FileSd {
            dir,
            run_id: run_id.to_string(),
        })
    }

    fn write(
        &self,
        path: &Path,
        address: &str,
        labels: BTreeMap<&str, String>,
    ) -> Result<(), PrometheusError> {
        let mut labels = labels;
        labels.insert("aibench_run", self.run_id.clone());
        let body = json!([{ "targets": [address], "labels": labels }]);
        let text =
            serde_json::to_vec_pretty(&body).map_err(|e| PrometheusError::Decode(e.to_string()))?;
        write_atomic(path, &text).map_err(io_err(path))
    }

    fn service_file(&self, name: &str) -> PathBuf {
        self.dir
            .join("services")
            .join(format!("{}.json", safe_file_stem(name)))
    }

    /// List a service for scraping. Returns false (and writes nothing) for targets Prometheus
    /// cannot scrape itself (Redis, PostgreSQL).
    pub fn add_service(&self, target: &Target) -> Result<bool, PrometheusError> {
        if !target.kind.is_http() {
            return Ok(false);
        }
        let labels = BTreeMap::from([
            ("__metrics_path__", target.http_path().to_string()),
            ("service", target.name.clone()),
            ("kind", target.kind.to_string()),
        ]);
        self.write(&self.service_file(&target.name), &target.address(), labels)?;
        Ok(true)
    }

    /// Stop scraping a service (it stopped).
    pub fn remove_service(&self, name: &str) -> Result<(), PrometheusError> {
        let path = self.service_file(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// List aibench's live endpoint (`host:port` as Prometheus should reach it).
    pub fn set_live(&self, address: &str) -> Result<(), PrometheusError> {
        let labels = BTreeMap::from([("__metrics_path__", "/metrics".to_string())]);
        self.write(&self.dir.join("aibench").join("live.json"), address, labels)
    }

    pub fn remove_live(&self) -> Result<(), PrometheusError> {
        let path = self.dir.join("aibench").join("live.json");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The files currently listed (for tests and listings).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["aibench", "services"] {
            if let Ok(d) = std::fs::read_dir(self.dir.join(sub)) {
                out.extend(
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "json")),
                );
            }
        }
        out.sort();
        out
    }
}

// ------------------------------------------------------------------------------- local server

/// How to run a local Prometheus.
#[derive(Clone, Debug)]
pub struct PrometheusOptions {
    /// The `prometheus` program (default: found on `PATH`).
    pub binary: PathBuf,
    /// `<run>/prometheus`.
    pub dir: PathBuf,
    /// Where it listens; port 0 picks a free port.
    pub listen: SocketAddr,
    pub scrape_interval: Duration,
    pub run_id: String,
    /// Use this configuration text instead of the generated one.
    pub config: Option<String>,
    /// How long to wait for `/-/ready`.
    pub ready_timeout: Duration,
    /// Keep the TSDB here instead of `<dir>/data`.
    pub data_dir: Option<PathBuf>,
}

impl PrometheusOptions {
    pub fn new(dir: impl Into<PathBuf>, run_id: impl Into<String>) -> PrometheusOptions {
        PrometheusOptions {
            binary: PathBuf::from("prometheus"),
            dir: dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            scrape_interval: Duration::from_secs(5),
            run_id: run_id.into(),
            config: None,
            ready_timeout: Duration::from_secs(120),
            data_dir: None,
        }
    }
}

/// `prometheus.json`: where a run's Prometheus listened.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrometheusState {
    pub url: String,
    pub pid: u32,
    pub started_at: f64,
    /// Relative to the state file's folder.
    pub data: String,
}

/// A Prometheus process started for a run; stopped by [`LocalPrometheus::stop`], killed when
/// dropped, and asked by the kernel to stop if aibench dies first.
pub struct LocalPrometheus {
    child: Option<Child>,
    url: String,
    dir: PathBuf,
    file_sd: FileSd,
}

impl LocalPrometheus {
    /// Write the configuration, start the process and wait until it is ready.
    pub async fn start(opts: PrometheusOptions) -> Result<LocalPrometheus, PrometheusError> {
        let dir = &opts.dir;
        let data = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DATA_DIR));
        std::fs::create_dir_all(dir.join(&data)).map_err(io_err(dir))?;
        let file_sd = FileSd::new(dir, &opts.run_id)?;
        let config = opts.config.clone().unwrap_or_else(|| {
            render_config(&ConfigOptions {
                scrape_interval: opts.scrape_interval,
                run_id: opts.run_id.clone(),
            })
        });
        let config_path = dir.join(CONFIG_FILE);
        write_atomic(&config_path, config.as_bytes()).map_err(io_err(&config_path))?;
        let mut listen = opts.listen;
        if listen.port() == 0 {
            let probe = std::net::TcpListener::bind(listen).map_err(io_err(dir))?;
            listen = probe.local_addr().map_err(io_err(dir))?;
        }
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).map_err(io_err(&log_path))?;
        let log2 = log.try_clone().map_err(io_err(&log_path))?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg(format!("--config.file={CONFIG_FILE}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--storage.tsdb.retention.time={RETENTION}"))
            .arg(format!("--web.listen-address={}", listen))
            .arg("--web.enable-lifecycle")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| PrometheusError::Spawn {
            binary: opts.binary.display().to_string(),
            source,
        })?;
        let url = format!(
            "http://{}",
            host_port(&listen.ip().to_string(), listen.port())
        );
        let mut me = LocalPrometheus {
            child: Some(child),
            url: url.clone(),
            dir: dir.clone(),
            file_sd,
        };
        let api = PromApi::new(&url)?;
        let started = Instant::now();
        loop {
            if api.ready().await {
                break;
            }
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                me.child = None;
                return Err(PrometheusError::Exited {
                    status: status.to_string(),
                    tail: log_tail(&log_path),
                    log: log_path,
                });
            }
            if started.elapsed() > opts.ready_timeout {
                return Err(PrometheusError::NotReady {
                    url,
                    waited: opts.ready_timeout,
                    log: log_path,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let state = PrometheusState {
            url: me.url.clone(),
            pid: me.pid().unwrap_or(0),
            started_at: epoch_seconds(std::time::SystemTime::now()),
            data: data.display().to_string(),
        };
        let state_path = dir.join(STATE_FILE);
        let text = serde_json::to_vec_pretty(&state)
            .map_err(|e| PrometheusError::Decode(e.to_string()))?;
        write_atomic(&state_path, &text).map_err(io_err(&state_path))?;
        Ok(me)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The discovery files this server reads.
    pub fn file_sd(&self) -> &FileSd {
        &self.file_sd
    }

    pub fn api(&self) -> Result<PromApi, PrometheusError> {
        PromApi::new(&self.url)
    }

    /// Ask it to stop (SIGTERM: it flushes its head block), wait up to `grace`, then kill it.
    pub async fn stop(mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signalling our own child by its pid; it has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LocalPrometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The child gets SIGTERM when the thread that started it dies, and has its own process group
/// (a Ctrl-C in the terminal goes to aibench, which stops it in order).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(aibench_platform::process::die_with_parent(libc::SIGTERM));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Read `prometheus.json` from a run's `prometheus/` folder.
pub fn read_state(prom_dir: &Path) -> Option<PrometheusState> {
    serde_json::from_slice(&std::fs::read(prom_dir.join(STATE_FILE)).ok()?).ok()
}

// ----------------------------------------------------------------------------------- HTTP API

/// One series of a query result. An instant vector has one value per series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    /// `(unix seconds, value)`.
    pub values: Vec<(f64, f64)>,
}

/// A query's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryResult {
    /// `vector`, `matrix`, `scalar` or `string`.
    pub result_type: String,
    pub series: Vec<Series>,
    /// Warnings Prometheus attached.
    pub warnings: Vec<String>,
}

/// A client of the Prometheus HTTP API (`/api/v1/...`).
#[derive(Clone, Debug)]
pub struct PromApi {
    url: HttpUrl,
    timeout: Duration,
}

impl PromApi {
    pub fn new(url: &str) -> Result<PromApi, PrometheusError> {
        Ok(PromApi {
            url: HttpUrl::parse(url)?,
            timeout: Duration::from_secs(60),
        })
    }

    pub fn url(&self) -> String {
        self.url.base()
    }

    async fn get(&self, path_and_query: &str) -> Result<crate::http::Response, PrometheusError> {
        let path = self.url.path(path_and_query);
        let call = Call::get(&self.url.host, self.url.port, &path, self.timeout);
        Ok(call.send().await?)
    }

    /// Whether `/-/ready` answers 200.
    pub async fn ready(&self) -> bool {
        let path = self.url.path("/-/ready");
        let call = Call::get(&self.url.host, self.url.port, &path, Duration::from_secs(2));
        matches!(call.send().await, Ok(r) if r.status == 200)
    }

    /// An instant query at `time` (unix seconds; now when `None`).
    pub async fn instant(
        &self,
        query: &str,
        time: Option<f64>,
    ) -> Result<QueryResult, PrometheusError> {
        let mut q = format!("/api/v1/query?query={}", percent_encode(query));
        if let Some(t) = time {
            q.push_str(&format!("&time={t:.3}"));
        }
        self.decode(self.get(&q).await?)
    }

    /// A range query from `start` to `end` (unix seconds) every `step` seconds.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<QueryResult, PrometheusError> {
        let q = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            percent_encode(query)
        );
        self.decode(self.get(&q).await?)
    }

    /// Every metric name Prometheus holds.
    pub async fn metric_names(&self) -> Result<Vec<String>, PrometheusError> {
        let r = self.get("/api/v1/label/__name__/values").await?;
        let v = envelope(&r)?;
        Ok(v.get("data")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The state of every scrape target (`up` or `down`, last error), by scrape URL.
    pub async fn targets(&self) -> Result<Vec<(String, String, String)>, PrometheusError> {
        let r = self.get("/api/v1/targets?state=active").await?;
        let v = envelope(&r)?;
        Ok(v.pointer("/data/activeTargets")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .map(|t| {
                        let s =
                            |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                        (s("scrapeUrl"), s("health"), s("lastError"))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn decode(&self, r: crate::http::Response) -> Result<QueryResult, PrometheusError> {
        let v = envelope(&r)?;
        let data = v
            .get("data")
            .ok_or_else(|| PrometheusError::Decode("no `data`".into()))?;
        let result_type = data
            .get("resultType")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let point = |p: &serde_json::Value| -> Option<(f64, f64)> {
            let a = p.as_array()?;
            let t = a.first()?.as_f64()?;
            let v = parse_value(a.get(1)?.as_str()?)?;
            Some((t, v))
        };
        let result = data.get("result");
        let series = match result_type.as_str() {
            "vector" | "matrix" => result
                .and_then(|r| r.as_array())
                .map(|items| {
                    items
                        .iter()
                        .map(|s| {
                            let metric = s
                                .get("metric")
                                .and_then(|m| m.as_object())
                                .map(|m| {
                                    m.iter()
                                        .map(|(k, v)| {
                                            (k.clone(), v.as_str().unwrap_or("").to_string())
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            let values = if let Some(p) = s.get("value") {
                                point(p).into_iter().collect()
                            } else {
                                s.get("values")
                                    .and_then(|v| v.as_array())
                                    .map(|a| a.iter().filter_map(point).collect())
                                    .unwrap_or_default()
                            };
                            Series { metric, values }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            "scalar" => result
                .and_then(point)
                .map(|p| {
                    vec![Series {
                        metric: BTreeMap::new(),
                        values: vec![p],
                    }]
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let warnings = v
            .get("warnings")
            .and_then(|w| w.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(QueryResult {
            result_type,
            series,
            warnings,
        })
    }
}

/// The JSON of an API answer, or its error.
fn envelope(r: &crate::http::Response) -> Result<serde_json::Value, PrometheusError> {
    let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| {
        if r.is_success() {
            PrometheusError::Decode(e.to_string())
        } else {
            PrometheusError::Api {
                status: r.status,
                message: r.text().trim().chars().take(300).collect(),
            }
        }
    })?;
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        let message = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown error")
            .to_string();
        return Err(PrometheusError::Api {
            status: r.status,
            message,
        });
    }
    Ok(v)
}

impl QueryResult {
    /// Long-format CSV: `timestamp,t_s,name,labels,value`. `t_s` is on the run's clock when its
    /// epoch is known (else empty); labels as in the metrics CSVs (`k=v;k2=v2`).
    pub fn to_csv(&self, run_epoch: Option<f64>) -> String {
        use crate::csv::{encode_labels, field};
        let mut out = String::from("timestamp,t_s,name,labels,value\n");
        for s in &self.series {
            let name = s.metric.get("__name__").cloned().unwrap_or_default();
            let labels: Vec<(String, String)> = s
                .metric
                .iter()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let labels = encode_labels(&labels);
            for (t, v) in &s.values {
                let t_s = run_epoch
                    .map(|e| format!("{:.3}", t - e))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{t:.3},{t_s},{},{},{}\n",
                    field(&name),
                    field(&labels),
                    crate::expo::format_value(*v)
                ));
            }
        }
        out
    }

    /// JSON: `{"result_type", "series": [{"metric": {...}, "values": [[t, v], ...]}]}`; a value
    /// that is not finite is written as the string Prometheus uses (`NaN`, `+Inf`, `-Inf`).
    pub fn to_json(&self, query: &str, run_epoch: Option<f64>) -> serde_json::Value {
        let num = |v: f64| {
            if v.is_finite() {
                json!(v)
            } else {
                json!(crate::expo::format_value(v))
            }
        };
        json!({
            "query": query,
            "result_type": self.result_type,
            "run_epoch_s": run_epoch,
            "warnings": self.warnings,
            "series": self.series.iter().map(|s| json!({
                "metric": s.metric,
                "values": s.values.iter().map(|(t, v)| json!([t, num(*v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetKind;

    #[test]
    fn config_lists_both_jobs_with_relative_target_files() {
        let text = render_config(&ConfigOptions {
            scrape_interval: Duration::from_secs(5),
            run_id: "q-1".into(),
        });
        assert!(text.contains("scrape_interval: 5000ms"));
        assert!(text.contains("job_name: aibench"));
        assert!(text.contains("files: [\"targets/services/*.json\"]"));
    }

    #[test]
    fn target_files_are_written_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = FileSd::new(tmp.path(), "r1").unwrap();
        let t = Target::new("minio", TargetKind::Minio, "10.0.0.2", 9000)
            .with_path("/minio/v2/metrics/cluster");
        assert!(sd.add_service(&t).unwrap());
        assert!(!sd
            .add_service(&Target::new("kv", TargetKind::Redis, "h", 1))
            .unwrap());
        sd.set_live("127.0.0.1:9464").unwrap();
        assert_eq!(sd.files().len(), 2);
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join("targets/services/minio.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(v[0]["targets"][0], "10.0.0.2:9000");
        assert_eq!(
            v[0]["labels"]["__metrics_path__"],
            "/minio/v2/metrics/cluster"
        );
        assert_eq!(v[0]["labels"]["aibench_run"], "r1");
        assert_eq!(v[0]["labels"]["service"], "minio");
        sd.remove_service("minio").unwrap();
        sd.remove_service("minio").unwrap();
        sd.remove_live().unwrap();
        assert!(sd.files().is_empty());
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(tmp.path().join("targets/services"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn results_render_as_csv_and_json() {
        let r = QueryResult {
            result_type: "matrix".into(),
            series: vec![Series {
                metric: BTreeMap::from([
                    ("__name__".to_string(), "up".to_string()),
                    ("job".to_string(), "a,b".to_string()),
                ]),
                values: vec![(100.0, 1.0), (101.0, f64::NAN)],
            }],
            warnings: vec![],
        };
        assert_eq!(
            r.to_csv(Some(90.0)),
            "timestamp,t_s,name,labels,value\n100.000,10.000,up,\"job=a,b\",1\n101.000,11.000,up,\"job=a,b\",NaN\n"
        );
        let j = r.to_json("up", None);
        assert_eq!(j["series"][0]["values"][1][1], "NaN");
        assert_eq!(j["series"][0]["metric"]["job"], "a,b");
    }
}
