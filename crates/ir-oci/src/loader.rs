//! Reads a root directory of OCI image layouts into a verified [`Registry`].
//!
//! Three phases:
//! 1. discovery: find layouts (directories with an `oci-layout` file) and
//!    namespaces (directories holding layouts) under the root, examining
//!    the entries of each directory in parallel;
//! 2. per application in parallel, on many I/O threads (with a cold cache,
//!    small files are bound by the disk's latency, not the CPU): parse
//!    `oci-layout` and `index.json`, walk every reachable descriptor, read,
//!    hash and parse every manifest and index, collect tags and the set of
//!    blobs; then hash its small blobs and look for orphans while its
//!    directory is fresh in the cache;
//! 3. the large blobs of all applications at once, one worker per core
//!    (hashing is CPU-bound), largest first, streaming with a fixed buffer
//!    per worker.
//!
//! An application that breaks any rule is rejected as a whole; the others
//! are served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, OciLayout};
use rayon::prelude::*;

use crate::digest::{Algorithm, Digest};
use crate::fsx;
use crate::listing::Listing;
use crate::media_type::{self, ContentKind};
use crate::model::{
    Application, Blob, DigestMap, FileIdentity, Manifest, Orphan, Referring, Registry,
};
use crate::name::{RepoName, Tag};
use crate::prefetch::Prefetched;
use crate::rule::{Rejection, Rule};

/// The annotation from which tags are read.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
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
    /// ([`crate::prefetch`]).
    pub read_ahead: ReadAhead,
    /// Where the load reports how far it has got, if anywhere.
    pub progress: Option<std::sync::Arc<crate::LoadProgress>>,
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

/// Loads and verifies every application under `root`.
pub fn load(root: &Path, options: &LoadOptions) -> Result<Registry, LoadError> {
    load_incremental(root, options, None)
}

