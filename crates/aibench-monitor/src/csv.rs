//! The long-format metrics CSV: `t_s,name,labels,value`, one row per sample.
//!
//! - `t_s`: seconds on the run's clock (see [`crate::RunClock`]), six decimals.
//! - `name`: the sample name as the service wrote it (`vllm:num_requests_running`,
//!   `vllm:time_to_first_token_seconds_bucket`).
//! - `labels`: `k=v;k2=v2`, sorted by label name. Inside a name or a value a backslash is
//!   written `\\`, a `;` is `\;`, an `=` is `\=`, a newline `\n` and a carriage return `\r`, so
//!   the field splits unambiguously on unescaped `;` and then on the first unescaped `=`
//!   ([`decode_labels`] does exactly that).
//! - `value`: the shortest decimal that reads back to the same float, `NaN`, `+Inf` or `-Inf`.
//!
//! Commas and double quotes are left to CSV itself: a field that holds one (or a line break) is
//! quoted as RFC 4180 says, with inner quotes doubled, so any CSV reader recovers it.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::expo::format_value;

/// The header line of every metrics CSV.
pub const HEADER: &str = "t_s,name,labels,value";

/// Encode labels as `k=v;k2=v2`, sorted by name (see the module docs for the escapes).
pub fn encode_labels(labels: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape_part(k, &mut out);
        out.push('=');
        escape_part(v, &mut out);
    }
    out
}

/// Encode labels given as string pairs (for samples this crate makes itself).
pub fn encode_label_refs(labels: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    encode_labels(&owned)
}

fn escape_part(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The inverse of [`encode_labels`]. A pair without `=` becomes a name with an empty value.
pub fn decode_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.is_empty() {
        return out;
    }
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let target = if in_value { &mut value } else { &mut key };
        match c {
            '\\' => match chars.next() {
                Some('n') => target.push('\n'),
                Some('r') => target.push('\r'),
                Some(other) => target.push(other),
                None => target.push('\\'),
            },
            ';' => {
                out.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                in_value = false;
            }
            '=' if !in_value => in_value = true,
            c => target.push(c),
        }
    }
    out.push((key, value));
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// Split one CSV line into fields (RFC 4180 quoting). For tests and small readers.
pub fn split_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// One metrics CSV being written. Rows are buffered and flushed after each scrape, so the file
/// is readable while the run goes on.
pub struct CsvWriter {
    path: PathBuf,
    out: BufWriter<File>,
    rows: u64,
}

impl CsvWriter {
    /// Create (or truncate) the file and write the header.
    pub fn create(path: &Path) -> io::Result<CsvWriter> {
        let mut out = BufWriter::with_capacity(64 * 1024, File::create(path)?);
        writeln!(out, "{HEADER}")?;
        Ok(CsvWriter {
            path: path.to_path_buf(),
            out,
            rows: 0,
        })
    }

    /// Append to an existing file (a trial resumed), writing the header only if it is empty.
    pub fn append(path: &Path) -> io::Result<CsvWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let empty = file.metadata()?.len() == 0;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        if empty {
            writeln!(out, "{HEADER}")?;
        }
        Ok(CsvWriter {
            path: path.to_path_buf(),
            out,
            rows: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One row; `labels` is already encoded by [`encode_labels`].
    pub fn row(&mut self, t_s: f64, name: &str, labels: &str, value: f64) -> io::Result<()> {
        self.rows += 1;
        writeln!(
            self.out,
            "{t_s:.6},{},{},{}",
            field(name),
            field(labels),
            format_value(value)
        )
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_sorted_and_escaped() {
        let l = pairs(&[("model_name", "a;b=c\\d"), ("engine", "0")]);
        let s = encode_labels(&l);
        assert_eq!(s, "engine=0;model_name=a\\;b\\=c\\\\d");
        let mut back = decode_labels(&s);
        back.sort();
        let mut l = l;
        l.sort();
        assert_eq!(back, l);
        assert!(decode_labels("").is_empty());
    }

    #[test]
    fn commas_and_quotes_are_quoted_by_csv() {
        let labels = encode_labels(&pairs(&[("path", "a,\"b\"\nc")]));
        let line = format!("1.000000,m,{},2", field(&labels));
        assert_eq!(line, "1.000000,m,\"path=a,\"\"b\"\"\\nc\",2");
        let fields = split_line(&line);
        assert_eq!(fields.len(), 4);
        assert_eq!(decode_labels(&fields[2]), pairs(&[("path", "a,\"b\"\nc")]));
    }

    #[test]
    fn writer_writes_header_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        let mut w = CsvWriter::create(&p).unwrap();
        w.row(1.5, "vllm:num_requests_running", "model_name=m", 3.0)
            .unwrap();
        w.row(2.0, "x", "", f64::INFINITY).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "t_s,name,labels,value\n1.500000,vllm:num_requests_running,model_name=m,3\n2.000000,x,,+Inf\n"
        );
        drop(w);
        let mut w = CsvWriter::append(&p).unwrap();
        w.row(3.0, "y", "", 1.0).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.matches("t_s,").count(), 1);
    }
}
