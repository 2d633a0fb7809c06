//! Batched reads of an application's small files when the page cache is
//! cold, so that loading a registry of many small files is not bound by
//! one block request (and one `open`/`read`/`close`) per file.
//!
//! Why: the loader reads every file of an application (`oci-layout`,
//! `index.json`, manifests, configs, small layers) one `read()` at a time,
//! each its own block request. On a VM each request costs about 30 µs of
//! kernel CPU (virtio notification and completion interrupt), which made a
//! cold start of 230,000 small files kernel-bound (docs/benchmarks.md). The
//! files of one application are usually written together and lie next to
//! each other on disk. Reads submitted in one `io_uring` batch are plugged,
//! and the block layer merges adjacent ones into a few large requests: here
//! about one per application instead of one per file.
//!
//! The bytes read are handed to the loader ([`Prefetched::take`]) instead of
//! being read a second time, on one condition: the file at that path must
//! still have the identity it had when it was opened for the read (same
//! device, inode, size, mtime, ctime; checked with `lstat`, so a file
//! replaced by a symbolic link does not qualify). That is the check the
//! loader makes around its own reads. The loader then verifies the bytes
//! (size, digest, JSON) exactly as if it had read them. Everything else is
//! a hint: any failure (no `io_uring` in a container, a file that vanished,
//! a FIFO planted in the layout) only means the loader reads the file
//! itself. Only regular files are read (`O_NOFOLLOW`, `O_NONBLOCK`,
//! checked with `fstat`), at most [`MAX_FILES`] per application,
//! [`MAX_READ`] bytes each and [`KEEP_BUDGET`] bytes kept per application.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring};

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

/// The files of one application read ahead: for each whose bytes were
/// read whole, the identity it had when opened and the bytes.
#[derive(Debug, Default)]
pub struct Prefetched {
    kept: HashMap<PathBuf, (FileIdentity, Vec<u8>)>,
}

impl Prefetched {
    /// Files held.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when nothing is held (a warm cache, or no `io_uring`).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The bytes read ahead of the file at `path`, with its metadata now,
    /// if the path still names a regular file with the identity it had
    /// when it was read (else `None`: the caller reads it itself). Each
    /// file is handed out once.
    pub fn take(&mut self, path: &Path) -> Option<(Metadata, Vec<u8>)> {
        if self.kept.is_empty() {
            return None;
        }
        let (identity, bytes) = self.kept.remove(path)?;
        let now = std::fs::symlink_metadata(path).ok()?;
        (now.is_file() && FileIdentity::of(&now) == identity).then_some((now, bytes))
    }
}

/// Reads ahead the small files of the application at `dir` if its
/// `index.json` is not in the page cache, and returns what it read.
pub fn application(dir: &Path) -> Prefetched {
    if UNAVAILABLE.load(Ordering::Relaxed) || !is_cold(&dir.join("index.json")) {
        return Prefetched::default();
    }
    read_ahead(dir)
}

