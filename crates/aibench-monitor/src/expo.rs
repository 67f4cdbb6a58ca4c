//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0: a parser and a writer.
//!
//! The parser never panics and never gives up on a body: a line it cannot read is reported in
//! [`Exposition::errors`] and skipped, and every other line still counts. It reads
//!
//! - `# HELP`, `# TYPE` and (OpenMetrics) `# UNIT` lines, any other `#` line as a comment, and
//!   `# EOF`, after which an OpenMetrics body must end;
//! - samples `name{label="value",...} value [timestamp]`, with label values escaped as `\\`,
//!   `\"` and `\n`, an optional trailing comma, and the quoted names of the UTF-8 syntax
//!   (`{"my.metric", "a.b"="v"} 1`);
//! - values as decimal floats, `NaN`, `+Inf`, `-Inf` (in any case);
//! - timestamps as integer milliseconds (Prometheus text) or float seconds (OpenMetrics), both
//!   returned in seconds since the Unix epoch;
//! - exemplars (` # {trace_id="..."} 1.0 [ts]`), which are accepted and ignored.
//!
//! Each sample is tied to its family (`foo_bucket`, `foo_sum` and `foo_count` belong to the
//! histogram `foo`; an OpenMetrics counter `foo` owns `foo_total` and `foo_created`).

use std::collections::HashMap;
use std::fmt::Write as _;

/// The two text formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format of a body, from its `Content-Type` when there is one, else from the body
    /// itself (an OpenMetrics body ends with `# EOF`).
    pub fn detect(content_type: Option<&str>, body: &str) -> Format {
        if let Some(ct) = content_type {
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/openmetrics-text")
            {
                return Format::OpenMetrics;
            }
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
            {
                return Format::Prometheus;
            }
        }
        let tail = body.trim_end_matches(['\n', '\r', ' ', '\t']);
        if tail.ends_with("\n# EOF") || tail == "# EOF" {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// The type a `# TYPE` line declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (Prometheus) or `unknown` (OpenMetrics), or no `# TYPE` at all.
    Unknown,
}

impl MetricType {
    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The name in a `# TYPE` line of the Prometheus text format.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "untyped",
        }
    }
}

/// A metric family: what `# HELP`, `# TYPE` and `# UNIT` said about a name.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: MetricType,
    pub help: Option<String>,
    pub unit: Option<String>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order they appeared.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Seconds since the Unix epoch, when the line carried a timestamp.
    pub timestamp: Option<f64>,
    /// Index into [`Exposition::families`].
    pub family: Option<usize>,
}

impl Sample {
    /// A sample with no family and no timestamp.
    pub fn new(name: impl Into<String>, labels: Vec<(String, String)>, value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels,
            value,
            timestamp: None,
            family: None,
        }
    }
}

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A parsed body.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposition {
    pub format: Format,
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
    pub errors: Vec<LineError>,
    /// Whether `# EOF` was seen.
    pub eof: bool,
}

impl Exposition {
    /// The family of a sample, if it has one.
    pub fn family_of(&self, sample: &Sample) -> Option<&Family> {
        self.families.get(sample.family?)
    }

    /// The family name of a sample, or the sample's own name when it has no family.
    pub fn family_name<'a>(&'a self, sample: &'a Sample) -> &'a str {
        self.family_of(sample)
            .map(|f| f.name.as_str())
            .unwrap_or(&sample.name)
    }

    /// The first sample with this name whose labels include every pair given.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples.iter().find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
    }
}

/// Longest line error message kept; the line itself is quoted up to this many characters.
const QUOTE_MAX: usize = 60;

