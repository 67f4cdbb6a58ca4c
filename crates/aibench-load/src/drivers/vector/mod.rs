//! Vector databases (ChromaDB, Qdrant): nearest-neighbour queries with exact recall@k, and
//! optionally batches of inserts, over REST with one kept-alive HTTP/1.1 connection per user.
//!
//! **Data.** `N` collection vectors of dimension `D` and `Q` query vectors, generated from the
//! seed (see [`data`]) or read from `.npy`/`.fvecs` files. Collection vector `i` has the id `i`
//! and the payload (Qdrant) or metadata (ChromaDB) `{"bucket": i % B, "preloaded": true}`,
//! where `B` is the number of filter buckets (1 when queries are not filtered).
//!
//! **Prepare** (once per trial, before the clock, in one process): drop the collection, create
//! it with the workload's metric (cosine, l2 or dot), add payload indexes for the fields that
//! queries filter on (Qdrant), insert the `N` vectors in batches over a few connections, and
//! (Qdrant) wait until the collection reports its indexing done.
//!
//! **Ground truth** (in every client process, when the driver is built; it is deterministic):
//! the exact `k` nearest neighbours of every query vector by brute force, with the distance the
//! collection uses. Candidates are found in f32 (vectorised), then the best `2k + 32` are
//! ranked again in f64, so that rounding cannot reorder the k-th place.
//!
//! **Operations.** Operation `id` is a `query` with probability `query_share`, else an
//! `insert` (drawn from the seed and the id, so a run repeats):
//!
//! - `query`: the `k` nearest neighbours of query vector `id % Q`. With `filter_buckets: B`, it
//!   is restricted to bucket `(id % Q) % B`, and its true neighbours are computed within that
//!   bucket. The record holds `neighbours_expected` (`k`, or fewer if the bucket holds fewer
//!   vectors) and `neighbours_found`: how many of the returned ids are true neighbours. A
//!   returned id that is not in the true top-k still counts when its exact distance ties the
//!   k-th (within a relative 1e-5): a server may break ties either way. An answer with the
//!   wrong number of results, or ids that are not numbers, is a `mismatch`.
//! - `insert`: `insert_batch` new vectors (`batch` in the record), with ids from `N` up, unique
//!   per operation (`N + id * insert_batch + j`) and the payload `{"bucket": -1,
//!   "preloaded": false}`. So that recall stays exact while the collection grows, queries then
//!   never see inserted vectors: a filtered query matches a bucket that inserted vectors are
//!   not in, and an unfiltered one is filtered on `preloaded: true`. (A filter changes how an
//!   engine searches: compare query latency with inserts to a filtered run without them.)
//!
//! Server error documents (ChromaDB `{"error", "message"}`, Qdrant `{"status": {"error"}}`)
//! are `server_error`, with their message; a failing status without one is `http_4xx`/`http_5xx`.
//! `bytes_out`/`bytes_in` count request and response bodies (JSON).

mod chroma;
pub mod data;
mod http;
mod qdrant;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aibench_results::{ErrorClass, RequestRecord};
use bytes::Bytes;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::client::{Clock, Limits};
use crate::driver::{ensure, finish, guarded, Driver, Failure};
use crate::error::LoadError;
use chroma::Chroma;
use data::Vectors;
use http::{call, exchange, Failed, Headers, HttpConn, Times};
use qdrant::Qdrant;

/// Which vector database the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorEngine {
    /// ChromaDB 1.x (REST API v2).
    Chroma,
    /// Qdrant 1.10 or later (REST API).
    Qdrant,
}

impl VectorEngine {
    pub fn name(self) -> &'static str {
        match self {
            VectorEngine::Chroma => "ChromaDB",
            VectorEngine::Qdrant => "Qdrant",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            VectorEngine::Chroma => 8000,
            VectorEngine::Qdrant => 6333,
        }
    }
}

/// How the collection measures distance (the ground truth uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// 1 - cos(a, b) (ChromaDB `cosine`, Qdrant `Cosine`).
    Cosine,
    /// Euclidean distance (ChromaDB `l2`, which is squared; Qdrant `Euclid`): the same order.
    L2,
    /// Inner product, larger is nearer (ChromaDB `ip`, Qdrant `Dot`).
    Dot,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

/// Where vectors come from.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorSource {
    /// This many, generated from the seed.
    Generated { count: usize },
    /// Read from a `.npy` or `.fvecs` file; the first `limit` if given, else all.
    File { path: PathBuf, limit: Option<usize> },
}