/// Reads ahead the small files of the layout at `dir`, cold or not.
pub fn read_ahead(dir: &Path) -> Prefetched {
    let mut out = Prefetched::default();
    let paths = small_files(dir);
    if paths.is_empty() || UNAVAILABLE.load(Ordering::Relaxed) {
        return out;
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
                    tracing::debug!("no io_uring, cold loads read file by file: {e}");
                    UNAVAILABLE.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        let Some(ring) = slot.as_mut() else { return };
        let mut budget = KEEP_BUDGET;
        for batch in paths.chunks(batch_size()) {
            let files = open_all(batch, &mut budget);
            match read_batch(ring, files) {
                Ok(read) => {
                    for (path, identity, bytes) in read {
                        out.kept.insert(path, (identity, bytes));
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
    out
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

/// True when the first page of `path` is not in the page cache. Asks
/// `mincore` about a mapping that is never touched, so the question itself
/// causes no read (a page-cache-only `preadv2` would start one).
fn is_cold(path: &Path) -> bool {
    let Ok(file) = open(path) else { return false };
    if !file.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
        return false;
    }
    // SAFETY: a private read-only mapping of the file's first byte (the
    // kernel rounds it to a page); it is never read or written, only
    // queried, then unmapped.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return false;
    }
    let mut resident = [0u8; 1];
    // SAFETY: `map` is a live page-aligned mapping of at least one page and
    // `resident` has room for that one page's flag.
    let r = unsafe { libc::mincore(map, 1, resident.as_mut_ptr()) };
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(map, 1) };
    r == 0 && resident[0] & 1 == 0
}

fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// The files of the layout at `dir` worth reading ahead, in inode order
/// (files written together have neighbouring inodes and, usually,
/// neighbouring blocks). Inode numbers come from the directory entries:
/// nothing is opened or stat'ed here.
fn small_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<(u64, PathBuf)> =
        vec![(0, dir.join("oci-layout")), (0, dir.join("index.json"))];
    let blobs = dir.join("blobs");
    // `read_dir` follows symbolic links: look before listing, so that a
    // `blobs` symlinked elsewhere is not read ahead (the loader rejects it;
    // `alg` directories are checked by their entry type, which does not
    // follow links).
    let real_dir = std::fs::symlink_metadata(&blobs).is_ok_and(|m| m.is_dir());
    if let Some(Ok(algorithms)) = real_dir.then(|| std::fs::read_dir(&blobs)) {
        for alg in algorithms.flatten().take(16) {
            if !alg.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(alg.path()) else {
                continue;
            };
            for e in entries.flatten() {
                if paths.len() >= MAX_FILES {
                    break;
                }
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    paths.push((e.ino(), e.path()));
                }
            }
        }
    }
    paths.sort_by_key(|p| p.0);
    paths.into_iter().map(|(_, p)| p).collect()
}

/// One file of a batch, open, with what its read will fill.
struct Pending {
    path: PathBuf,
    file: File,
    identity: FileIdentity,
    len: u64,
    /// Where its bytes go when they are kept (else: the scratch buffer).
    keep: Option<Vec<u8>>,
}

/// Opens the regular, non-empty files of `batch`, giving a buffer of its
/// own to each that fits in what is left of `budget`.
fn open_all(batch: &[PathBuf], budget: &mut usize) -> Vec<Pending> {
    batch
        .iter()
        .filter_map(|path| {
            let file = open(path).ok()?;
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
                path: path.clone(),
                file,
                identity: FileIdentity::of(&meta),
                len,
                keep,
            })
        })
        .collect()
}

/// Submits one read per file and waits for all of them; returns the files
/// whose bytes were kept and read whole. On error the batch is leaked (its
/// reads may still be in flight).
fn read_batch(
    ring: &mut Ring,
    mut batch: Vec<Pending>,
) -> std::io::Result<Vec<(PathBuf, FileIdentity, Vec<u8>)>> {
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
            Some((p.path, p.identity, bytes))
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

        let paths = small_files(dir.path());
        // oci-layout (absent here, skipped when opened), index.json, "a",
        // "empty" and "big": not the symbolic link, the FIFO (never opened)
        // or the directory.
        assert_eq!(paths.len(), 5, "{paths:?}");

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
        // Just written, so cached: nothing to do.
        assert!(application(dir.path()).is_empty());
    }

    #[test]
    fn bytes_are_handed_out_only_while_the_file_is_unchanged() {
        let (dir, blobs) = layout_dir();
        for name in ["grown", "relinked", "kept"] {
            std::fs::write(blobs.join(name), name).unwrap();
        }
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
        assert!(got.len() < 12, "not all of the 12 files are kept");
        std::fs::write(blobs.join("grown"), "grown, longer").unwrap();
        std::fs::remove_file(blobs.join("relinked")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("index.json"), blobs.join("relinked")).unwrap();
        assert!(got.take(&blobs.join("grown")).is_none());
        assert!(got.take(&blobs.join("relinked")).is_none());
        assert_eq!(got.take(&blobs.join("kept")).unwrap().1, b"kept");
    }

    #[test]
    fn blobs_symlinked_elsewhere_are_not_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("sha256")).unwrap();
        std::fs::write(elsewhere.path().join("sha256/secret"), b"x").unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("blobs")).unwrap();
        let outside = |paths: Vec<PathBuf>| {
            !paths
                .iter()
                .any(|p| p.starts_with(dir.path().join("blobs")))
        };
        assert!(outside(small_files(dir.path())));
        // An algorithm directory that is a symlink is skipped too.
        std::fs::remove_file(dir.path().join("blobs")).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("sha256"),
            dir.path().join("blobs/sha256"),
        )
        .unwrap();
        assert!(outside(small_files(dir.path())));
    }

    #[test]
    fn cold_check_never_reads_and_skips_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("index.json");
        std::fs::write(&f, b"{}").unwrap();
        assert!(!is_cold(&f), "a file just written is in the page cache");
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        assert!(!is_cold(&dir.path().join("empty")));
        assert!(!is_cold(&dir.path().join("missing")));
        assert!(!is_cold(dir.path()));
        std::os::unix::fs::symlink(&f, dir.path().join("link")).unwrap();
        assert!(!is_cold(&dir.path().join("link")));
    }
}
