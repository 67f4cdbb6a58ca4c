//! The `vectors` dataset and the `vector:` options: defaults, and what validation refuses.

use aibench_recipe::{load_bytes, Dataset, ProcessEnv, VectorEngine, VectorMetric};

fn recipe(service: &str, target: &str, extra: &str, dataset: &str) -> String {
    format!(
        "name: v
services:
  - {{ name: db, kind: {service} }}
workloads:
  - name: q
    target: {target}
    protocol: vector
{extra}    dataset: {{ kind: vectors{dataset} }}
    load: {{ pattern: closed-loop, users: 2 }}
    stop: {{ requests: 10 }}
"
    )
}

fn errors(text: &str) -> String {
    match load_bytes("v.yaml", text.as_bytes(), &ProcessEnv) {
        Ok(_) => panic!("expected errors:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn warnings(text: &str) -> String {
    let l = load_bytes("v.yaml", text.as_bytes(), &ProcessEnv).unwrap_or_else(|e| panic!("{e}"));
    l.warnings.render(&l.source, false)
}

#[test]
fn defaults_fill_the_dataset() {
    let l = load_bytes(
        "v.yaml",
        recipe("chroma", "db", "", "").as_bytes(),
        &ProcessEnv,
    )
    .unwrap();
    let w = &l.recipe.workloads[0];
    let Dataset::Vectors {
        dimensions,
        collection_size,
        top_k,
        queries,
        metric,
        insert_batch,
        query_share,
        filter_buckets,
        path,
        queries_path,
        collection,
    } = &w.dataset
    else {
        panic!("{:?}", w.dataset)
    };
    assert_eq!(
        (*dimensions, *collection_size, *queries),
        (None, None, None)
    );
    assert_eq!(
        (*top_k, *metric, *insert_batch),
        (10, VectorMetric::Cosine, 256)
    );
    assert_eq!(query_share.0, 100.0);
    assert_eq!((*filter_buckets, path, queries_path), (None, &None, &None));
    assert_eq!(collection, "aibench");
    assert!(w.vector.is_none());
}

#[test]
fn a_url_target_needs_an_engine_and_a_service_may_not_be_contradicted() {
    let err = errors(&recipe("chroma", "http://127.0.0.1:8000", "", ""));
    assert!(err.contains("needs to know the engine"), "{err}");
    assert!(err.contains("vector: { engine: chroma }"), "{err}");
    let text = recipe(
        "chroma",
        "http://127.0.0.1:8000",
        "    vector: { engine: qdrant }\n",
        "",
    );
    let l = load_bytes("v.yaml", text.as_bytes(), &ProcessEnv).unwrap();
    assert_eq!(
        l.recipe.workloads[0].vector.as_ref().unwrap().engine,
        Some(VectorEngine::Qdrant)
    );
    let err = errors(&recipe(
        "qdrant",
        "db",
        "    vector: { engine: chroma }\n",
        "",
    ));
    assert!(
        err.contains("`engine: chroma` contradicts the target service, which is `kind: qdrant`"),
        "{err}"
    );
    assert!(err.contains("write `engine: qdrant`"), "{err}");
}

#[test]
fn impossible_datasets_are_refused_with_a_fix() {
    let err = errors(&recipe(
        "qdrant",
        "db",
        "",
        ", collection_size: 5, top_k: 10, insert_batch: 0, dimensions: 0, collection: 'a b'",
    ));
    assert!(
        err.contains("`top_k` (10) is above the collection size (5)"),
        "{err}"
    );
    assert!(
        err.contains("raise `collection_size` to at least 10"),
        "{err}"
    );
    assert!(err.contains("`insert_batch` must be at least 1"), "{err}");
    assert!(err.contains("`dimensions` must be at least 1"), "{err}");
    assert!(err.contains("invalid collection name `a b`"), "{err}");
    let err = errors(&recipe("qdrant", "db", "", ", query_share: 150%"));
    assert!(err.contains("between 0% and 100%"), "{err}");
    let err = errors(&recipe("qdrant", "db", "", ", path: vectors.csv"));
    assert!(
        err.contains("neither a `.npy` nor an `.fvecs` file"),
        "{err}"
    );
}

#[test]
fn doubtful_datasets_are_warned_about() {
    let w = warnings(&recipe(
        "chroma",
        "db",
        "",
        ", collection_size: 100, filter_buckets: 50, path: missing.fvecs",
    ));
    assert!(w.contains("vector file `missing.fvecs` not found"), "{w}");
    assert!(w.contains("no `queries_path`"), "{w}");
    assert!(
        w.contains("hold as few as 2, fewer than `top_k` (10)"),
        "{w}"
    );
    assert!(w.contains("use at most 10 buckets"), "{w}");
}

#[test]
fn vector_options_belong_to_vector_workloads() {
    let text = recipe("chroma", "db", "    vector: { engine: chroma }\n", "")
        .replace("protocol: vector", "protocol: http");
    let err = errors(&text);
    assert!(
        err.contains("`vector` options do not apply to `protocol: http`"),
        "{err}"
    );
}
