//! Errors that keep a run from starting or finishing. Failed *requests* are not errors: they
//! are recorded by class.

use std::path::PathBuf;

/// Why a run could not start or could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("cannot write requests to {path}: {source}")]
    Records {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the load engine needs a multi-thread tokio runtime: {0}")]
    Runtime(String),
}
