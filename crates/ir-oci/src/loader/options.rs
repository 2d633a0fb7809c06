//! What a load is given (options, limits) and how it fails: shared by
//! every phase, so it sits below them (the phases import it; `mod.rs`
//! runs them).

use std::path::PathBuf;
use std::sync::Arc;

use crate::rule::{Rejection, Rule};

use super::progress::LoadProgress;

/// Largest JSON number that is exact in every JSON implementation.
pub const MAX_SAFE_SIZE: u64 = (1 << 53) - 1;

/// Bounds and knobs for loading. The defaults suit production.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Deepest nesting of indexes below `index.json` (which is level 0):
    /// an index listed in `index.json` is at level 1, so the default of 16
    /// accepts a chain of 16 nested indexes (whose innermost lists
    /// manifests at level 17) and rejects 17.
    pub max_depth: usize,
    /// Largest `index.json` accepted.
    pub max_index_json: u64,
    /// Largest manifest or nested index accepted (the distribution spec
    /// asks registries to accept at least 4 MiB).
    pub max_manifest: u64,
    /// Most descriptors reachable in one application.
    pub max_descriptors: usize,
    /// Deepest namespace directory nesting under the root.
    pub max_namespace_depth: usize,
    /// Most directory entries read from one directory (root, namespace or
    /// `blobs/<alg>/`).
    pub max_dir_entries: usize,
    /// Worker threads for hashing large blobs (CPU-bound); `None` means
    /// one per core.
    pub threads: Option<usize>,
    /// Threads for everything that waits on the disk rather than the CPU:
    /// discovery, reading manifests, hashing small blobs, listing `blobs/`.
    /// With a cold page cache, loading many small files is bound by I/O
    /// latency, and only many reads in flight keep the disk busy. `None`
    /// means [`DEFAULT_IO_THREADS_PER_CORE`] per core, at most
    /// [`MAX_DEFAULT_IO_THREADS`] (and never fewer than `threads`).
    pub io_threads: Option<usize>,
    /// When to read an application's small files ahead in one batch
    /// ([`prefetch`]).
    pub read_ahead: ReadAhead,
    /// Where the load reports how far it has got, if anywhere.
    pub progress: Option<Arc<LoadProgress>>,
    /// The name to serve the root under when the root is itself an OCI
    /// layout (holds `oci-layout` or `index.json`); `None` means the root
    /// directory's own name. Given for a root that is not a layout, the
    /// load fails ([`LoadError::Root`]).
    pub root_name: Option<String>,
}

/// Whether the loader reads an application's small files ahead in one
/// `io_uring` batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAhead {
    /// Always (the default). With a cold cache it merges the reads of an
    /// application's files into a few block requests; with a warm one it
    /// still costs less than reading file by file (measured with
    /// `bench/compare.sh`'s start-up part).
    #[default]
    Always,
    /// Never: every file is read by the loader itself.
    Never,
}

/// Default I/O threads per core (see [`LoadOptions::io_threads`]). Measured
/// with 10,000 applications and a cold page cache on a 2-core VM, before
/// small blobs moved to these threads: 1 per core 13 s, 4 per core 6.4 s,
/// 16 per core 5.0 s; 32 per core was no better (docs/benchmarks.md).
pub const DEFAULT_IO_THREADS_PER_CORE: usize = 16;

/// Cap of the default I/O threads: enough reads in flight for any disk,
/// without a thousand threads on a large machine.
pub const MAX_DEFAULT_IO_THREADS: usize = 64;

/// Blobs up to this size are hashed by the I/O threads right after their
/// application's structure is read, with a small buffer: reading them
/// costs more waiting than hashing. Larger ones go to one worker per core.
pub const SMALL_BLOB: u64 = 256 << 10;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_depth: 16,
            max_index_json: 16 << 20,
            max_manifest: 4 << 20,
            max_descriptors: 1_000_000,
            max_namespace_depth: 8,
            max_dir_entries: 1_000_000,
            threads: None,
            io_threads: None,
            read_ahead: ReadAhead::Always,
            progress: None,
            root_name: None,
        }
    }
}

/// The root could not be read at all (a different thing from rejecting an
/// application in it).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Missing, not a directory, or unreadable.
    #[error("registry root {path}: {reason}")]
    Root {
        /// The root given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker pool could not be built.
    #[error("cannot start verification threads: {0}")]
    Threads(String),
}

/// The one way the loader rejects: builds the rejection and logs it (one
/// line naming the application, the file and the rule).
pub(crate) fn rejection(app: &str, file: impl Into<PathBuf>, rule: Rule) -> Rejection {
    let rejection = Rejection::new(app, file, rule);
    tracing::warn!("{rejection}");
    rejection
}