/// Parse a body in the given format. Never panics; unreadable lines land in `errors`.
pub fn parse(body: &str, format: Format) -> Exposition {
    let mut out = Exposition {
        format,
        families: Vec::new(),
        samples: Vec::new(),
        errors: Vec::new(),
        eof: false,
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut after_eof_reported = false;
    for (n, raw) in body.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if out.eof {
            if !line.trim().is_empty() && !after_eof_reported {
                out.errors.push(LineError {
                    line: line_no,
                    message: "text after `# EOF`".into(),
                });
                after_eof_reported = true;
            }
            continue;
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        let result = if let Some(comment) = trimmed.strip_prefix('#') {
            read_comment(comment, format, &mut out, &mut index)
        } else {
            read_sample(trimmed, format).map(|s| out.samples.push(s))
        };
        if let Err(message) = result {
            out.errors.push(LineError {
                line: line_no,
                message: format!("{message}: `{}`", quote(line)),
            });
        }
    }
    if format == Format::OpenMetrics && !out.eof {
        out.errors.push(LineError {
            line: body.split('\n').count(),
            message: "an OpenMetrics body must end with `# EOF`".into(),
        });
    }
    for i in 0..out.samples.len() {
        let family = out
            .samples
            .get(i)
            .and_then(|s| family_index(&s.name, &index));
        if let Some(s) = out.samples.get_mut(i) {
            s.family = family;
        }
    }
    out
}

fn quote(line: &str) -> String {
    let mut q: String = line.chars().take(QUOTE_MAX).collect();
    if line.chars().nth(QUOTE_MAX).is_some() {
        q.push('…');
    }
    q
}

/// Suffixes a sample name may add to its family's name.
const SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
];

fn family_index(name: &str, index: &HashMap<String, usize>) -> Option<usize> {
    if let Some(&i) = index.get(name) {
        return Some(i);
    }
    SUFFIXES
        .iter()
        .find_map(|suffix| index.get(name.strip_suffix(suffix)?).copied())
}

fn family_mut<'a>(
    out: &'a mut Exposition,
    index: &mut HashMap<String, usize>,
    name: &str,
) -> &'a mut Family {
    let i = match index.get(name) {
        Some(&i) if i < out.families.len() => i,
        _ => {
            out.families.push(Family {
                name: name.to_string(),
                kind: MetricType::Unknown,
                help: None,
                unit: None,
            });
            let i = out.families.len() - 1;
            index.insert(name.to_string(), i);
            i
        }
    };
    &mut out.families[i]
}

/// `comment` is the line after its `#`.
fn read_comment(
    comment: &str,
    format: Format,
    out: &mut Exposition,
    index: &mut HashMap<String, usize>,
) -> Result<(), String> {
    let mut cur = Cursor::new(comment);
    let had_space = cur.skip_ws();
    let keyword = cur.take_while(|c| c.is_ascii_alphabetic());
    match keyword {
        "EOF" if format == Format::OpenMetrics && cur.at_end_after_ws() => {
            out.eof = true;
            return Ok(());
        }
        "HELP" | "TYPE" | "UNIT" if had_space => {}
        // Any other comment.
        _ => return Ok(()),
    }
    if !cur.skip_ws() {
        // `# HELPER ...` is a comment, not a HELP line.
        return if cur.at_end() {
            Err(format!("`# {keyword}` without a metric name"))
        } else {
            Ok(())
        };
    }
    let name = cur.metric_name_or_quoted()?;
    let has_rest = cur.skip_ws();
    let rest = cur.rest();
    if !has_rest && !rest.is_empty() {
        return Err(format!(
            "`# {keyword}`: unexpected text after the metric name"
        ));
    }
    match keyword {
        "HELP" => {
            let help = unescape_help(rest, format);
            let family = family_mut(out, index, &name);
            if family.help.is_none() {
                family.help = Some(help);
            }
        }
        "TYPE" => {
            let word = rest.trim_end_matches([' ', '\t']);
            let kind = MetricType::parse(word)
                .ok_or_else(|| format!("unknown metric type `{}`", quote(word)))?;
            let family = family_mut(out, index, &name);
            family.kind = kind;
        }
        _ => {
            let unit = rest.trim_end_matches([' ', '\t']).to_string();
            let family = family_mut(out, index, &name);
            family.unit = Some(unit);
        }
    }
    Ok(())
}

