//! Why a journal cannot be opened, written or read.

use std::path::PathBuf;

/// Errors of the receipts journal, each naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptsError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A key file is not a P-256 key of the expected kind.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The journal directory is not private to the server.
    #[error("{path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The last line of an existing journal cannot be continued from.
    #[error("{path}: line {line}: {reason}")]
    Resume {
        /// The newest journal file.
        path: PathBuf,
        /// Its last complete line (1-based).
        line: usize,
        /// Why the chain cannot go on from it.
        reason: String,
    },
}

impl ReceiptsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
