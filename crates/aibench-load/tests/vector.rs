//! The vector driver against a real ChromaDB (`pip install chromadb`, `chroma run`) and against a
//! stand-in for Qdrant written here from Qdrant's OpenAPI description (Qdrant has no Debian or
//! Python package to run): exactly the endpoints the driver uses, answered by exact search, so
//! recall there must be exactly 1.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aibench_load::{
    LoadSpec, Metric, Pattern, RunOptions, Stop, ThinkTime, VectorEngine, VectorSource, VectorSpec,
    Workload,
};
use aibench_results::{read_records, ErrorClass};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

// ------------------------------------------------------------------ a Qdrant stand-in

#[derive(Default)]
struct Collection {
    dim: usize,
    distance: String,
    points: BTreeMap<u64, (Vec<f32>, Value)>,
    indexes: Vec<String>,
}

#[derive(Default)]
struct Qdrant {
    collections: Mutex<HashMap<String, Collection>>,
    /// Answer every query with a Qdrant error document (HTTP 500).
    fail_queries: AtomicBool,
    connections: AtomicU64,
    queries: AtomicU64,
    api_keys: Mutex<Vec<String>>,
}

struct StandIn {
    addr: SocketAddr,
    state: Arc<Qdrant>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn qdrant_stand_in() -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Qdrant::default());
    let st = Arc::clone(&state);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            st.connections.fetch_add(1, Ordering::Relaxed);
            let st = Arc::clone(&st);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let st = Arc::clone(&st);
                    async move { Ok::<_, Infallible>(handle(&st, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    StandIn { addr, state, task }
}

fn reply(status: u16, v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn ok(result: Value) -> Response<Full<Bytes>> {
    reply(
        200,
        json!({ "result": result, "status": "ok", "time": 0.0001 }),
    )
}

fn error(status: u16, msg: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({ "status": { "error": msg }, "result": null, "time": 0.0 }),
    )
}

/// Qdrant's score: similarity for Cosine and Dot (higher is nearer), distance for Euclid.
fn score(distance: &str, a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb, mut l2) = (0f64, 0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
        l2 += (x - y) * (x - y);
    }
    match distance {
        "Cosine" => dot / (na.sqrt() * nb.sqrt()),
        "Euclid" => l2.sqrt(),
        _ => dot,
    }
}

fn matches(filter: &Value, payload: &Value) -> Result<bool, String> {
    if filter.is_null() {
        return Ok(true);
    }
    let must = filter["must"].as_array().ok_or("filter: `must` expected")?;
    for c in must {
        let key = c["key"].as_str().ok_or("condition without `key`")?;
        let value = &c["match"]["value"];
        if value.is_null() {
            return Err("only `match: {value}` conditions are served here".into());
        }
        if &payload[key] != value {
            return Ok(false);
        }
    }
    Ok(true)
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

async fn handle(st: &Qdrant, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if let Some(k) = req.headers().get("api-key") {
        st.api_keys
            .lock()
            .unwrap()
            .push(k.to_str().unwrap_or("").to_string());
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, &format!("Format error in JSON body: {e}")),
        }
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut cols = st.collections.lock().unwrap();
    match (method.as_str(), &parts[..]) {
        ("PUT", ["collections", name]) => {
            if cols.contains_key(*name) {
                return error(
                    409,
                    &format!("Wrong input: Collection `{name}` already exists!"),
                );
            }
            let size = json["vectors"]["size"].as_u64();
            let distance = json["vectors"]["distance"].as_str();
            match (size, distance) {
                (Some(s), Some(d @ ("Cosine" | "Euclid" | "Dot" | "Manhattan"))) if s > 0 => {
                    cols.insert(
                        name.to_string(),
                        Collection {
                            dim: s as usize,
                            distance: d.to_string(),
                            ..Collection::default()
                        },
                    );
                    ok(json!(true))
                }
                _ => error(422, "Format error: `vectors: {size, distance}` expected"),
            }
        }
        ("DELETE", ["collections", name]) => ok(json!(cols.remove(*name).is_some())),
        ("GET", ["collections", name]) => match cols.get(*name) {
            Some(c) => ok(json!({ "status": "green", "points_count": c.points.len() })),
            None => error(
                404,
                &format!("Not found: Collection `{name}` doesn't exist!"),
            ),
        },
        ("PUT", ["collections", name, "index"]) => match cols.get_mut(*name) {
            Some(c) => {
                let field = json["field_name"].as_str().unwrap_or("").to_string();
                if !matches!(json["field_schema"].as_str(), Some("integer" | "bool")) {
                    return error(422, "Format error: field_schema");
                }
                c.indexes.push(field);
                ok(json!({ "operation_id": 0, "status": "completed" }))
            }
            None => error(
                404,
                &format!("Not found: Collection `{name}` doesn't exist!"),
            ),
        },
        ("PUT", ["collections", name, "points"]) => {
            let Some(c) = cols.get_mut(*name) else {
                return error(
                    404,
                    &format!("Not found: Collection `{name}` doesn't exist!"),
                );
            };
            assert_eq!(
                query, "wait=true",
                "upserts wait for the points to be applied"
            );
            let Some(points) = json["points"].as_array() else {
                return error(422, "Format error: `points` expected");
            };
            for p in points {
                let (Some(id), Some(v)) = (p["id"].as_u64(), floats(&p["vector"])) else {
                    return error(422, "Format error: point `id` and `vector` expected");
                };
                if v.len() != c.dim {
                    return error(
                        400,
                        &format!(
                            "Wrong input: Vector dimension error: expected dim: {}, got {}",
                            c.dim,
                            v.len()
                        ),
                    );
                }
                c.points.insert(id, (v, p["payload"].clone()));
            }
            ok(json!({ "operation_id": 1, "status": "completed" }))
        }
        ("POST", ["collections", name, "points", "query"]) => {
            st.queries.fetch_add(1, Ordering::Relaxed);
            if st.fail_queries.load(Ordering::Relaxed) {
                return error(500, "Service internal error: a planted failure");
            }
            let Some(c) = cols.get(*name) else {
                return error(
                    404,
                    &format!("Not found: Collection `{name}` doesn't exist!"),
                );
            };
            let Some(q) = floats(&json["query"]) else {
                return error(422, "Format error: `query` vector expected");
            };
            if q.len() != c.dim {
                return error(400, "Wrong input: Vector dimension error");
            }
            let limit = json["limit"].as_u64().unwrap_or(10) as usize;
            let mut hits = Vec::new();
            for (id, (v, payload)) in &c.points {
                match matches(&json["filter"], payload) {
                    Ok(true) => hits.push((score(&c.distance, &q, v), *id)),
                    Ok(false) => {}
                    Err(m) => return error(422, &m),
                }
            }
            let larger_is_nearer = c.distance != "Euclid";
            hits.sort_by(|a, b| {
                let o = a.0.partial_cmp(&b.0).unwrap();
                (if larger_is_nearer { o.reverse() } else { o }).then(a.1.cmp(&b.1))
            });
            let points: Vec<Value> = hits
                .iter()
                .take(limit)
                .map(|(s, id)| json!({ "id": id, "version": 1, "score": s }))
                .collect();
            ok(json!({ "points": points }))
        }
        _ => error(404, &format!("no route for {method} {path}")),
    }
}

// ------------------------------------------------------------------ a real ChromaDB

struct Chroma {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Chroma {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 12 && &buf[9..12] == b"200")
}

/// A fresh `chroma run` on a free port, or None (with a note) when ChromaDB is not installed
/// outside CI; in CI its absence is a failure.
fn chroma() -> Option<Chroma> {
    let installed = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("chroma").is_file()))
        .unwrap_or(false);
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "ChromaDB (`chroma`) is not installed: scripts/test.sh installs it (pip install chromadb)"
        );
        eprintln!("SKIPPED: ChromaDB is not installed (pip install chromadb)");
        return None;
    }
    for _ in 0..3 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("chroma")
            .args([
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--path",
            ])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if http_get_ok(port, "/api/v2/heartbeat") {
                return Some(Chroma {
                    child,
                    port,
                    _dir: dir,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chroma run did not answer /api/v2/heartbeat within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("chroma run did not start on any of three ports");
}

// ------------------------------------------------------------------ helpers

fn spec(engine: VectorEngine, address: String) -> VectorSpec {
    VectorSpec {
        address,
        engine,
        collection: "aibench-test".into(),
        tenant: "default_tenant".into(),
        database: "default_database".into(),
        dimensions: Some(32),
        base: VectorSource::Generated { count: 2000 },
        queries: VectorSource::Generated { count: 100 },
        metric: Metric::Cosine,
        top_k: 10,
        filter_buckets: None,
        query_share: 1.0,
        insert_batch: 128,
        seed: 42,
        timeout: Duration::from_secs(30),
        headers: Vec::new(),
    }
}

fn closed(users: usize, requests: u64) -> LoadSpec {
    LoadSpec {
        pattern: Pattern::ClosedLoop {
            users,
            think_time: ThinkTime::None,
            ramp_up: Duration::ZERO,
        },
        stop: Stop {
            requests: Some(requests),
            ..Stop::default()
        },
        timeout: Duration::from_secs(30),
        ..LoadSpec::default()
    }
}

// ------------------------------------------------------------------ Qdrant (stand-in)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_exact_search_gives_recall_one_for_every_metric() {
    let server = qdrant_stand_in().await;
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let mut sp = spec(VectorEngine::Qdrant, format!("http://{}", server.addr));
        sp.metric = metric;
        sp.headers = vec![("api-key".into(), "k-123".into())];
        let mut w = Workload::Vector(sp);
        let done = w.prepare().await.unwrap().unwrap();
        assert!(
            done.contains("inserted 2000 vectors in") && done.contains("vectors/s"),
            "{done}"
        );
        assert_eq!(
            server.state.collections.lock().unwrap()["aibench-test"]
                .points
                .len(),
            2000
        );
        let before = server.state.connections.load(Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("requests.jsonl");
        let out = w
            .run(
                &closed(4, 300),
                RunOptions {
                    records: Some(records.clone()),
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap();
        let s = &out.summary;
        assert_eq!(s.counts.successes, 300, "{:?}", s.counts.errors_by_class);
        let q = &s.operations["query"];
        assert_eq!(q.successes, 300);
        assert_eq!(q.recall, Some(1.0), "{metric:?}");
        assert_eq!(q.recall_min, Some(1.0), "{metric:?}");
        assert!(q.per_s > 0.0 && q.latency.is_some());
        // One kept-alive connection per user (the collection lookup opens none for Qdrant).
        assert_eq!(server.state.connections.load(Ordering::Relaxed) - before, 4);
        let recs: Vec<_> = read_records(&records)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(recs.iter().all(|r| r.op.as_deref() == Some("query")
            && r.neighbours_expected == Some(10)
            && r.neighbours_found == Some(10)
            && r.status == Some(200)
            && r.bytes_out.unwrap() > 32
            && r.bytes_in.unwrap() > 0));
    }
    // The API key went along with every request, and never into the records.
    assert!(server
        .state
        .api_keys
        .lock()
        .unwrap()
        .iter()
        .all(|k| k == "k-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_filtered_queries_and_inserts_keep_recall_exact() {
    let server = qdrant_stand_in().await;
    let mut sp = spec(VectorEngine::Qdrant, format!("http://{}", server.addr));
    sp.filter_buckets = Some(8);
    sp.query_share = 0.7;
    sp.insert_batch = 16;
    let mut w = Workload::Vector(sp);
    w.prepare().await.unwrap();
    {
        let cols = server.state.collections.lock().unwrap();
        let c = &cols["aibench-test"];
        assert_eq!(c.indexes, ["bucket", "preloaded"]);
        assert_eq!(c.points[&13].1, json!({"bucket": 5, "preloaded": true}));
    }
    let out = w.run(&closed(3, 400), RunOptions::default()).await.unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 400, "{:?}", s.counts.errors_by_class);
    let q = &s.operations["query"];
    let ins = &s.operations["insert"];
    // An insert record covers its batch: 16 operations each.
    assert_eq!(q.successes + ins.successes / 16, 400);
    assert!((200..360).contains(&q.successes), "{}", q.successes);
    assert_eq!(q.recall, Some(1.0));
    assert_eq!(ins.recall, None);
    let cols = server.state.collections.lock().unwrap();
    let c = &cols["aibench-test"];
    assert_eq!(c.points.len() as u64, 2000 + ins.successes);
    let inserted = c.points.range(2000..).next().unwrap();
    assert_eq!(inserted.1 .1, json!({"bucket": -1, "preloaded": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_error_documents_are_server_errors() {
    let server = qdrant_stand_in().await;
    let mut w = Workload::Vector(spec(
        VectorEngine::Qdrant,
        format!("http://{}", server.addr),
    ));
    w.prepare().await.unwrap();
    server.state.fail_queries.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let out = w
        .run(
            &closed(2, 20),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out.summary
            .counts
            .errors_by_class
            .get(&ErrorClass::ServerError),
        Some(&20)
    );
    let recs: Vec<_> = read_records(&records)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let msg = recs[0].error_message.as_deref().unwrap();
    assert!(
        msg.contains("HTTP 500: Service internal error: a planted failure"),
        "{msg}"
    );
    assert_eq!(recs[0].status, Some(500));
    // The connection survives an error answer: two users, two connections.
    assert_eq!(server.state.connections.load(Ordering::Relaxed), 1 + 4 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_answering_too_few_neighbours_is_a_mismatch() {
    let server = qdrant_stand_in().await;
    let mut w = Workload::Vector(spec(
        VectorEngine::Qdrant,
        format!("http://{}", server.addr),
    ));
    w.prepare().await.unwrap();
    // Points deleted behind the driver's back: some queries cannot be answered in full.
    server
        .state
        .collections
        .lock()
        .unwrap()
        .get_mut("aibench-test")
        .unwrap()
        .points
        .retain(|id, _| *id < 5);
    let out = w.run(&closed(1, 10), RunOptions::default()).await.unwrap();
    assert_eq!(
        out.summary
            .counts
            .errors_by_class
            .get(&ErrorClass::Mismatch),
        Some(&10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_from_files_are_used_as_given() {
    let server = qdrant_stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    // 300 vectors of 8 dimensions as .fvecs, 20 queries as .npy (float32).
    let base: Vec<[f32; 8]> = (0..300)
        .map(|i| std::array::from_fn(|j| ((i * 7 + j * 13) % 31) as f32 - 15.0))
        .collect();
    let mut fvecs = Vec::new();
    for v in &base {
        fvecs.extend_from_slice(&8i32.to_le_bytes());
        v.iter()
            .for_each(|x| fvecs.extend_from_slice(&x.to_le_bytes()));
    }
    std::fs::write(dir.path().join("base.fvecs"), fvecs).unwrap();
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (20, 8), }".to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for i in 0..20 {
        for j in 0..8 {
            npy.extend_from_slice(&(((i * 5 + j * 3) % 17) as f32 - 8.5).to_le_bytes());
        }
    }
    std::fs::write(dir.path().join("queries.npy"), npy).unwrap();
    let mut sp = spec(VectorEngine::Qdrant, format!("http://{}", server.addr));
    sp.dimensions = None;
    sp.metric = Metric::L2;
    sp.base = VectorSource::File {
        path: dir.path().join("base.fvecs"),
        limit: Some(250),
    };
    sp.queries = VectorSource::File {
        path: dir.path().join("queries.npy"),
        limit: None,
    };
    let mut w = Workload::Vector(sp.clone());
    let done = w.prepare().await.unwrap().unwrap();
    assert!(
        done.contains("(8 dimensions, l2); inserted 250 vectors"),
        "{done}"
    );
    {
        let cols = server.state.collections.lock().unwrap();
        let stored = &cols["aibench-test"].points[&249].0;
        assert_eq!(stored[..], base[249][..]);
    }
    let out = w.run(&closed(2, 40), RunOptions::default()).await.unwrap();
    // Such vectors have many exact ties; a tie with the k-th neighbour counts as found.
    assert_eq!(out.summary.operations["query"].recall, Some(1.0));

    // A dimension that disagrees with the file is refused with the fix.
    sp.dimensions = Some(16);
    let err = Workload::Vector(sp)
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("8 dimensions, `dimensions` says 16"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collection_is_named_before_the_clock() {
    let server = qdrant_stand_in().await;
    let w = Workload::Vector(spec(
        VectorEngine::Chroma,
        format!("http://{}", server.addr),
    ));
    // A ChromaDB driver looks its collection up first; here nothing answers that route.
    let err = w
        .run(&closed(1, 1), RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("was the collection prepared?"),
        "{err}"
    );
}

// ------------------------------------------------------------------ ChromaDB (real)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_queries_report_recall() {
    let Some(server) = chroma() else { return };
    let sp = spec(
        VectorEngine::Chroma,
        format!("http://127.0.0.1:{}", server.port),
    );
    let mut w = Workload::Vector(sp.clone());
    let done = w.prepare().await.unwrap().unwrap();
    eprintln!("ChromaDB: {done}");
    assert!(done.contains("inserted 2000 vectors in"), "{done}");
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("requests.jsonl");
    let t = Instant::now();
    let out = w
        .run(
            &closed(4, 400),
            RunOptions {
                records: Some(records.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 400, "{:?}", s.counts.errors_by_class);
    let q = &s.operations["query"];
    eprintln!(
        "ChromaDB queries: {:.0}/s ({:.1} s), recall {:?}, lowest {:?}",
        400.0 / t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64(),
        q.recall,
        q.recall_min
    );
    assert!(q.recall.unwrap() >= 0.8, "{:?}", q.recall);
    assert!(q.recall_min.is_some());
    let recs: Vec<_> = read_records(&records)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(recs.iter().all(|r| r.neighbours_expected == Some(10)));

    // Filtered queries over 4 buckets, with inserts mixed in.
    let mut sp = sp;
    sp.filter_buckets = Some(4);
    sp.query_share = 0.8;
    sp.insert_batch = 32;
    let mut w = Workload::Vector(sp.clone());
    w.prepare().await.unwrap();
    let out = w.run(&closed(2, 200), RunOptions::default()).await.unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 200, "{:?}", s.counts.errors_by_class);
    let q = &s.operations["query"];
    let ins = &s.operations["insert"];
    eprintln!(
        "ChromaDB filtered: recall {:?}; {} inserts of 32",
        q.recall,
        ins.successes / 32
    );
    assert!(q.recall.unwrap() >= 0.8, "{:?}", q.recall);
    assert!(ins.successes >= 32);

    // Unfiltered queries while inserting (filtered on `preloaded`).
    sp.filter_buckets = None;
    let mut w = Workload::Vector(sp);
    w.prepare().await.unwrap();
    let out = w.run(&closed(2, 150), RunOptions::default()).await.unwrap();
    let s = &out.summary;
    assert_eq!(s.counts.successes, 150, "{:?}", s.counts.errors_by_class);
    assert!(s.operations["query"].recall.unwrap() >= 0.8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_errors_are_server_errors() {
    let Some(server) = chroma() else { return };
    let sp = spec(
        VectorEngine::Chroma,
        format!("http://127.0.0.1:{}", server.port),
    );
    let mut w = Workload::Vector(sp.clone());
    w.prepare().await.unwrap();
    // The same collection name with other dimensions: ChromaDB refuses the queries.
    let mut other = sp;
    other.dimensions = Some(16);
    let out = Workload::Vector(other)
        .run(&closed(1, 5), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        out.summary
            .counts
            .errors_by_class
            .get(&ErrorClass::ServerError),
        Some(&5)
    );
}