fn unescape_help(text: &str, format: Format) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn read_sample(line: &str, format: Format) -> Result<Sample, String> {
    let mut cur = Cursor::new(line);
    let mut name = if cur.peek() == Some('{') {
        String::new()
    } else {
        cur.metric_name()
            .ok_or("expected a metric name")?
            .to_string()
    };
    let mut labels = Vec::new();
    if cur.peek() == Some('{') {
        cur.bump();
        read_labels(&mut cur, &mut name, &mut labels)?;
    }
    if name.is_empty() {
        return Err("expected a metric name".into());
    }
    if !cur.skip_ws() {
        return Err("expected a space and a value after the metric".into());
    }
    let token = cur.take_while(|c| c != ' ' && c != '\t');
    let value = parse_value(token).ok_or_else(|| format!("`{}` is not a number", quote(token)))?;
    let mut timestamp = None;
    if cur.skip_ws() && !cur.at_end() && cur.peek() != Some('#') {
        let token = cur.take_while(|c| c != ' ' && c != '\t');
        timestamp = Some(
            parse_timestamp(token, format)
                .ok_or_else(|| format!("`{}` is not a timestamp", quote(token)))?,
        );
        cur.skip_ws();
    }
    if cur.peek() == Some('#') {
        // An exemplar: checked for shape, then ignored.
        cur.bump();
        cur.skip_ws();
        if cur.peek() != Some('{') {
            return Err("an exemplar must start with `{`".into());
        }
        cur.bump();
        let mut ignored_name = String::from("exemplar");
        let mut ignored = Vec::new();
        read_labels(&mut cur, &mut ignored_name, &mut ignored)?;
        cur.skip_ws();
        let token = cur.take_while(|c| c != ' ' && c != '\t');
        parse_value(token).ok_or("an exemplar needs a value")?;
        cur.skip_ws();
        let _ = cur.rest();
        return Ok(Sample {
            name,
            labels,
            value,
            timestamp,
            family: None,
        });
    }
    if !cur.at_end_after_ws() {
        return Err("unexpected text after the value".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
        family: None,
    })
}

/// After `{`: labels up to and including `}`. A quoted string standing alone (no `=`) is the
/// metric name of the UTF-8 syntax.
fn read_labels(
    cur: &mut Cursor<'_>,
    name: &mut String,
    labels: &mut Vec<(String, String)>,
) -> Result<(), String> {
    loop {
        cur.skip_ws();
        match cur.peek() {
            Some('}') => {
                cur.bump();
                return Ok(());
            }
            None => return Err("labels are not closed with `}`".into()),
            _ => {}
        }
        let (key, quoted) = if cur.peek() == Some('"') {
            (cur.quoted()?, true)
        } else {
            (
                cur.label_name().ok_or("expected a label name")?.to_string(),
                false,
            )
        };
        cur.skip_ws();
        if quoted && matches!(cur.peek(), Some(',') | Some('}')) {
            if !name.is_empty() {
                return Err("the metric has two names".into());
            }
            *name = key;
        } else {
            if cur.peek() != Some('=') {
                return Err(format!("expected `=` after the label `{}`", quote(&key)));
            }
            cur.bump();
            cur.skip_ws();
            if cur.peek() != Some('"') {
                return Err(format!(
                    "the value of label `{}` must be quoted",
                    quote(&key)
                ));
            }
            let value = cur.quoted()?;
            labels.push((key, value));
        }
        cur.skip_ws();
        match cur.peek() {
            Some(',') => {
                cur.bump();
            }
            Some('}') => {}
            _ => return Err("expected `,` or `}` between labels".into()),
        }
    }
}

/// A sample value: a decimal float, `NaN` or `±Inf`.
pub fn parse_value(token: &str) -> Option<f64> {
    if token.is_empty() || token.len() > 64 {
        return None;
    }
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => return Some(f64::NAN),
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Only digits, signs, a point and an exponent: Rust would also take `infinity` and the like
    // in odd places, which the formats do not allow.
    if !token
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    token.parse::<f64>().ok()
}

fn parse_timestamp(token: &str, format: Format) -> Option<f64> {
    match format {
        Format::Prometheus => {
            if let Ok(ms) = token.parse::<i64>() {
                return Some(ms as f64 / 1000.0);
            }
            // Some exporters write float milliseconds.
            parse_value(token)
                .filter(|v| v.is_finite())
                .map(|ms| ms / 1000.0)
        }
        Format::OpenMetrics => parse_value(token).filter(|v| v.is_finite()),
    }
}

