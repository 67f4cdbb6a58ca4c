//! `aibench export`: PromQL against a run's Prometheus, as CSV or JSON.
//!
//! The source is a Prometheus URL or a run directory. For a run directory the Prometheus that
//! ran with it is asked first (`prometheus/prometheus.json`); when it is gone, a temporary
//! Prometheus is started on the run's stored data (`prometheus/data`) for the query and stopped
//! after it.
//!
//! Times (`--time`, `--range START..END`): `now`, `now-5m`, unix seconds (`1795443720.5`),
//! RFC 3339 (`2026-11-23T14:22:00Z`, `...+01:00`), and with a run directory `start` and `end`
//! of the run (`start+30s`, `end-1m`). Durations: `500ms`, `15s`, `2m`, `1h30m`, `1d`, or plain
//! seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::clock::{days_from_civil, epoch_seconds};
use crate::prometheus::{
    read_state, LocalPrometheus, PromApi, PrometheusError, PrometheusOptions, DATA_DIR,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// One export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// A run directory or an `http://` Prometheus URL.
    pub source: String,
    pub query: String,
    /// `START..END` for a range query; an instant query without it.
    pub range: Option<String>,
    /// Step of a range query (default: the range over 300, at least 1 s).
    pub step: Option<String>,
    /// Time of an instant query (default: the run's end, or now).
    pub time: Option<String>,
    pub format: ExportFormat,
    /// The `prometheus` program, for reading a run's stored data.
    pub prometheus: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Bad input: a time, a step, a range, a source that is not a run.
    #[error("{0}")]
    Input(String),
    /// Prometheus refused the query (a PromQL error is the user's).
    #[error("Prometheus rejected the query: {0}")]
    Query(String),
    /// Prometheus could not be reached or started.
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
}

impl ExportError {
    /// Whether the user can fix it by changing the command line.
    pub fn is_input(&self) -> bool {
        matches!(self, ExportError::Input(_) | ExportError::Query(_))
    }
}

/// Start and end of a run, from its `run.json`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpan {
    pub start: f64,
    pub end: Option<f64>,
}

/// Read `run.json` of a run directory.
pub fn run_span(run_dir: &Path) -> Option<RunSpan> {
    let info = aibench_results::RunInfo::read(run_dir).ok()?;
    (info.started_at > 0.0).then_some(RunSpan {
        start: info.started_at,
        end: info.finished_at,
    })
}

/// Run the export and return the text to print.
pub async fn export(req: &ExportRequest) -> Result<String, ExportError> {
    let now = epoch_seconds(SystemTime::now());
    if req.source.starts_with("https://") {
        return Err(ExportError::Input(format!(
            "`{}`: https is not supported; use the plain http:// address (or a local tunnel)",
            req.source
        )));
    }
    let (span, run_dir) = if req.source.starts_with("http://") {
        (None, None)
    } else {
        let dir = PathBuf::from(&req.source);
        if !dir.is_dir() {
            return Err(ExportError::Input(format!(
                "`{}` is neither a run directory nor an http:// Prometheus URL",
                req.source
            )));
        }
        (run_span(&dir), Some(dir))
    };
    // Resolve times first: a bad argument should not wait for a Prometheus to start.
    let plan = Plan::new(req, now, span)?;
    let mut temporary = None;
    let api = match &run_dir {
        None => PromApi::new(&req.source)?,
        Some(dir) => {
            let prom_dir = dir.join("prometheus");
            let running = match read_state(&prom_dir) {
                Some(state) => {
                    let api = PromApi::new(&state.url)?;
                    api.ready().await.then_some(api)
                }
                None => None,
            };
            match running {
                Some(api) => api,
                None => {
                    let data = prom_dir.join(DATA_DIR);
                    if !data.is_dir() {
                        return Err(ExportError::Input(format!(
                            "{} has no Prometheus data ({} is missing): run with `monitor: {{ prometheus: true }}` in the recipe, or pass a Prometheus URL",
                            dir.display(),
                            data.display()
                        )));
                    }
                    let p = start_on_data(&data, &req.prometheus).await?;
                    let api = p.api()?;
                    temporary = Some(p);
                    api
                }
            }
        }
    };
    let result = match plan {
        Plan::Instant(t) => api.instant(&req.query, Some(t)).await,
        Plan::Range { start, end, step } => api.range(&req.query, start, end, step).await,
    };
    if let Some(p) = temporary {
        let dir = p.dir().to_path_buf();
        p.stop(Duration::from_secs(10)).await;
        let _ = std::fs::remove_dir_all(dir);
    }
    let result = result.map_err(|e| match e {
        PrometheusError::Api {
            status: 400 | 422,
            message,
        } => ExportError::Query(message),
        other => ExportError::Prometheus(other),
    })?;
    let epoch = span.map(|s| s.start);
    Ok(match req.format {
        ExportFormat::Csv => result.to_csv(epoch),
        ExportFormat::Json => {
            let mut text = serde_json::to_string_pretty(&result.to_json(&req.query, epoch))
                .unwrap_or_default();
            text.push('\n');
            text
        }
    })
}

