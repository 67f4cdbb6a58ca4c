//! Watching a run: per trial, the monitor scrapes every service's metrics and samples the host
//! into `trials/<id>/metrics/`; for the whole run, aibench's own load metrics are served live
//! (`monitor.expose_port`), pushed to a Pushgateway (`monitor.pushgateway`), and scraped with
//! the services by a Prometheus started beside them (`monitor.prometheus`). A monitoring
//! problem is reported, never fatal.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use aibench_monitor::prometheus::{LocalPrometheus, PrometheusOptions};
use aibench_monitor::push::{PushGroup, Pusher};
use aibench_monitor::{
    Credentials, LiveMetrics, LiveServer, Monitor, MonitorConfig, MonitorHandle, Target, TargetKind,
};
use aibench_platform::ServiceRecord;
use aibench_recipe::{Recipe, ServiceKind};

pub struct RunMonitoring {
    pub live: LiveMetrics,
    live_server: Option<LiveServer>,
    prometheus: Option<LocalPrometheus>,
    pusher: Option<Pusher>,
    clock_zero: Instant,
    epoch_zero: SystemTime,
}

impl RunMonitoring {
    /// Start what lives for the whole run. Problems come back as warnings.
    pub async fn start(
        recipe: &Recipe,
        run_dir: &Path,
        run_id: &str,
        warnings: &mut Vec<String>,
    ) -> RunMonitoring {
        let m = &recipe.monitor;
        let live = LiveMetrics::new(run_id);
        let mut me = RunMonitoring {
            live: live.clone(),
            live_server: None,
            prometheus: None,
            pusher: None,
            clock_zero: Instant::now(),
            epoch_zero: SystemTime::now(),
        };
        if m.expose_port.is_some() || m.prometheus {
            let bind = SocketAddr::from(([0, 0, 0, 0], m.expose_port.unwrap_or(0)));
            match LiveServer::start(bind, live.clone()).await {
                Ok(s) => me.live_server = Some(s),
                Err(e) => warnings.push(format!(
                    "the live /metrics endpoint could not start on {bind}: {e}"
                )),
            }
        }
        if m.prometheus {
            let mut opts = PrometheusOptions::new(run_dir.join("prometheus"), run_id);
            opts.scrape_interval = m.interval.std();
            match LocalPrometheus::start(opts).await {
                Ok(p) => {
                    if let Some(s) = &me.live_server {
                        let _ = p
                            .file_sd()
                            .set_live(&format!("127.0.0.1:{}", s.addr().port()));
                    }
                    if let Err(e) =
                        aibench_monitor::grafana::write(run_dir, p.url(), m.interval.as_secs_f64())
                    {
                        warnings.push(format!("Grafana dashboards were not written: {e}"));
                    }
                    me.prometheus = Some(p);
                }
                Err(e) => warnings.push(format!("Prometheus could not start: {e}")),
            }
        }
        if let Some(url) = &m.pushgateway {
            match PushGroup::new(url, run_id) {
                Ok(group) => me.pusher = Some(Pusher::start(group, live.clone(), m.interval.std())),
                Err(e) => warnings.push(format!("the Pushgateway {url} cannot be used: {e}")),
            }
        }
        me
    }

