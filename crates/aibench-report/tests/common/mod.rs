//! Run directories built from a model of a server, for tests that need known answers.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};

use aibench_results::{
    Accumulator, AccumulatorConfig, Phase, RequestRecord, Slo, StopReason, TokenSource,
};

/// Wall-clock start of every constructed run.
pub const RUN_START: f64 = 1_795_437_900.0;
/// Each trial's load starts this long after the run (its records' zero).
pub const TRIAL_OFFSET_S: f64 = 5.0;

/// A server with `slots` sequences in parallel, each request holding a slot for `service_s`:
/// its capacity is `slots / service_s` requests per second. Requests arrive evenly at `rate`
/// (open loop) for `warmup_s + measure_s`; a request waits for the first free slot.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    pub slots: usize,
    pub service_s: f64,
    pub output_tokens: u32,
    /// The client's own lag before each send.
    pub send_lag_s: f64,
}

impl Server {
    pub fn capacity(&self) -> f64 {
        self.slots as f64 / self.service_s
    }

    /// The records of one trial, in send order.
    pub fn records(&self, rate: f64, warmup_s: f64, measure_s: f64) -> Vec<RequestRecord> {
        let us = |s: f64| (s * 1e6).round() as u64;
        let mut free = vec![0.0f64; self.slots];
        let mut out = Vec::new();
        let n = ((warmup_s + measure_s) * rate).floor() as u64;
        let ttft_s = self.service_s / f64::from(self.output_tokens);
        for i in 0..n {
            let intended = i as f64 / rate;
            let sent = intended + self.send_lag_s;
            let (slot, at) = free
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let start = at.max(sent);
            let end = start + self.service_s;
            free[slot] = end;
            let mut r = RequestRecord::new(
                i,
                if intended < warmup_s {
                    Phase::Warmup
                } else {
                    Phase::Measure
                },
                us(intended),
            );
            r.sent_us = Some(us(sent));
            r.first_byte_us = Some(us(sent + 0.001));
            r.first_token_us = Some(us(start + ttft_s));
            r.end_us = Some(us(end));
            r.done_us = Some(us(end));
            r.itl_us = vec![us(ttft_s) as u32; self.output_tokens as usize - 1];
            r.chunks = self.output_tokens;
            r.input_tokens = Some(16);
            r.output_tokens = Some(self.output_tokens);
            r.token_source = Some(TokenSource::Usage);
            r.status = Some(200);
            out.push(r);
        }
        out
    }
}

/// One trial to write.
pub struct Trial {
    pub id: String,
    pub params: serde_json::Value,
    pub records: Vec<RequestRecord>,
    /// `metrics/<file>.csv` contents.
    pub metrics: Vec<(String, String)>,
}

/// What the run's recipe says.
pub struct RunSpec<'a> {
    pub name: &'a str,
    pub slo: serde_json::Value,
    pub pattern: &'a str,
    pub extra: serde_json::Value,
}

impl Default for RunSpec<'_> {
    fn default() -> Self {
        RunSpec {
            name: "constructed",
            slo: serde_json::Value::Null,
            pattern: "open-loop",
            extra: serde_json::json!({}),
        }
    }
}

fn slo_config(slo: &serde_json::Value) -> AccumulatorConfig {
    let ms = |k: &str| {
        slo.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| s.strip_suffix("ms"))
            .and_then(|s| s.parse::<u64>().ok())
            .map(|v| v * 1000)
    };
    AccumulatorConfig {
        slo: Slo {
            ttft_us: ms("ttft"),
            tpot_us: ms("tpot"),
            itl_us: ms("itl"),
            e2e_us: ms("e2e"),
        },
        ..Default::default()
    }
}

