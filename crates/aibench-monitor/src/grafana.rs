//! Grafana.
