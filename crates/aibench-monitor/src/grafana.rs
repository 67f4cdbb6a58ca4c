//! Grafana dashboards and provisioning for a run's Prometheus, written into `<run>/grafana/`:
//!
//! ```text
//! grafana/
//!   provisioning/datasources/aibench.yaml   the run's Prometheus, uid `aibench-prometheus`
//!   provisioning/dashboards/aibench.yaml    loads the dashboards below
//!   dashboards/llm-serving.json             vLLM-named server metrics (vLLM, the simulator)
//!   dashboards/host-gpu.json                host and GPU samples published by aibench
//!   dashboards/load.json                    aibench's own load metrics
//! ```
//!
//! Point Grafana 10 or later at the provisioning folder
//! (`GF_PATHS_PROVISIONING=<run>/grafana/provisioning grafana-server`), or import a dashboard
//! file as it is: every panel and query names the datasource by the uid the provisioning
//! file gives it.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::clock::write_atomic;

/// The uid every panel refers to.
pub const DATASOURCE_UID: &str = "aibench-prometheus";

/// One panel: a title, a unit and its queries (`expr`, legend).
struct Panel {
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: &'static [(&'static str, &'static str)],
}

const LLM_SERVING: &[Panel] = &[
    Panel {
        title: "Requests running and waiting",
        description: "The server's scheduler: requests in the running batch and in the queue.",
        unit: "short",
        queries: &[
            ("sum by (service) (vllm:num_requests_running)", "{{service}} running"),
            ("sum by (service) (vllm:num_requests_waiting)", "{{service}} waiting"),
        ],
    },
    Panel {
        title: "KV-cache usage",
        description: "Fraction of KV-cache blocks in use (vllm:kv_cache_usage_perc; vllm:gpu_cache_usage_perc on older vLLM).",
        unit: "percentunit",
        queries: &[(
            "max by (service) (vllm:kv_cache_usage_perc) or max by (service) (vllm:gpu_cache_usage_perc)",
            "{{service}}",
        )],
    },
    Panel {
        title: "Tokens per second",
        description: "Prompt tokens prefilled and output tokens generated per second.",
        unit: "short",
        queries: &[
            ("sum by (service) (rate(vllm:generation_tokens_total[$__rate_interval]))", "{{service}} output"),
            ("sum by (service) (rate(vllm:prompt_tokens_total[$__rate_interval]))", "{{service}} prompt"),
        ],
    },
    Panel {
        title: "Finished requests per second",
        description: "Requests the server finished, by finish reason.",
        unit: "reqps",
        queries: &[(
            "sum by (service, finished_reason) (rate(vllm:request_success_total[$__rate_interval]))",
            "{{service}} {{finished_reason}}",
        )],
    },
    Panel {
        title: "Time to first token (server)",
        description: "p50 and p99 of the server's TTFT histogram.",
        unit: "s",
        queries: &[
            ("histogram_quantile(0.5, sum by (le, service) (rate(vllm:time_to_first_token_seconds_bucket[$__rate_interval])))", "{{service}} p50"),
            ("histogram_quantile(0.99, sum by (le, service) (rate(vllm:time_to_first_token_seconds_bucket[$__rate_interval])))", "{{service}} p99"),
        ],
    },
    Panel {
        title: "Inter-token latency (server)",
        description: "p50 and p99 of the server's inter-token latency histogram.",
        unit: "s",
        queries: &[
            ("histogram_quantile(0.5, sum by (le, service) (rate(vllm:inter_token_latency_seconds_bucket[$__rate_interval])))", "{{service}} p50"),
            ("histogram_quantile(0.99, sum by (le, service) (rate(vllm:inter_token_latency_seconds_bucket[$__rate_interval])))", "{{service}} p99"),
        ],
    },
    Panel {
        title: "End-to-end latency (server)",
        description: "p50 and p99 of the server's request latency histogram.",
        unit: "s",
        queries: &[
            ("histogram_quantile(0.5, sum by (le, service) (rate(vllm:e2e_request_latency_seconds_bucket[$__rate_interval])))", "{{service}} p50"),
            ("histogram_quantile(0.99, sum by (le, service) (rate(vllm:e2e_request_latency_seconds_bucket[$__rate_interval])))", "{{service}} p99"),
        ],
    },
    Panel {
        title: "Queue time (server)",
        description: "p99 of the time requests wait before they run.",
        unit: "s",
        queries: &[(
            "histogram_quantile(0.99, sum by (le, service) (rate(vllm:request_queue_time_seconds_bucket[$__rate_interval])))",
            "{{service}} p99",
        )],
    },
    Panel {
        title: "Preemptions per second",
        description: "Requests preempted because the KV cache ran out.",
        unit: "short",
        queries: &[("sum by (service) (rate(vllm:num_preemptions_total[$__rate_interval]))", "{{service}}")],
    },
];

