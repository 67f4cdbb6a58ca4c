//! `aibench bench URL` goes through the runner: its run directory has the same shape as
//! `aibench run`'s and is read by `runs`, `report` and `compare`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::{bin, Cmd};

/// The simulated server, killed when dropped.
struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim() -> Sim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sim = Sim {
        child: Command::new(bin())
            .args(["sim", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return sim;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the sim did not listen on {}", sim.url);
}

fn bench(url: &str, root: &Path, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec![
        "bench",
        url,
        "-c",
        "2",
        "-n",
        "20",
        "--prompt-tokens",
        "16",
        "--output-tokens",
        "8",
        "--out",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Cmd::new(&args).dir(root.parent().unwrap()).run()
}

fn run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("run.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn bench_runs_are_listed_reported_and_compared_like_recipe_runs() {
    let sim = start_sim();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    for extra in [&[][..], &["-H", "X-Api-Token: hunter2-secret"]] {
        let out = bench(&sim.url, &root, extra);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("20 ok, 0 failed"), "{}", out.stdout);
        assert!(out.stdout.contains("results: "), "{}", out.stdout);
    }
    let dirs = run_dirs(&root);
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for d in &dirs {
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("run.json")).unwrap()).unwrap();
        assert_eq!(info["command"], "bench", "{info}");
        assert_eq!(info["status"], "completed", "{info}");
        assert_eq!(info["trials"][0]["status"], "completed", "{info}");
        for f in ["recipe.yaml", "resolved.yaml", "report.md", "summary.csv"] {
            assert!(d.join(f).is_file(), "{f} in {}", d.display());
        }
        assert!(d.join("trials/01/summary.json").is_file());
        assert!(d.join("trials/01/requests.jsonl").is_file());
        // The recipe it wrote is one `aibench run` takes.
        let v = Cmd::new(&["validate", d.join("recipe.yaml").to_str().unwrap()])
            .env("AIBENCH_HEADER_X_API_TOKEN", "again")
            .run();
        assert_eq!(v.code, 0, "{}", v.stderr);
    }

    // Header values are secrets: no file of the run holds one.
    let mut stack = dirs.clone();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("hunter2"),
                "{} holds a header value",
                p.display()
            );
        }
    }

    let runs = Cmd::new(&["runs", "--root", root.to_str().unwrap(), "--json"]).run();
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    let listed: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|r| r["recipe"] == "bench" && r["status"] == "completed"));

    let report = Cmd::new(&["report", dirs[0].to_str().unwrap()]).run();
    assert_eq!(report.code, 0, "{}", report.stderr);
    let md = std::fs::read_to_string(dirs[0].join("report.md")).unwrap();
    assert!(md.contains("| `01` | bench | completed |"), "{md}");

    let compare = Cmd::new(&[
        "compare",
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
        "--json",
    ])
    .run();
    assert!(
        compare.code == 0 || compare.code == 1,
        "compare judges two bench runs: {}",
        compare.stderr
    );
    assert!(compare.stdout.contains("01/bench") || compare.stdout.contains("\"bench\""));
}

#[test]
fn a_bench_where_every_request_fails_is_a_failed_run() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    let url = format!("http://127.0.0.1:{port}");
    let out = bench(
        &url,
        &root,
        &["--model", "m", "--max-consecutive-errors", "5"],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("every request failed"),
        "{}",
        out.stderr
    );
    let dir = &run_dirs(&root)[0];
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["status"], "failed", "{info}");
    assert!(
        info["reason"]
            .as_str()
            .is_some_and(|r| r.contains("every request failed")),
        "{info}"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("Status: **failed**"), "{md}");
}

/// `bench --calibrate`: the selfcheck runs first at the bench's load and lands in run.json.
#[test]
fn bench_calibrate_records_the_measuring_error() {
    let sim = start_sim();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("results");
    let out = bench(&sim.url, &root, &["--calibrate"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("resolution:"), "{}", out.stderr);
    let dirs = run_dirs(&root);
    assert_eq!(dirs.len(), 1, "only the bench run stays: {dirs:?}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("run.json")).unwrap()).unwrap();
    assert_eq!(info["calibration"]["users"], 2, "{info}");
    assert!(info["calibration"]["requests"].as_u64().unwrap() > 0);
}
