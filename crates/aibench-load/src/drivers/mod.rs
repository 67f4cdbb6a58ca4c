//! The protocols the engine drives, each behind [`crate::driver::Driver`], and their
//! registration: one variant of [`Workload`] per protocol.
//!
//! A new protocol is one module here (its spec type, its driver, its `prepare`) plus one
//! variant of [`Workload`] and its two match arms below.

pub mod keys;
pub mod redis;

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
}

impl Workload {
    /// The one-time preparation before the clock that every client process relies on
    /// (preloading keys, creating tables, buckets or collections). Run it once per trial,
    /// before the load starts, in one process. Returns what was done, for the run's log.
    pub async fn prepare(&self) -> Result<Option<String>, LoadError> {
        match self {
            Workload::Http { .. } => Ok(None),
            Workload::Redis(spec) => {
                if !spec.preload {
                    return Ok(None);
                }
                let d = std::sync::Arc::new(redis::RedisDriver::new(spec).await?);
                let n = d.preload().await?;
                Ok(Some(format!("preloaded {n} Redis keys")))
            }
        }
    }

    /// Run the load `spec` (after [`Workload::prepare`]).
    pub async fn run(&self, spec: &LoadSpec, options: RunOptions) -> Result<RunOutcome, LoadError> {
        match self {
            Workload::Http { target, dataset } => run(spec, target, dataset, options).await,
            Workload::Redis(r) => {
                run_driver(spec, redis::RedisDriver::new(r).await?, options).await
            }
        }
    }
}