/// A Prometheus on a run's stored data, scraping nothing, in a temporary folder.
async fn start_on_data(data: &Path, binary: &Path) -> Result<LocalPrometheus, PrometheusError> {
    let data = data.canonicalize().map_err(|source| PrometheusError::Io {
        path: data.to_path_buf(),
        source,
    })?;
    let tmp = std::env::temp_dir().join(format!(
        "aibench-export-{}-{}",
        std::process::id(),
        epoch_seconds(SystemTime::now()) as u64
    ));
    let mut opts = PrometheusOptions::new(&tmp, "export");
    opts.binary = binary.to_path_buf();
    opts.data_dir = Some(data);
    opts.config = Some(
        "# Reads a finished run's data; scrapes nothing.\nglobal:\n  scrape_interval: 1m\n".into(),
    );
    LocalPrometheus::start(opts).await
}

#[derive(Debug)]
enum Plan {
    Instant(f64),
    Range { start: f64, end: f64, step: f64 },
}

impl Plan {
    fn new(req: &ExportRequest, now: f64, span: Option<RunSpan>) -> Result<Plan, ExportError> {
        match &req.range {
            None => {
                if req.step.is_some() {
                    return Err(ExportError::Input("--step needs --range".into()));
                }
                let t = match &req.time {
                    Some(t) => parse_time(t, now, span)?,
                    None => span.and_then(|s| s.end).unwrap_or(now),
                };
                Ok(Plan::Instant(t))
            }
            Some(range) => {
                if req.time.is_some() {
                    return Err(ExportError::Input(
                        "--time is for instant queries; drop it or --range".into(),
                    ));
                }
                let (a, b) = range.split_once("..").ok_or_else(|| {
                    ExportError::Input(format!(
                        "--range `{range}` must be START..END, e.g. `now-10m..now` or `start..end`"
                    ))
                })?;
                let start = parse_time(a, now, span)?;
                let end = parse_time(b, now, span)?;
                if end <= start {
                    return Err(ExportError::Input(format!(
                        "--range `{range}` ends before it starts"
                    )));
                }
                let step = match &req.step {
                    Some(s) => parse_duration(s)?.as_secs_f64(),
                    None => ((end - start) / 300.0).max(1.0).round(),
                };
                if step <= 0.0 {
                    return Err(ExportError::Input("--step must be above zero".into()));
                }
                if (end - start) / step > 11_000.0 {
                    return Err(ExportError::Input(format!(
                        "--range over --step gives more than 11000 points per series, which Prometheus refuses; use a --step of at least {}s",
                        ((end - start) / 11_000.0).ceil()
                    )));
                }
                Ok(Plan::Range { start, end, step })
            }
        }
    }
}

/// A duration: `500ms`, `15s`, `2m`, `1h30m`, `1d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ExportError> {
    aibench_results::time::parse_duration(text, aibench_results::time::BareNumber::Seconds)
        .map_err(ExportError::Input)
}

