//! Monitoring series from `trials/<id>/metrics/*.csv`.
//!
//! The files are long format, one sample per line: a time column (`t_s`, or `ts`, `time`,
//! `timestamp`), `name` (or `metric`), `labels` (`k=v;k2=v2`, may be empty) and `value`.
//! Times are seconds on the run's clock: from the epoch in `metrics/clock.json` (`epoch_s`) when
//! the monitor wrote one, else from `run.json`'s `started_at`; values above 10⁹ are taken as
//! seconds since the Unix epoch. All are moved onto the workload's clock (the zero of
//! `requests.jsonl`) so that server metrics line up with client latency.
//!
//! `metrics/monitor.json`, when present, tells which scrapes failed; those become notes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::MetricSummary;
use crate::series::slope;

/// One series: a metric name and one set of labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: String,
    /// (seconds from the workload's start, value), by time.
    pub points: Vec<(f64, f64)>,
}

/// Every series of one trial.
#[derive(Debug, Clone, Default)]
pub struct TrialMetrics {
    pub series: Vec<Series>,
    /// Lines that could not be read.
    pub bad_lines: u64,
    pub files: Vec<String>,
    /// Problems the monitor recorded (failed scrapes, unwritable files, missing GPUs).
    pub problems: Vec<String>,
    /// Total GPU power over time, `(seconds from the workload's start, watts)`.
    pub power: Vec<(f64, f64)>,
}

/// How to move metric times onto the workload's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock time of the run's start (`run.json` `started_at`).
    pub run_started_at: f64,
    /// Wall-clock time of the workload's start (its records' zero).
    pub workload_started_at: f64,
}

impl Clock {
    fn to_workload(self, t: f64) -> f64 {
        if t > 1e9 {
            t - self.workload_started_at
        } else {
            t - (self.workload_started_at - self.run_started_at)
        }
    }
}

/// `monitor.json` problems as sentences, read leniently.
fn monitor_problems(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |x: &serde_json::Value, k: &str| x.get(k).and_then(|v| v.as_str()).map(String::from);
    let num = |x: &serde_json::Value, k: &str| x.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    for t in v
        .get("targets")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
    {
        let name = text(t, "name").unwrap_or_default();
        if num(t, "failures") > 0 {
            out.push(format!(
                "scrapes of `{name}` ({}) failed {} of {} times{}: {}",
                text(t, "kind").unwrap_or_default(),
                num(t, "failures"),
                num(t, "attempts"),
                t.get("last_error_t_s")
                    .and_then(|x| x.as_f64())
                    .map(|s| format!(", last at t={s:.1} s"))
                    .unwrap_or_default(),
                text(t, "last_error").unwrap_or_else(|| "unknown error".into())
            ));
        }
        if let Some(e) = text(t, "write_error") {
            out.push(format!("metrics of `{name}` could not be written: {e}"));
        }
    }
    for (what, key) in [("host", "host"), ("GPU", "gpu")] {
        if let Some(r) = v.get(key).filter(|r| num(r, "failures") > 0) {
            out.push(format!(
                "{what} sampling failed {} of {} times: {}",
                num(r, "failures"),
                num(r, "samples"),
                text(r, "last_error").unwrap_or_else(|| "unknown error".into())
            ));
        }
    }
    out
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_value(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" | "nan" => None,
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Read every CSV under `dir` (absent folder or no file: `None`).
pub fn read_dir(dir: &Path, clock: Clock) -> Option<TrialMetrics> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    if files.is_empty() {
        return None;
    }
    files.sort();
    let mut out = TrialMetrics::default();
    // The monitor's own zero, when it wrote one, is the clock of t_s.
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    let monitor = read("monitor.json");
    let zero = read("clock.json")
        .and_then(|c| c.get("epoch_s").and_then(|e| e.as_f64()))
        .or_else(|| {
            monitor
                .as_ref()
                .and_then(|m| m.get("epoch_s"))
                .and_then(|e| e.as_f64())
        });
    let clock = Clock {
        run_started_at: zero.unwrap_or(clock.run_started_at),
        ..clock
    };
    if let Some(m) = &monitor {
        out.problems = monitor_problems(m);
        if let Some(note) = m.get("gpu_note").and_then(|n| n.as_str()) {
            out.problems.push(note.to_string());
        }
        out.power = m
            .get("power")
            .and_then(|p| serde_json::from_value::<Vec<(f64, f64)>>(p.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(t, w)| (clock.to_workload(t), w))
            .collect();
    }
    let mut by_key: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            out.bad_lines += 1;
            continue;
        };
        out.files.push(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let mut lines = text.lines();
        let Some(header) = lines.next() else { continue };
        let cols = split_csv(header);
        let find = |names: &[&str]| {
            cols.iter()
                .position(|c| names.contains(&c.trim().to_ascii_lowercase().as_str()))
        };
        let (Some(ti), Some(ni), Some(vi)) = (
            find(&["t_s", "ts", "time", "timestamp", "t"]),
            find(&["name", "metric"]),
            find(&["value"]),
        ) else {
            out.bad_lines += 1;
            continue;
        };
        let li = find(&["labels"]);
        for line in lines {
            if line.trim().is_empty() {
                continue;
            }
            let cells = split_csv(line);
            let get = |i: usize| cells.get(i).map(String::as_str);
            let (Some(t), Some(name)) =
                (get(ti).and_then(|t| t.trim().parse::<f64>().ok()), get(ni))
            else {
                out.bad_lines += 1;
                continue;
            };
            let Some(v) = get(vi).and_then(parse_value) else {
                continue; // NaN: no sample
            };
            if !v.is_finite() {
                continue;
            }
            let labels = li.and_then(get).unwrap_or("").trim().to_string();
            by_key
                .entry((name.trim().to_string(), labels))
                .or_default()
                .push((clock.to_workload(t), v));
        }
    }
    out.series = by_key
        .into_iter()
        .map(|((name, labels), mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name,
                labels,
                points,
            }
        })
        .collect();
    Some(out)
}

