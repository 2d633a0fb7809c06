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
//!
//! One file per phase: `discovery` (phase 1), `walk` (the walk of one
//! layout in phase 2), `schedule` (running phases 2 and 3 on the thread
//! pools, hashing), `orphans` (the end of phase 2); and what they use:
//! `fsx` (opening files unchanged, hashing), `mapped` (hashing through
//! memory maps), `listing` (one listing of `blobs/`), `prefetch` (batched
//! read-ahead) and `progress`. This file holds the options, the errors,
//! and [`load`] and [`load_incremental`] (a reload that reuses what an
//! earlier load verified), which run the phases, one named step each.

use std::fs::Metadata;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rayon::ThreadPool;

use crate::digest::Digest;
use crate::model::Registry;
use crate::rule::Rejection;

mod discovery;
mod fsx;
pub mod listing;
pub mod mapped;
mod options;
mod orphans;
pub mod prefetch;
pub mod progress;
mod schedule;
mod walk;

pub use fsx::open_unchanged;
pub use options::{
    LoadError, LoadOptions, ReadAhead, DEFAULT_IO_THREADS_PER_CORE, MAX_DEFAULT_IO_THREADS,
    MAX_SAFE_SIZE, SMALL_BLOB,
};
pub use progress::{LoadProgress, ProgressSnapshot};

use discovery::{discover, is_layout_marker, single_layout, Found};
use prefetch::Prefetched;
use schedule::{hash_all, read_application, JobQueue, Outcome, ReadApplication};
use walk::BigDocuments;

/// Loads and verifies every application under `root`.
pub fn load(root: &Path, options: &LoadOptions) -> Result<Registry, LoadError> {
    load_incremental(root, options, None)
}

/// Like [`load`], reusing the verification of `previous` where nothing
/// changed: a blob of the same application with the same digest whose file
/// still has the identity recorded when it was hashed (device, inode, size,
/// mtime, ctime) is not hashed again. Manifests and indexes are small and
/// are always re-read and re-hashed.
///
/// The steps: check the root, size the thread pools, discover the
/// applications (phase 1), read each one (phase 2), hash the large blobs
/// (phase 3), and assemble the registry.
pub fn load_incremental(
    root: &Path,
    options: &LoadOptions,
    previous: Option<&Registry>,
) -> Result<Registry, LoadError> {
    let started = Instant::now();
    let meta = check_root(root)?;
    let threads = Threads::of(options);
    let pool = io_pool(threads.io)?;
    let progress = options.progress.as_deref();
    if let Some(p) = progress {
        p.start();
    }
    let mut registry = Registry::default();
    let found = find_applications(root, &meta, options, &pool)?;
    registry.rejected.extend(found.rejected);
    registry.ignored.extend(found.ignored);
    let candidates = found.candidates;
    if let Some(p) = progress {
        p.discovered(candidates.len());
    }
    tracing::debug!(candidates = candidates.len(), elapsed = ?started.elapsed(), "load: discovery done");

    let linked = fsx::Linked::default();
    let run = Run {
        options,
        previous,
        progress,
        linked: &linked,
        cpu_threads: threads.cpu,
    };
    let mut apps = run.read_applications(&pool, &candidates, &mut registry.rejected);
    tracing::debug!(elapsed = ?started.elapsed(), "load: structure, small blobs and orphans done");
    let large_blobs = run.hash_large_blobs(&mut apps);
    tracing::debug!(large_blobs, elapsed = ?started.elapsed(), "load: hashing done");

    assemble(&mut registry, apps);
    registry.blobs_linked = linked.reused();
    registry.elapsed = started.elapsed();
    Ok(registry)
}

