//! The committed `schema/report.schema.json` must match the `Report` type.

use std::path::PathBuf;

#[test]
fn committed_report_schema_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/report.schema.json");
    let want = serde_json::to_string_pretty(&aibench_report::report_schema()).unwrap() + "\n";
    if std::env::var_os("AIBENCH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "schema/report.schema.json does not match the Report type.\n\
         Regenerate it with:\n    AIBENCH_BLESS=1 cargo test -p aibench-report --test schema\n\
         and commit the result."
    );
}