/// Where and how to drive a vector database.
#[derive(Clone)]
pub struct VectorSpec {
    /// `http://host:port` (the port defaults to 8000 for ChromaDB, 6333 for Qdrant).
    pub address: String,
    pub engine: VectorEngine,
    /// The collection, dropped and created again by the prepare step.
    pub collection: String,
    /// ChromaDB's tenant and database (`default_tenant`, `default_database`).
    pub tenant: String,
    pub database: String,
    /// Dimensions: needed for generated vectors; with files, checked against them.
    pub dimensions: Option<usize>,
    /// The collection's vectors.
    pub base: VectorSource,
    /// The query vectors. Generated: drawn like the collection's (from their own seed stream)
    /// when it is generated, else midpoints of two collection vectors.
    pub queries: VectorSource,
    pub metric: Metric,
    /// Neighbours asked for in each query.
    pub top_k: u32,
    /// Filtered queries over this many buckets (None: unfiltered).
    pub filter_buckets: Option<u32>,
    /// Share of queries (0..=1); the rest are inserts.
    pub query_share: f64,
    /// Vectors per insert request (also the batch size of the prepare step).
    pub insert_batch: u32,
    pub seed: u64,
    /// Per-operation limit.
    pub timeout: Duration,
    /// Extra request headers (API keys): never recorded, logged or printed.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for VectorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorSpec")
            .field("address", &self.address)
            .field("engine", &self.engine)
            .field("collection", &self.collection)
            .field("dimensions", &self.dimensions)
            .field("base", &self.base)
            .field("queries", &self.queries)
            .field("metric", &self.metric)
            .field("top_k", &self.top_k)
            .field("filter_buckets", &self.filter_buckets)
            .field("query_share", &self.query_share)
            .field("insert_batch", &self.insert_batch)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| (k.as_str(), "<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl VectorSpec {
    fn check(&self) -> Result<(), LoadError> {
        let mut e = Vec::new();
        if self.top_k == 0 {
            e.push("top_k must be at least 1".to_string());
        }
        if self.insert_batch == 0 {
            e.push("insert_batch must be at least 1".to_string());
        }
        if self.filter_buckets == Some(0) {
            e.push("filter_buckets must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.query_share) {
            e.push(format!(
                "query share must be between 0 and 100 % (got {})",
                self.query_share * 100.0
            ));
        }
        if self.dimensions == Some(0) {
            e.push("dimensions must be at least 1".to_string());
        }
        for (what, s) in [("collection", &self.base), ("queries", &self.queries)] {
            if let VectorSource::Generated { count: 0 } = s {
                e.push(format!("{what}: at least one vector is needed"));
            }
        }
        if let VectorSource::Generated { count } = self.base {
            if count < self.top_k as usize {
                e.push(format!(
                    "top_k ({}) is above the collection size ({count})",
                    self.top_k
                ));
            }
        }
        if self.collection.is_empty() {
            e.push("the collection needs a name".to_string());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(LoadError::InvalidSpec(e))
        }
    }

    /// Whether inserts are mixed in (queries then never see inserted vectors).
    fn inserts(&self) -> bool {
        self.query_share < 1.0
    }

    /// What query `q` filters on.
    fn filter(&self, q: usize) -> QueryFilter {
        match self.filter_buckets {
            Some(b) => QueryFilter::Bucket((q % b as usize) as u32),
            None if self.inserts() => QueryFilter::Preloaded,
            None => QueryFilter::None,
        }
    }

    /// Whether operation `id` is a query.
    fn is_query(&self, id: u64) -> bool {
        if self.query_share >= 1.0 {
            return true;
        }
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ 0x7665_6374_6f72 ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        rng.random::<f64>() < self.query_share
    }
}

/// What a query is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryFilter {
    None,
    /// Payload `bucket` equal to this.
    Bucket(u32),
    /// Payload `preloaded` true (inserts are mixed in).
    Preloaded,
}

/// Append `items` to a JSON array being written, comma-separated, each written by `write`.
pub(crate) fn json_list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T),
) {
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, it);
    }
}

/// One vector to insert: its id, its JSON array, its payload.
pub(crate) struct Item<'a> {
    pub id: u64,
    pub vector: &'a str,
    pub bucket: i64,
    pub preloaded: bool,
}

/// The JSON array of a vector (floats printed so that they read back as the same f32).
fn vector_json(v: &[f32]) -> String {
    serde_json::to_string(v).expect("finite floats")
}

// ------------------------------------------------------------------ data

fn load_base(spec: &VectorSpec) -> Result<Vectors, LoadError> {
    let v = match &spec.base {
        VectorSource::Generated { count } => {
            let dim = spec.dimensions.ok_or_else(|| {
                LoadError::InvalidSpec(vec!["generated vectors need `dimensions`".into()])
            })?;
            data::generate(
                dim,
                *count,
                data::clusters(*count),
                spec.seed,
                data::STREAM_BASE,
            )
        }
        VectorSource::File { path, limit } => data::load(path, *limit)?,
    };
    check_dim(spec, &v, "collection")?;
    if v.len() < spec.top_k as usize {
        return Err(LoadError::InvalidSpec(vec![format!(
            "top_k ({}) is above the collection size ({})",
            spec.top_k,
            v.len()
        )]));
    }
    Ok(v)
}

fn check_dim(spec: &VectorSpec, v: &Vectors, what: &str) -> Result<(), LoadError> {
    match spec.dimensions {
        Some(d) if d != v.dim => Err(LoadError::InvalidSpec(vec![format!(
            "the {what} vectors have {} dimensions, `dimensions` says {d}: make them agree",
            v.dim
        )])),
        _ => Ok(()),
    }
}