const HOST_GPU: &[Panel] = &[
    Panel {
        title: "CPU utilisation",
        description: "Busy fraction of all CPUs and of each core.",
        unit: "percentunit",
        queries: &[
            (
                "aibench_host_cpu_utilisation_ratio{cpu=\"total\"}",
                "{{instance}} total",
            ),
            (
                "aibench_host_cpu_utilisation_ratio{cpu!=\"total\"}",
                "{{instance}} cpu {{cpu}}",
            ),
        ],
    },
    Panel {
        title: "CPU time by mode",
        description: "User, system, I/O wait and steal time as fractions of all CPU time.",
        unit: "percentunit",
        queries: &[("aibench_host_cpu_mode_ratio", "{{instance}} {{mode}}")],
    },
    Panel {
        title: "Memory",
        description: "Memory in use and available.",
        unit: "bytes",
        queries: &[
            ("aibench_host_memory_used_bytes", "{{instance}} used"),
            (
                "aibench_host_memory_available_bytes",
                "{{instance}} available",
            ),
        ],
    },
    Panel {
        title: "Load average",
        description: "1-minute load average.",
        unit: "short",
        queries: &[("aibench_host_load1", "{{instance}}")],
    },
    Panel {
        title: "Network",
        description: "Bytes received and sent per second, per interface.",
        unit: "Bps",
        queries: &[
            (
                "aibench_host_network_receive_bytes_per_second",
                "{{instance}} {{device}} rx",
            ),
            (
                "aibench_host_network_transmit_bytes_per_second",
                "{{instance}} {{device}} tx",
            ),
        ],
    },
    Panel {
        title: "Disk",
        description: "Bytes read and written per second, per disk.",
        unit: "Bps",
        queries: &[
            (
                "aibench_host_disk_read_bytes_per_second",
                "{{instance}} {{device}} read",
            ),
            (
                "aibench_host_disk_write_bytes_per_second",
                "{{instance}} {{device}} write",
            ),
        ],
    },
    Panel {
        title: "GPU utilisation",
        description: "Fraction of time a kernel ran, and memory was busy, per GPU (NVML).",
        unit: "percentunit",
        queries: &[
            ("aibench_gpu_utilisation_ratio", "{{instance}} GPU {{gpu}}"),
            (
                "aibench_gpu_memory_utilisation_ratio",
                "{{instance}} GPU {{gpu}} memory",
            ),
        ],
    },
    Panel {
        title: "GPU memory",
        description: "GPU memory in use and in total.",
        unit: "bytes",
        queries: &[
            (
                "aibench_gpu_memory_used_bytes",
                "{{instance}} GPU {{gpu}} used",
            ),
            (
                "aibench_gpu_memory_total_bytes",
                "{{instance}} GPU {{gpu}} total",
            ),
        ],
    },
    Panel {
        title: "GPU power",
        description: "Power draw per GPU.",
        unit: "watt",
        queries: &[("aibench_gpu_power_watts", "{{instance}} GPU {{gpu}}")],
    },
    Panel {
        title: "GPU temperature",
        description: "Temperature per GPU.",
        unit: "celsius",
        queries: &[(
            "aibench_gpu_temperature_celsius",
            "{{instance}} GPU {{gpu}}",
        )],
    },
    Panel {
        title: "GPU clocks",
        description: "SM and memory clocks per GPU.",
        unit: "hertz",
        queries: &[
            ("aibench_gpu_sm_clock_hertz", "{{instance}} GPU {{gpu}} SM"),
            (
                "aibench_gpu_memory_clock_hertz",
                "{{instance}} GPU {{gpu}} memory",
            ),
        ],
    },
    Panel {
        title: "GPU energy",
        description: "Energy used since monitoring started, per GPU (Volta and later).",
        unit: "joule",
        queries: &[("aibench_gpu_energy_joules", "{{instance}} GPU {{gpu}}")],
    },
];

