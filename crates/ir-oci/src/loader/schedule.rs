//! Scheduling and hashing: reading each application on the I/O threads
//! (in the order of its directory's inode), its small blobs hashed there,
//! the large blobs of all applications hashed at once on one worker per
//! core.

use super::discovery::Candidate;
use super::fsx;
use super::options::rejection;
use super::options::{LoadOptions, ReadAhead, SMALL_BLOB};
use super::orphans::find_orphans;
use super::prefetch::Prefetched;
use super::walk::{read_structure, BigDocuments, Structure};
use crate::digest::Digest;
use crate::model::{Blob, FileIdentity, Orphan, Registry};
use crate::rule::{Rejection, Rule};

/// The outcome of one blob job: whether it was hashed (or reused
/// unchanged), or the rule it broke.
pub(super) type Outcome = Result<(FileIdentity, bool), Rule>;

/// Checks one blob of `structure`: reused unchanged from `previous` when
/// its file still has the identity recorded there, else hashed.
pub(super) fn verify_blob(
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
pub(super) fn read_application(
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
pub(super) struct ReadApplication {
    pub(super) structure: Structure,
    /// Blobs that verified. Sized for all of them when the structure is
    /// known: it becomes the model's map in place, allocated beside the
    /// application's manifests rather than in a gap left by temporaries.
    pub(super) verified: Vec<(Digest, Blob)>,
    /// The first broken blob (the reason the application is rejected).
    pub(super) failed: Option<Rejection>,
    /// Blobs reused unchanged from the previous load.
    pub(super) reused: usize,
    pub(super) orphans: Vec<Orphan>,
}

impl ReadApplication {
    pub(super) fn new(structure: Structure) -> Self {
        ReadApplication {
            verified: Vec::with_capacity(structure.blobs.len()),
            structure,
            failed: None,
            reused: 0,
            orphans: Vec::new(),
        }
    }

    pub(super) fn record(&mut self, digest: Digest, outcome: Outcome) {
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
                // Every broken blob gets its line; the first is the reason.
                let rejected = rejection(&self.structure.rel, digest.blob_path(), rule);
                self.failed.get_or_insert(rejected);
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
pub(super) const SMALL_BUFFER_SIZE: usize = 64 << 10;

/// Runs `work` over every job on `threads` workers, each with one read
/// buffer for its lifetime, pulling the next job from a shared index: with
/// jobs sorted largest first, no worker idles while a job is left, and
/// memory stays at one buffer per worker however many blobs there are.
pub(super) fn hash_all<J: Sync, R: Send + Sync>(
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
pub(super) struct JobQueue<R> {
    /// Job indices, in the order they are handed out.
    pub(super) order: Vec<usize>,
    /// Position in `order` of the next job to hand out.
    pub(super) next: std::sync::atomic::AtomicUsize,
    pub(super) slots: Vec<std::sync::OnceLock<R>>,
}

impl<R> JobQueue<R> {
    /// A queue of the jobs `0..order.len()`, handed out in `order` (a
    /// permutation of those indices).
    pub(super) fn new(order: Vec<usize>) -> Self {
        let slots = order.iter().map(|_| std::sync::OnceLock::new()).collect();
        JobQueue {
            order,
            next: std::sync::atomic::AtomicUsize::new(0),
            slots,
        }
    }

    /// Takes jobs and runs `work` on each until none is left.
    pub(super) fn work(&self, mut work: impl FnMut(usize) -> R) {
        loop {
            let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = self.order.get(k) else { break };
            // Each index is taken once, so the slot is empty.
            let _ = self.slots[i].set(work(i));
        }
    }

    /// The results, by job index.
    pub(super) fn into_results(self) -> Vec<R> {
        self.slots
            .into_iter()
            .map(|slot| slot.into_inner().expect("every job was run"))
            .collect()
    }
}