/// Vectors drawn "like the collection's" for `stream`: generated around the same centres when
/// the collection is generated, else midpoints of collection vectors.
fn alike(spec: &VectorSpec, base: &Vectors, n: usize, stream: u64) -> Vectors {
    match spec.base {
        VectorSource::Generated { count } => {
            data::generate(base.dim, n, data::clusters(count), spec.seed, stream)
        }
        VectorSource::File { .. } => data::midpoints(base, n, spec.seed, stream),
    }
}

fn load_queries(spec: &VectorSpec, base: &Vectors) -> Result<Vectors, LoadError> {
    let q = match &spec.queries {
        VectorSource::Generated { count } => alike(spec, base, *count, data::STREAM_QUERIES),
        VectorSource::File { path, limit } => data::load(path, *limit)?,
    };
    if q.dim != base.dim {
        return Err(LoadError::InvalidSpec(vec![format!(
            "the query vectors have {} dimensions, the collection's {}",
            q.dim, base.dim
        )]));
    }
    Ok(q)
}

/// Distinct vectors that inserts cycle through (serialized once, before the clock).
const INSERT_POOL: usize = 1024;

// ------------------------------------------------------------------ ground truth

/// The exact answer to one query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Truth {
    /// The true nearest neighbours, sorted by id.
    pub ids: Vec<u64>,
    /// The distance of the k-th (ties within [`TIE`] of it count as found).
    pub kth: f64,
    /// Neighbours a correct answer holds: k, or fewer if the filter admits fewer vectors.
    pub expected: u32,
}

/// Relative tolerance under which two distances are a tie.
const TIE: f64 = 1e-5;

/// The distance `metric` puts between `a` and `b`, in f64 (smaller is nearer).
pub(crate) fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb, mut l2) = (0f64, 0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
        l2 += (x - y) * (x - y);
    }
    match metric {
        Metric::Cosine if na == 0.0 || nb == 0.0 => 1.0,
        Metric::Cosine => 1.0 - dot / (na.sqrt() * nb.sqrt()),
        Metric::L2 => l2,
        Metric::Dot => -dot,
    }
}

#[inline]
fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline]
fn l2_32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

fn inv_norm(v: &[f32]) -> f32 {
    let n = dot32(v, v).sqrt();
    if n > 0.0 {
        1.0 / n
    } else {
        0.0
    }
}

/// The collection, the queries, and the exact answers: what judges a query's answer.
pub(crate) struct Oracle {
    pub base: Vectors,
    pub queries: Vectors,
    pub metric: Metric,
    pub buckets: Option<u32>,
    pub truth: Vec<Truth>,
}

impl Oracle {
    /// Compute the ground truth of every query (on every core).
    pub fn new(
        base: Vectors,
        queries: Vectors,
        metric: Metric,
        k: u32,
        buckets: Option<u32>,
    ) -> Oracle {
        let inv: Vec<f32> = match metric {
            Metric::Cosine => (0..base.len()).map(|i| inv_norm(base.get(i))).collect(),
            _ => Vec::new(),
        };
        let nq = queries.len();
        let mut truth = vec![
            Truth {
                ids: Vec::new(),
                kth: 0.0,
                expected: 0,
            };
            nq
        ];
        let threads = data::worker_threads(nq * base.data.len(), 1 << 22);
        let per = nq.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (t, chunk) in truth.chunks_mut(per).enumerate() {
                let (base, queries, inv) = (&base, &queries, &inv);
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    for (j, out) in chunk.iter_mut().enumerate() {
                        let q = t * per + j;
                        let (start, step) = match buckets {
                            Some(b) => (q % b as usize, b as usize),
                            None => (0, 1),
                        };
                        *out = exact(
                            base,
                            inv,
                            queries.get(q),
                            metric,
                            k,
                            start,
                            step,
                            &mut scratch,
                        );
                    }
                });
            }
        });
        Oracle {
            base,
            queries,
            metric,
            buckets,
            truth,
        }
    }

    /// Whether collection vector `id` is one query `q` may find.
    fn eligible(&self, q: usize, id: u64) -> bool {
        id < self.base.len() as u64
            && self
                .buckets
                .is_none_or(|b| id % u64::from(b) == (q % b as usize) as u64)
    }

    /// How many of `returned` are true nearest neighbours of query `q` (distinct ids, ties
    /// with the k-th counted), at most the number expected.
    pub fn found(&self, q: usize, returned: &[u64], scratch: &mut Vec<u64>) -> u32 {
        let t = &self.truth[q];
        scratch.clear();
        scratch.extend_from_slice(returned);
        scratch.sort_unstable();
        scratch.dedup();
        let bound = t.kth + TIE * (1.0 + t.kth.abs());
        let n = scratch
            .iter()
            .filter(|&&id| {
                t.ids.binary_search(&id).is_ok()
                    || (self.eligible(q, id)
                        && distance(self.metric, self.queries.get(q), self.base.get(id as usize))
                            <= bound)
            })
            .count();
        (n as u32).min(t.expected)
    }
}

