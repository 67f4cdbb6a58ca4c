//! Why a report, an analysis or the run catalog could not be made. The binary maps these to
//! exit codes: the first two are the user's input (2), the rest the environment (3).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The folder is not a run directory, or its run.json cannot be read.
    #[error("{message}")]
    NotARun { path: PathBuf, message: String },
    /// A catalog id that is the prefix of several runs' ids.
    #[error("`{id}` matches {} runs: {}; give more of the id", .matches.len(), .matches.join(", "))]
    AmbiguousId { id: String, matches: Vec<String> },
    /// The catalog was written by a newer aibench.
    #[error("{} was written by a newer aibench (catalog version {version}); upgrade aibench or move the file away to rebuild it", .path.display())]
    NewerCatalog { path: PathBuf, version: i64 },
    #[error("the run catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReportError {
    /// Whether the error is about what the user gave (a folder, an id), not the machine.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            ReportError::NotARun { .. } | ReportError::AmbiguousId { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| ReportError::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
