//! Why signing or verification failed.

/// A failure, with its reason as data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The layout breaks the OCI image layout specification (or this tool's bounds).
    #[error("layout: {0}")]
    Layout(String),
    /// The tag is not in the layout's index.json.
    #[error("tag {0:?} not found in index.json")]
    TagNotFound(String),
    /// A key is unreadable, of an unsupported type, or the password is wrong.
    #[error("key: {0}")]
    Key(String),
    /// sigstore-rs refused an operation.
    #[error("sigstore: {0}")]
    Sigstore(#[from] sigstore::errors::SigstoreError),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// An argument is malformed (digest, reference).
    #[error("{0}")]
    Invalid(String),
    /// One signature candidate is refused (why, as text).
    #[error("{0}")]
    Refused(String),
    /// No signature of the manifest verifies; the reason names the last refusal.
    #[error("no valid signature: {0}")]
    NotVerified(String),
}

/// Wraps an I/O error with the file it concerns.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
