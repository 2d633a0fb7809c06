//! Batched reads of an application's small files when the page cache is
//! cold, so that loading a registry of many small files is not bound by
//! one block request per file.
//!
//! Why: the loader reads every file of an application (`index.json`,
//! manifests, configs, small layers) one `read()` at a time, each its own
//! block request. On a VM each request costs about 30 µs of kernel CPU
//! (virtio notification and completion interrupt), which made a cold start
//! of 230,000 small files kernel-bound (docs/benchmarks.md). The files of
//! one application are usually written together and lie next to each other
//! on disk. Reads submitted in one `io_uring` batch are plugged, and the
//! block layer merges adjacent ones into a few large requests: here about
//! one per application instead of one per file. The loader then finds the
//! bytes in the page cache and checks them exactly as before.
//!
//! This is a hint and nothing more: its reads are discarded, nothing it
//! sees is trusted, and any failure (no `io_uring` in a container, a file
//! that vanished, a FIFO planted in the layout) only means the loader reads
//! from the disk itself. Only regular files are read (`O_NOFOLLOW`,
//! `O_NONBLOCK`, checked with `fstat`), at most [`MAX_FILES`] per
//! application and [`MAX_READ`] bytes each.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{opcode, types, IoUring};

/// Files read ahead per application at most.
pub const MAX_FILES: usize = 4096;
/// Bytes read ahead per file at most (larger blobs are read in the
/// hashing phase with the kernel's own read-ahead).
pub const MAX_READ: u64 = 256 << 10;
/// Reads submitted per batch.
const RING_ENTRIES: u32 = 256;

/// Set when `io_uring` cannot be used here (old kernel, seccomp filter,
/// `kernel.io_uring_disabled`): no thread tries again.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

struct Ring {
    ring: IoUring,
    /// Every read of a batch lands here: the bytes are never looked at,
    /// only the page cache they fill matters, so the reads may overwrite
    /// each other. Never freed while a read may be in flight.
    scratch: Box<[u8]>,
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// Reads ahead the small files of the application at `dir` if its
/// `index.json` is not in the page cache. Returns the number of files
/// read ahead (0 when warm, unavailable, or nothing to read).
pub fn application(dir: &Path) -> usize {
    if UNAVAILABLE.load(Ordering::Relaxed) || !is_cold(&dir.join("index.json")) {
        return 0;
    }
    read_ahead(dir)
}

/// Reads ahead the small files of the layout at `dir`, cold or not.
fn read_ahead(dir: &Path) -> usize {
    let files = small_files(dir);
    if files.is_empty() {
        return 0;
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
                    return 0;
                }
            }
        }
        let Some(ring) = slot.as_mut() else { return 0 };
        let mut done = 0;
        let mut failed = None;
        for batch in files.chunks(RING_ENTRIES as usize) {
            if let Err(e) = read_batch(ring, batch) {
                failed = Some(e);
                break;
            }
            done += batch.len();
        }
        if let Some(e) = failed {
            // Reads may still be in flight into `scratch` and on these
            // descriptors: keep the ring, its buffer and the files alive
            // for the life of the process rather than free what the kernel
            // may still use.
            tracing::debug!("read-ahead failed, disabled on this thread: {e}");
            if let Some(broken) = slot.take() {
                std::mem::forget(broken);
            }
            std::mem::forget(files);
        }
        done
    })
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

/// The regular files of the layout at `dir` worth reading ahead, open, with
/// their sizes, in inode order (files written together have neighbouring
/// inodes and, usually, neighbouring blocks).
fn small_files(dir: &Path) -> Vec<(File, u64)> {
    let mut paths = vec![dir.join("index.json")];
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
                    paths.push(e.path());
                }
            }
        }
    }
    let mut files: Vec<(u64, File, u64)> = paths
        .iter()
        .filter_map(|p| {
            let file = open(p).ok()?;
            let meta = file.metadata().ok()?;
            (meta.is_file() && meta.len() > 0).then(|| (meta.ino(), file, meta.len().min(MAX_READ)))
        })
        .collect();
    files.sort_unstable_by_key(|f| f.0);
    files.into_iter().map(|(_, f, len)| (f, len)).collect()
}

/// Submits one read per file and waits for all of them.
fn read_batch(ring: &mut Ring, batch: &[(File, u64)]) -> std::io::Result<()> {
    let scratch = ring.scratch.as_mut_ptr();
    {
        let mut sq = ring.ring.submission();
        for (i, (file, len)) in batch.iter().enumerate() {
            let read = opcode::Read::new(types::Fd(file.as_raw_fd()), scratch, *len as u32)
                .offset(0)
                .build()
                .user_data(i as u64);
            // SAFETY: the descriptor and `scratch` (MAX_READ bytes, `len`
            // <= MAX_READ) stay valid until every read of the batch has
            // completed: this function waits for all of them, and on error
            // the caller leaks both rather than free them.
            unsafe { sq.push(&read) }
                .map_err(|_| std::io::Error::other("submission queue full"))?;
        }
    }
    let mut left = batch.len();
    while left > 0 {
        match ring.ring.submit_and_wait(left) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Errors of single reads (a file truncated meanwhile) do not
        // matter: the loader will see for itself.
        left -= ring.ring.completion().count();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_only_and_never_fails() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        std::fs::write(blobs.join("a"), vec![1u8; 5000]).unwrap();
        std::fs::write(blobs.join("empty"), b"").unwrap();
        std::fs::write(blobs.join("big"), vec![2u8; MAX_READ as usize + 1]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", blobs.join("link")).unwrap();
        let fifo = blobs.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(blobs.join("subdir")).unwrap();

        let files = small_files(dir.path());
        let sizes: Vec<u64> = files.iter().map(|f| f.1).collect();
        // index.json, "a" and "big" (capped); not the empty file, the
        // symbolic link, the FIFO (never opened blocking) or the directory.
        assert_eq!(files.len(), 3, "{sizes:?}");
        assert!(sizes.contains(&2) && sizes.contains(&5000) && sizes.contains(&MAX_READ));

        // All three are read in one batch (unless io_uring is unavailable
        // here, e.g. under a seccomp filter: then nothing is, and nothing
        // fails).
        let n = read_ahead(dir.path());
        assert!(
            n == 3 || (n == 0 && UNAVAILABLE.load(Ordering::Relaxed)),
            "{n}"
        );
        assert_eq!(read_ahead(&dir.path().join("missing")), 0);
        // Just written, so cached: nothing to do.
        assert_eq!(application(dir.path()), 0);
    }

    #[test]
    fn blobs_symlinked_elsewhere_are_not_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("sha256")).unwrap();
        std::fs::write(elsewhere.path().join("sha256/secret"), b"x").unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("blobs")).unwrap();
        let files = small_files(dir.path());
        assert_eq!(files.len(), 1, "only index.json");
        // An algorithm directory that is a symlink is skipped too.
        std::fs::remove_file(dir.path().join("blobs")).unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("sha256"),
            dir.path().join("blobs/sha256"),
        )
        .unwrap();
        assert_eq!(small_files(dir.path()).len(), 1, "only index.json");
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
