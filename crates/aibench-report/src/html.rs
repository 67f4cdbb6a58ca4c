//! `report.html`: one self-contained page. Plots are inline SVG, styles are inline, and there is
//! no script, font or link to fetch, so the file reads the same opened from a shared
//! filesystem, a laptop offline or a CI artefact.

use std::fmt::Write as _;

use crate::markdown::{evidence_value, ms, pct, rate, trial_name};
use crate::model::{status_text, Report, SweepReport, Verdict};

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape `s`, drawing its `code` spans as `<code>`.
fn code_spans(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", esc(part))
            } else {
                esc(part)
            }
        })
        .collect()
}

const STYLE: &str = r#"
:root { --fg:#1d2430; --muted:#5b6575; --line:#d9dee6; --bg:#ffffff; --soft:#f4f6f9;
        --ok:#2c8a3e; --bad:#c0392b; --warn:#b7791f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600;
         color: #fff; background: var(--muted); vertical-align: middle; }
.badge.completed, .badge.pass { background: var(--ok); }
.badge.failed, .badge.fail { background: var(--bad); }
.badge.interrupted, .badge.likely { background: var(--warn); }
.badge.possible { background: #8a94a6; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: var(--soft); }
.card .k { color: var(--muted); font-size: 13px; }
.card .v { font-size: 22px; font-weight: 650; }
.card .e { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
td.l, th.l { text-align: left; }
td.wrap { white-space: normal; text-align: left; min-width: 280px; }
tr.knee td { background: #fff4e5; }
.scroll { overflow-x: auto; }
.verdict { border-left: 4px solid var(--warn); padding: 6px 12px; margin: 10px 0; background: var(--soft); }
.verdict.possible { border-left-color: #8a94a6; }
.verdict ul { margin: 4px 0; }
.rec { margin: 4px 0 0; }
figure { margin: 16px 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; }
code { background: var(--soft); padding: 0 4px; border-radius: 4px; font-size: 90%; }
details { margin: 10px 0; }
summary { cursor: pointer; font-weight: 600; }
.notes li { color: var(--muted); }
@media print { details { display: block; } figure { break-inside: avoid; } }
"#;

pub(crate) fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(class), esc(text))
}

fn card(html: &mut String, key: &str, value: &str, explain: &str) {
    let _ = write!(
        html,
        "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"e\">{}</div></div>",
        esc(key),
        esc(value),
        esc(explain)
    );
}

fn verdict_html(html: &mut String, v: &Verdict) {
    let conf = format!("{:?}", v.confidence).to_lowercase();
    let _ = write!(
        html,
        "<div class=\"verdict {conf}\"><strong>{}</strong> {} <span class=\"meta\">in {}</span><br>{}.<ul>",
        esc(v.kind.label()),
        badge(&conf, &conf),
        esc(&v.trials.join(", ")),
        esc(&v.summary)
    );
    for e in &v.evidence {
        let _ = write!(
            html,
            "<li>{}: <strong>{}</strong> <span class=\"meta\">[{}]</span></li>",
            esc(&e.metric),
            esc(&evidence_value(e)),
            esc(&e.source)
        );
    }
    let _ = write!(
        html,
        "</ul><p class=\"rec\"><em>What to do:</em> {}</p></div>",
        esc(&v.recommendation)
    );
}

fn cards(html: &mut String, findings: &[crate::sections::Finding]) {
    html.push_str("<div class=\"cards\">");
    for f in findings {
        card(html, f.key, &f.value, &f.explain);
    }
    html.push_str("</div>");
}

fn sweep_html(html: &mut String, s: &SweepReport, figure_html: Option<String>) {
    let fixed: Vec<String> = s.fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = write!(
        html,
        "<h3><code>{}</code> swept for workload <code>{}</code>{}</h3>",
        esc(&s.parameter),
        esc(&s.workload),
        if fixed.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&fixed.join(", ")))
        }
    );
    cards(html, &crate::sections::sweep_findings(s));
    if let Some(f) = figure_html {
        html.push_str(&f);
    }
    html.push_str(&crate::sections::sweep_points(s).html());
    html.push_str("<ul>");
    for (name, k) in crate::sections::knees(s) {
        let _ = match k {
            Some((x, evidence)) => write!(
                html,
                "<li>{}: <strong>{}</strong>: {}.</li>",
                esc(name),
                esc(&x),
                esc(&evidence)
            ),
            None => write!(html, "<li>{}: none.</li>", esc(name)),
        };
    }
    html.push_str("</ul>");
}