/// The root must exist, be a directory, and be readable.
fn check_root(root: &Path) -> Result<Metadata, LoadError> {
    let unreadable = |e: std::io::Error| LoadError::Root {
        path: root.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(root).map_err(unreadable)?;
    if !meta.is_dir() {
        return Err(LoadError::Root {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    std::fs::read_dir(root).map_err(unreadable)?;
    Ok(meta)
}

/// How many threads hash (CPU-bound) and how many wait on the disk.
struct Threads {
    cpu: usize,
    io: usize,
}

impl Threads {
    fn of(options: &LoadOptions) -> Self {
        let cpu = options
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let io = options
            .io_threads
            .unwrap_or((cpu * DEFAULT_IO_THREADS_PER_CORE).min(MAX_DEFAULT_IO_THREADS))
            .max(cpu);
        Threads { cpu, io }
    }
}

/// The pool of I/O threads (discovery and phase 2).
fn io_pool(threads: usize) -> Result<ThreadPool, LoadError> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("load-io-{i}"))
        .num_threads(threads)
        .build()
        .map_err(|e| LoadError::Threads(e.to_string()))
}

/// Phase 1: the root itself when it is a layout, otherwise the layouts and
/// namespaces under it. A name for the root is refused unless the root is
/// a layout.
fn find_applications(
    root: &Path,
    meta: &Metadata,
    options: &LoadOptions,
    pool: &ThreadPool,
) -> Result<Found, LoadError> {
    if is_layout_marker(&root.join("oci-layout")) || is_layout_marker(&root.join("index.json")) {
        single_layout(root, meta, options)
    } else if options.root_name.is_some() {
        Err(LoadError::Root {
            path: root.to_path_buf(),
            reason: "a name for the root is given, but the root is not an OCI layout (it holds no oci-layout)".into(),
        })
    } else {
        Ok(pool.install(|| discover(root, "", 0, options)))
    }
}

/// What phases 2 and 3 of one load share.
struct Run<'a> {
    options: &'a LoadOptions,
    previous: Option<&'a Registry>,
    progress: Option<&'a LoadProgress>,
    linked: &'a fsx::Linked,
    cpu_threads: usize,
}

impl Run<'_> {
    /// Phase 2, per application on the I/O threads: structure, then its
    /// small blobs and its orphans while its directory is fresh in the
    /// cache. Applications are taken one at a time, in the order of their
    /// directories' inode numbers, by whichever I/O thread is free: the
    /// reads in flight at once are then of neighbouring applications, whose
    /// inodes and blocks lie close together (a file system allocates those
    /// of directories made together near each other). rayon's halving
    /// spread the threads over the whole root instead, and a cold load of
    /// many applications was measurably slower. Applications rejected here
    /// go to `rejected`.
    fn read_applications(
        &self,
        pool: &ThreadPool,
        candidates: &[discovery::Candidate],
        rejected: &mut Vec<Rejection>,
    ) -> Vec<ReadApplication> {
        let big_documents = BigDocuments::new(self.cpu_threads);
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&i| candidates[i].ino);
        let queue = JobQueue::new(order);
        pool.broadcast(|_| {
            queue.work(|i| {
                let read = read_application(
                    &candidates[i],
                    self.options,
                    self.previous,
                    &big_documents,
                    self.linked,
                );
                if let Some(p) = self.progress {
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
                Err(rejection) => rejected.push(*rejection),
            }
        }
        apps
    }

    /// Phase 3: the large blobs of all applications at once, one worker
    /// per core, largest first so that big files do not end up alone at
    /// the tail. Returns how many there were.
    fn hash_large_blobs(&self, apps: &mut [ReadApplication]) -> usize {
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
        if let Some(p) = self.progress {
            p.large_blobs(jobs.iter().map(|j| j.2).sum());
        }
        let results: Vec<Outcome> = hash_all(&jobs, self.cpu_threads, |buf, (i, digest, size)| {
            let nothing_read_ahead = &mut Prefetched::default();
            let outcome = schedule::verify_blob(
                &apps[*i].structure,
                digest,
                *size,
                self.previous,
                buf,
                nothing_read_ahead,
                self.linked,
            );
            if let Some(p) = self.progress {
                p.bytes_checked(*size);
            }
            outcome
        });
        let count = jobs.len();
        for ((i, digest, _), outcome) in jobs.into_iter().zip(results) {
            apps[i].record(digest, outcome);
        }
        count
    }
}

/// The applications that verified become the registry's; the others are
/// rejected as a whole.
fn assemble(registry: &mut Registry, apps: Vec<ReadApplication>) {
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
}
