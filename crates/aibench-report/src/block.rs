//! Format-neutral blocks of the report: a section builds its content once, as cells, and both
//! the Markdown and the HTML renderer draw the same block.

use crate::html::{badge, esc};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// An identifier (a trial id): `code` in both formats.
    Code(String),
    /// A status word: plain in Markdown, a badge in HTML.
    Status(&'static str),
    /// A pass or a fail with what failed.
    Verdict {
        passed: bool,
        detail: String,
    },
}

impl Cell {
    /// A cell from Markdown-ish text: `` `id` `` is code, anything else text.
    pub fn parse(text: String) -> Cell {
        match text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
            Some(code) => Cell::Code(code.to_string()),
            None => Cell::Text(text),
        }
    }

    fn markdown(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Code(t) => format!("`{t}`"),
            Cell::Status(s) => s.to_string(),
            Cell::Verdict { passed: true, .. } => "pass".into(),
            Cell::Verdict {
                passed: false,
                detail,
            } if detail.is_empty() => "fail".into(),
            Cell::Verdict {
                passed: false,
                detail,
            } => format!("**fail**: {detail}"),
        }
    }

    fn html(&self) -> String {
        match self {
            Cell::Text(t) => esc(t),
            Cell::Code(t) => format!("<code>{}</code>", esc(t)),
            Cell::Status(s) => badge(s, s),
            Cell::Verdict { passed: true, .. } => badge("pass", "pass"),
            Cell::Verdict {
                passed: false,
                detail,
            } if detail.is_empty() => badge("fail", "fail"),
            Cell::Verdict {
                passed: false,
                detail,
            } => format!("{} {}", badge("fail", "fail"), esc(detail)),
        }
    }

    /// Whether the cell's text may wrap (long verdicts) in HTML.
    fn wraps(&self) -> bool {
        matches!(self, Cell::Verdict { .. })
    }
}

/// A table: its header, each column's alignment (true: right), and its rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<&'static str>,
    pub right: Vec<bool>,
    pub rows: Vec<Vec<Cell>>,
    /// A row to stand out (a sweep's knee): bold load in Markdown, highlighted in HTML.
    pub marked: Option<usize>,
}

impl Table {
    pub fn markdown(&self) -> String {
        let mut md = format!("| {} |\n|", self.header.join(" | "));
        for r in &self.right {
            md.push_str(if *r { "---:|" } else { "---|" });
        }
        md.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            let mut cells: Vec<String> = row.iter().map(Cell::markdown).collect();
            if self.marked == Some(i) {
                if let Some(first) = cells.first_mut() {
                    *first = format!("**{first}**");
                }
            }
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        md
    }

    pub fn html(&self) -> String {
        // The report's tables align right unless a cell is of class `l`.
        let class = |right: bool, wrap: bool| match (right, wrap) {
            (_, true) => " class=\"wrap\"",
            (true, false) => "",
            (false, false) => " class=\"l\"",
        };
        let mut h = String::from("<div class=\"scroll\"><table><tr>");
        for (name, right) in self.header.iter().zip(&self.right) {
            h.push_str(&format!("<th{}>{}</th>", class(*right, false), esc(name)));
        }
        h.push_str("</tr>");
        for (i, row) in self.rows.iter().enumerate() {
            h.push_str(if self.marked == Some(i) {
                "<tr class=\"knee\">"
            } else {
                "<tr>"
            });
            for (cell, right) in row.iter().zip(&self.right) {
                h.push_str(&format!(
                    "<td{}>{}</td>",
                    class(*right, cell.wraps()),
                    cell.html()
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_two_formats() {
        let t = Table {
            header: vec!["trial", "req/s", "SLO"],
            right: vec![false, true, false],
            rows: vec![vec![
                Cell::Code("01".into()),
                Cell::Text("3.5".into()),
                Cell::Verdict {
                    passed: false,
                    detail: "TTFT p99 > 200 ms".into(),
                },
            ]],
            marked: None,
        };
        assert_eq!(
            t.markdown(),
            "| trial | req/s | SLO |\n|---|---:|---|\n| `01` | 3.5 | **fail**: TTFT p99 > 200 ms |\n"
        );
        let h = t.html();
        assert!(
            h.contains("<td class=\"l\"><code>01</code></td><td>3.5</td>"),
            "{h}"
        );
        assert!(h.contains("TTFT p99 &gt; 200 ms"), "{h}");
    }
}
