//! The committed `schema/summary.schema.json` must match the `Summary` type.

use std::path::PathBuf;

#[test]
fn committed_summary_schema_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/summary.schema.json");
    let want = serde_json::to_string_pretty(&aibench_results::summary_schema()).unwrap() + "\n";
    if std::env::var_os("AIBENCH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "schema/summary.schema.json does not match the Summary type.\n\
         Regenerate it with:\n    AIBENCH_BLESS=1 cargo test -p aibench-results --test schema\n\
         and commit the result."
    );
}
