//! The HTML report opened in headless Chromium (Debian package `chromium`): the screenshot must
//! show the page with its plots drawn.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{csv, series, write_run, RunSpec, Server, Trial};
use serde_json::json;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Decode a PNG screenshot into RGB(A) pixels.
fn pixels(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let bytes = std::fs::read(path).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = buf[..info.line_size * info.height as usize]
        .chunks_exact(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn near(p: [u8; 3], c: [u8; 3]) -> bool {
    p.iter()
        .zip(c)
        .all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() <= 24)
}

#[test]
fn html_report_renders_with_its_plots_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "SKIPPED: no chromium on PATH; install the Debian package `chromium` to run this test"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server {
        slots: 4,
        service_s: 0.4,
        output_tokens: 32,
        send_lag_s: 0.0002,
    };
    let trials: Vec<Trial> = [2.0, 5.0, 8.0, 10.0, 12.0, 14.0]
        .iter()
        .enumerate()
        .map(|(i, &rate)| Trial {
            id: format!("{:02}_rate={rate}", i + 1),
            params: json!({ "chat.load.rate": rate }),
            records: server.records(rate, 2.0, 10.0),
            metrics: if i == 0 {
                let mut m = series("vllm:num_requests_waiting", "model_name=m", 20, |t| t / 4.0);
                m.extend(series(
                    "vllm:kv_cache_usage_perc",
                    "model_name=m",
                    20,
                    |t| t / 25.0,
                ));
                m.extend(series("host_cpu_utilisation", "host=node1", 20, |_| 0.5));
                vec![("monitor.csv".into(), csv(&m))]
            } else {
                Vec::new()
            },
        })
        .collect();
    let dir = write_run(
        tmp.path(),
        &RunSpec {
            slo: json!({ "ttft": "500ms", "e2e_p99": "1000ms" }),
            ..RunSpec::default()
        },
        &trials,
    );
    let paths = aibench_report::write_reports(&dir).unwrap();
    let html = paths.html.canonicalize().unwrap();
    let shot = tmp.path().join("shot.png");
    let profile = tmp.path().join("profile");
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2000")
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // A guard against a browser that never exits, not a limit on how fast it must be.
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("chromium did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "chromium failed: {status}\n{err}");
    assert!(shot.is_file(), "no screenshot written\n{err}");

    let (w, h, px) = pixels(&shot);
    assert_eq!((w, h), (1200, 2000));
    let non_white = px.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    let share = non_white as f64 / px.len() as f64;
    assert!(
        share > 0.05,
        "the page looks blank: {:.1}% non-white pixels",
        share * 100.0
    );
    // The sweep plot sits under the findings: its lines are drawn in the plot palette's blue
    // and orange, which the page's own styles never use.
    let blue = px.iter().filter(|p| near(**p, [31, 119, 180])).count();
    let orange = px.iter().filter(|p| near(**p, [255, 127, 14])).count();
    assert!(
        blue > 300 && orange > 300,
        "no plot lines on screen: {blue} blue, {orange} orange pixels"
    );
    // Keep the screenshot for a person to look at when asked.
    if let Some(out) = std::env::var_os("AIBENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, out).unwrap();
    }
}