/// The exact nearest neighbours of `q` among collection vectors `start, start + step, ...`.
#[allow(clippy::too_many_arguments)]
fn exact(
    base: &Vectors,
    inv: &[f32],
    q: &[f32],
    metric: Metric,
    k: u32,
    start: usize,
    step: usize,
    scratch: &mut Vec<(f32, u32)>,
) -> Truth {
    scratch.clear();
    let qinv = inv_norm(q);
    let mut i = start;
    while i < base.len() {
        let x = base.get(i);
        let d = match metric {
            Metric::Cosine => 1.0 - dot32(q, x) * qinv * inv[i],
            Metric::L2 => l2_32(q, x),
            Metric::Dot => -dot32(q, x),
        };
        scratch.push((d, i as u32));
        i += step;
    }
    let want = (k as usize).min(scratch.len());
    if want == 0 {
        return Truth {
            ids: Vec::new(),
            kth: 0.0,
            expected: 0,
        };
    }
    // Candidates in f32, ranked again in f64.
    let m = (2 * k as usize + 32).min(scratch.len());
    if m < scratch.len() {
        scratch.select_nth_unstable_by(m - 1, |a, b| a.0.total_cmp(&b.0));
    }
    let mut exact: Vec<(f64, u32)> = scratch[..m]
        .iter()
        .map(|&(_, id)| (distance(metric, q, base.get(id as usize)), id))
        .collect();
    exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    exact.truncate(want);
    let kth = exact[want - 1].0;
    let mut ids: Vec<u64> = exact.iter().map(|&(_, id)| u64::from(id)).collect();
    ids.sort_unstable();
    Truth {
        ids,
        kth,
        expected: want as u32,
    }
}

// ------------------------------------------------------------------ engines

enum Engine {
    Chroma(Chroma),
    Qdrant(Qdrant),
}

impl Engine {
    fn new(spec: &VectorSpec) -> Engine {
        match spec.engine {
            VectorEngine::Chroma => {
                Engine::Chroma(Chroma::new(&spec.tenant, &spec.database, &spec.collection))
            }
            VectorEngine::Qdrant => Engine::Qdrant(Qdrant::new(&spec.collection)),
        }
    }

    fn encode_insert(&self, out: &mut Vec<u8>, items: &[Item<'_>]) {
        match self {
            Engine::Chroma(_) => Chroma::encode_insert(out, items),
            Engine::Qdrant(_) => Qdrant::encode_insert(out, items),
        }
    }

    fn encode_query(&self, vector: &str, k: u32, filter: QueryFilter) -> Vec<u8> {
        match self {
            Engine::Chroma(_) => Chroma::encode_query(vector, k, filter),
            Engine::Qdrant(_) => Qdrant::encode_query(vector, k, filter),
        }
    }

    fn parse_query(&self, body: &[u8], ids: &mut Vec<u64>) -> Result<(), String> {
        match self {
            Engine::Chroma(_) => Chroma::parse_query(body, ids),
            Engine::Qdrant(_) => Qdrant::parse_query(body, ids),
        }
    }

    fn error_message(&self, body: &[u8]) -> Option<String> {
        match self {
            Engine::Chroma(_) => Chroma::error_message(body),
            Engine::Qdrant(_) => Qdrant::error_message(body),
        }
    }

    /// The failure a non-success answer stands for.
    fn failure(&self, status: u16, body: &[u8]) -> Failure {
        match self.error_message(body) {
            Some(m) => (ErrorClass::ServerError, format!("HTTP {status}: {m}")),
            None => (
                ErrorClass::from_status(status).unwrap_or(ErrorClass::Other),
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
                ),
            ),
        }
    }
}

/// What prepare and the driver share: the address, the headers, the engine.
struct Endpoint {
    addr: SocketAddr,
    headers: Headers,
    engine: Engine,
}

impl Endpoint {
    async fn new(spec: &VectorSpec) -> Result<Endpoint, LoadError> {
        if spec.address.starts_with("https://") {
            return Err(LoadError::InvalidTarget(format!(
                "`{}`: the vector driver speaks plain HTTP only",
                spec.address
            )));
        }
        let addr =
            crate::drivers::redis::resolve(&spec.address, spec.engine.default_port()).await?;
        let headers = Headers::new(&addr.to_string(), &spec.headers)
            .map_err(|m| LoadError::InvalidSpec(vec![m]))?;
        Ok(Endpoint {
            addr,
            headers,
            engine: Engine::new(spec),
        })
    }

    /// One request before the clock; `Err` unless it succeeds (or answers one of `also_ok`).
    async fn call(
        &self,
        conn: &mut Option<HttpConn>,
        (method, path): (Method, String),
        body: Bytes,
        also_ok: &[u16],
    ) -> Result<Bytes, String> {
        let what = format!("{method} {path}");
        let r = call(conn, self.addr, method, &path, &self.headers, body)
            .await
            .map_err(|(_, m)| format!("{what}: {m}"))?;
        if (200..300).contains(&r.status) || also_ok.contains(&r.status) {
            Ok(r.body)
        } else {
            Err(format!(
                "{what}: {}",
                self.engine.failure(r.status, &r.body).1
            ))
        }
    }

