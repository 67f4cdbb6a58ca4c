//! Push aibench's live metrics to a Prometheus Pushgateway, and delete them at the end.
//!
//! The group is `/metrics/job/aibench/instance/<run>`: each push replaces the whole group
//! (`PUT`), so the gateway always holds the latest values of this run and nothing stale;
//! [`Pusher::finish`] pushes once more and then deletes the group, or keeps it when asked.
//! A failed push is counted, never fatal.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::{percent_encode, Call, HttpError, HttpUrl};
use crate::live::{LiveMetrics, TEXT_FORMAT};

/// The job label of every group aibench pushes.
pub const JOB: &str = "aibench";

/// One grouping key on one gateway.
#[derive(Clone, Debug)]
pub struct PushGroup {
    pub gateway: HttpUrl,
    pub job: String,
    pub instance: String,
}

impl PushGroup {
    pub fn new(gateway_url: &str, instance: &str) -> Result<PushGroup, HttpError> {
        Ok(PushGroup {
            gateway: HttpUrl::parse(gateway_url)?,
            job: JOB.to_string(),
            instance: instance.to_string(),
        })
    }

    /// `/metrics/job/<job>/instance/<instance>`; a value with a `/` (or an empty one) goes in
    /// the gateway's base64 form (`instance@base64/...`).
    pub fn path(&self) -> String {
        let seg = |key: &str, value: &str| {
            if value.is_empty() || value.contains('/') {
                let b64 = base64::engine::general_purpose::URL_SAFE.encode(value);
                let b64 = if b64.is_empty() { "=".to_string() } else { b64 };
                format!("/{key}@base64/{b64}")
            } else {
                format!("/{key}/{}", percent_encode(value))
            }
        };
        self.gateway.path(&format!(
            "/metrics{}{}",
            seg("job", &self.job),
            seg("instance", &self.instance)
        ))
    }

    /// Replace the group with `body` (text format).
    pub async fn push(&self, body: String, timeout: Duration) -> Result<(), String> {
        self.send(Method::PUT, Some(body), timeout).await
    }

    /// Delete the group.
    pub async fn delete(&self, timeout: Duration) -> Result<(), String> {
        self.send(Method::DELETE, None, timeout).await
    }

    async fn send(
        &self,
        method: Method,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let path = self.path();
        let call = Call {
            method: method.clone(),
            host: &self.gateway.host,
            port: self.gateway.port,
            path: &path,
            accept: None,
            body: body.map(|b| (TEXT_FORMAT, Bytes::from(b))),
            timeout,
        };
        let r = call
            .send()
            .await
            .map_err(|e| format!("{method} {}: {e}", self.gateway))?;
        if r.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{method} {}{path}: HTTP {}: {}",
                self.gateway.base(),
                r.status,
                r.text().trim()
            ))
        }
    }
}

/// What the pusher did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReport {
    pub url: String,
    pub pushes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub deleted: bool,
}

/// Pushes periodically in the background.
pub struct Pusher {
    group: PushGroup,
    metrics: LiveMetrics,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<PushReport>>,
    timeout: Duration,
}

impl Pusher {
    /// Push `metrics` to the group every `interval`, starting now.
    pub fn start(group: PushGroup, metrics: LiveMetrics, interval: Duration) -> Pusher {
        let (stop, mut stop_rx) = watch::channel(false);
        let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
        let (g, m) = (group.clone(), metrics.clone());
        let task = tokio::spawn(async move {
            let mut report = PushReport {
                url: g.gateway.base(),
                ..PushReport::default()
            };
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = crate::stopped(&mut stop_rx) => break,
                    _ = tick.tick() => {
                        count(&mut report, g.push(m.render(), timeout).await);
                    }
                }
            }
            report
        });
        Pusher {
            group,
            metrics,
            stop,
            task: Some(task),
            timeout,
        }
    }

    /// Stop, push the final values, then delete the group unless `keep` is set.
    pub async fn finish(mut self, keep: bool) -> PushReport {
        let _ = self.stop.send(true);
        let mut report = match self.task.take() {
            Some(t) => t.await.unwrap_or_default(),
            None => PushReport::default(),
        };
        if keep {
            count(
                &mut report,
                self.group.push(self.metrics.render(), self.timeout).await,
            );
        } else {
            match self.group.delete(self.timeout).await {
                Ok(()) => report.deleted = true,
                Err(e) => {
                    report.failures += 1;
                    report.last_error = Some(e);
                }
            }
        }
        report
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn count(report: &mut PushReport, r: Result<(), String>) {
    report.pushes += 1;
    if let Err(e) = r {
        report.failures += 1;
        report.last_error = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_paths() {
        let g = PushGroup::new("http://gw:9091", "quickstart-20261123-140502").unwrap();
        assert_eq!(
            g.path(),
            "/metrics/job/aibench/instance/quickstart-20261123-140502"
        );
        let g = PushGroup::new("http://gw:9091/pg/", "a/b").unwrap();
        assert_eq!(g.path(), "/pg/metrics/job/aibench/instance@base64/YS9i");
        let g = PushGroup::new("http://gw:9091", "").unwrap();
        assert_eq!(g.path(), "/metrics/job/aibench/instance@base64/=");
    }
}
