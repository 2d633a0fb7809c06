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
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use crate::listing::Listing;
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
    /// By the file's path (as bytes, cheaper to hash than a `Path`).
    kept: HashMap<Vec<u8>, Kept>,
}

/// A file read whole, with what it takes to check it is still that file.
#[derive(Debug)]
struct Kept {
    at: Location,
    identity: FileIdentity,
    /// Its metadata when it was opened for the read.
    meta: Metadata,
    bytes: Vec<u8>,
}

/// A file of the application, by an open directory and a name in it.
#[derive(Debug, Clone)]
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

    /// The bytes read ahead of the file at `path`, with its metadata, if
    /// the path still names a regular file with the identity it had when
    /// it was read (else `None`: the caller reads it itself). Each file is
    /// handed out once.
    pub fn take(&mut self, path: &Path) -> Option<(Metadata, Vec<u8>)> {
        if self.kept.is_empty() {
            return None;
        }
        let kept = self.kept.remove(path.as_os_str().as_bytes())?;
        // Looked up again by its one name in its open directory (`lstat`
        // semantics): no walk of the whole path.
        let now = rustix::fs::statx(
            self.dir_fd(kept.at.dir)?,
            kept.at.name.as_c_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        )
        .ok()?;
        let regular = FileType::from_raw_mode(now.stx_mode.into()) == FileType::RegularFile;
        (regular && identity_of(&now) == kept.identity).then_some((kept.meta, kept.bytes))
    }

    fn dir_fd(&self, dir: Option<usize>) -> Option<BorrowedFd<'_>> {
        match dir {
            None => self.listing.app_dir(),
            Some(i) => self.listing.algorithms().get(i).map(|a| a.fd()),
        }
    }

    /// Reads ahead the application's small files if its `index.json` is
    /// not in the page cache.
    pub fn read_ahead_if_cold(&mut self) {
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return;
        }
        if self.listing.app_dir().is_some_and(is_cold) {
            self.read_ahead();
        }
    }

    /// Reads ahead the application's small files, cold or not.
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
                        tracing::debug!("no io_uring, cold loads read file by file: {e}");
                        UNAVAILABLE.store(true, Ordering::Relaxed);
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

    /// The path the loader asks for the file at `at` by.
    fn path_of(&self, at: &Location) -> PathBuf {
        let name = std::ffi::OsStr::from_bytes(at.name.as_bytes());
        match at.dir.and_then(|i| self.listing.algorithms().get(i)) {
            None => self.dir.join(name),
            Some(alg) => self
                .dir
                .join("blobs")
                .join(alg.algorithm.as_str())
                .join(name),
        }
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
                    key: self.path_of(at).into_os_string().into_encoded_bytes(),
                    at: at.clone(),
                    file,
                    identity: FileIdentity::of(&meta),
                    meta,
                    len,
                    keep,
                })
            })
            .collect()
    }
}

/// The identity of a file as `statx` reports it, made the way the
/// standard library makes [`Metadata`] (so the two compare equal).
fn identity_of(s: &rustix::fs::Statx) -> FileIdentity {
    FileIdentity {
        dev: libc::makedev(s.stx_dev_major, s.stx_dev_minor),
        ino: s.stx_ino,
        size: s.stx_size,
        mtime: s.stx_mtime.tv_sec,
        ctime: s.stx_ctime.tv_sec,
        mtime_nsec: s.stx_mtime.tv_nsec,
        ctime_nsec: s.stx_ctime.tv_nsec,
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

/// True when the first page of the application's `index.json` is not in
/// the page cache. Asks `mincore` about a mapping that is never touched,
/// so the question itself causes no read (a page-cache-only `preadv2`
/// would start one).
fn is_cold(app: BorrowedFd<'_>) -> bool {
    let Ok(file) = open_in(app, c"index.json") else {
        return false;
    };
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
    at: Location,
    file: File,
    identity: FileIdentity,
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
            let kept = Kept {
                at: p.at,
                identity: p.identity,
                meta: p.meta,
                bytes,
            };
            Some((p.key, kept))
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
        // Just written, so cached: nothing to do.
        let mut warm = Prefetched::list(dir.path());
        warm.read_ahead_if_cold();
        assert!(warm.is_empty());
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
        let held: usize = got.kept.values().map(|k| k.bytes.len()).sum();
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

    #[test]
    fn cold_check_never_reads_and_skips_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let app = File::open(dir.path()).unwrap();
        let app = std::os::fd::AsFd::as_fd(&app);
        assert!(!is_cold(app), "no index.json");
        std::fs::write(dir.path().join("index.json"), b"").unwrap();
        assert!(!is_cold(app), "empty");
        std::fs::remove_file(dir.path().join("index.json")).unwrap();
        std::fs::create_dir(dir.path().join("index.json")).unwrap();
        assert!(!is_cold(app), "a directory");
        std::fs::remove_dir(dir.path().join("index.json")).unwrap();
        std::fs::write(dir.path().join("real"), b"{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("index.json")).unwrap();
        assert!(!is_cold(app), "a symbolic link");
        std::fs::remove_file(dir.path().join("index.json")).unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        assert!(!is_cold(app), "a file just written is in the page cache");
    }
}