/// Like [`load`], reusing the verification of `previous` where nothing
/// changed: a blob of the same application with the same digest whose file
/// still has the identity recorded when it was hashed (device, inode, size,
/// mtime, ctime) is not hashed again. Manifests and indexes are small and
/// are always re-read and re-hashed.
pub fn load_incremental(
    root: &Path,
    options: &LoadOptions,
    previous: Option<&Registry>,
) -> Result<Registry, LoadError> {
    let started = Instant::now();
    let meta = std::fs::metadata(root).map_err(|e| LoadError::Root {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(LoadError::Root {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    std::fs::read_dir(root).map_err(|e| LoadError::Root {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;

    let cpu_threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let io_threads = options
        .io_threads
        .unwrap_or((cpu_threads * DEFAULT_IO_THREADS_PER_CORE).min(MAX_DEFAULT_IO_THREADS))
        .max(cpu_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("load-io-{i}"))
        .num_threads(io_threads)
        .build()
        .map_err(|e| LoadError::Threads(e.to_string()))?;

    let progress = options.progress.as_deref();
    if let Some(p) = progress {
        p.start();
    }
    let mut registry = Registry::default();
    let found = if is_layout_marker(&root.join("oci-layout"))
        || is_layout_marker(&root.join("index.json"))
    {
        single_layout(root, &meta, options)?
    } else if options.root_name.is_some() {
        return Err(LoadError::Root {
            path: root.to_path_buf(),
            reason: "a name for the root is given, but the root is not an OCI layout (it holds no oci-layout)".into(),
        });
    } else {
        pool.install(|| discover(root, "", 0, options))
    };
    registry.rejected.extend(found.rejected);
    registry.ignored.extend(found.ignored);
    let candidates = found.candidates;
    if let Some(p) = progress {
        p.discovered(candidates.len());
    }
    tracing::debug!(candidates = candidates.len(), elapsed = ?started.elapsed(), "load: discovery done");

    // Phase 2, per application on the I/O threads: structure, then its
    // small blobs and its orphans while its directory is fresh in the cache.
    // Applications are taken one at a time, in the order of their
    // directories' inode numbers, by whichever I/O thread is free: the reads
    // in flight at once are then of neighbouring applications, whose inodes
    // and blocks lie close together (a file system allocates those of
    // directories made together near each other). rayon's halving spread
    // the threads over the whole root instead, and a cold load of many
    // applications was measurably slower.
    let big_documents = BigDocuments::new(cpu_threads);
    let linked = fsx::Linked::default();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].ino);
    let queue = JobQueue::new(order);
    pool.broadcast(|_| {
        queue.work(|i| {
            let read = read_application(&candidates[i], options, previous, &big_documents, &linked);
            if let Some(p) = progress {
                p.application_done();
            }
            read
        })
    });
    let read = queue.into_results();
    let mut apps = Vec::with_capacity(read.len());
    for r in read {
        match r {
            Ok(app) => apps.push(app),
            Err(rejection) => registry.rejected.push(*rejection),
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "load: structure, small blobs and orphans done");

    // Phase 3: the large blobs of all applications at once, one worker per
    // core, largest first so that big files do not end up alone at the tail.
    let mut jobs: Vec<(usize, Digest, u64)> = apps
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.structure
                .blobs
                .iter()
                .filter(|(_, p)| p.size > SMALL_BLOB)
                .map(move |(d, p)| (i, d.clone(), p.size))
        })
        .collect();
    jobs.sort_unstable_by_key(|j| std::cmp::Reverse(j.2));
    if let Some(p) = progress {
        p.large_blobs(jobs.iter().map(|j| j.2).sum());
    }
    let results: Vec<Outcome> = hash_all(&jobs, cpu_threads, |buf, (i, digest, size)| {
        let nothing_read_ahead = &mut Prefetched::default();
        let outcome = verify_blob(
            &apps[*i].structure,
            digest,
            *size,
            previous,
            buf,
            nothing_read_ahead,
            &linked,
        );
        if let Some(p) = progress {
            p.bytes_checked(*size);
        }
        outcome
    });
    tracing::debug!(large_blobs = jobs.len(), elapsed = ?started.elapsed(), "load: hashing done");
    for ((i, digest, _), outcome) in jobs.into_iter().zip(results) {
        apps[i].record(digest, outcome);
    }

    for app in apps {
        registry.blobs_reused += app.reused;
        if let Some(rejection) = app.failed {
            registry.rejected.push(rejection);
            continue;
        }
        registry.orphans.extend(app.orphans);
        let app = app
            .structure
            .into_application(app.verified.into_iter().collect());
        registry
            .applications
            .insert(app.name.clone(), Arc::new(app));
    }
    registry
        .rejected
        .sort_by(|a, b| a.application.cmp(&b.application));
    registry.blobs_linked = linked.reused();
    registry.elapsed = started.elapsed();
    Ok(registry)
}

/// The outcome of one blob job: whether it was hashed (or reused
/// unchanged), or the rule it broke.
type Outcome = Result<(FileIdentity, bool), Rule>;

/// Checks one blob of `structure`: reused unchanged from `previous` when
/// its file still has the identity recorded there, else hashed.
fn verify_blob(
    structure: &Structure,
    digest: &Digest,
    size: u64,
    previous: Option<&Registry>,
    buf: &mut [u8],
    pre: &mut Prefetched,
    linked: &fsx::Linked,
) -> Outcome {
    let path = structure.dir.join(digest.blob_path());
    let known = previous
        .and_then(|p| p.applications.get(&structure.name))
        .filter(|app| app.dir == structure.dir)
        .and_then(|app| app.blobs.get(digest))
        .filter(|b| !b.is_withdrawn() && b.size() == size);
    if let Some(identity) = known.and_then(|b| fsx::still_same(&path, &b.identity)) {
        return Ok((identity, false));
    }
    fsx::hash_blob(&path, digest, size, buf, pre, linked).map(|id| (id, true))
}

/// Phase 2 for one application: its structure, then its small blobs and
/// its orphans while its directory is fresh in the cache.
fn read_application(
    candidate: &Candidate,
    options: &LoadOptions,
    previous: Option<&Registry>,
    big_documents: &BigDocuments,
    linked: &fsx::Linked,
) -> Result<ReadApplication, Box<Rejection>> {
    // Cold cache: fetch the application's small files in one merged batch
    // first. What it read is used below only where the file is unchanged
    // since, and is checked exactly as if read there.
    let mut pre = Prefetched::list(&candidate.dir);
    if options.read_ahead == ReadAhead::Always {
        pre.read_ahead();
    }
    let structure = read_structure(candidate, options, big_documents, &mut pre)?;
    let small: Vec<(Digest, Outcome)> = SMALL_BUFFER.with_borrow_mut(|buf| {
        structure
            .blobs
            .iter()
            .filter(|(_, p)| p.size <= SMALL_BLOB)
            .map(|(d, p)| {
                let outcome = verify_blob(&structure, d, p.size, previous, buf, &mut pre, linked);
                (d.clone(), outcome)
            })
            .collect()
    });
    let mut app = ReadApplication::new(structure);
    for (digest, outcome) in small {
        app.record(digest, outcome);
    }
    app.orphans = find_orphans(&app.structure, pre.listing(), options);
    Ok(app)
}

/// One application whose structure verified, and its blobs as they are
/// checked.
struct ReadApplication {
    structure: Structure,
    /// Blobs that verified. Sized for all of them when the structure is
    /// known: it becomes the model's map in place, allocated beside the
    /// application's manifests rather than in a gap left by temporaries.
    verified: Vec<(Digest, Blob)>,
    /// The first broken blob (the reason the application is rejected).
    failed: Option<Rejection>,
    /// Blobs reused unchanged from the previous load.
    reused: usize,
    orphans: Vec<Orphan>,
}

impl ReadApplication {
    fn new(structure: Structure) -> Self {
        ReadApplication {
            verified: Vec::with_capacity(structure.blobs.len()),
            structure,
            failed: None,
            reused: 0,
            orphans: Vec::new(),
        }
    }

    fn record(&mut self, digest: Digest, outcome: Outcome) {
        match outcome {
            Ok((identity, hashed)) => {
                if hashed {
                    self.structure.bytes_verified += identity.size;
                } else {
                    self.reused += 1;
                }
                self.verified.push((digest, Blob::new(identity)));
            }
            Err(rule) => {
                let rejection = Rejection {
                    application: self.structure.rel.clone(),
                    file: PathBuf::from(digest.blob_path()),
                    rule,
                };
                // Every broken blob gets its line; the first is the reason.
                tracing::warn!("{rejection}");
                self.failed.get_or_insert(rejection);
            }
        }
    }
}

thread_local! {
    // One per I/O thread for the small blobs, for the life of the load's
    // thread pool.
    static SMALL_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; SMALL_BUFFER_SIZE]);
}

/// Buffer for small blobs: they fit in a few reads.
const SMALL_BUFFER_SIZE: usize = 64 << 10;

/// Runs `work` over every job on `threads` workers, each with one read
/// buffer for its lifetime, pulling the next job from a shared index: with
/// jobs sorted largest first, no worker idles while a job is left, and
/// memory stays at one buffer per worker however many blobs there are.
fn hash_all<J: Sync, R: Send + Sync>(
    jobs: &[J],
    threads: usize,
    work: impl Fn(&mut [u8], &J) -> R + Sync,
) -> Vec<R> {
    let queue = JobQueue::new((0..jobs.len()).collect());
    let run = || {
        let mut buf = vec![0u8; fsx::HASH_BUFFER];
        queue.work(|i| work(&mut buf, &jobs[i]));
    };
    std::thread::scope(|scope| {
        let spawned: Vec<_> = (0..threads.clamp(1, jobs.len().max(1)))
            .map(|n| {
                std::thread::Builder::new()
                    .name(format!("verify-{n}"))
                    .spawn_scoped(scope, run)
            })
            .collect();
        // A worker that could not be started leaves its share to the others.
        for handle in spawned.into_iter().flatten() {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        // Whatever is left (no worker could be started): do it here.
        run();
    });
    queue.into_results()
}

/// Jobs handed out one at a time, in a given order, to whichever worker
/// asks next. Each result lands in its job's own slot, written once: no
/// per-worker result lists growing (and fragmenting the heap) as they go.
struct JobQueue<R> {
    /// Job indices, in the order they are handed out.
    order: Vec<usize>,
    /// Position in `order` of the next job to hand out.
    next: std::sync::atomic::AtomicUsize,
    slots: Vec<std::sync::OnceLock<R>>,
}

impl<R> JobQueue<R> {
    /// A queue of the jobs `0..order.len()`, handed out in `order` (a
    /// permutation of those indices).
    fn new(order: Vec<usize>) -> Self {
        let slots = order.iter().map(|_| std::sync::OnceLock::new()).collect();
        JobQueue {
            order,
            next: std::sync::atomic::AtomicUsize::new(0),
            slots,
        }
    }

    /// Takes jobs and runs `work` on each until none is left.
    fn work(&self, mut work: impl FnMut(usize) -> R) {
        loop {
            let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = self.order.get(k) else { break };
            // Each index is taken once, so the slot is empty.
            let _ = self.slots[i].set(work(i));
        }
    }

    /// The results, by job index.
    fn into_results(self) -> Vec<R> {
        self.slots
            .into_iter()
            .map(|slot| slot.into_inner().expect("every job was run"))
            .collect()
    }
}

/// Documents an application may hold at once (raw bytes, parsed trees
/// are a few times more) before it needs a [`BigDocuments`] permit.
const SMALL_DOCUMENTS: u64 = 1 << 20;

/// Bounds how many applications hold large documents at once.
///
/// Structure is read on many threads because small files are latency
/// bound, but a hostile root can hold an `index.json` of 16 MiB (and
/// nested indexes of 4 MiB) in every application: at most `permits`
/// applications may hold more than [`SMALL_DOCUMENTS`] at a time, so the
/// transient memory stays *CPU threads x the per-application bound* plus
/// *I/O threads x a few MiB*, as it was before the I/O threads existed.
/// An application takes at most one permit and never waits while holding
/// one, so this cannot deadlock.
struct BigDocuments {
    free: std::sync::Mutex<usize>,
    released: std::sync::Condvar,
}

/// Held by an application that may hold large documents.
struct Permit<'a>(&'a BigDocuments);

impl BigDocuments {
    fn new(permits: usize) -> Self {
        BigDocuments {
            free: std::sync::Mutex::new(permits.max(1)),
            released: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.released.notify_one();
    }
}

/// A directory that looks like an application: it holds `oci-layout`.
struct Candidate {
    rel: String,
    dir: PathBuf,
    /// The directory's inode number: the order applications are read in.
    ino: u64,
}

/// What discovery found under one directory.
#[derive(Default)]
struct Found {
    candidates: Vec<Candidate>,
    rejected: Vec<Rejection>,
    ignored: Vec<(PathBuf, String)>,
}

impl Found {
    fn append(&mut self, mut other: Found) {
        self.candidates.append(&mut other.candidates);
        self.rejected.append(&mut other.rejected);
        self.ignored.append(&mut other.ignored);
    }
}

/// A root that is itself an OCI layout: one application, named by
/// `options.root_name` or else by the root directory's own name (so that
/// a producer can check the one layout it just wrote).
fn single_layout(
    root: &Path,
    meta: &std::fs::Metadata,
    options: &LoadOptions,
) -> Result<Found, LoadError> {
    let rel = match &options.root_name {
        Some(name) => name.clone(),
        None => {
            let full = root.canonicalize().map_err(|e| LoadError::Root {
                path: root.to_path_buf(),
                reason: e.to_string(),
            })?;
            match full.file_name() {
                Some(n) => n.to_string_lossy().into_owned(),
                None => {
                    return Err(LoadError::Root {
                        path: root.to_path_buf(),
                        reason:
                            "is an OCI layout without a directory name to serve it as; give one"
                                .into(),
                    })
                }
            }
        }
    };
    Ok(Found {
        candidates: vec![Candidate {
            rel,
            dir: root.to_path_buf(),
            ino: meta.ino(),
        }],
        ..Found::default()
    })
}

/// An entry of a directory under the root, as its directory entry
/// describes it.
struct DirEntry {
    name: std::ffi::OsString,
    /// The type the entry records (`Unknown` on file systems that record
    /// none: then it is asked with `lstat`).
    file_type: rustix::fs::FileType,
    ino: u64,
}

/// Lists `dir` and examines its entries in parallel (a directory needs a
/// look inside, which with a cold cache means waiting on the disk),
/// keeping the sorted order of names in what it returns.
fn discover(dir: &Path, prefix: &str, depth: usize, options: &LoadOptions) -> Found {
    let mut found = Found::default();
    let mut entries: Vec<DirEntry> = Vec::new();
    let listed = crate::listing::list_dir(dir, options.max_dir_entries, |name, ino, file_type| {
        entries.push(DirEntry {
            name: std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned(),
            file_type,
            ino,
        })
    });
    if let Err(e) = listed {
        found.ignored.push((
            dir.to_path_buf(),
            format!("cannot be listed: {}", std::io::Error::from(e)),
        ));
        if entries.is_empty() {
            return found;
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let each: Vec<Found> = entries
        .par_iter()
        .map(|entry| examine(dir, prefix, entry, depth, options))
        .collect();
    for f in each {
        found.append(f);
    }
    found
}

/// Classifies one entry of a directory under the root: an application, a
/// namespace holding some, or something ignored.
fn examine(
    dir: &Path,
    prefix: &str,
    entry: &DirEntry,
    depth: usize,
    options: &LoadOptions,
) -> Found {
    use rustix::fs::FileType;
    let mut found = Found::default();
    let path = dir.join(&entry.name);
    let rel = match entry.name.to_str() {
        Some(n) => format!("{prefix}{n}"),
        None => format!("{prefix}{}", entry.name.to_string_lossy()),
    };
    let (file_type, ino) = match entry.file_type {
        FileType::Unknown => match std::fs::symlink_metadata(&path) {
            Ok(m) => (FileType::from_raw_mode(m.mode()), m.ino()),
            Err(e) => {
                found.ignored.push((path, format!("cannot be read: {e}")));
                return found;
            }
        },
        known => (known, entry.ino),
    };
    if file_type == FileType::Symlink {
        found.rejected.push(rejection(&rel, "", Rule::Symlink));
        return found;
    }
    if file_type != FileType::Directory {
        found.ignored.push((path, "not a directory".into()));
        return found;
    }
    if is_layout_marker(&path.join("oci-layout")) || is_layout_marker(&path.join("index.json")) {
        found.candidates.push(Candidate {
            rel,
            dir: path,
            ino,
        });
        return found;
    }
    if depth + 1 < options.max_namespace_depth {
        let inner = discover(&path, &format!("{rel}/"), depth + 1, options);
        if !inner.candidates.is_empty() {
            found.append(inner);
            return found;
        }
        // A namespace with no layout: keep what was said about its
        // contents, and say why the directory itself is skipped.
        found.append(inner);
    }
    found.ignored.push((
        path,
        "holds no OCI image layout (no oci-layout file)".into(),
    ));
    found
}

/// A directory is an application (and checked as one, so that a missing
/// `oci-layout` is a rejection rather than a silently ignored directory) when
/// it holds `oci-layout` or `index.json` as anything but a directory. A
/// directory of that name is a namespaced application instead: both are
/// valid repository name components.
fn is_layout_marker(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir())
}

fn rejection(app: &str, file: &str, rule: Rule) -> Rejection {
    let rejection = Rejection {
        application: app.to_string(),
        file: PathBuf::from(file),
        rule,
    };
    tracing::warn!("{rejection}");
    rejection
}

/// Where a blob was first referenced, for its size.
struct PendingBlob {
    size: u64,
}

/// An application whose documents verified; blobs still to hash.
struct Structure {
    name: RepoName,
    rel: String,
    dir: PathBuf,
    tags: BTreeMap<Tag, Digest>,
    manifests: HashMap<Digest, Manifest>,
    blobs: HashMap<Digest, PendingBlob>,
    bytes_verified: u64,
}

impl Structure {
    fn into_application(self, blobs: DigestMap<Blob>) -> Application {
        let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for (digest, m) in &self.manifests {
            if let Some(subject) = m.subject() {
                referrers
                    .entry(subject.clone())
                    .or_default()
                    .push(digest.clone());
            }
        }
        for list in referrers.values_mut() {
            list.sort();
        }
        Application {
            name: self.name,
            dir: self.dir,
            tags: self.tags,
            manifests: self.manifests.into_iter().collect(),
            blobs,
            referrers,
            bytes_verified: self.bytes_verified,
        }
    }
}

/// A rule broken in a file, before the application is known to the caller.
type Broken = (PathBuf, Rule);

// Boxed: a rejection is much larger than the usual outcome.
fn read_structure(
    candidate: &Candidate,
    options: &LoadOptions,
    big_documents: &BigDocuments,
    pre: &mut Prefetched,
) -> Result<Structure, Box<Rejection>> {
    let to_rejection = |(file, rule): Broken| {
        let r = Rejection {
            application: candidate.rel.clone(),
            file,
            rule,
        };
        tracing::warn!("{r}");
        Box::new(r)
    };
    let name = RepoName::parse(&candidate.rel)
        .map_err(|e| to_rejection((PathBuf::new(), Rule::InvalidName(e))))?;
    let mut walker = Walker {
        dir: &candidate.dir,
        options,
        manifests: HashMap::new(),
        blobs: HashMap::new(),
        descriptors: 0,
        bytes_verified: 0,
        checked_alg_dirs: HashSet::new(),
        interned: HashSet::new(),
        big_documents,
        permit: None,
        held: 0,
        pre,
    };
    let tags = walker.walk_layout().map_err(to_rejection)?;
    Ok(Structure {
        name,
        rel: candidate.rel.clone(),
        dir: candidate.dir.clone(),
        tags,
        manifests: walker.manifests,
        blobs: walker.blobs,
        bytes_verified: walker.bytes_verified,
    })
}

struct Walker<'a> {
    dir: &'a Path,
    options: &'a LoadOptions,
    manifests: HashMap<Digest, Manifest>,
    blobs: HashMap<Digest, PendingBlob>,
    descriptors: usize,
    bytes_verified: u64,
    checked_alg_dirs: HashSet<Algorithm>,
    // Media and artifact types repeat across an application's manifests;
    // each distinct one is stored once.
    interned: HashSet<Arc<str>>,
    big_documents: &'a BigDocuments,
    permit: Option<Permit<'a>>,
    // Bytes of the documents being walked (index.json and the chain of
    // nested documents down to the current one).
    held: u64,
    // What the read-ahead read of this application.
    pre: &'a mut Prefetched,
}

fn invalid(what: &'static str, e: impl std::fmt::Display) -> Rule {
    let mut detail = e.to_string();
    if detail.len() > 200 {
        let mut end = 200;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    Rule::InvalidJson { what, detail }
}

impl<'a> Walker<'a> {
    /// Accounts for a document of `size` bytes about to be read, waiting
    /// for a permit first if the application would then hold more than
    /// [`SMALL_DOCUMENTS`].
    fn admit(&mut self, size: u64) {
        self.held += size;
        if self.permit.is_none() && self.held > SMALL_DOCUMENTS {
            self.permit = Some(self.big_documents.acquire());
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(known) = self.interned.get(s) {
            return known.clone();
        }
        let new: Arc<str> = s.into();
        self.interned.insert(new.clone());
        new
    }

    fn walk_layout(&mut self) -> Result<BTreeMap<Tag, Digest>, Broken> {
        fn at(f: &str) -> impl Fn(Rule) -> Broken + '_ {
            move |rule| (PathBuf::from(f), rule)
        }
        // Opened as a real directory for the listing: no need to ask again.
        if self.pre.listing().app_dir().is_none() {
            fsx::require_real_dir(self.dir).map_err(at(""))?;
        }

        let layout = fsx::read_limited(&self.dir.join("oci-layout"), 64 << 10, self.pre)
            .map_err(at("oci-layout"))?;
        let layout: OciLayout = require_utf8("oci-layout", &layout)
            .and_then(|text| serde_json::from_str(text).map_err(|e| invalid("oci-layout", e)))
            .map_err(at("oci-layout"))?;
        if layout.image_layout_version() != "1.0.0" {
            return Err(at("oci-layout")(Rule::LayoutVersion(
                layout.image_layout_version().clone(),
            )));
        }

        let (file, meta) = fsx::open_regular_from(&self.dir.join("index.json"), self.pre)
            .map_err(at("index.json"))?;
        // Held for the whole walk: its descriptors are walked from it.
        self.admit(meta.len().min(self.options.max_index_json));
        let bytes = fsx::read_open_limited(file, &meta, self.options.max_index_json)
            .map_err(at("index.json"))?;
        let index = parse_index(&bytes, None).map_err(at("index.json"))?;

        let index_path = PathBuf::from("index.json");
        let mut tags = BTreeMap::new();
        for d in index.manifests() {
            self.visit_listed(d, &index_path, 1)?;
            if let Some(value) = d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
                let tag = Tag::from_ref_name(value)
                    .map_err(|e| (index_path.clone(), Rule::InvalidTag(e)))?;
                let digest = Digest::parse(d.digest().as_ref()).expect("validated by visit_listed");
                if tags.insert(tag.clone(), digest).is_some() {
                    return Err((index_path, Rule::DuplicateTag(tag.to_string())));
                }
            }
        }
        if let Some(subject) = index.subject() {
            self.visit_subject(subject, &index_path, 1)?;
        }
        Ok(tags)
    }

    /// Validates a descriptor's fields; returns its digest and size.
    fn check_descriptor(&mut self, d: &Descriptor, from: &Path) -> Result<(Digest, u64), Broken> {
        let broken = |rule| (from.to_path_buf(), rule);
        self.descriptors += 1;
        if self.descriptors > self.options.max_descriptors {
            return Err(broken(Rule::TooManyDescriptors(
                self.options.max_descriptors,
            )));
        }
        let media_type = d.media_type().to_string();
        if !media_type::is_valid(&media_type) {
            return Err(broken(Rule::InvalidMediaType(media_type)));
        }
        let digest = Digest::parse(d.digest().as_ref()).map_err(|e| broken(Rule::Digest(e)))?;
        if d.size() > MAX_SAFE_SIZE {
            return Err(broken(Rule::SizeOutOfRange(d.size())));
        }
        let listed = |a: Algorithm| {
            let listing = self.pre.listing();
            listing.algorithms().iter().any(|d| d.algorithm == a)
        };
        // Listed means opened as real directories, `blobs` and this one.
        if self.checked_alg_dirs.insert(digest.algorithm()) && !listed(digest.algorithm()) {
            for dir in ["blobs".to_string(), format!("blobs/{}", digest.algorithm())] {
                if let Err(rule) = fsx::require_real_dir(&self.dir.join(&dir)) {
                    // A missing directory is reported against the blob.
                    if rule != Rule::Missing {
                        return Err((PathBuf::from(dir), rule));
                    }
                }
            }
        }
        Ok((digest, d.size()))
    }

    /// A descriptor in an index's `manifests`: must be a manifest or index.
    fn visit_listed(&mut self, d: &Descriptor, from: &Path, depth: usize) -> Result<(), Broken> {
        let media_type = d.media_type().to_string();
        let (digest, size) = self.check_descriptor(d, from)?;
        match media_type::kind_of(&media_type) {
            ContentKind::Blob => Err((from.to_path_buf(), Rule::NotAManifest(media_type))),
            kind => self.visit_document(kind, &media_type, digest, size, depth),
        }
    }

    /// A `subject`: verified like any other content when present on disk;
    /// when absent, it is only a pointer (referrers may precede subjects).
    fn visit_subject(&mut self, d: &Descriptor, from: &Path, depth: usize) -> Result<(), Broken> {
        let media_type = d.media_type().to_string();
        let (digest, size) = self.check_descriptor(d, from)?;
        let path = self.dir.join(digest.blob_path());
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        match media_type::kind_of(&media_type) {
            ContentKind::Blob => self.add_blob(digest, size, from),
            kind => self.visit_document(kind, &media_type, digest, size, depth),
        }
    }

    fn add_blob(&mut self, digest: Digest, size: u64, from: &Path) -> Result<(), Broken> {
        let pending = self
            .blobs
            .entry(digest.clone())
            .or_insert(PendingBlob { size });
        if pending.size != size {
            let first = pending.size;
            return Err((
                from.to_path_buf(),
                Rule::ConflictingSizes {
                    digest,
                    first,
                    second: size,
                },
            ));
        }
        Ok(())
    }

    fn visit_document(
        &mut self,
        kind: ContentKind,
        media_type: &str,
        digest: Digest,
        size: u64,
        depth: usize,
    ) -> Result<(), Broken> {
        if let Some(seen) = self.manifests.get(&digest) {
            if seen.bytes.len() as u64 != size {
                return Err((
                    PathBuf::from(digest.blob_path()),
                    Rule::SizeMismatch {
                        expected: size,
                        actual: seen.bytes.len() as u64,
                    },
                ));
            }
            return Ok(());
        }
        // `max_depth` bounds where indexes may sit; the manifests the
        // deepest index lists are one level further down. (Subject chains
        // count levels too, so they are bounded by the same numbers.)
        let deepest = match kind {
            ContentKind::Index => self.options.max_depth,
            _ => self.options.max_depth + 1,
        };
        if depth > deepest {
            return Err((
                PathBuf::from(digest.blob_path()),
                Rule::TooDeep(self.options.max_depth),
            ));
        }
        let file = PathBuf::from(digest.blob_path());
        let at = |rule| (file.clone(), rule);
        if size > self.options.max_manifest {
            return Err(at(Rule::TooLarge {
                size,
                limit: self.options.max_manifest,
            }));
        }
        self.admit(size);
        let bytes = fsx::read_verified(
            &self.dir.join(&file),
            &digest,
            size,
            self.options.max_manifest,
            self.pre,
        )
        .map_err(at)?;
        self.bytes_verified += size;

        let manifest = match kind {
            ContentKind::Index => {
                let index = parse_index(&bytes, Some(media_type)).map_err(at)?;
                for d in index.manifests() {
                    self.visit_listed(d, &file, depth + 1)?;
                }
                if let Some(subject) = index.subject() {
                    self.visit_subject(subject, &file, depth + 1)?;
                }
                let referring = subject_digest(index.subject()).map(|subject| Referring {
                    subject,
                    artifact_type: index
                        .artifact_type()
                        .as_ref()
                        .map(|t| self.intern(t.as_ref())),
                    annotations: sorted(index.annotations()),
                });
                Manifest {
                    media_type: self.intern(media_type),
                    bytes: bytes.into(),
                    referring: referring.map(Box::new),
                }
            }
            ContentKind::Manifest => {
                let m = parse_manifest(&bytes, media_type).map_err(at)?;
                let (config, _) = self.check_descriptor(m.config(), &file)?;
                self.add_blob(config, m.config().size(), &file)?;
                for layer in m.layers() {
                    let (digest, size) = self.check_descriptor(layer, &file)?;
                    let non_distributable = layer.urls().as_ref().is_some_and(|u| !u.is_empty());
                    if non_distributable
                        && std::fs::symlink_metadata(self.dir.join(digest.blob_path())).is_err()
                    {
                        continue; // lives elsewhere; simply not served
                    }
                    self.add_blob(digest, size, &file)?;
                }
                if let Some(subject) = m.subject() {
                    self.visit_subject(subject, &file, depth + 1)?;
                }
                let referring = subject_digest(m.subject()).map(|subject| {
                    let artifact_type = m
                        .artifact_type()
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| m.config().media_type().to_string());
                    Referring {
                        subject,
                        artifact_type: Some(self.intern(&artifact_type)),
                        annotations: sorted(m.annotations()),
                    }
                });
                Manifest {
                    media_type: self.intern(media_type),
                    bytes: bytes.into(),
                    referring: referring.map(Box::new),
                }
            }
            ContentKind::Blob => unreachable!("documents are manifests or indexes"),
        };
        self.manifests.insert(digest, manifest);
        // Its parse tree is gone; its bytes stay as part of the model.
        self.held -= size;
        Ok(())
    }
}

fn subject_digest(d: &Option<Descriptor>) -> Option<Digest> {
    // Validated by check_descriptor before this is called.
    d.as_ref()
        .and_then(|d| Digest::parse(d.digest().as_ref()).ok())
}

fn sorted(a: &Option<HashMap<String, String>>) -> Option<BTreeMap<String, String>> {
    a.as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Parses an index; `expected` is the media type of the descriptor that
/// points at it (`None` for `index.json`, which must be an OCI index).
fn parse_index(bytes: &[u8], expected: Option<&str>) -> Result<ImageIndex, Rule> {
    let index: ImageIndex = serde_json::from_str(require_utf8("image index", bytes)?)
        .map_err(|e| digest_rule(bytes).unwrap_or_else(|| invalid("image index", e)))?;
    if index.schema_version() != 2 {
        return Err(Rule::SchemaVersion(index.schema_version()));
    }
    if let Some(own) = index.media_type() {
        let own = own.to_string();
        let expected = expected.unwrap_or(media_type::OCI_INDEX);
        if own != expected {
            return Err(Rule::MediaTypeMismatch {
                expected: expected.into(),
                found: own,
            });
        }
    }
    Ok(index)
}

/// JSON text is UTF-8 throughout (RFC 8259, section 8.1). serde_json checks
/// only the strings it keeps: parsing from bytes skips ignored fields
/// without validating them, so a document with invalid UTF-8 inside an
/// unknown field would pass. The whole document is checked first instead
/// (`from_utf8` runs at many GB/s, next to nothing beside the SHA-256
/// every document goes through).
fn require_utf8<'b>(what: &'static str, bytes: &'b [u8]) -> Result<&'b str, Rule> {
    std::str::from_utf8(bytes).map_err(|e| invalid(what, format_args!("not UTF-8: {e}")))
}

/// `oci-spec` refuses a document whose descriptor digest is malformed
/// (uppercase hex, wrong length) before [`Walker::check_descriptor`] sees
/// it. When typed parsing fails, look for such a digest in the places
/// descriptors live, so the rejection names the digest rule rather than
/// "not valid JSON".
fn digest_rule(bytes: &[u8]) -> Option<Rule> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let mut descriptors: Vec<&serde_json::Value> = Vec::new();
    for key in ["manifests", "layers"] {
        if let Some(list) = doc.get(key).and_then(|v| v.as_array()) {
            descriptors.extend(list);
        }
    }
    descriptors.extend(["config", "subject"].iter().filter_map(|k| doc.get(*k)));
    descriptors
        .iter()
        .filter_map(|d| d.get("digest")?.as_str())
        .find_map(|s| Digest::parse(s).err())
        .map(Rule::Digest)
}

fn parse_manifest(bytes: &[u8], expected: &str) -> Result<ImageManifest, Rule> {
    let m: ImageManifest = serde_json::from_str(require_utf8("image manifest", bytes)?)
        .map_err(|e| digest_rule(bytes).unwrap_or_else(|| invalid("image manifest", e)))?;
    if m.schema_version() != 2 {
        return Err(Rule::SchemaVersion(m.schema_version()));
    }
    if let Some(own) = m.media_type() {
        let own = own.to_string();
        if own != expected {
            return Err(Rule::MediaTypeMismatch {
                expected: expected.into(),
                found: own,
            });
        }
    }
    Ok(m)
}

/// Lists `blobs/<alg>/` and reports files no descriptor reaches.
/// The files under `blobs/` that no descriptor reaches, from the listing
/// made at the start of the application's load, or by listing the
/// directories again where that listing is not whole.
fn find_orphans(s: &Structure, listing: &Listing, options: &LoadOptions) -> Vec<Orphan> {
    let mut orphans = Vec::new();
    let mut push = |file: PathBuf| {
        orphans.push(Orphan {
            application: s.rel.clone(),
            file,
        })
    };
    let reached = |alg: &str, hex: &str| {
        Digest::parse(&format!("{alg}:{hex}"))
            .map(|d| s.blobs.contains_key(&d) || s.manifests.contains_key(&d))
            .unwrap_or(false)
    };
    if listing.is_complete() {
        for stray in listing.strays() {
            push(Path::new("blobs").join(stray));
        }
        for alg in listing.algorithms() {
            for e in &alg.entries {
                let hex = e.os_name().to_string_lossy();
                if !reached(alg.algorithm.as_str(), &hex) {
                    push(PathBuf::from(format!("blobs/{}/{hex}", alg.algorithm)));
                }
            }
        }
    } else {
        list_orphans(&s.dir.join("blobs"), options, reached, &mut push);
    }
    orphans.sort_by(|a, b| a.file.cmp(&b.file));
    orphans
}

/// Lists `blobs` (following a symbolic link, as `read_dir` does) for the
/// files that `reached` does not know.
fn list_orphans(
    blobs_dir: &Path,
    options: &LoadOptions,
    reached: impl Fn(&str, &str) -> bool,
    push: &mut impl FnMut(PathBuf),
) {
    let Ok(algs) = std::fs::read_dir(blobs_dir) else {
        return;
    };
    for alg in algs.take(options.max_dir_entries).flatten() {
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        let is_dir = alg.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || !Algorithm::ALL.iter().any(|a| a.as_str() == alg_name) {
            push(PathBuf::from(format!("blobs/{alg_name}")));
            continue;
        }
        let Ok(files) = std::fs::read_dir(alg.path()) else {
            continue;
        };
        for f in files.take(options.max_dir_entries).flatten() {
            let hex = f.file_name().to_string_lossy().into_owned();
            if !reached(&alg_name, &hex) {
                push(PathBuf::from(format!("blobs/{alg_name}/{hex}")));
            }
        }
    }
}
