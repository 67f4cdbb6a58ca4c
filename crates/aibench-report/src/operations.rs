//! The per-operation table (Redis `GET`/`SET`, S3 `PUT`/`GET`, vector `query`, SQL
//! transactions and their statements), built once as plain cells and rendered by both the
//! Markdown and the HTML report.

use crate::block::{Cell, Table};
use crate::markdown::{ms, trial_name};
use crate::model::Report;

/// One row per trial and operation; None when no trial has operations.
pub fn table(r: &Report) -> Option<Table> {
    let mut rows = Vec::new();
    let mut recall = false;
    let mut hits = false;
    for t in &r.trials {
        for o in t.summary.operations.values() {
            recall |= o.recall.is_some();
            hits |= o.hit_ratio.is_some();
        }
    }
    for t in &r.trials {
        for (name, o) in &t.summary.operations {
            let lat = o.latency.as_ref();
            let mut row = vec![
                format!("`{}`", trial_name(r, t)),
                name.clone(),
                o.operations.to_string(),
                o.errors.to_string(),
                per_s(o.per_s),
                ms(lat.map(|l| l.p50_ms)),
                ms(lat.map(|l| l.p99_ms)),
                ms(lat.map(|l| l.p999_ms)),
                mib(o.out_mib_per_s),
                mib(o.in_mib_per_s),
            ];
            if hits {
                row.push(
                    o.hit_ratio
                        .map_or("–".into(), |h| format!("{:.1} %", h * 100.0)),
                );
            }
            if recall {
                row.push(o.recall.map_or("–".into(), |v| format!("{v:.4}")));
            }
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut header = vec![
        "trial",
        "operation",
        "ops",
        "errors",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "out MiB/s",
        "in MiB/s",
    ];
    if hits {
        header.push("hit ratio");
    }
    if recall {
        header.push("recall@k");
    }
    let right = header
        .iter()
        .map(|h| !matches!(*h, "trial" | "operation"))
        .collect();
    Some(Table {
        header,
        right,
        rows: rows
            .into_iter()
            .map(|r: Vec<String>| r.into_iter().map(Cell::parse).collect())
            .collect(),
        marked: None,
    })
}

fn per_s(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn mib(v: f64) -> String {
    if v == 0.0 {
        "–".into()
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The explanation printed above the table.
pub const ABOUT: &str = "Per operation over the measure window. A pipelined batch of commands \
counts each command; latency runs from the send to the end of the response (the last reply of \
a batch, the whole object, the whole transaction; a statement's own time for the parts of a \
transaction). Recall@k is judged against exact brute-force neighbours computed before the clock.";