/// The report as one HTML page; `svgs` are the plots in the order of `r.plots`.
pub fn render(r: &Report, svgs: &[String]) -> String {
    let run = &r.run;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} — {}</title><style>{STYLE}</style></head><body><main>",
        esc(&run.name),
        esc(&run.run_id)
    );
    let _ = write!(
        html,
        "<h1>{} <span class=\"meta\">{}</span></h1><p class=\"meta\">{} Started {} on <code>{}</code> ({}, {} CPUs{}). aibench {} ({}).{}{}</p>",
        esc(&run.name),
        esc(&run.run_id),
        badge(status_text(run.status), status_text(run.status)),
        esc(&run.started_at_utc),
        esc(&run.hostname),
        esc(&run.cpu_model),
        run.cpus,
        if run.memory_bytes > 0 {
            format!(", {:.1} GiB", run.memory_bytes as f64 / (1u64 << 30) as f64)
        } else {
            String::new()
        },
        esc(&run.aibench_version),
        esc(&run.aibench_git),
        run.reason
            .as_ref()
            .map(|r| format!(" Stopped: {}.", esc(r)))
            .unwrap_or_default(),
        if run.services.is_empty() {
            String::new()
        } else {
            format!(
                " Services: {}.",
                run.services
                    .iter()
                    .map(|s| format!(
                        "<code>{}</code> ({}{})",
                        esc(&s.name),
                        esc(&s.kind),
                        s.model.as_ref().map(|m| format!(", {}", esc(m))).unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );

    if let Some(c) = &run.calibration {
        let _ = write!(
            html,
            "<p class=\"meta\">{}</p>",
            code_spans(&crate::sections::calibration(c))
        );
    }

    // Findings.
    html.push_str("<h2>Findings</h2>");
    let sweep_plot = |i: usize| {
        let id = if r.sweeps.len() == 1 {
            "sweep".to_string()
        } else {
            format!("sweep-{}", i + 1)
        };
        r.plots.iter().position(|p| p.id == id)
    };
    let mut shown = Vec::new();
    for (i, s) in r.sweeps.iter().enumerate() {
        let fig = sweep_plot(i).map(|p| {
            shown.push(p);
            let mut f = String::new();
            figure(&mut f, r, svgs, p);
            f
        });
        sweep_html(&mut html, s, fig);
    }
    if let ([], [t]) = (r.sweeps.as_slice(), r.trials.as_slice()) {
        cards(&mut html, &crate::sections::trial_findings(t));
    }
    html.push_str("<h3>Bottlenecks</h3>");
    if r.bottlenecks.is_empty() {
        let _ = write!(html, "<p>{}</p>", esc(&crate::sections::no_bottleneck(r)));
    }
    for v in &r.bottlenecks {
        verdict_html(&mut html, v);
    }

    // Trials.
    let _ = write!(
        html,
        "<h2>Trials</h2><p class=\"meta\">{}</p>{}",
        esc(&crate::sections::TRIALS_ABOUT.replace('`', "")),
        crate::sections::trials(r).html()
    );
    let errors: Vec<String> = crate::sections::errors_by_class(r)
        .into_iter()
        .map(|(trial, classes)| format!("<li><code>{}</code>: {}</li>", esc(&trial), esc(&classes)))
        .collect();
    if let Some(table) = crate::operations::table(r) {
        let _ = write!(
            html,
            "<h2>Operations</h2><p class=\"meta\">{}</p>{}",
            esc(crate::operations::ABOUT),
            table.html()
        );
    }
    if !errors.is_empty() {
        let _ = write!(html, "<h3>Errors by class</h3><ul>{}</ul>", errors.join(""));
    }
    if let Some(slo) = &r.slo {
        let _ = write!(
            html,
            "<p class=\"meta\">Objectives: {}</p>",
            esc(&crate::markdown::slo_text(slo))
        );
    }

    // Plots: the run's, then each trial's in its own section.
    let run_plots: Vec<usize> = (0..r.plots.len())
        .filter(|&i| r.plots[i].trial.is_none() && !shown.contains(&i))
        .collect();
    if !run_plots.is_empty() {
        html.push_str("<h2>Plots</h2>");
        for i in run_plots {
            figure(&mut html, r, svgs, i);
        }
    }
    if r.trials
        .iter()
        .any(|t| !t.timeseries.is_empty() || !t.bottlenecks.is_empty())
    {
        html.push_str("<h2>Trials over time</h2>");
        for (n, t) in r.trials.iter().enumerate() {
            let _ = write!(
                html,
                "<details{}><summary>{} — {} req/s, E2E p99 {} ms{}</summary>",
                if n == 0 { " open" } else { "" },
                esc(&trial_name(r, t)),
                rate(t.headline.requests_per_s),
                ms(t.headline.e2e_p99_ms),
                if t.bottlenecks.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {}",
                        t.bottlenecks
                            .iter()
                            .map(|v| v.kind.label())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            for v in &t.bottlenecks {
                verdict_html(&mut html, v);
            }
            if let Some(g) = &t.goodput {
                let _ = write!(
                    html,
                    "<p>Goodput {:.2} req/s: {} of {} measured requests ({}) met every per-request objective.</p>",
                    g.goodput_per_s,
                    g.good_requests,
                    t.headline.requests,
                    pct(g.share)
                );
            }
            for i in (0..r.plots.len()).filter(|&i| {
                r.plots[i].trial.as_deref() == Some(t.id.as_str())
                    && r.plots[i].workload.as_deref() == Some(t.workload.as_str())
            }) {
                figure(&mut html, r, svgs, i);
            }
            if let Some(e) = crate::sections::energy(t) {
                let _ = write!(
                    html,
                    "<p>GPU energy over the measure window: {}.</p>",
                    esc(&e)
                );
            }
            if let Some(table) = crate::sections::metrics(t) {
                html.push_str(&table.html());
            }
            html.push_str("</details>");
        }
    }
    if !r.notes.is_empty() {
        html.push_str("<h2>Notes</h2><ul class=\"notes\">");
        for n in &r.notes {
            let _ = write!(html, "<li>{}</li>", esc(n));
        }
        html.push_str("</ul>");
    }
    html.push_str("<h2>Files</h2><ul><li><code>report.json</code>: every figure on this page (schema <code>schema/report.schema.json</code>)</li><li><code>report.md</code>, <code>summary.csv</code></li><li><code>plots/</code>: each plot as SVG and PNG</li><li><code>trials/&lt;trial&gt;/</code>: <code>summary.json</code>, <code>requests.jsonl</code>, <code>metrics/</code></li><li><code>logs/</code>: service output and <code>events.jsonl</code></li></ul>");
    html.push_str("</main></body></html>\n");
    html
}

fn figure(html: &mut String, r: &Report, svgs: &[String], i: usize) {
    let (Some(p), Some(svg)) = (r.plots.get(i), svgs.get(i)) else {
        return;
    };
    let _ = write!(
        html,
        "<figure id=\"{}\">{}<figcaption>{} — <code>{}</code>, <code>{}</code></figcaption></figure>",
        esc(&p.id),
        svg,
        esc(&p.title),
        esc(&p.svg),
        esc(&p.png)
    );
}
