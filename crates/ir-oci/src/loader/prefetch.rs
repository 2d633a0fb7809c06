//! Batched reads of an application's small files, so that loading a
//! registry of many small files with a cold page cache is not bound by one
//! block request (and one `read`) per file.
//!
//! Why: the loader reads every file of an application (`oci-layout`,
//! `index.json`, manifests, configs, small layers) one `read()` at a time,
//! each its own block request. On a VM each request costs tens of µs of
//! kernel CPU (virtio notification and completion interrupt), which made a
//! cold start of 230,000 small files kernel-bound (docs/benchmarks.md). The
//! files of one application are usually written together and lie next to
//! each other on disk. Reads submitted in one `io_uring` batch are plugged,
//! and the block layer merges adjacent ones into a few large requests: here
//! about one per application instead of one per file. With a warm cache
//! the batch costs less than the reads it replaces, so it is always made.
//!
//! The bytes read are handed to the loader ([`Prefetched::take`]) instead of
//! being read a second time, on one condition: the file had the same
//! identity (device, inode, size, mtime, ctime) before and after the read,
//! asked of the descriptor read from. That is the check the loader makes
//! around its own reads of a blob (`fsx::hash_blob`). The loader then
//! verifies the bytes (size, digest, JSON) exactly as if it had read them,
//! and a blob is served only while the file at its path still has that
//! identity (`fsx::open_unchanged`), so a file replaced after it was read
//! is never served. Everything else is a hint: any failure (no `io_uring`
//! in a container, a file that vanished, a FIFO planted in the layout)
//! only means the loader reads the file itself. Only regular files are
//! read (`O_NOFOLLOW`, `O_NONBLOCK`, checked with `fstat`), at most
//! [`MAX_FILES`] per application, [`MAX_READ`] bytes each and
//! [`KEEP_BUDGET`] bytes kept per application.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring};
use rustix::fs::{Mode, OFlags};

use super::listing::Listing;
use crate::model::FileIdentity;

/// Files read ahead per application at most.
pub const MAX_FILES: usize = 4096;
/// Bytes read ahead per file at most (larger blobs are read in the
/// hashing phase with the kernel's own read-ahead).
pub const MAX_READ: u64 = 256 << 10;
/// Bytes of file contents kept for the loader per application at most;
/// files past it are still read ahead (into a scratch buffer), and the
/// loader reads them again from the page cache.
pub const KEEP_BUDGET: usize = 1 << 20;
/// Reads submitted per batch at most.
const RING_ENTRIES: u32 = 256;

/// Set when `io_uring` cannot be used here (old kernel, seccomp filter,
/// `kernel.io_uring_disabled`): no thread tries again.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

struct Ring {
    ring: IoUring,
    /// Reads of files whose bytes are not kept land here: only the page
    /// cache they fill matters, so they may overwrite each other. Never
    /// freed while a read may be in flight.
    scratch: Box<[u8]>,
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// One application's directory as read at the start of its load: its
/// [`Listing`] and, when read ahead, the bytes of its small files.
#[derive(Debug, Default)]
pub struct Prefetched {
    /// The application's directory as the loader names it: files are
    /// asked for by paths under it.
    dir: PathBuf,
    listing: Listing,
    /// By the file's path relative to `dir` (as bytes, cheaper to hash
    /// than a `Path`).
    kept: HashMap<Vec<u8>, Kept>,
}

/// A file read whole: its metadata when opened (the same after the read)
/// and its bytes.
type Kept = (Metadata, Vec<u8>);

/// A file of the application, by an open directory and a name in it.
#[derive(Debug)]
struct Location {
    /// `None`: the application's directory; else that algorithm directory
    /// of the listing.
    dir: Option<usize>,
    name: CString,
}

impl Prefetched {
    /// Lists the application at `dir` ([`Listing::of`]); nothing is read
    /// ahead yet.
    pub fn list(dir: &Path) -> Prefetched {
        Prefetched {
            dir: dir.to_path_buf(),
            listing: Listing::of(dir),
            kept: HashMap::new(),
        }
    }