/// Write a run directory under `root` and return its path.
pub fn write_run(root: &Path, spec: &RunSpec, trials: &[Trial]) -> PathBuf {
    let run_id = format!("{}-20261123-124500", spec.name);
    let dir = root.join(&run_id);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut events = String::new();
    for (i, t) in trials.iter().enumerate() {
        let tdir = dir.join("trials").join(&t.id);
        std::fs::create_dir_all(&tdir).unwrap();
        std::fs::write(tdir.join("params.json"), t.params.to_string()).unwrap();
        let mut acc = Accumulator::new(slo_config(&spec.slo));
        let mut lines = String::new();
        for r in &t.records {
            acc.add(r);
            lines.push_str(&serde_json::to_string(r).unwrap());
            lines.push('\n');
        }
        acc.set_stop_reason(StopReason::Duration);
        std::fs::write(tdir.join("requests.jsonl"), lines).unwrap();
        std::fs::write(
            tdir.join("summary.json"),
            serde_json::to_string_pretty(&acc.summary()).unwrap(),
        )
        .unwrap();
        if !t.metrics.is_empty() {
            std::fs::create_dir_all(tdir.join("metrics")).unwrap();
            for (name, text) in &t.metrics {
                std::fs::write(tdir.join("metrics").join(name), text).unwrap();
            }
        }
        let ts = RUN_START + TRIAL_OFFSET_S + 100.0 * i as f64;
        events.push_str(
            &serde_json::json!({"t": ts - RUN_START, "ts": ts, "event": "phase", "phase": "measure", "trial": t.id})
                .to_string(),
        );
        events.push('\n');
    }
    std::fs::write(dir.join("logs/events.jsonl"), events).unwrap();
    let run = serde_json::json!({
        "schema_version": 1, "run_id": run_id, "name": spec.name, "status": "completed",
        "recipe_path": "recipe.yaml", "platform": "local", "seed": 1,
        "started_at": RUN_START, "started_at_utc": "2026-11-23T12:45:00Z",
        "finished_at": RUN_START + 600.0, "aibench_version": "0.1.0", "aibench_git": "test",
        "host": {"hostname": "node1", "os": "linux", "kernel": "6", "cpu_model": "Test CPU",
                 "cpus": 8, "memory_bytes": 16u64 << 30},
        "trials": trials.iter().map(|t| serde_json::json!({"id": t.id, "params": t.params, "status": "complete"})).collect::<Vec<_>>(),
        "job_ids": [],
    });
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&run).unwrap(),
    )
    .unwrap();
    let load = if spec.pattern == "open-loop" {
        serde_json::json!({"pattern": "open-loop", "arrival": "constant", "rate": "1/s"})
    } else {
        serde_json::json!({"pattern": "closed-loop", "users": 1})
    };
    let mut recipe = serde_json::json!({
        "name": spec.name,
        "services": [{"name": "llm", "kind": "vllm", "model": "facebook/opt-125m"}],
        "workloads": [{"name": "chat", "target": "llm", "protocol": "openai-completions", "load": load}],
    });
    if !spec.slo.is_null() {
        recipe["slo"] = spec.slo.clone();
    }
    if let (Some(r), Some(extra)) = (recipe.as_object_mut(), spec.extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(
        dir.join("resolved.yaml"),
        format!(
            "# The recipe with defaults filled in.\n{}\n",
            serde_json::to_string_pretty(&recipe).unwrap()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("recipe.yaml"), "name: constructed\n").unwrap();
    dir
}

/// A metrics CSV: `(t on the run's clock, name, labels, value)` rows.
pub fn csv(rows: &[(f64, &str, &str, f64)]) -> String {
    let mut s = String::from("t_s,name,labels,value\n");
    for (t, n, l, v) in rows {
        s.push_str(&format!("{t},{n},{l},{v}\n"));
    }
    s
}

/// A series sampled every second over the first trial's run-clock span `[0, secs)` of the
/// workload, as run-clock rows.
pub fn series(
    name: &'static str,
    labels: &'static str,
    secs: usize,
    f: impl Fn(f64) -> f64,
) -> Vec<(f64, &'static str, &'static str, f64)> {
    (0..secs)
        .map(|i| {
            let t = i as f64;
            (TRIAL_OFFSET_S + t, name, labels, f(t))
        })
        .collect()
}
