//! The protocols the engine drives, each behind [`crate::driver::Driver`], and their
//! registration: one variant of [`Workload`] per protocol.
//!
//! A new protocol is one module here (its spec type, its driver, its `prepare`) plus one
//! variant of [`Workload`] and its two match arms below.

pub(crate) mod http1;
pub mod keys;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod vector;

use crate::dataset::Dataset;
use crate::engine::{run, run_driver, RunOptions, RunOutcome};
use crate::error::LoadError;
use crate::protocol::Target;
use crate::spec::LoadSpec;

/// What to drive, and how: a protocol and everything it needs.
#[derive(Debug)]
pub enum Workload {
    /// LLM servers (OpenAI, Ollama) and plain HTTP: prompts from a dataset.
    Http { target: Target, dataset: Dataset },
    /// Redis `GET`/`SET` over a key space.
    Redis(redis::RedisSpec),
    /// S3 `PUT`/`GET`/`DELETE`/`LIST` of objects.
    S3(s3::S3Spec),
    /// PostgreSQL scripts of prepared statements, or the built-in TPC-B-like transaction.
    Postgres(postgres::PostgresSpec),
    /// Vector database queries (exact recall@k) and inserts: ChromaDB, Qdrant.
    Vector(vector::VectorSpec),
}

/// Fill in the model of an LLM target that names none, from the server's model list
/// (`/v1/models`, Ollama's `/api/tags`). A server that cannot list its models is still driven,
/// with requests that name no model; the returned note says which happened.
async fn name_the_model(target: &mut Target) -> Option<String> {
    if target.model.is_some() || !target.protocol.is_llm() {
        return None;
    }
    match crate::client::discover_model(target, std::time::Duration::from_secs(10)).await {
        Ok(Some(m)) => {
            let note = format!("model: {m} (the first the server lists; set `model` to choose)");
            target.model = Some(m);
            Some(note)
        }
        Ok(None) => Some("the server lists no model; requests name none".into()),
        Err(e) => Some(format!(
            "the server's model list could not be read ({e}); requests name no model"
        )),
    }
}

impl Workload {
    /// The one-time preparation before the clock that every client process relies on
    /// (preloading keys, creating tables, buckets or collections). Run it once per trial,
    /// before the load starts, in one process. Returns what was done, for the run's log.
    ///
    /// An LLM target without a model name learns it here from the server's model list, so
    /// that the orchestrator can say which model it measures.
    pub async fn prepare(&mut self) -> Result<Option<String>, LoadError> {
        match self {
            Workload::Http { target, .. } => Ok(name_the_model(target).await),
            Workload::Redis(spec) => {
                if !spec.preload {
                    return Ok(None);
                }
                let d = std::sync::Arc::new(redis::RedisDriver::new(spec).await?);
                let n = d.preload().await?;
                Ok(Some(format!("preloaded {n} Redis keys")))
            }
            Workload::S3(spec) => {
                let d = std::sync::Arc::new(s3::S3Driver::new(spec).await?);
                let t = std::time::Instant::now();
                let n = d.preload().await?;
                Ok(Some(if n == 0 {
                    format!("bucket `{}` ready", spec.bucket)
                } else {
                    format!(
                        "bucket `{}` ready; wrote {n} objects in {:.1} s",
                        spec.bucket,
                        t.elapsed().as_secs_f64()
                    )
                }))
            }
            Workload::Vector(spec) => Ok(Some(vector::prepare(spec).await?)),
            Workload::Postgres(spec) => Ok(Some(postgres::prepare(spec).await?)),
        }
    }

    /// Run the load `spec` (after [`Workload::prepare`]).
    pub async fn run(&self, spec: &LoadSpec, options: RunOptions) -> Result<RunOutcome, LoadError> {
        match self {
            Workload::Http { target, dataset } => {
                if target.model.is_none() && target.protocol.is_llm() {
                    // A client process of its own: ask the server as the orchestrator did.
                    let mut target = target.clone();
                    name_the_model(&mut target).await;
                    return run(spec, &target, dataset, options).await;
                }
                run(spec, target, dataset, options).await
            }
            Workload::Redis(r) => {
                run_driver(spec, redis::RedisDriver::new(r).await?, options).await
            }
            Workload::S3(s) => run_driver(spec, s3::S3Driver::new(s).await?, options).await,
            Workload::Postgres(p) => {
                run_driver(spec, postgres::PostgresDriver::new(p).await?, options).await
            }
            Workload::Vector(v) => {
                run_driver(spec, vector::VectorDriver::new(v).await?, options).await
            }
        }
    }
}