    /// The listing made when this was created.
    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when nothing is held (a warm cache, or no `io_uring`).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The bytes read ahead of the file at `path`, with its metadata (the
    /// same before and after the read), if it was read whole (else `None`:
    /// the caller reads it itself). Each file is handed out once.
    pub fn take(&mut self, path: &Path) -> Option<(Metadata, Vec<u8>)> {
        if self.kept.is_empty() {
            return None;
        }
        // Byte comparisons: cheaper than `Path::strip_prefix`, which
        // parses components.
        let rel = path
            .as_os_str()
            .as_bytes()
            .strip_prefix(self.dir.as_os_str().as_bytes())?
            .strip_prefix(b"/")?;
        self.kept.remove(rel)
    }

    fn dir_fd(&self, dir: Option<usize>) -> Option<BorrowedFd<'_>> {
        match dir {
            None => self.listing.app_dir(),
            Some(i) => self.listing.algorithms().get(i).map(|a| a.fd()),
        }
    }

    /// Reads ahead the application's small files.
    pub fn read_ahead(&mut self) {
        let files = self.small_files();
        if files.is_empty() || UNAVAILABLE.load(Ordering::Relaxed) {
            return;
        }
        RING.with_borrow_mut(|slot| {
            if slot.is_none() {
                match IoUring::new(RING_ENTRIES) {
                    Ok(ring) => {
                        *slot = Some(Ring {
                            ring,
                            scratch: vec![0u8; MAX_READ as usize].into_boxed_slice(),
                        })
                    }
                    Err(e) => {
                        // Once per process, as a warning: a seccomp profile
                        // that blocks io_uring (Docker's and containerd's
                        // default ones do) makes cold starts slower, and an
                        // operator should know why (docs/deployment.md).
                        if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "io_uring unavailable ({e}): the batched read-ahead is off and cold loads \
                                 read file by file (slower on a cold page cache; see \"io_uring\" in \
                                 docs/deployment.md)"
                            );
                        }
                        return;
                    }
                }
            }
            let Some(ring) = slot.as_mut() else { return };
            let mut budget = KEEP_BUDGET;
            for batch in files.chunks(batch_size()) {
                let opened = self.open_all(batch, &mut budget);
                match read_batch(ring, opened) {
                    Ok(read) => {
                        for (key, kept) in read {
                            self.kept.insert(key, kept);
                        }
                    }
                    Err(e) => {
                        // Reads may still be in flight into `scratch`, into
                        // the batch's buffers and on its descriptors (which
                        // `read_batch` leaked): keep the ring and its buffer
                        // alive for the life of the process rather than free
                        // what the kernel may still use.
                        tracing::debug!("read-ahead failed, disabled on this thread: {e}");
                        if let Some(broken) = slot.take() {
                            std::mem::forget(broken);
                        }
                        return;
                    }
                }
            }
        });
    }

    /// The files of the application worth reading ahead: `oci-layout` and
    /// `index.json`, then what the algorithm directories hold, in inode
    /// order (files written together have neighbouring inodes and, usually,
    /// neighbouring blocks). Inode numbers come from the directory entries:
    /// nothing is opened or stat'ed here.
    fn small_files(&self) -> Vec<Location> {
        let mut files = vec![
            Location {
                dir: None,
                name: c"oci-layout".into(),
            },
            Location {
                dir: None,
                name: c"index.json".into(),
            },
        ];
        let mut blobs: Vec<(u64, Location)> = Vec::new();
        for (i, alg) in self.listing.algorithms().iter().enumerate() {
            for e in alg.entries.iter().filter(|e| e.maybe_regular) {
                if files.len() + blobs.len() >= MAX_FILES {
                    break;
                }
                let at = Location {
                    dir: Some(i),
                    name: e.name.clone(),
                };
                blobs.push((e.ino, at));
            }
        }
        blobs.sort_by_key(|b| b.0);
        files.extend(blobs.into_iter().map(|(_, at)| at));
        files
    }

    /// The file's path relative to the application's directory, as
    /// bytes: `index.json`, `blobs/sha256/<hex>`.
    fn key_of(&self, at: &Location) -> Vec<u8> {
        let name = at.name.to_bytes();
        let Some(alg) = at.dir.and_then(|i| self.listing.algorithms().get(i)) else {
            return name.to_vec();
        };
        let alg = alg.algorithm.as_str().as_bytes();
        let mut key = Vec::with_capacity(7 + alg.len() + name.len());
        for part in [&b"blobs/"[..], alg, b"/", name] {
            key.extend_from_slice(part);
        }
        key
    }

    /// Opens the regular, non-empty files of `batch`, giving a buffer of
    /// its own to each that fits in what is left of `budget`.
    fn open_all(&self, batch: &[Location], budget: &mut usize) -> Vec<Pending> {
        batch
            .iter()
            .filter_map(|at| {
                let file = open_in(self.dir_fd(at.dir)?, &at.name).ok()?;
                let meta: Metadata = file.metadata().ok()?;
                if !meta.is_file() || meta.len() == 0 {
                    return None;
                }
                let len = meta.len().min(MAX_READ);
                // Kept only when read whole.
                let keep = (meta.len() <= MAX_READ && len as usize <= *budget).then(|| {
                    *budget -= len as usize;
                    Vec::with_capacity(len as usize)
                });
                Some(Pending {
                    key: self.key_of(at),
                    file,
                    meta,
                    len,
                    keep,
                })
            })
            .collect()
    }
}

