//! Collectors: one scrape of one target, as samples. HTTP endpoints in the Prometheus or
//! OpenMetrics text format, Redis through `INFO`, PostgreSQL through its `pg_stat` views.

pub mod postgres;
pub mod redis;

use std::time::Duration;

use crate::expo::{self, Format, Sample};
use crate::http::Call;
use crate::target::{Filter, Target, TargetKind};

/// What we ask an HTTP endpoint for: the classic text format, which every client library
/// serves; OpenMetrics is read too when that is what comes back.
const ACCEPT: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// The outcome of one successful scrape.
#[derive(Debug, Default)]
pub struct Scraped {
    /// The kept samples.
    pub samples: Vec<Sample>,
    /// Parts that failed while the rest still counts: exposition lines that could not be
    /// read, PostgreSQL queries that were refused.
    pub partial_failures: usize,
    /// The first of them, for the report.
    pub first_partial_failure: Option<String>,
}

/// A target's collector, with whatever connection it keeps between scrapes.
pub enum Collector {
    Http,
    Redis(redis::Redis),
    Postgres(postgres::Postgres),
}

impl Collector {
    pub fn for_kind(kind: TargetKind) -> Collector {
        match kind {
            TargetKind::Redis => Collector::Redis(redis::Redis::default()),
            TargetKind::Postgres => Collector::Postgres(postgres::Postgres::default()),
            _ => Collector::Http,
        }
    }

    /// One scrape, within `timeout`. The error is a one-line message for the report.
    pub async fn collect(
        &mut self,
        target: &Target,
        filter: Filter,
        timeout: Duration,
    ) -> Result<Scraped, String> {
        let work = async {
            match self {
                Collector::Http => scrape_http(target, filter, timeout).await,
                Collector::Redis(r) => r.collect(target, filter).await,
                Collector::Postgres(p) => p.collect(target, filter).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // A connection stuck halfway is not reused.
                match self {
                    Collector::Redis(r) => r.reset(),
                    Collector::Postgres(p) => p.reset(),
                    Collector::Http => {}
                }
                Err(format!("no answer within {timeout:?}"))
            }
        }
    }
}

async fn scrape_http(
    target: &Target,
    filter: Filter,
    timeout: Duration,
) -> Result<Scraped, String> {
    let mut call = Call::get(&target.host, target.port, target.http_path(), timeout);
    call.accept = Some(ACCEPT);
    let response = call.send().await.map_err(|e| e.to_string())?;
    if !response.is_success() {
        let hint = if response.status == 404 {
            format!(
                " (is `{}` the metrics path? set the service's `metrics:` path in the recipe)",
                target.http_path()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "HTTP {} from {}{}",
            response.status,
            target.http_path(),
            hint
        ));
    }
    let body = String::from_utf8_lossy(&response.body);
    let format = Format::detect(response.content_type.as_deref(), &body);
    Ok(select(expo::parse(&body, format), filter))
}

/// Keep the samples the filter wants.
pub fn select(exposition: expo::Exposition, filter: Filter) -> Scraped {
    let keep: Vec<bool> = exposition
        .samples
        .iter()
        .map(|s| filter.keeps(exposition.family_name(s)))
        .collect();
    let partial_failures = exposition.errors.len();
    let first_partial_failure = exposition.errors.first().map(|e| e.to_string());
    let samples = exposition
        .samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect();
    Scraped {
        samples,
        partial_failures,
        first_partial_failure,
    }
}

/// A metric name made of `[a-zA-Z0-9_]` from any text.
pub(crate) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