impl TrialMetrics {
    /// The series of a metric, by exact name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// The first name among `names` that has a series.
    pub fn first_of<'a>(&'a self, names: &[&'a str]) -> Option<&'a str> {
        names
            .iter()
            .copied()
            .find(|n| self.series.iter().any(|s| s.name == *n))
    }

    /// Series whose name satisfies `pred`.
    pub fn matching<'a>(
        &'a self,
        pred: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| pred(&s.name))
    }

    /// Sum of a metric over its label sets at each sample time (gauges like queue depth,
    /// reported per model or engine).
    pub fn summed(&self, name: &str) -> Option<Series> {
        let mut at: BTreeMap<i64, f64> = BTreeMap::new();
        let mut any = false;
        for s in self.named(name) {
            any = true;
            for &(t, v) in &s.points {
                // Samples of one scrape share a time; round to the millisecond to match them.
                *at.entry((t * 1000.0).round() as i64).or_default() += v;
            }
        }
        any.then(|| Series {
            name: name.to_string(),
            labels: String::new(),
            points: at
                .into_iter()
                .map(|(t, v)| (t as f64 / 1000.0, v))
                .collect(),
        })
    }
}

impl Series {
    /// The samples within `[from, to]` seconds.
    pub fn window(&self, from: f64, to: f64) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .copied()
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect()
    }

    /// Summary over `[from, to]` (None without a sample there).
    pub fn summarise(&self, from: f64, to: f64) -> Option<MetricSummary> {
        let pts = self.window(from, to);
        if pts.is_empty() {
            return None;
        }
        let mut vals: Vec<f64> = pts.iter().map(|p| p.1).collect();
        vals.sort_by(|a, b| a.total_cmp(b));
        let n = vals.len() as f64;
        Some(MetricSummary {
            name: self.name.clone(),
            labels: self.labels.clone(),
            samples: pts.len() as u64,
            mean: vals.iter().sum::<f64>() / n,
            min: vals[0],
            max: vals[vals.len() - 1],
            p95: crate::series::percentile(&vals, 0.95).unwrap_or(0.0),
            first: pts[0].1,
            last: pts[pts.len() - 1].1,
            slope_per_s: slope(&pts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes() {
        assert_eq!(
            split_csv(r#"1.5,vllm:x,"model_name=a,b;k=""q""",3"#),
            vec!["1.5", "vllm:x", r#"model_name=a,b;k="q""#, "3"]
        );
        assert_eq!(split_csv("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn reads_long_format_and_aligns_clocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("llm.csv"),
            "t_s,name,labels,value\n10,vllm:num_requests_waiting,model_name=m,2\n10,vllm:num_requests_waiting,model_name=n,1\n11,vllm:num_requests_waiting,model_name=m,NaN\n12,vllm:num_requests_waiting,model_name=m,+Inf\nbad line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("host.csv"),
            "t_s,name,labels,value\n1000000011.0,host_cpu_utilisation,host=a,0.5\n",
        )
        .unwrap();
        let clock = Clock {
            run_started_at: 1_000_000_000.0,
            workload_started_at: 1_000_000_008.0,
        };
        let m = read_dir(dir.path(), clock).unwrap();
        assert_eq!(m.files, vec!["host.csv", "llm.csv"]);
        assert_eq!(m.bad_lines, 1);
        let waiting = m.summed("vllm:num_requests_waiting").unwrap();
        assert_eq!(waiting.points, vec![(2.0, 3.0)]);
        let cpu: Vec<_> = m.named("host_cpu_utilisation").collect();
        assert_eq!(cpu[0].points, vec![(3.0, 0.5)]);
        assert!(read_dir(&dir.path().join("absent"), clock).is_none());
    }
}
