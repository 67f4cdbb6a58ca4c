//! The committed schemas of the run directory's files must match their types:
//! `schema/summary.schema.json` (`Summary`) and `schema/run.schema.json` (`RunInfo`).

use std::path::PathBuf;

fn check(file: &str, want: serde_json::Value, ty: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../schema")
        .join(file);
    let want = serde_json::to_string_pretty(&want).unwrap() + "\n";
    if std::env::var_os("AIBENCH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "schema/{file} does not match the {ty} type.\n\
         Regenerate it with:\n    AIBENCH_BLESS=1 cargo test -p aibench-results --test schema\n\
         and commit the result."
    );
}

#[test]
fn committed_summary_schema_is_current() {
    check(
        "summary.schema.json",
        aibench_results::summary_schema(),
        "Summary",
    );
}

#[test]
fn committed_run_schema_is_current() {
    check("run.schema.json", aibench_results::run_schema(), "RunInfo");
}

/// What the runner writes reads back through the schema's type, and a run.json from before
/// the typed statuses (trials `complete`, no `command`) still reads.
#[test]
fn run_json_round_trips_and_old_ones_read() {
    let dir = tempfile::tempdir().unwrap();
    let info = aibench_results::RunInfo {
        run_id: "bench-20261203-120000".into(),
        name: "bench".into(),
        command: aibench_results::Command::Bench,
        status: aibench_results::Status::Completed,
        trials: vec![aibench_results::TrialInfo {
            id: "01".into(),
            params: serde_json::json!({"concurrency": 8}),
            repeat: None,
            status: aibench_results::Status::Completed,
        }],
        ..Default::default()
    };
    aibench_results::write_json(&dir.path().join("run.json"), &info).unwrap();
    let back = aibench_results::RunInfo::read(dir.path()).unwrap();
    assert_eq!(back.command, aibench_results::Command::Bench);
    assert_eq!(back.trials[0].status, aibench_results::Status::Completed);
    assert_eq!(back.trials[0].params["concurrency"], 8);

    std::fs::write(
        dir.path().join("run.json"),
        r#"{"schema_version": 1, "run_id": "q", "name": "q", "status": "completed",
            "trials": [{"id": "01", "params": {}, "status": "complete"}]}"#,
    )
    .unwrap();
    let old = aibench_results::RunInfo::read(dir.path()).unwrap();
    assert_eq!(old.command, aibench_results::Command::Run);
    assert_eq!(old.trials[0].status, aibench_results::Status::Completed);
}
