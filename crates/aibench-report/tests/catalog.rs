//! The SQLite catalog of runs: add, list with filters, find by id, index what is missing.

mod common;

use aibench_report::catalog::{
    catalog_add, catalog_find, catalog_list, catalog_sync, RunFilter, SyncOutcome,
};
use common::{write_run, RunSpec, Server, Trial};
use serde_json::json;

fn make(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let server = Server {
        slots: 2,
        service_s: 0.2,
        output_tokens: 8,
        send_lag_s: 0.0,
    };
    write_run(
        root,
        &RunSpec {
            name,
            ..RunSpec::default()
        },
        &[Trial {
            id: "01".into(),
            params: json!({}),
            records: server.records(4.0, 1.0, 3.0),
            metrics: Vec::new(),
        }],
    )
}

#[test]
fn add_list_filter_find_and_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = make(root, "alpha");
    let b = make(root, "beta");
    let e = catalog_add(root, &a).unwrap();
    assert_eq!(e.id, "alpha-20261123-124500");
    assert_eq!(e.services, vec!["vllm:llm"]);
    assert_eq!(e.requests, 12);
    assert!(root.join("catalog.sqlite").is_file());

    // beta is not in the catalog until a sync finds it.
    let all = catalog_list(root, &RunFilter::default()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        catalog_sync(root).unwrap(),
        SyncOutcome {
            added: 1,
            updated: 0,
            removed: 0
        }
    );
    assert_eq!(catalog_sync(root).unwrap(), SyncOutcome::default());
    let all = catalog_list(root, &RunFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].path.canonicalize().unwrap(),
        b.canonicalize().unwrap()
    );

    let only = |f: RunFilter| -> Vec<String> {
        catalog_list(root, &f)
            .unwrap()
            .into_iter()
            .map(|e| e.recipe)
            .collect()
    };
    assert_eq!(
        only(RunFilter {
            recipe: Some("alpha".into()),
            ..Default::default()
        }),
        vec!["alpha"]
    );
    assert_eq!(
        only(RunFilter {
            recipe: Some("b*".into()),
            ..Default::default()
        }),
        vec!["beta"]
    );
    assert_eq!(
        only(RunFilter {
            status: Some(aibench_results::Status::Failed),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        only(RunFilter {
            status: Some(aibench_results::Status::Completed),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        only(RunFilter {
            service: Some("vllm".into()),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        only(RunFilter {
            service: Some("llm".into()),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        only(RunFilter {
            service: Some("redis".into()),
            ..Default::default()
        })
        .len(),
        0
    );
    assert_eq!(
        only(RunFilter {
            since: Some(common::RUN_START + 1.0),
            ..Default::default()
        })
        .len(),
        0
    );
    assert_eq!(
        only(RunFilter {
            since: Some(common::RUN_START - 1.0),
            ..Default::default()
        })
        .len(),
        2
    );

    // Ids: exact, unique prefix, ambiguous prefix, unknown.
    assert_eq!(
        catalog_find(root, "alpha-20261123-124500")
            .unwrap()
            .unwrap()
            .canonicalize()
            .unwrap(),
        a.canonicalize().unwrap()
    );
    assert!(catalog_find(root, "bet").unwrap().is_some());
    assert!(catalog_find(root, "gamma").unwrap().is_none());
    std::fs::rename(&b, root.join("alpha-2")).unwrap();
    let moved = root.join("alpha-2");
    let mut run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(moved.join("run.json")).unwrap()).unwrap();
    run["run_id"] = "alpha-2".into();
    run["status"] = "failed".into();
    std::fs::write(moved.join("run.json"), run.to_string()).unwrap();
    // The renamed directory is a new run; the old entry is gone with its directory.
    assert_eq!(
        catalog_sync(root).unwrap(),
        SyncOutcome {
            added: 1,
            updated: 0,
            removed: 1
        }
    );
    let err = catalog_find(root, "alpha").unwrap_err().to_string();
    assert!(err.contains("matches 2 runs"), "{err}");
    assert_eq!(
        only(RunFilter {
            status: Some(aibench_results::Status::Failed),
            ..Default::default()
        }),
        vec!["beta"]
    );
}

#[test]
fn no_catalog_finds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(catalog_find(tmp.path(), "x").unwrap().is_none());
    assert!(!tmp.path().join("catalog.sqlite").exists());
}
