use std::time::{Duration, Instant, SystemTime};
use aibench_monitor::expo::{parse, Format};
use aibench_monitor::host::HostSampler;

#[tokio::main]
async fn main() {
    let text = std::fs::read_to_string("crates/aibench-monitor/tests/data/vllm-v1.txt").unwrap();
    let n = 2000;
    let t = Instant::now();
    let mut samples = 0;
    for _ in 0..n { samples += parse(&text, Format::Prometheus).samples.len(); }
    let el = t.elapsed();
    println!("parse vllm-v1 ({} bytes, {} samples): {:.1} us/body, {:.0} MB/s", text.len(), samples / n, el.as_secs_f64() * 1e6 / n as f64, text.len() as f64 * n as f64 / el.as_secs_f64() / 1e6);
    let mut h = HostSampler::new();
    h.sample(Instant::now()).unwrap();
    let t = Instant::now();
    for _ in 0..1000 { h.sample(Instant::now()).unwrap(); }
    println!("host sample: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / 1000.0);
    let cfg = aibench_sim::SimConfig::from_args(["--decode-base", "1ms"]).unwrap();
    let server = aibench_sim::SimServer::bind(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending()));
    let target = aibench_monitor::Target::new("llm", aibench_monitor::TargetKind::Sim, "127.0.0.1", addr.port());
    let mut c = aibench_monitor::scrape::Collector::for_kind(target.kind);
    let mut times = vec![];
    let mut kept = 0;
    for _ in 0..300 {
        let t = Instant::now();
        kept = c.collect(&target, target.kind.default_filter(), Duration::from_secs(5)).await.unwrap().samples.len();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("scrape sim (kept {kept} samples): p50 {:.0} us p99 {:.0} us", times[150], times[297]);
    let dir = tempfile_dir();
    let mut cfg = aibench_monitor::MonitorConfig::new(&dir, Instant::now(), SystemTime::now());
    cfg.interval = Duration::from_secs(1);
    cfg.targets = vec![target];
    let m = aibench_monitor::Monitor::start(cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(10500)).await;
    let r = m.stop().await;
    let size = std::fs::metadata(dir.join("llm.csv")).unwrap().len();
    let hsize = std::fs::metadata(dir.join("host.csv")).unwrap().len();
    println!("10 s at 1 s: {} scrapes, {} rows, llm.csv {} bytes ({} per scrape); host.csv {} bytes, {} rows", r.targets[0].attempts, r.targets[0].rows, size, size / r.targets[0].attempts, hsize, r.host.unwrap().rows);
    let _ = std::fs::remove_dir_all(dir);
}
fn tempfile_dir() -> std::path::PathBuf { let d = std::env::temp_dir().join(format!("m{}", std::process::id())); std::fs::create_dir_all(&d).unwrap(); d }