/// A read position in one line. Every slice goes through `str::get`, so a bad offset yields an
/// empty string rather than a panic.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, i: 0 }
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.i += c.len_utf8();
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn at_end_after_ws(&mut self) -> bool {
        self.skip_ws();
        self.at_end()
    }

    /// Skip spaces and tabs; whether there were any.
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.bump();
        }
        self.i > start
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.bump();
        }
        self.s.get(start..self.i).unwrap_or("")
    }

    fn metric_name(&mut self) -> Option<&'a str> {
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
            _ => return None,
        }
        Some(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
    }

    fn metric_name_or_quoted(&mut self) -> Result<String, String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        self.metric_name()
            .map(String::from)
            .ok_or_else(|| "expected a metric name".to_string())
    }

    fn label_name(&mut self) -> Option<&'a str> {
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return None,
        }
        Some(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes; the cursor is on the `"`.
    fn quoted(&mut self) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("a quoted string is not closed".into());
            };
            self.bump();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err("a quoted string is not closed".into());
                    };
                    self.bump();
                    match e {
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        'n' => out.push('\n'),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                other => out.push(other),
            }
        }
    }
}

// ------------------------------------------------------------------------------------ writer

/// Whether a name can be written bare (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether a label name can be written bare (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escape a label value for the text format: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A value as the text format writes it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal that
/// reads back to the same float.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else if value != 0.0 && (value.abs() >= 1e16 || value.abs() < 1e-5) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// Writes the Prometheus text format (0.0.4).
#[derive(Default)]
pub struct TextWriter {
    out: String,
}

impl TextWriter {
    pub fn new() -> Self {
        TextWriter::default()
    }

    /// `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        let mut h = String::with_capacity(help.len());
        for c in help.chars() {
            match c {
                '\\' => h.push_str("\\\\"),
                '\n' => h.push_str("\\n"),
                c => h.push(c),
            }
        }
        let _ = writeln!(self.out, "# HELP {name} {h}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line; labels in the order given.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prom(text: &str) -> Exposition {
        parse(text, Format::Prometheus)
    }

    #[test]
    fn reads_types_help_and_samples() {
        let e = prom(
            "# HELP http_requests_total The total number of HTTP requests.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
             http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n",
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.families.len(), 1);
        assert_eq!(e.families[0].kind, MetricType::Counter);
        assert_eq!(
            e.families[0].help.as_deref(),
            Some("The total number of HTTP requests.")
        );
        assert_eq!(e.samples.len(), 2);
        assert_eq!(e.samples[1].value, 3.0);
        assert_eq!(e.samples[1].timestamp, Some(1_395_066_363.0));
        assert_eq!(e.samples[1].family, Some(0));
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let e = prom(
            "# HELP msdos_file_access_time_seconds Access time with \\\\ and \\n inside.\n\
             msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        let s = &e.samples[0];
        assert_eq!(s.labels[0], ("path".into(), "C:\\DIR\\FILE.TXT".into()));
        assert_eq!(
            s.labels[1],
            ("error".into(), "Cannot find file:\n\"FILE.TXT\"".into())
        );
        assert_eq!(s.value, 1.458255915e9);
        assert_eq!(
            e.families[0].help.as_deref(),
            Some("Access time with \\ and \n inside.")
        );
    }

    #[test]
    fn special_values() {
        let e = prom("a NaN\nb +Inf\nc -Inf\nd inf\ne -1.5e-3\nf 17\ng{} 2\n");
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert!(e.samples[0].value.is_nan());
        assert_eq!(e.samples[1].value, f64::INFINITY);
        assert_eq!(e.samples[2].value, f64::NEG_INFINITY);
        assert_eq!(e.samples[3].value, f64::INFINITY);
        assert_eq!(e.samples[4].value, -0.0015);
        assert_eq!(e.samples[6].name, "g");
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let e =
            prom("ok 1\nbad{ 1\nnovalue\nworse{a=b} 1\nx 1 2 3\nalso_ok 2\n# TYPE t nonsense\n");
        assert_eq!(e.samples.len(), 2);
        assert_eq!(e.samples[1].name, "also_ok");
        let lines: Vec<usize> = e.errors.iter().map(|x| x.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 7]);
    }