    /// The ChromaDB collection's id (None for Qdrant, which names collections in its paths).
    async fn chroma_id(&self, conn: &mut Option<HttpConn>) -> Result<Option<String>, String> {
        match &self.engine {
            Engine::Chroma(c) => {
                let body = self
                    .call(conn, c.lookup_request(), Bytes::new(), &[])
                    .await
                    .map_err(|m| format!("{m} (was the collection prepared?)"))?;
                Chroma::collection_id(&body).map(Some)
            }
            Engine::Qdrant(_) => Ok(None),
        }
    }

    fn paths(&self, chroma_id: Option<&str>) -> (String, String) {
        match &self.engine {
            Engine::Chroma(c) => {
                let id = chroma_id.unwrap_or_default();
                (c.query_path(id), c.insert_path(id))
            }
            Engine::Qdrant(q) => (q.query_path(), q.insert_path()),
        }
    }
}

/// Connections the prepare step inserts over.
const PREPARE_CONNECTIONS: usize = 4;
/// Longest wait for Qdrant to finish indexing after the inserts.
const INDEX_WAIT: Duration = Duration::from_secs(1800);

/// The one-time preparation: drop and create the collection, insert the collection vectors.
/// Returns what was done, for the run's log.
pub(crate) async fn prepare(spec: &VectorSpec) -> Result<String, LoadError> {
    spec.check()?;
    let s = spec.clone();
    let base = tokio::task::spawn_blocking(move || load_base(&s))
        .await
        .map_err(|e| LoadError::Runtime(format!("loading vectors: {e}")))??;
    let base = Arc::new(base);
    let ep = Arc::new(Endpoint::new(spec).await?);
    let fail = |m: String| {
        LoadError::InvalidTarget(format!(
            "preparing the {} collection `{}`: {m}",
            spec.engine.name(),
            spec.collection
        ))
    };
    let mut conn = None;
    let chroma_id = match &ep.engine {
        Engine::Chroma(c) => {
            ep.call(&mut conn, c.drop_request(), Bytes::new(), &[404])
                .await
                .map_err(fail)?;
            let (m, p, body) = c.create_request(spec.metric);
            let created = ep.call(&mut conn, (m, p), body, &[]).await.map_err(fail)?;
            Some(Chroma::collection_id(&created).map_err(fail)?)
        }
        Engine::Qdrant(q) => {
            ep.call(&mut conn, q.drop_request(), Bytes::new(), &[404])
                .await
                .map_err(fail)?;
            let (m, p, body) = q.create_request(spec.metric, base.dim);
            ep.call(&mut conn, (m, p), body, &[]).await.map_err(fail)?;
            let mut fields = Vec::new();
            if spec.filter_buckets.is_some() {
                fields.push(("bucket", "integer"));
            }
            if spec.inserts() {
                fields.push(("preloaded", "bool"));
            }
            for (field, schema) in fields {
                let (m, p, body) = q.index_request(field, schema);
                ep.call(&mut conn, (m, p), body, &[]).await.map_err(fail)?;
            }
            None
        }
    };
    let (_, insert_path) = ep.paths(chroma_id.as_deref());

    // The collection vectors, in batches spread over a few connections.
    let started = Instant::now();
    let n = base.len();
    let batch = spec.insert_batch as usize;
    let batches = n.div_ceil(batch);
    let lanes = PREPARE_CONNECTIONS.min(batches).max(1);
    let buckets = u64::from(spec.filter_buckets.unwrap_or(1));
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (ep, base, path) = (Arc::clone(&ep), Arc::clone(&base), insert_path.clone());
        tasks.spawn(async move {
            let mut conn = None;
            for b in (lane..batches).step_by(lanes) {
                let range = b * batch..((b + 1) * batch).min(base.len());
                let texts: Vec<String> = range.clone().map(|i| vector_json(base.get(i))).collect();
                let items: Vec<Item> = range
                    .zip(&texts)
                    .map(|(i, t)| Item {
                        id: i as u64,
                        vector: t,
                        bucket: (i as u64 % buckets) as i64,
                        preloaded: true,
                    })
                    .collect();
                let mut body = Vec::with_capacity(texts.iter().map(|t| t.len() + 48).sum());
                ep.engine.encode_insert(&mut body, &items);
                ep.call(
                    &mut conn,
                    (insert_method(&ep.engine), path.clone()),
                    body.into(),
                    &[],
                )
                .await?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| LoadError::Runtime(format!("insert task: {e}")))?
            .map_err(fail)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut done = format!(
        "created the {} collection `{}` ({} dimensions, {}); inserted {n} vectors in {secs:.1} s ({:.0} vectors/s)",
        spec.engine.name(),
        spec.collection,
        base.dim,
        spec.metric.name(),
        n as f64 / secs.max(1e-9)
    );
    if let Engine::Qdrant(q) = &ep.engine {
        let t = Instant::now();
        loop {
            let body = ep
                .call(&mut conn, q.status_request(), Bytes::new(), &[])
                .await
                .map_err(fail)?;
            match Qdrant::collection_status(&body).as_deref() {
                Some("green") | Some("grey") => break,
                Some("red") => return Err(fail("Qdrant reports the collection `red`".into())),
                _ if t.elapsed() > INDEX_WAIT => {
                    return Err(fail(format!(
                        "still indexing after {} s",
                        INDEX_WAIT.as_secs()
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        done.push_str(&format!("; indexed in {:.1} s", t.elapsed().as_secs_f64()));
    }
    Ok(done)
}

// ------------------------------------------------------------------ the driver

/// The driver: the endpoint, the serialized queries, the ground truth.
pub(crate) struct VectorDriver {
    ep: Endpoint,
    spec: VectorSpec,
    oracle: Oracle,
    /// One body per query vector, serialized before the clock.
    query_bodies: Vec<Bytes>,
    query_path: hyper::Uri,
    insert_path: hyper::Uri,
    insert_method: Method,
    /// The JSON arrays that inserted vectors cycle through.
    pool: Vec<String>,
}

impl VectorDriver {
    pub(crate) async fn new(spec: &VectorSpec) -> Result<VectorDriver, LoadError> {
        spec.check()?;
        let ep = Endpoint::new(spec).await?;
        let s = spec.clone();
        let (oracle, pool) = tokio::task::spawn_blocking(move || -> Result<_, LoadError> {
            let base = load_base(&s)?;
            let queries = load_queries(&s, &base)?;
            let pool = if s.inserts() {
                let n = INSERT_POOL.max(s.insert_batch as usize);
                let v = alike(&s, &base, n, data::STREAM_INSERTS);
                (0..v.len()).map(|i| vector_json(v.get(i))).collect()
            } else {
                Vec::new()
            };
            let oracle = Oracle::new(base, queries, s.metric, s.top_k, s.filter_buckets);
            Ok((oracle, pool))
        })
        .await
        .map_err(|e| LoadError::Runtime(format!("computing the ground truth: {e}")))??;
        let mut conn = None;
        let chroma_id = ep.chroma_id(&mut conn).await.map_err(|m| {
            LoadError::InvalidTarget(format!(
                "the {} collection `{}`: {m}",
                spec.engine.name(),
                spec.collection
            ))
        })?;
        let (query_path, insert_path) = ep.paths(chroma_id.as_deref());
        let uri = |p: String| {
            p.parse::<hyper::Uri>()
                .map_err(|_| LoadError::InvalidSpec(vec![format!("bad request path `{p}`")]))
        };
        let (query_path, insert_path) = (uri(query_path)?, uri(insert_path)?);
        let query_bodies = (0..oracle.queries.len())
            .map(|q| {
                Bytes::from(ep.engine.encode_query(
                    &vector_json(oracle.queries.get(q)),
                    spec.top_k,
                    spec.filter(q),
                ))
            })
            .collect();
        Ok(VectorDriver {
            insert_method: insert_method(&ep.engine),
            ep,
            spec: spec.clone(),
            oracle,
            query_bodies,
            query_path,
            insert_path,
            pool,
        })
    }

    /// The body of insert operation `id`.
    fn insert_body(&self, id: u64) -> Vec<u8> {
        let batch = u64::from(self.spec.insert_batch);
        let first = self.oracle.base.len() as u64 + id.wrapping_mul(batch);
        let p = self.pool.len() as u64;
        let items: Vec<Item> = (first..first + batch)
            .map(|vid| Item {
                id: vid,
                vector: &self.pool[(vid % p) as usize],
                bucket: -1,
                preloaded: false,
            })
            .collect();
        let mut out =
            Vec::with_capacity(items.iter().map(|i| i.vector.len() + 48).sum::<usize>() + 32);
        self.ep.engine.encode_insert(&mut out, &items);
        out
    }
}

/// The insert request's method: ChromaDB adds with POST, Qdrant upserts with PUT.
fn insert_method(engine: &Engine) -> Method {
    match engine {
        Engine::Chroma(_) => Method::POST,
        Engine::Qdrant(_) => Method::PUT,
    }
}

impl Driver for VectorDriver {
    type Conn = HttpConn;

    async fn connect(&self) -> Result<HttpConn, String> {
        HttpConn::connect(self.ep.addr).await
    }

    async fn execute<'a>(
        &'a self,
        slot: &'a mut Option<HttpConn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) {
        let query = self.spec.is_query(id);
        let q = (id % self.query_bodies.len() as u64) as usize;
        let (method, path, body) = if query {
            rec.op = Some(Cow::Borrowed("query"));
            (Method::POST, &self.query_path, self.query_bodies[q].clone())
        } else {
            rec.op = Some(Cow::Borrowed("insert"));
            rec.batch = Some(self.spec.insert_batch);
            (
                self.insert_method.clone(),
                &self.insert_path,
                Bytes::from(self.insert_body(id)),
            )
        };
        let timeout = self.spec.timeout;
        let work = async {
            if slot.as_ref().is_some_and(|c| !c.usable()) {
                *slot = None;
            }
            let reused = slot.is_some();
            for retry in [false, true] {
                let mut conn = ensure(self, slot, timeout).await?;
                let mut times = Times::default();
                let out = exchange(
                    &mut conn,
                    method.clone(),
                    path,
                    &self.ep.headers,
                    body.clone(),
                    clock,
                    &mut times,
                )
                .await;
                rec.sent_us = times.sent_us;
                rec.first_byte_us = times.head_us;
                let reply = match out {
                    Ok(r) => r,
                    // A kept-alive connection the server had closed: once, connect and send again.
                    Err(Failed::NotSent(_) | Failed::NoAnswer(_)) if reused && !retry => {
                        rec.sent_us = None;
                        rec.reconnected = true;
                        continue;
                    }
                    Err(Failed::NotSent(m)) => return Err((ErrorClass::Connect, m)),
                    Err(Failed::NoAnswer(m)) => return Err((ErrorClass::ClosedMidStream, m)),
                    Err(Failed::Other(class, m)) => return Err((class, m)),
                };
                rec.end_us = Some(clock.now_us());
                if conn.usable() {
                    *slot = Some(conn);
                }
                rec.status = Some(reply.status);
                rec.bytes_out = Some(body.len() as u64);
                rec.bytes_in = Some(reply.body.len() as u64);
                if !(200..300).contains(&reply.status) {
                    return Err(self.ep.engine.failure(reply.status, &reply.body));
                }
                if query {
                    let mut ids = Vec::with_capacity(self.spec.top_k as usize);
                    self.ep
                        .engine
                        .parse_query(&reply.body, &mut ids)
                        .map_err(|m| (ErrorClass::Mismatch, m))?;
                    let expected = self.oracle.truth[q].expected;
                    if ids.len() != expected as usize {
                        return Err((
                            ErrorClass::Mismatch,
                            format!(
                                "{expected} neighbours expected (top_k {}), {} returned",
                                self.spec.top_k,
                                ids.len()
                            ),
                        ));
                    }
                    let mut scratch = Vec::with_capacity(ids.len());
                    rec.neighbours_found = Some(self.oracle.found(q, &ids, &mut scratch));
                    rec.neighbours_expected = Some(expected);
                }
                return Ok(());
            }
            unreachable!("the second attempt always returns")
        };
        let outcome = guarded(limits, timeout, work).await;
        finish(rec, clock, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, dim: usize, seed: u64) -> Vectors {
        let mut rng = SmallRng::seed_from_u64(seed);
        Vectors {
            dim,
            data: (0..n * dim)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect(),
        }
    }

    /// Queries with `k` planted neighbours each: copies at tiny, growing distances, put at
    /// known ids among random vectors.
    fn planted(k: usize) -> (Vectors, Vectors, Vec<Vec<u64>>) {
        let dim = 16;
        let queries = random(5, dim, 1);
        let mut base = random(400, dim, 2);
        let mut planted = Vec::new();
        for q in 0..queries.len() {
            let mut ids = Vec::new();
            for j in 0..k {
                let id = 7 + q * 50 + j * 3;
                let row = &mut base.data[id * dim..(id + 1) * dim];
                row.copy_from_slice(queries.get(q));
                row[j % dim] += 1e-3 * (j as f32 + 1.0);
                ids.push(id as u64);
            }
            planted.push(ids);
        }
        (base, queries, planted)
    }

    #[test]
    fn planted_neighbours_are_found_and_recall_is_exact() {
        let k = 10;
        let (base, queries, planted) = planted(k);
        for metric in [Metric::L2, Metric::Cosine] {
            let o = Oracle::new(base.clone(), queries.clone(), metric, k as u32, None);
            let mut scratch = Vec::new();
            for (q, ids) in planted.iter().enumerate() {
                let mut want = ids.clone();
                want.sort_unstable();
                assert_eq!(o.truth[q].ids, want, "{metric:?} query {q}");
                assert_eq!(o.truth[q].expected, k as u32);
                // All of them, in any order: recall 1.
                let mut back = ids.clone();
                back.reverse();
                assert_eq!(o.found(q, &back, &mut scratch), 10);
                // Seven right and three wrong: recall 0.7.
                let mut some = ids[..7].to_vec();
                some.extend([1, 2, 3]);
                assert_eq!(o.found(q, &some, &mut scratch), 7);
                // A right id twice counts once; ids beyond the collection count nothing.
                let dup = vec![ids[0], ids[0], ids[1], 10_000, 10_001];
                assert_eq!(o.found(q, &dup, &mut scratch), 2);
            }
        }
    }

    #[test]
    fn a_tie_with_the_kth_counts_as_found() {
        // Two vectors at exactly the same distance for the last place: either is right.
        let base = Vectors {
            dim: 2,
            data: vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0],
        };
        let queries = Vectors {
            dim: 2,
            data: vec![0.0, 0.0],
        };
        let o = Oracle::new(base, queries, Metric::L2, 2, None);
        assert_eq!(o.truth[0].expected, 2);
        let mut scratch = Vec::new();
        assert_eq!(o.found(0, &[0, 1], &mut scratch), 2);
        assert_eq!(o.found(0, &[0, 2], &mut scratch), 2);
        assert_eq!(o.found(0, &[0, 3], &mut scratch), 1);
    }

    /// The naive reference: every distance in f64, sorted, the first k (ties by id).
    fn naive(
        base: &Vectors,
        q: &[f32],
        metric: Metric,
        k: usize,
        bucket: Option<(u64, u64)>,
    ) -> Vec<u64> {
        let mut all: Vec<(f64, u64)> = (0..base.len() as u64)
            .filter(|i| bucket.is_none_or(|(b, n)| i % n == b))
            .map(|i| {
                let x = base.get(i as usize);
                let (mut dot, mut na, mut nb, mut l2) = (0f64, 0f64, 0f64, 0f64);
                for (a, b) in q.iter().zip(x) {
                    let (a, b) = (*a as f64, *b as f64);
                    dot += a * b;
                    na += a * a;
                    nb += b * b;
                    l2 += (a - b).powi(2);
                }
                let d = match metric {
                    Metric::Cosine => 1.0 - dot / (na.sqrt() * nb.sqrt()),
                    Metric::L2 => l2.sqrt(),
                    Metric::Dot => -dot,
                };
                (d, i)
            })
            .collect();
        all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        let mut ids: Vec<u64> = all.iter().take(k).map(|p| p.1).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn ground_truth_agrees_with_a_naive_f64_computation() {
        let base = data::generate(37, 3000, data::clusters(3000), 11, data::STREAM_BASE);
        let queries = data::generate(37, 40, data::clusters(3000), 11, data::STREAM_QUERIES);
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            for buckets in [None, Some(7)] {
                let o = Oracle::new(base.clone(), queries.clone(), metric, 10, buckets);
                for q in 0..queries.len() {
                    let b = buckets.map(|n| ((q % n as usize) as u64, u64::from(n)));
                    let want = naive(&base, queries.get(q), metric, 10, b);
                    assert_eq!(o.truth[q].ids, want, "{metric:?} {buckets:?} query {q}");
                    assert_eq!(o.truth[q].expected, 10);
                }
            }
        }
    }

    #[test]
    fn a_bucket_smaller_than_k_expects_what_it_holds() {
        let base = random(20, 4, 3);
        let queries = random(3, 4, 4);
        let o = Oracle::new(base, queries, Metric::L2, 5, Some(8));
        // Buckets 0..3 of 20 ids modulo 8 hold 3 ids each.
        for q in 0..3 {
            assert_eq!(o.truth[q].expected, 3);
            assert!(o.truth[q].ids.iter().all(|id| id % 8 == q as u64));
        }
    }

    fn spec(share: f64, buckets: Option<u32>) -> VectorSpec {
        VectorSpec {
            address: "http://127.0.0.1:1".into(),
            engine: VectorEngine::Qdrant,
            collection: "aibench".into(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            dimensions: Some(8),
            base: VectorSource::Generated { count: 100 },
            queries: VectorSource::Generated { count: 10 },
            metric: Metric::Cosine,
            top_k: 5,
            filter_buckets: buckets,
            query_share: share,
            insert_batch: 4,
            seed: 1,
            timeout: Duration::from_secs(5),
            headers: vec![("api-key".into(), "secret".into())],
        }
    }

    #[test]
    fn the_mix_follows_the_query_share_and_repeats() {
        let s = spec(0.8, None);
        let queries = (0..10_000).filter(|i| s.is_query(*i)).count();
        assert!((7_700..8_300).contains(&queries), "{queries}");
        let again = (0..10_000).filter(|i| s.is_query(*i)).count();
        assert_eq!(queries, again);
        assert!((0..1000).all(|i| spec(1.0, None).is_query(i)));
        assert!((0..1000).all(|i| !spec(0.0, None).is_query(i)));
    }

    #[test]
    fn queries_filter_only_when_they_must() {
        assert_eq!(spec(1.0, None).filter(3), QueryFilter::None);
        assert_eq!(spec(0.9, None).filter(3), QueryFilter::Preloaded);
        assert_eq!(spec(0.9, Some(4)).filter(7), QueryFilter::Bucket(3));
        assert_eq!(spec(1.0, Some(4)).filter(2), QueryFilter::Bucket(2));
    }

    #[test]
    fn specs_are_checked_and_secrets_hidden() {
        let mut s = spec(1.0, None);
        s.top_k = 500;
        assert!(s.check().is_err());
        let mut s = spec(1.5, Some(0));
        s.insert_batch = 0;
        let Err(LoadError::InvalidSpec(e)) = s.check() else {
            panic!()
        };
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(!format!("{:?}", spec(1.0, None)).contains("secret"));
    }

    #[test]
    fn vectors_survive_json_exactly() {
        let v = data::generate(64, 50, 5, 9, data::STREAM_BASE);
        for i in 0..v.len() {
            let back: Vec<f32> = serde_json::from_str(&vector_json(v.get(i))).unwrap();
            assert_eq!(back, v.get(i));
        }
    }
}