const LOAD: &[Panel] = &[
    Panel {
        title: "Successful requests per second",
        description: "Per workload, as the load generator measured it.",
        unit: "reqps",
        queries: &[
            ("aibench_requests_per_second", "{{workload}}"),
            ("sum by (workload) (rate(aibench_requests_failed_total[$__rate_interval]))", "{{workload}} failed"),
        ],
    },
    Panel {
        title: "Requests in flight",
        description: "Sent and not yet answered.",
        unit: "short",
        queries: &[("aibench_requests_in_flight", "{{workload}}")],
    },
    Panel {
        title: "Errors by class",
        description: "Failed requests per second by error class (connect, timeout, http_5xx, ...).",
        unit: "reqps",
        queries: &[(
            "sum by (workload, class) (rate(aibench_request_errors_total[$__rate_interval]))",
            "{{workload}} {{class}}",
        )],
    },
    Panel {
        title: "Dropped requests",
        description: "Open-loop requests never sent because the in-flight cap was reached.",
        unit: "short",
        queries: &[("aibench_requests_dropped_total", "{{workload}}")],
    },
    Panel {
        title: "Time to first token (client)",
        description: "p99 so far in the measure window, and p50/p99 of the recent histogram.",
        unit: "s",
        queries: &[
            ("aibench_ttft_p99_seconds", "{{workload}} p99 (window)"),
            ("histogram_quantile(0.5, sum by (le, workload) (rate(aibench_ttft_seconds_bucket[$__rate_interval])))", "{{workload}} p50"),
            ("histogram_quantile(0.99, sum by (le, workload) (rate(aibench_ttft_seconds_bucket[$__rate_interval])))", "{{workload}} p99"),
        ],
    },
    Panel {
        title: "Inter-token latency (client)",
        description: "p50 and p99 of the gaps between content chunks.",
        unit: "s",
        queries: &[
            ("histogram_quantile(0.5, sum by (le, workload) (rate(aibench_itl_seconds_bucket[$__rate_interval])))", "{{workload}} p50"),
            ("histogram_quantile(0.99, sum by (le, workload) (rate(aibench_itl_seconds_bucket[$__rate_interval])))", "{{workload}} p99"),
        ],
    },
    Panel {
        title: "End-to-end latency (client)",
        description: "p99 so far in the measure window, and p50/p99 of the recent histogram.",
        unit: "s",
        queries: &[
            ("aibench_e2e_p99_seconds", "{{workload}} p99 (window)"),
            ("histogram_quantile(0.5, sum by (le, workload) (rate(aibench_e2e_seconds_bucket[$__rate_interval])))", "{{workload}} p50"),
            ("histogram_quantile(0.99, sum by (le, workload) (rate(aibench_e2e_seconds_bucket[$__rate_interval])))", "{{workload}} p99"),
        ],
    },
    Panel {
        title: "Output tokens per second (client)",
        description: "Output tokens of finished requests per second.",
        unit: "short",
        queries: &[
            ("aibench_output_tokens_per_second", "{{workload}}"),
            ("sum by (workload) (rate(aibench_output_tokens_total[$__rate_interval]))", "{{workload}} (rate)"),
        ],
    },
    Panel {
        title: "Phase",
        description: "1 while the workload is in warm-up, measure or cool-down.",
        unit: "short",
        queries: &[("aibench_phase == 1", "{{workload}} {{phase}}")],
    },
    Panel {
        title: "Service metrics scrapes",
        description: "1 while the monitor's last scrape of a service succeeded.",
        unit: "short",
        queries: &[("aibench_scrape_up", "{{target}}")],
    },
];

