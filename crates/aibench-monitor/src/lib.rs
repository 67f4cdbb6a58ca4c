//! The monitor stage of aibench: see why a service slows down, not only that it does.
//!
//! - [`Monitor::start`] scrapes each service's metrics at the recipe's interval ([`scrape`]:
//!   Prometheus text and OpenMetrics over HTTP, Redis through `INFO`, PostgreSQL through its
//!   `pg_stat` views), samples the host ([`host`]) and its NVIDIA GPUs ([`gpu`], NVML loaded at
//!   run time), and writes long-format CSV (`t_s,name,labels,value`, see [`csv`]) into the
//!   trial's `metrics/` folder, every series on the run's clock ([`clock`]). A failing scrape
//!   is counted in the [`MonitorReport`], never fatal.
//! - [`LiveServer`] serves aibench's own load metrics ([`LiveMetrics`], fed from the load
//!   engine's progress snapshots and records) on `/metrics`; [`push::Pusher`] pushes them to a
//!   Pushgateway and deletes its group at the end.
//! - [`prometheus`] writes `prometheus.yml` with file-based discovery that follows the
//!   services, runs a local Prometheus for the run, and queries its HTTP API (`aibench
//!   export`); [`grafana`] writes dashboards and provisioning files.
//!
//! Nothing here prints: problems are in the report and in [`MonitorEvent`]s.

pub mod clock;
pub mod csv;
pub mod expo;
pub mod export;
pub mod gpu;
pub mod grafana;
pub mod host;
pub mod http;
pub mod live;
mod monitor;
pub mod prometheus;
pub mod push;
pub mod scrape;
pub mod target;

pub use clock::RunClock;
pub use live::{LiveMetrics, LiveServer};
pub use monitor::{
    metrics_files, Monitor, MonitorConfig, MonitorError, MonitorEvent, MonitorHandle,
    MonitorReport, SamplerReport, TargetReport,
};
pub use target::{Credentials, Filter, Target, TargetKind, UnknownKind};

/// Resolves once a stop flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
