//! The factory's non-LLM services end to end through the real binary: the examples run against
//! real servers (installed by scripts/test.sh), shortened by rewriting their durations.

use std::path::{Path, PathBuf};

use crate::harness::{workspace, Cmd};

/// Whether `program` is on PATH; outside CI a missing server skips the test with a note, in CI
/// it fails it (scripts/test.sh installs every server these tests need).
fn have(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{program}` is not installed: scripts/test.sh installs it"
        );
        eprintln!("SKIPPED: `{program}` is not installed");
    }
    found
}

/// An example recipe with its durations shortened, written into `dir`.
fn shortened(example: &str, dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(workspace().join("examples").join(example)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{example} no longer contains `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join(example);
    std::fs::write(&path, text).unwrap();
    path
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn only_run_dir(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Every trial of the run completed, and its summary's operations pass `check`.
fn each_trial(dir: &Path, check: impl Fn(&str, &serde_json::Value)) {
    let info = read_json(&dir.join("run.json"));
    assert_eq!(info["status"], "completed", "{info}");
    let trials = info["trials"].as_array().unwrap();
    assert!(!trials.is_empty());
    for t in trials {
        assert_eq!(t["status"], "completed", "{t}");
        let id = t["id"].as_str().unwrap();
        let summary = read_json(&dir.join("trials").join(id).join("summary.json"));
        assert_eq!(summary["counts"]["errors"], 0, "{id}: {summary}");
        check(id, &summary["operations"]);
    }
}

#[test]
fn redis_example_runs_against_a_real_redis() {
    if !have("redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = shortened(
        "redis.yaml",
        tmp.path(),
        &[
            ("duration: 30s", "duration: 2s"),
            ("warmup: 5s", "warmup: 1s"),
        ],
    );
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("preloaded 100000 Redis keys"),
        "{}",
        run.stderr
    );
    // No password is set, so none is sent (nor by the monitor's INFO scrape).
    assert!(!run.stderr.contains("AUTH"), "{}", run.stderr);
    let dir = only_run_dir(tmp.path());
    each_trial(&dir, |id, ops| {
        let get = &ops["GET"];
        assert!(get["successes"].as_u64().unwrap() > 0, "{id}: {ops}");
        assert_eq!(get["hit_ratio"], 1.0, "{id}: preloaded keys all hit");
        assert!(get["in_mib_per_s"].as_f64().unwrap() > 0.0);
        assert!(ops["SET"]["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    });
    // The monitor read Redis INFO during the run.
    let metrics = dir.join("trials/01_users=1/metrics/cache.csv");
    let scraped = std::fs::read_to_string(&metrics).unwrap();
    assert!(scraped.contains("redis_"), "{scraped}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("GET"), "{report}");
}

#[test]
fn redis_with_a_password_authenticates_everywhere() {
    if !have("redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = shortened(
        "redis.yaml",
        tmp.path(),
        &[
            ("duration: 30s", "duration: 1s"),
            ("warmup: 5s", "warmup: 0s"),
            ("kv.load.users: [1, 8, 32, 128]", "kv.load.users: [4]"),
        ],
    );
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .env("REDIS_PASSWORD", "correct-horse-battery")
        .run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("scrapes of `cache`"), "{}", run.stderr);
    let dir = only_run_dir(tmp.path());
    each_trial(&dir, |id, ops| {
        assert!(ops["GET"]["successes"].as_u64().unwrap() > 0, "{id}: {ops}");
    });
    // The secret reaches neither the results nor the logs.
    for entry in walk(&dir) {
        let text = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("correct-horse-battery"),
            "{} holds the password",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// PATH with the test stand-ins first (a `minio` that serves moto's S3 API).
fn path_with_standins() -> String {
    let standins = workspace().join("crates/aibench/tests/data/standins");
    format!(
        "{}:{}",
        standins.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn minio_example_runs_against_an_s3_api() {
    if !have("moto_server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = shortened(
        "minio-s3.yaml",
        tmp.path(),
        &[
            (
                "keys: 1000, value_size: 1MiB",
                "keys: 30, value_size: 64KiB",
            ),
            ("users: 16", "users: 4"),
            ("warmup: 5s", "warmup: 1s"),
            ("duration: 1m", "duration: 2s"),
            ("console: 9101", "console: 0"),
        ],
    );
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .env("PATH", &path_with_standins())
        .env("MINIO_ROOT_PASSWORD", "tr0ub4dor-and-3")
        .run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains("bucket `checkpoints` ready; wrote 30 objects"),
        "{}",
        run.stderr
    );
    let dir = only_run_dir(tmp.path());
    each_trial(&dir, |id, ops| {
        for op in ["GET", "PUT"] {
            assert!(
                ops[op]["successes"].as_u64().unwrap() > 0,
                "{id} {op}: {ops}"
            );
        }
        assert!(ops["GET"]["in_mib_per_s"].as_f64().unwrap() > 0.0);
        assert!(ops["PUT"]["out_mib_per_s"].as_f64().unwrap() > 0.0);
        assert!(ops["GET"]["ttfb"]["p50_ms"].as_f64().is_some(), "{ops}");
    });
    // The secret key is in neither the results nor the logs.
    for f in walk(&dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains("tr0ub4dor-and-3"),
            "{} holds the secret",
            f.display()
        );
    }
}

#[test]
fn minio_seed_study_runs_with_two_client_processes() {
    if !have("moto_server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = shortened(
        "minio-seed-study.yaml",
        tmp.path(),
        &[
            ("keys: 64, value_size: 16MiB", "keys: 8, value_size: 256KiB"),
            ("warmup: 10s", "warmup: 1s"),
            ("duration: 2m", "duration: 2s"),
            ("[1MiB, 16MiB, 64MiB]", "[64KiB, 256KiB]"),
            ("console: 9101", "console: 0"),
        ],
    );
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .env("PATH", &path_with_standins())
        .run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let dir = only_run_dir(tmp.path());
    each_trial(&dir, |id, ops| {
        assert!(ops["GET"]["successes"].as_u64().unwrap() > 0, "{id}: {ops}");
        assert!(ops["PUT"]["successes"].as_u64().unwrap() > 0, "{id}: {ops}");
    });
    // Two shards, merged.
    let shards = dir.join("trials/01_value_size=64KiB/shards");
    assert!(
        shards.join("0").exists() && shards.join("1").exists(),
        "{shards:?}"
    );
}

#[test]
fn redis_seed_study_finds_the_knee_and_the_payload_effect() {
    if !have("redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = shortened(
        "redis-seed-study.yaml",
        tmp.path(),
        &[
            ("duration: 20s", "duration: 2s"),
            ("warmup: 3s", "warmup: 1s"),
            ("[1, 2, 4, 8, 16, 32, 64, 96, 128]", "[1, 8, 32, 128]"),
            ("[1KiB, 16KiB, 64KiB]", "[1KiB, 64KiB]"),
        ],
    );
    let run = Cmd::new(&["run", recipe.to_str().unwrap()])
        .dir(tmp.path())
        .env("AIBENCH_HOME", tmp.path().join("home").to_str().unwrap())
        .run();
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let dir = only_run_dir(tmp.path());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    // One sweep per value size, each with its knee, side by side in the findings.
    for size in ["1KiB", "64KiB"] {
        let title = format!("(kv.dataset.value_size=\"{size}\")");
        assert!(report.contains(&title), "no sweep for {size}:\n{report}");
    }
    assert!(report.matches("Saturation knee").count() >= 2, "{report}");
    // The payload effect: MiB/s grows with the value size.
    let mib = |trial: &str| -> f64 {
        let s = read_json(&dir.join("trials").join(trial).join("summary.json"));
        s["operations"]["GET"]["in_mib_per_s"].as_f64().unwrap()
    };
    assert!(mib("05_value_size=64KiB_users=1") > 4.0 * mib("01_value_size=1KiB_users=1"));
    assert!(report.contains("## Operations"), "{report}");
    // Per-operation rates, tails and bandwidth are drawn for each sweep.
    for n in [1, 2] {
        let plot = dir.join(format!("plots/sweep-{n}-operations.svg"));
        let svg = std::fs::read_to_string(&plot).unwrap_or_default();
        assert!(
            svg.contains("GET") && svg.contains("SET"),
            "{}",
            plot.display()
        );
    }
}