/// The dashboards: (file name, JSON model).
pub fn dashboards() -> Vec<(&'static str, Value)> {
    vec![
        (
            "llm-serving.json",
            dashboard("aibench-llm-serving", "aibench: LLM serving", LLM_SERVING),
        ),
        (
            "host-gpu.json",
            dashboard("aibench-host-gpu", "aibench: host and GPU", HOST_GPU),
        ),
        (
            "load.json",
            dashboard("aibench-load", "aibench: load generator", LOAD),
        ),
    ]
}

fn dashboard(uid: &str, title: &str, panels: &[Panel]) -> Value {
    let ds = json!({ "type": "prometheus", "uid": DATASOURCE_UID });
    let panels: Vec<Value> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(k, (expr, legend))| {
                    json!({
                        "refId": ref_id(k),
                        "datasource": ds,
                        "editorMode": "code",
                        "expr": expr,
                        "legendFormat": legend,
                        "range": true,
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "description": p.description,
                "datasource": ds,
                "gridPos": { "h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8 },
                "fieldConfig": {
                    "defaults": {
                        "unit": p.unit,
                        "custom": { "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": false },
                    },
                    "overrides": [],
                },
                "options": {
                    "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true },
                    "tooltip": { "mode": "multi", "sort": "desc" },
                },
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": uid,
        "title": title,
        "tags": ["aibench"],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": { "from": "now-1h", "to": "now" },
        "annotations": { "list": [] },
        "templating": { "list": [] },
        "links": [],
        "panels": panels,
    })
}

fn ref_id(k: usize) -> String {
    let letter = (b'A' + (k % 26) as u8) as char;
    if k < 26 {
        letter.to_string()
    } else {
        format!("{letter}{}", k / 26)
    }
}

/// `provisioning/datasources/aibench.yaml`.
pub fn datasource_yaml(prometheus_url: &str, scrape_interval_s: f64) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        "# The run's Prometheus for Grafana 10+; dashboards refer to it by uid.\n\
         apiVersion: 1\n\
         datasources:\n\
         \x20 - name: aibench Prometheus\n\
         \x20   uid: {uid}\n\
         \x20   type: prometheus\n\
         \x20   access: proxy\n\
         \x20   url: {url}\n\
         \x20   isDefault: true\n\
         \x20   editable: true\n\
         \x20   jsonData:\n\
         \x20     timeInterval: {interval}s\n",
        uid = q(DATASOURCE_UID),
        url = q(prometheus_url),
        interval = scrape_interval_s.max(1.0).round(),
    )
}

/// `provisioning/dashboards/aibench.yaml`, loading the dashboards from `dashboards_dir`.
pub fn dashboards_yaml(dashboards_dir: &Path) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        "# aibench dashboards for Grafana 10+.\n\
         apiVersion: 1\n\
         providers:\n\
         \x20 - name: aibench\n\
         \x20   folder: aibench\n\
         \x20   type: file\n\
         \x20   disableDeletion: false\n\
         \x20   allowUiUpdates: true\n\
         \x20   options:\n\
         \x20     path: {}\n",
        q(&dashboards_dir.display().to_string())
    )
}

