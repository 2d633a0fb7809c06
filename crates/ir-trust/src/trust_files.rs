//! Reading what images are judged by from its files: the containers
//! policy (`--policy`) and notation's trust policy and store
//! (`--notation-trust-policy`, `--notation-trust-store`). One loader for
//! the server and the client; its error names the flag and the file.

use std::path::PathBuf;

use crate::policy::{Policy, PolicyError};
use crate::verdict::{NotationTrust, Trust};

/// The files a [`Trust`] is read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustFiles {
    /// `--policy`: a containers-policy.json(5).
    pub policy: Option<PathBuf>,
    /// `--notation-trust-policy` and `--notation-trust-store`, which go
    /// together.
    pub notation: Option<NotationFiles>,
}

/// Notation's trust policy file and trust store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationFiles {
    /// `trustpolicy.json`.
    pub trust_policy: PathBuf,
    /// The trust store directory.
    pub trust_store: PathBuf,
}

/// Why the policy files cannot be used; the message names the flag and
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustFilesError {
    /// `--policy` does not parse or names an unusable key or requirement.
    #[error("--policy {0}")]
    Policy(#[from] PolicyError),
    /// Notation's trust policy is unusable.
    #[error("--notation-trust-policy {path}: {source}")]
    NotationPolicy {
        /// The file.
        path: String,
        /// Why.
        source: ir_notation::Error,
    },
    /// Notation's trust store is unusable.
    #[error("--notation-trust-store {path}: {source}")]
    NotationStore {
        /// The directory.
        path: String,
        /// Why.
        source: ir_notation::Error,
    },
}

impl TrustFiles {
    /// Whether no policy at all is asked for.
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.notation.is_none()
    }

    /// Reads and checks the files, loading every key they name.
    pub fn load(&self) -> Result<Trust, TrustFilesError> {
        let policy = self.policy.as_deref().map(Policy::load).transpose()?;
        let notation = match &self.notation {
            Some(files) => Some(NotationTrust {
                policy: ir_notation::TrustPolicy::load(&files.trust_policy).map_err(|source| {
                    TrustFilesError::NotationPolicy {
                        path: files.trust_policy.display().to_string(),
                        source,
                    }
                })?,
                store: ir_notation::TrustStore::load(&files.trust_store).map_err(|source| {
                    TrustFilesError::NotationStore {
                        path: files.trust_store.display().to_string(),
                        source,
                    }
                })?,
            }),
            None => None,
        };
        Ok(Trust { policy, notation })
    }
}