    #[test]
    fn trailing_comma_tabs_and_crlf() {
        let e = prom("m{a=\"1\",b=\"2\",}\t3\r\nn 4\r\n");
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples[0].labels.len(), 2);
        assert_eq!(e.samples[1].value, 4.0);
    }

    #[test]
    fn histogram_and_summary_samples_belong_to_their_family() {
        let e = prom(
            "# TYPE rpc histogram\nrpc_bucket{le=\"0.1\"} 1\nrpc_bucket{le=\"+Inf\"} 2\nrpc_sum 0.3\nrpc_count 2\n\
             # TYPE q summary\nq{quantile=\"0.5\"} 0.2\nq_sum 1\nq_count 4\nunrelated 1\n",
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        let names: Vec<&str> = e.samples.iter().map(|s| e.family_name(s)).collect();
        assert_eq!(
            names,
            vec!["rpc", "rpc", "rpc", "rpc", "q", "q", "q", "unrelated"]
        );
        assert_eq!(e.samples[1].labels[0].1, "+Inf");
    }

    #[test]
    fn openmetrics_counters_units_timestamps_exemplars_and_eof() {
        let text = "# TYPE foo counter\n# UNIT foo seconds\n# HELP foo A \\\"quoted\\\" help.\n\
            foo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
            foo_created 1520872607.123\n\
            # TYPE hist histogram\nhist_bucket{le=\"1\"} 0 # {trace_id=\"x\"} 0.5 123.4\nhist_bucket{le=\"+Inf\"} 3\n# EOF\n";
        assert_eq!(Format::detect(None, text), Format::OpenMetrics);
        let e = parse(text, Format::OpenMetrics);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert!(e.eof);
        assert_eq!(e.families[0].unit.as_deref(), Some("seconds"));
        assert_eq!(e.families[0].help.as_deref(), Some("A \"quoted\" help."));
        assert_eq!(e.samples[0].timestamp, Some(1_520_879_607.789));
        assert_eq!(e.family_name(&e.samples[0]), "foo");
        assert_eq!(e.family_name(&e.samples[1]), "foo");
        assert_eq!(e.samples.len(), 4);
    }

    #[test]
    fn openmetrics_without_eof_or_with_trailing_text_is_flagged() {
        let e = parse("a 1\n", Format::OpenMetrics);
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.errors.len(), 1);
        let e = parse("a 1\n# EOF\nb 2\n", Format::OpenMetrics);
        assert_eq!(e.samples.len(), 1);
        assert_eq!(e.errors.len(), 1);
    }

    #[test]
    fn utf8_quoted_names() {
        let e = prom("{\"my.metric\", \"the.label\"=\"ü\"} 1\n# TYPE \"my.metric\" gauge\n");
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples[0].name, "my.metric");
        assert_eq!(e.samples[0].labels[0], ("the.label".into(), "ü".into()));
        assert_eq!(
            e.family_of(&e.samples[0]).map(|f| f.kind),
            Some(MetricType::Gauge)
        );
    }

    #[test]
    fn detects_format_from_content_type() {
        assert_eq!(
            Format::detect(Some("application/openmetrics-text; version=1.0.0"), "a 1\n"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::detect(Some("text/plain; version=0.0.4"), "a 1\n# EOF\n"),
            Format::Prometheus
        );
    }

    #[test]
    fn writer_round_trips() {
        let mut w = TextWriter::new();
        w.family("x_seconds", MetricType::Histogram, "A help\\ with\nnewline");
        w.sample(
            "x_seconds_bucket",
            &[("le", "+Inf"), ("path", "a\"b\\c\nd")],
            3.0,
        );
        w.sample("y", &[], f64::NAN);
        w.sample("z", &[], 1e-9);
        let e = prom(&w.finish());
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples[0].labels[1].1, "a\"b\\c\nd");
        assert_eq!(
            e.families[0].help.as_deref(),
            Some("A help\\ with\nnewline")
        );
        assert!(e.samples[1].value.is_nan());
        assert_eq!(e.samples[2].value, 1e-9);
    }
}