/// A point in time as unix seconds (see the module docs for the forms).
pub fn parse_time(text: &str, now: f64, span: Option<RunSpan>) -> Result<f64, ExportError> {
    let t = text.trim();
    let relative = |base: f64, rest: &str| -> Result<f64, ExportError> {
        if rest.is_empty() {
            return Ok(base);
        }
        let (sign, d) = match rest.split_at(1) {
            ("+", d) => (1.0, d),
            ("-", d) => (-1.0, d),
            _ => {
                return Err(ExportError::Input(format!(
                    "`{text}`: expected + or - after the base time"
                )))
            }
        };
        Ok(base + sign * parse_duration(d)?.as_secs_f64())
    };
    for (word, base) in [
        ("now", Some(now)),
        ("start", span.map(|s| s.start)),
        ("end", span.map(|s| s.end.unwrap_or(now))),
    ] {
        if let Some(rest) = t.strip_prefix(word) {
            let base = base.ok_or_else(|| {
                ExportError::Input(format!("`{word}` needs a run directory with a run.json"))
            })?;
            return relative(base, rest);
        }
    }
    if let Ok(v) = t.parse::<f64>() {
        if v.is_finite() {
            return Ok(v);
        }
    }
    parse_rfc3339(t).ok_or_else(|| {
        ExportError::Input(format!(
            "`{text}` is not a time: use now, now-5m, start+30s, end, unix seconds or 2026-11-23T14:22:00Z"
        ))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as unix seconds.
pub fn parse_rfc3339(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-')
        && sep(7, b'-')
        && (sep(10, b'T') || sep(10, b't') || sep(10, b' '))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return None;
    }
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if sep(i, b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(|c| c.is_ascii_digit()) {
            end += 1;
        }
        frac = format!("0.{}", t.get(start..end)?).parse().ok()?;
        i = end;
    }
    let offset = match t.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[3] == b':' =>
        {
            let hh = num(i + 1..i + 3)?;
            let mm = num(i + 4..i + 6)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        for bad in ["", "s", "5x", "-1", "1h-", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        let span = Some(RunSpan {
            start: 1000.0,
            end: Some(2000.0),
        });
        assert_eq!(parse_time("now", 50.0, None).unwrap(), 50.0);
        assert_eq!(parse_time("now-5m", 1000.0, None).unwrap(), 700.0);
        assert_eq!(parse_time("start+30s", 0.0, span).unwrap(), 1030.0);
        assert_eq!(parse_time("end", 0.0, span).unwrap(), 2000.0);
        assert_eq!(
            parse_time("1795443720.5", 0.0, None).unwrap(),
            1_795_443_720.5
        );
        assert_eq!(parse_time("1970-01-01T00:01:00Z", 0.0, None).unwrap(), 60.0);
        assert_eq!(
            parse_time("1970-01-01T01:00:00.25+01:00", 0.0, None).unwrap(),
            0.25
        );
        assert_eq!(
            parse_time("2026-11-23T12:45:02Z", 0.0, None).unwrap(),
            1_795_437_902.0
        );
        assert!(parse_time("start", 0.0, None).is_err());
        assert!(parse_time("yesterday", 0.0, None).is_err());
        assert!(parse_time("2026-13-01T00:00:00Z", 0.0, None).is_err());
        assert!(parse_time("now*2", 0.0, None).is_err());
    }

    #[test]
    fn plans() {
        let mut req = ExportRequest {
            source: "http://x".into(),
            query: "up".into(),
            range: Some("now-10m..now".into()),
            step: None,
            time: None,
            format: ExportFormat::Csv,
            prometheus: "prometheus".into(),
        };
        match Plan::new(&req, 10_000.0, None).unwrap() {
            Plan::Range { start, end, step } => {
                assert_eq!((start, end, step), (9_400.0, 10_000.0, 2.0))
            }
            Plan::Instant(_) => panic!("range expected"),
        }
        req.range = Some("now..now-1m".into());
        assert!(Plan::new(&req, 10_000.0, None).is_err());
        req.range = Some("now-1d..now".into());
        req.step = Some("1s".into());
        assert!(Plan::new(&req, 100_000.0, None)
            .unwrap_err()
            .to_string()
            .contains("11000"));
        req.range = None;
        assert!(Plan::new(&req, 0.0, None).is_err());
        req.step = None;
        let span = Some(RunSpan {
            start: 5.0,
            end: Some(9.0),
        });
        assert!(matches!(Plan::new(&req, 100.0, span).unwrap(), Plan::Instant(t) if t == 9.0));
    }
}