/// Write `grafana/` into a run directory. The dashboards provider points at the absolute
/// dashboards path, so the run directory should not move before Grafana reads it (the
/// dashboards themselves import anywhere).
pub fn write(
    run_dir: &Path,
    prometheus_url: &str,
    scrape_interval_s: f64,
) -> io::Result<Vec<PathBuf>> {
    let root = run_dir.join("grafana");
    let dash_dir = root.join("dashboards");
    let ds_dir = root.join("provisioning/datasources");
    let prov_dir = root.join("provisioning/dashboards");
    for d in [&dash_dir, &ds_dir, &prov_dir] {
        std::fs::create_dir_all(d)?;
    }
    let abs_dash = dash_dir.canonicalize().unwrap_or_else(|_| dash_dir.clone());
    let mut written = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> io::Result<()> {
        write_atomic(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    put(
        ds_dir.join("aibench.yaml"),
        datasource_yaml(prometheus_url, scrape_interval_s).as_bytes(),
    )?;
    put(
        prov_dir.join("aibench.yaml"),
        dashboards_yaml(&abs_dash).as_bytes(),
    )?;
    for (file, model) in dashboards() {
        let mut text = serde_json::to_vec_pretty(&model).map_err(io::Error::other)?;
        text.push(b'\n');
        put(dash_dir.join(file), &text)?;
    }
    Ok(written)
}

/// The metric names a PromQL expression selects (function names, keywords, label names,
/// strings, durations and grouping clauses left out). Enough for the expressions above.
pub fn promql_metric_names(expr: &str) -> Vec<String> {
    // Drop strings, label matchers and range selectors.
    let mut flat = String::with_capacity(expr.len());
    let mut depth_brace = 0usize;
    let mut depth_bracket = 0usize;
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' if depth_brace == 0 && depth_bracket == 0 => in_string = Some(c),
            '"' | '\'' | '`' => in_string = Some(c),
            '{' => depth_brace += 1,
            '}' => depth_brace = depth_brace.saturating_sub(1),
            '[' => depth_bracket += 1,
            ']' => depth_bracket = depth_bracket.saturating_sub(1),
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => flat.push(c),
        }
    }
    // Tokens; a grouping keyword swallows the parenthesised label list after it.
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 17] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = flat.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            let preceded_by_dollar = start > 0 && chars[start - 1] == '$';
            if GROUPING.contains(&word.as_str()) {
                if next == Some('(') {
                    while j < chars.len() && chars[j] != ')' {
                        j += 1;
                    }
                    i = j + 1;
                }
                continue;
            }
            if next == Some('(') || KEYWORDS.contains(&word.as_str()) || preceded_by_dollar {
                continue;
            }
            if !names.contains(&word) {
                names.push(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number, possibly with an exponent.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_of_expressions() {
        assert_eq!(
            promql_metric_names("histogram_quantile(0.99, sum by (le, service) (rate(vllm:e2e_request_latency_seconds_bucket[$__rate_interval])))"),
            vec!["vllm:e2e_request_latency_seconds_bucket"]
        );
        assert_eq!(
            promql_metric_names("max by (service) (a) or max by (service) (b{x=\"y}\"})"),
            vec!["a", "b"]
        );
        assert_eq!(
            promql_metric_names("aibench_phase == 1e3"),
            vec!["aibench_phase"]
        );
        assert_eq!(
            promql_metric_names("x{cpu!=\"total\"} offset 5m"),
            vec!["x"]
        );
    }

    #[test]
    fn dashboards_are_well_formed() {
        let mut uids = Vec::new();
        for (file, d) in dashboards() {
            uids.push(d["uid"].as_str().unwrap().to_string());
            let panels = d["panels"].as_array().unwrap();
            assert!(!panels.is_empty(), "{file}");
            let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
            ids.dedup();
            assert_eq!(ids.len(), panels.len(), "{file}");
            for p in panels {
                let g = &p["gridPos"];
                assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
                assert_eq!(p["datasource"]["uid"], DATASOURCE_UID);
                for t in p["targets"].as_array().unwrap() {
                    assert_eq!(t["datasource"]["uid"], DATASOURCE_UID);
                    assert!(!promql_metric_names(t["expr"].as_str().unwrap()).is_empty());
                }
            }
        }
        uids.dedup();
        assert_eq!(uids.len(), 3);
    }

    #[test]
    fn files_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let files = write(tmp.path(), "http://127.0.0.1:9090", 5.0).unwrap();
        assert_eq!(files.len(), 5);
        let ds = std::fs::read_to_string(
            tmp.path()
                .join("grafana/provisioning/datasources/aibench.yaml"),
        )
        .unwrap();
        assert!(ds.contains("uid: \"aibench-prometheus\""));
        assert!(ds.contains("url: \"http://127.0.0.1:9090\""));
        let prov = std::fs::read_to_string(
            tmp.path()
                .join("grafana/provisioning/dashboards/aibench.yaml"),
        )
        .unwrap();
        assert!(prov.contains("grafana/dashboards\""));
    }
}