/// Files opened at once per batch: few enough that all the I/O threads
/// together hold at most a quarter of the descriptor limit, so that the
/// read-ahead never makes the loader's own `open` fail.
fn batch_size() -> usize {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            rl.rlim_cur
        } else {
            1024
        }
    });
    let threads = rayon::current_num_threads().max(1) as u64;
    (limit / 4 / threads).clamp(4, RING_ENTRIES as u64) as usize
}

/// Opens `name` in the open directory `dir` for reading, without following
/// a symbolic link and without blocking on a FIFO.
fn open_in(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> rustix::io::Result<File> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

/// One file of a batch, open, with what its read will fill.
struct Pending {
    /// The path the loader asks for it by, as bytes.
    key: Vec<u8>,
    file: File,
    /// Its metadata when opened.
    meta: Metadata,
    len: u64,
    /// Where its bytes go when they are kept (else: the scratch buffer).
    keep: Option<Vec<u8>>,
}

/// Submits one read per file and waits for all of them; returns the files
/// whose bytes were kept and read whole. On error the batch is leaked (its
/// reads may still be in flight).
fn read_batch(ring: &mut Ring, mut batch: Vec<Pending>) -> std::io::Result<Vec<(Vec<u8>, Kept)>> {
    let scratch = ring.scratch.as_mut_ptr();
    let mut pushed = Ok(());
    {
        let mut sq = ring.ring.submission();
        for (i, p) in batch.iter_mut().enumerate() {
            let into = p.keep.as_mut().map_or(scratch, |b| b.as_mut_ptr());
            let read = opcode::Read::new(types::Fd(p.file.as_raw_fd()), into, p.len as u32)
                .offset(0)
                .build()
                .user_data(i as u64);
            // SAFETY: the descriptor and the destination (`scratch`, of
            // MAX_READ bytes, or the file's own buffer of `len` bytes
            // capacity; `len` <= MAX_READ) stay valid until every read of
            // the batch has completed: this function waits for all of
            // them, and on error leaks the batch and the caller the ring.
            if unsafe { sq.push(&read) }.is_err() {
                pushed = Err(std::io::Error::other("submission queue full"));
                break;
            }
        }
    }
    let mut read = vec![None; batch.len()];
    let mut left = batch.len();
    let waited = pushed.and_then(|()| {
        while left > 0 {
            match ring.ring.submit_and_wait(left) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for done in ring.ring.completion() {
                left -= 1;
                // A failed or short read (a file truncated meanwhile) is
                // simply not kept: the loader will see for itself.
                if let Some(slot) = read.get_mut(done.user_data() as usize) {
                    *slot = u64::try_from(done.result()).ok();
                }
            }
        }
        Ok(())
    });
    if let Err(e) = waited {
        std::mem::forget(batch);
        return Err(e);
    }
    Ok(batch
        .into_iter()
        .zip(read)
        .filter_map(|(p, n)| {
            let mut bytes = p.keep?;
            if n != Some(p.len) {
                return None;
            }
            // SAFETY: the kernel wrote exactly `len` bytes (the read's
            // result) into this buffer, whose capacity is `len`.
            unsafe { bytes.set_len(p.len as usize) };
            // Unchanged during the read, or not kept.
            let after = p.file.metadata().ok()?;
            (FileIdentity::of(&after) == FileIdentity::of(&p.meta))
                .then_some((p.key, (p.meta, bytes)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with `index.json` (`{}`) and an empty `blobs/sha256`.
    fn layout_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        (dir, blobs)
    }

    fn read_ahead(dir: &Path) -> Prefetched {
        let mut pre = Prefetched::list(dir);
        pre.read_ahead();
        pre
    }

    #[test]
    fn reads_regular_files_only_and_never_fails() {
        let (dir, blobs) = layout_dir();
        std::fs::write(blobs.join("a"), vec![1u8; 5000]).unwrap();
        std::fs::write(blobs.join("empty"), b"").unwrap();
        std::fs::write(blobs.join("big"), vec![2u8; MAX_READ as usize + 1]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", blobs.join("link")).unwrap();
        let fifo = blobs.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(blobs.join("subdir")).unwrap();

        let files = Prefetched::list(dir.path()).small_files();
        // oci-layout (absent here, skipped when opened), index.json, "a",
        // "empty" and "big": not the symbolic link, the FIFO (never opened)
        // or the directory.
        assert_eq!(files.len(), 5, "{files:?}");

        // Read in one batch (unless io_uring is unavailable here, e.g.
        // under a seccomp filter: then nothing is, and nothing fails).
        // Kept: index.json and "a"; "big" is read ahead but not whole, the
        // empty file not at all.
        let mut got = read_ahead(dir.path());
        if UNAVAILABLE.load(Ordering::Relaxed) {
            assert!(got.is_empty());
            return;
        }
        assert_eq!(got.len(), 2, "{got:?}");
        let (meta, bytes) = got.take(&dir.path().join("index.json")).unwrap();
        assert_eq!((bytes.as_slice(), meta.len()), (&b"{}"[..], 2));
        assert!(
            got.take(&dir.path().join("index.json")).is_none(),
            "handed out once"
        );
        assert_eq!(got.take(&blobs.join("a")).unwrap().1, vec![1u8; 5000]);
        assert!(got.take(&blobs.join("big")).is_none());
        assert!(read_ahead(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn bytes_kept_stay_within_the_budget_and_are_those_read() {
        let (dir, blobs) = layout_dir();
        std::fs::write(blobs.join("kept"), "kept").unwrap();
        // More than the budget: the rest is read ahead but not kept.
        for i in 0..8 {
            std::fs::write(blobs.join(format!("big{i}")), vec![0u8; 200 << 10]).unwrap();
        }
        let mut got = read_ahead(dir.path());
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return;
        }
        let held: usize = got.kept.values().map(|(_, b)| b.len()).sum();
        assert!(held <= KEEP_BUDGET, "{held}");
        assert!(got.len() < 10, "not all of the 10 files are kept");
        // What is handed out is what was read, with the identity it had
        // then: a later change is for the loader's serving checks to see.
        let before = std::fs::metadata(blobs.join("kept")).unwrap();
        std::fs::write(blobs.join("kept"), "changed since").unwrap();
        let (meta, bytes) = got.take(&blobs.join("kept")).unwrap();
        assert_eq!(bytes, b"kept");
        assert_eq!(FileIdentity::of(&meta), FileIdentity::of(&before));
    }

    #[test]
    fn blobs_symlinked_elsewhere_are_not_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("sha256")).unwrap();
        std::fs::write(elsewhere.path().join("sha256/secret"), b"x").unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("blobs")).unwrap();
        let only_top_level = |pre: Prefetched| pre.small_files().iter().all(|f| f.dir.is_none());
        assert!(only_top_level(Prefetched::list(dir.path())));
        // An algorithm directory that is a symlink is skipped too.
        std::fs::remove_file(dir.path().join("blobs")).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("sha256"),
            dir.path().join("blobs/sha256"),
        )
        .unwrap();
        assert!(only_top_level(Prefetched::list(dir.path())));
    }
}