    /// Start watching a trial's services; `None` when monitoring is off or cannot start.
    pub fn start_trial(
        &self,
        recipe: &Recipe,
        trial_dir: &Path,
        records: &[ServiceRecord],
        warnings: &mut Vec<String>,
    ) -> Option<MonitorHandle> {
        let m = &recipe.monitor;
        let mut config =
            MonitorConfig::new(trial_dir.join("metrics"), self.clock_zero, self.epoch_zero);
        config.interval = m.interval.std();
        config.system = m.system;
        // Who keeps the host busy: each local service's process group, and aibench with its
        // client shards.
        config.processes = records
            .iter()
            .filter(|r| r.platform == "local")
            .filter_map(|r| {
                Some((
                    r.name.clone(),
                    aibench_monitor::host::Watch::Group(u32::try_from(r.pgid?).ok()?),
                ))
            })
            .chain(std::iter::once((
                "aibench".to_string(),
                aibench_monitor::host::Watch::Tree(std::process::id()),
            )))
            .collect();
        config.gpu = m.gpu;
        config.live = Some(self.live.clone());
        if m.services {
            for r in records {
                let port = r.ports.get("metrics").copied().unwrap_or(r.port);
                if let Some(kind) = target_kind(r.kind, r.metrics_path.is_some()) {
                    let mut t = Target::new(&r.name, kind, &r.host, port);
                    t.path = r.metrics_path.clone();
                    let svc = recipe.services.iter().find(|s| s.name == r.service);
                    let creds = svc.and_then(|s| s.credentials.as_ref());
                    let scrape = r.kind.spec().scrape;
                    let postgres = scrape == aibench_recipe::kinds::Scrape::PgStat;
                    if postgres || scrape == aibench_recipe::kinds::Scrape::RedisInfo {
                        t.credentials = Some(Credentials {
                            user: creds
                                .and_then(|c| c.user.clone())
                                .or_else(|| postgres.then(|| "aibench".into())),
                            password: creds
                                .and_then(|c| c.password.as_ref())
                                .and_then(|p| p.expose(&aibench_recipe::ProcessEnv).ok()),
                            database: creds
                                .and_then(|c| c.database.clone())
                                .or_else(|| postgres.then(|| "postgres".into())),
                        });
                    }
                    if let Some(p) = &self.prometheus {
                        let _ = p.file_sd().add_service(&t);
                    }
                    config.targets.push(t);
                }
            }
        }
        if !m.system && !m.gpu && config.targets.is_empty() {
            return None;
        }
        match Monitor::start(config) {
            Ok(h) => Some(h),
            Err(e) => {
                warnings.push(format!("monitoring could not start: {e}"));
                None
            }
        }
    }

    /// Stop a trial's monitor; what went wrong while watching comes back for the user.
    pub async fn finish_trial(handle: MonitorHandle) -> Vec<String> {
        handle.stop().await.problems()
    }

    pub fn forget_services(&self, records: &[ServiceRecord]) {
        if let Some(p) = &self.prometheus {
            for r in records {
                let _ = p.file_sd().remove_service(&r.name);
            }
        }
    }

    pub async fn stop(self) {
        if let Some(p) = self.pusher {
            p.finish(false).await;
        }
        if let Some(p) = self.prometheus {
            p.stop(Duration::from_secs(30)).await;
        }
        if let Some(s) = self.live_server {
            s.stop().await;
        }
    }
}

/// How the monitor watches a service, from its kind's spec: its own collector (Redis INFO,
/// PostgreSQL pg_stat), its metric names and filter, or a plain Prometheus endpoint when the
/// kind has no metrics of its own but the recipe gives a path (`None`: nothing to scrape).
fn target_kind(kind: ServiceKind, has_metrics_path: bool) -> Option<TargetKind> {
    use aibench_recipe::kinds::{MetricNames, Scrape};
    Some(match kind.spec().scrape {
        Scrape::Named(MetricNames::Vllm) => TargetKind::Vllm,
        Scrape::Named(MetricNames::Sglang) => TargetKind::Sglang,
        Scrape::Named(MetricNames::Tgi) => TargetKind::Tgi,
        Scrape::Named(MetricNames::Llamacpp) => TargetKind::Llamacpp,
        Scrape::Named(MetricNames::Sim) => TargetKind::Sim,
        Scrape::Named(MetricNames::Minio) => TargetKind::Minio,
        Scrape::Named(MetricNames::Qdrant) => TargetKind::Qdrant,
        Scrape::RedisInfo => TargetKind::Redis,
        Scrape::PgStat => TargetKind::Postgres,
        Scrape::None => return has_metrics_path.then_some(TargetKind::Prometheus),
    })
}
