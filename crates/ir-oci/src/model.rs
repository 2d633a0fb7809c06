//! The verified, immutable model of what may be served.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::digest::Digest;
pub use crate::digest_map::DigestMap;
use crate::name::{RepoName, Tag};
use crate::rule::Rejection;

/// The identity of a file as seen when it was verified. If any of these
/// differ later, the file is no longer the one whose bytes were hashed.
///
/// `ctime` is included because no unprivileged write can preserve it: any
/// change of content or of `mtime` sets it to the current time. Seconds and
/// nanoseconds are kept apart (rather than as one i128 count) so that the
/// struct is 48 bytes with no padding: the model holds one per blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Status change time, seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds part of `mtime`.
    pub mtime_nsec: u32,
    /// Nanoseconds part of `ctime`.
    pub ctime_nsec: u32,
}

impl FileIdentity {
    /// Identity of an open file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            ctime: meta.ctime(),
            // The kernel keeps these below 10^9.
            mtime_nsec: meta.mtime_nsec() as u32,
            ctime_nsec: meta.ctime_nsec() as u32,
        }
    }
}

/// A verified blob stored on disk (configs, layers, artifact payloads).
#[derive(Debug)]
pub struct Blob {
    /// The file as it was when its content hashed to its digest.
    pub identity: FileIdentity,
    // Set when serving found the file changed; the blob is then never
    // served again from this model.
    withdrawn: AtomicBool,
}

impl Blob {
    /// A blob verified with this identity.
    pub fn new(identity: FileIdentity) -> Self {
        Blob {
            identity,
            withdrawn: AtomicBool::new(false),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.identity.size
    }

    /// True once the blob was found altered and must not be served.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::Relaxed)
    }

    /// Stops serving this blob (its file no longer matches).
    pub fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::Relaxed);
    }
}

/// A verified manifest or index, held in memory with its exact bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The media type of the descriptor that reached it (equal to its own
    /// `mediaType` when it has one). Shared between the manifests of an
    /// application that have the same type.
    pub media_type: Arc<str>,
    /// The exact bytes that hash to the digest.
    pub bytes: Bytes,
    /// What the referrers API reports about it, for a manifest with a
    /// `subject`. Boxed and absent otherwise: most manifests have no
    /// subject, and the model holds one `Manifest` per manifest served.
    pub referring: Option<Box<Referring>>,
}

impl Manifest {
    /// Its `subject`, if any.
    pub fn subject(&self) -> Option<&Digest> {
        self.referring.as_ref().map(|r| &r.subject)
    }
}

/// The part of a manifest with a `subject` that the referrers API lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referring {
    /// The manifest it refers to.
    pub subject: Digest,
    /// `artifactType`, or for an image manifest without one, its config's
    /// media type.
    pub artifact_type: Option<Arc<str>>,
    /// The manifest's own annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One servable application (repository).
#[derive(Debug)]
pub struct Application {
    /// Its repository name.
    pub name: RepoName,
    /// Its directory.
    pub dir: PathBuf,
    /// Tag → manifest digest.
    pub tags: BTreeMap<Tag, Digest>,
    /// Every reachable manifest and index.
    pub manifests: DigestMap<Manifest>,
    /// Every reachable blob present on disk (not manifests).
    pub blobs: DigestMap<Blob>,
    /// Subject digest → digests of manifests that refer to it, sorted.
    pub referrers: HashMap<Digest, Vec<Digest>>,
    /// Total bytes hashed for this application (manifests and blobs).
    pub bytes_verified: u64,
}

impl Application {
    /// The path of a blob's file.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.blob_path())
    }

    /// Directory of the application.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// An orphan: a file under `blobs/` that no descriptor reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Application path relative to the root.
    pub application: String,
    /// The file, relative to the application.
    pub file: PathBuf,
}

/// The outcome of loading a root directory.
#[derive(Debug, Default)]
pub struct Registry {
    /// Applications that verified, by name.
    pub applications: BTreeMap<RepoName, Arc<Application>>,
    /// Applications (or directories) that did not.
    pub rejected: Vec<Rejection>,
    /// Files under `blobs/` that nothing reaches (never served).
    pub orphans: Vec<Orphan>,
    /// Directories under the root that are neither layouts nor namespaces
    /// holding layouts, and other entries that were skipped, with the reason.
    pub ignored: Vec<(PathBuf, String)>,
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Blobs whose earlier verification was reused because their files did
    /// not change (see [`crate::loader::load_incremental`]).
    pub blobs_reused: usize,
    /// Blobs not hashed again because another name of the same file (a
    /// hard link in another application) was hashed in this load.
    pub blobs_linked: usize,
}

impl Registry {
    /// Total bytes hashed over all served applications.
    pub fn bytes_verified(&self) -> u64 {
        self.applications.values().map(|a| a.bytes_verified).sum()
    }
}
