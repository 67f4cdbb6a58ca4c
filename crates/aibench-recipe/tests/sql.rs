//! The `sql` dataset: its three sources of statements (one at a time), parameters, and what
//! validation refuses.

use aibench_recipe::{load_bytes, Dataset, ProcessEnv, SqlBuiltin};

fn recipe(dataset: &str) -> String {
    format!(
        "name: s
services:
  - {{ name: db, kind: postgres }}
workloads:
  - name: q
    target: db
    protocol: postgres
    dataset:
      kind: sql
{dataset}
    load: {{ pattern: closed-loop, users: 2 }}
    stop: {{ requests: 10 }}
"
    )
}

fn errors(dataset: &str) -> String {
    let text = recipe(dataset);
    match load_bytes("s.yaml", text.as_bytes(), &ProcessEnv) {
        Ok(_) => panic!("expected errors:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn warnings(dataset: &str) -> String {
    let text = recipe(dataset);
    let l = load_bytes("s.yaml", text.as_bytes(), &ProcessEnv).unwrap_or_else(|e| panic!("{e}"));
    l.warnings.render(&l.source, false)
}

fn dataset(text: &str) -> Dataset {
    let l = load_bytes("s.yaml", recipe(text).as_bytes(), &ProcessEnv)
        .unwrap_or_else(|e| panic!("{e}"));
    l.recipe.workloads[0].dataset.clone()
}

#[test]
fn the_builtin_takes_a_scale_and_scripts_take_weights_and_params() {
    let Dataset::Sql { builtin, scale, .. } = dataset("      builtin: tpcb\n      scale: 10")
    else {
        panic!()
    };
    assert_eq!((builtin, scale), (Some(SqlBuiltin::Tpcb), 10));
    let Dataset::Sql {
        scripts,
        params,
        scale,
        ..
    } = dataset(
        "      scripts:
        - { name: read, weight: 9, statements: [\"SELECT v FROM kv WHERE k = {{k}}\"] }
        - { name: write, statements: [\"UPDATE kv SET v = v + 1 WHERE k = {{k}}\", \"SELECT {{n}}\"] }
      params: { k: { min: 1, max: 1000, zipf_exponent: 0.99 } }",
    )
    else {
        panic!()
    };
    assert_eq!(scale, 1);
    assert_eq!((scripts[0].weight, scripts[1].weight), (9, 1));
    assert_eq!(params["k"].zipf_exponent, Some(0.99));
    // `{{n}}` needs no declaration: the queries of examples/postgres.yaml keep working.
    dataset("      queries: [\"SELECT body FROM docs WHERE id = {{n}}\"]");
}

#[test]
fn exactly_one_source_of_statements() {
    let e = errors("      setup: [\"CREATE TABLE t (k int)\"]");
    assert!(
        e.contains("a `sql` dataset needs `queries`, `scripts` or `builtin`"),
        "{e}"
    );
    let e = errors("      queries: [\"SELECT 1\"]\n      builtin: tpcb");
    assert!(e.contains("`queries` and `builtin` are both given"), "{e}");
    assert!(e.contains("keep one of"), "{e}");
}

#[test]
fn parameters_must_be_declared_and_sane() {
    let e = errors("      queries: [\"SELECT * FROM t WHERE k = {{k}}\"]");
    assert!(e.contains("`{{k}}` is not declared"), "{e}");
    assert!(e.contains("params: { k: { min: 1, max: 100000 } }"), "{e}");
    let e = errors("      queries: [\"SELECT {{k}}\"]\n      params: { k: { min: 10, max: 1 } }");
    assert!(e.contains("`min` (10) is above `max` (1)"), "{e}");
    let e = errors(
        "      queries: [\"SELECT {{k}}\"]\n      params: { k: { min: 1, max: 9, zipf_exponent: -2 } }",
    );
    assert!(
        e.contains("the Zipfian exponent must be zero or positive"),
        "{e}"
    );
    let e = errors("      queries: [\"SELECT {{k\"]");
    assert!(e.contains("without a closing"), "{e}");
    let e = errors(
        "      scripts: [{ name: a, weight: 0, statements: [\"SELECT 1\"] }, { name: a, statements: [] }]",
    );
    assert!(e.contains("weight must be at least 1"), "{e}");
    assert!(e.contains("the script name `a` is used twice"), "{e}");
    assert!(e.contains("script `a` has no statements"), "{e}");
    let w = warnings(
        "      queries: [\"SELECT 1\"]\n      scale: 5\n      params: { k: { min: 1, max: 2 } }",
    );
    assert!(
        w.contains("`scale` applies only to a `builtin` workload"),
        "{w}"
    );
    assert!(w.contains("no statement uses `{{k}}`"), "{w}");
}
