//! Diagnostics that point into the recipe: `file:line:col: message (at path.to.key)`, the source
//! line, a caret under the offending text, and a hint with the fix.

use std::fmt;

/// A position in the recipe text, both 1-based, columns counted in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Dotted path of the key, e.g. `workloads[0].load.rate`; empty for the document root.
    pub path: String,
    pub pos: Pos,
    /// How many characters to underline (at least one).
    pub width: usize,
    /// A suggestion: the fix, or "did you mean `x`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: path.into(),
            pos,
            width: 1,
            help: None,
        }
    }

    pub fn warning(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(pos, path, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width.max(1);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The recipe text and the name it is reported under.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// Every problem found in one pass over a recipe, in source order.
/// At most this many diagnostics are printed; the rest are counted.
pub const MAX_SHOWN: usize = 50;

#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Sort by position and drop exact repeats, so output reads top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (a.pos, a.severity, &a.path, &a.message).cmp(&(b.pos, b.severity, &b.path, &b.message))
        });
        self.items.dedup();
    }

    /// Render the diagnostics as the user sees them on stderr: the first [`MAX_SHOWN`], then
    /// how many more there are (a broken file can have thousands).
    pub fn render(&self, source: &Source, color: bool) -> String {
        let mut out = String::new();
        for d in self.items.iter().take(MAX_SHOWN) {
            out.push_str(&render_one(d, source, color));
        }
        if let Some(rest) = self.items.get(MAX_SHOWN..).filter(|r| !r.is_empty()) {
            let errors = rest.iter().filter(|d| d.is_error()).count();
            out.push_str(&format!(
                "... and {} more ({errors} error{}, {} warning{}) not shown; fix these first, or \
                 list every one with `aibench validate --json`\n",
                rest.len(),
                if errors == 1 { "" } else { "s" },
                rest.len() - errors,
                if rest.len() - errors == 1 { "" } else { "s" },
            ));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}: {sev}: {}",
            self.pos.line, self.pos.col, self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

fn render_one(d: &Diagnostic, source: &Source, color: bool) -> String {
    let (bold, red, yellow, blue, reset) = if color {
        ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    let (sev, sev_color) = match d.severity {
        Severity::Error => ("error", red),
        Severity::Warning => ("warning", yellow),
    };
    let mut out = format!(
        "{bold}{}:{}:{}:{reset} {bold}{sev_color}{sev}{reset}{bold}: {}{reset}",
        source.name, d.pos.line, d.pos.col, d.message
    );
    if !d.path.is_empty() {
        out.push_str(&format!(" (at {})", d.path));
    }
    out.push('\n');
    if let Some(line) = source.line(d.pos.line) {
        // Long lines (minified or binary input) are cut around the column.
        let chars: Vec<char> = line.chars().collect();
        let start = d.pos.col.saturating_sub(1).saturating_sub(60);
        let end = (start + 120).min(chars.len());
        let shown: String = chars[start.min(end)..end]
            .iter()
            .map(|c| if c.is_control() { ' ' } else { *c })
            .collect();
        let gutter = d.pos.line.to_string();
        let pad = " ".repeat(gutter.len());
        let caret_at = d.pos.col.saturating_sub(1).saturating_sub(start);
        let width = d.width.min(end.saturating_sub(start + caret_at).max(1));
        out.push_str(&format!("{blue}{pad} |{reset}\n"));
        out.push_str(&format!("{blue}{gutter} |{reset} {shown}\n"));
        out.push_str(&format!(
            "{blue}{pad} |{reset} {}{sev_color}{}{reset}\n",
            " ".repeat(caret_at),
            "^".repeat(width)
        ));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("  {bold}help{reset}: {help}\n"));
    }
    out
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase().replace('-', "_");
    candidates
        .into_iter()
        .filter_map(|c| {
            let norm = c.to_ascii_lowercase().replace('-', "_");
            let jw = strsim::jaro_winkler(&lower, &norm);
            let edits = strsim::damerau_levenshtein(&lower, &norm);
            let close = jw > 0.8 || edits <= (norm.chars().count() / 3).max(1);
            close.then_some((jw - edits as f64, c))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        let keys = ["concurrency", "duration", "rate"];
        assert_eq!(did_you_mean("concurrencey", keys), Some("concurrency"));
        assert_eq!(did_you_mean("duraton", keys), Some("duration"));
        assert_eq!(did_you_mean("xyz", keys), None);
    }

    #[test]
    fn renders_file_line_col_path_and_caret() {
        let src = Source::new("r.yaml", "name: x\nload:\n  concurrencey: 8\n");
        let mut ds = Diagnostics::default();
        ds.push(
            Diagnostic::error(
                Pos { line: 3, col: 3 },
                "load",
                "unknown field `concurrencey`",
            )
            .with_width(12)
            .with_help("did you mean `concurrency`?"),
        );
        let text = ds.render(&src, false);
        assert!(text.starts_with("r.yaml:3:3: error: unknown field `concurrencey` (at load)\n"));
        assert!(text.contains("3 |   concurrencey: 8\n"));
        assert!(text.contains("  |   ^^^^^^^^^^^^\n"));
        assert!(text.contains("help: did you mean `concurrency`?"));
    }
}
