//! Integration tests, one binary: the parser on real expositions, and the monitor against real
//! servers (the simulator, Prometheus, Pushgateway, Redis, PostgreSQL). A test whose server is
//! not installed says so and passes.

mod gpu_grafana;
mod parser;
mod prometheus;
mod scrape_sim;
mod stores;
mod util;
