//! File access that never follows a symbolic link and never blocks on a
//! FIFO, used for everything the loader reads from an application.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::mapped;
use super::prefetch::Prefetched;
use crate::digest::{Digest, Hasher};
use crate::model::FileIdentity;
use crate::rule::Rule;

/// Read buffer for hashing: large enough to amortise syscalls, small
/// enough that one per worker thread keeps memory bounded.
pub const HASH_BUFFER: usize = 1 << 20;

fn io_rule(e: &io::Error) -> Rule {
    match e.kind() {
        io::ErrorKind::NotFound => Rule::Missing,
        _ if e.raw_os_error() == Some(libc::ELOOP) => Rule::Symlink,
        _ => Rule::Io(e.to_string()),
    }
}

fn kind_name(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Checks that `path` is a real directory, not a symlink to one.
pub fn require_real_dir(path: &Path) -> Result<(), Rule> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_rule(&e))?;
    if meta.file_type().is_symlink() {
        Err(Rule::Symlink)
    } else if !meta.is_dir() {
        Err(Rule::NotADirectory)
    } else {
        Ok(())
    }
}

/// Opens a regular file without following a final symlink and without
/// blocking if it is a FIFO. Returns the file and its metadata (from the
/// open descriptor, so no race between check and use).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), Rule> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            // open(2) fails with ENXIO on a socket: name the file type
            // rather than an opaque I/O error.
            if e.raw_os_error() == Some(libc::ENXIO) {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.is_file() && !meta.file_type().is_symlink() {
                        return Rule::NotRegularFile(kind_name(&meta));
                    }
                }
            }
            io_rule(&e)
        })?;
    let meta = file.metadata().map_err(|e| io_rule(&e))?;
    if !meta.is_file() {
        return Err(Rule::NotRegularFile(kind_name(&meta)));
    }
    Ok((file, meta))
}

/// Opens a blob: a regular file reached without a symlink. Hard links are
/// content like any other (`cp -al`, `rsync --link-dest`, deduplicating
/// stores): the bytes are what is checked, and a change made later through
/// another name changes the identity (ctime) that serving checks.
pub fn open_blob(path: &Path) -> Result<(File, Metadata), Rule> {
    open_regular(path)
}

/// A regular file to read: open, or already read by the read-ahead
/// ([`Prefetched`]), unchanged since.
pub enum Source {
    /// Open for reading.
    File(File),
    /// Its whole contents, read while it had the identity it still has.
    Read(Vec<u8>),
}

/// Like [`open_regular`], taking the file's bytes from `pre` when the
/// read-ahead holds them (then the metadata is the path's `lstat`, which
/// showed it a regular file with the identity it had when read).
pub fn open_regular_from(path: &Path, pre: &mut Prefetched) -> Result<(Source, Metadata), Rule> {
    if let Some((meta, bytes)) = pre.take(path) {
        return Ok((Source::Read(bytes), meta));
    }
    open_regular(path).map(|(file, meta)| (Source::File(file), meta))
}

/// Like [`open_blob`], taking the file's bytes from `pre` when it holds
/// them.
pub fn open_blob_from(path: &Path, pre: &mut Prefetched) -> Result<(Source, Metadata), Rule> {
    open_regular_from(path, pre)
}

/// One linked file's verdict, set once by the thread that hashes it.
type Verdict = OnceLock<Result<(), Rule>>;

/// The verdicts on files with more than one link, by identity and digest,
/// for one load: a blob that several applications share through hard links
/// is hashed once, by whichever reaches it first, while the others wait for
/// its verdict. Files with a single link never touch it.
#[derive(Default)]
pub struct Linked {
    verdicts: Mutex<HashMap<(FileIdentity, Digest), Arc<Verdict>>>,
    reused: AtomicUsize,
}

impl Linked {
    /// How many times a verdict was taken from another name of the file
    /// instead of hashing it again.
    pub fn reused(&self) -> usize {
        self.reused.load(Ordering::Relaxed)
    }

    fn verdict(
        &self,
        identity: FileIdentity,
        digest: &Digest,
        hash: impl FnOnce() -> Result<(), Rule>,
    ) -> Result<(), Rule> {
        let slot = {
            let mut map = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
            map.entry((identity, digest.clone())).or_default().clone()
        };
        let mut hashed_here = false;
        let verdict = slot.get_or_init(|| {
            hashed_here = true;
            hash()
        });
        if !hashed_here {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        verdict.clone()
    }
}

/// Reads a whole small file, refusing anything over `limit` bytes before
/// reading it.
pub fn read_limited(path: &Path, limit: u64, pre: &mut Prefetched) -> Result<Vec<u8>, Rule> {
    let (source, meta) = open_regular_from(path, pre)?;
    read_open_limited(source, &meta, limit)
}

/// Reads a whole file opened with [`open_regular_from`], refusing anything
/// over `limit` bytes before reading it.
pub fn read_open_limited(source: Source, meta: &Metadata, limit: u64) -> Result<Vec<u8>, Rule> {
    if meta.len() > limit {
        return Err(Rule::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let file = match source {
        Source::Read(bytes) => return Ok(bytes),
        Source::File(file) => file,
    };
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // take(limit + 1) so a file that grows after fstat is still bounded.
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_rule(&e))?;
    if buf.len() as u64 > limit {
        return Err(Rule::ChangedDuringVerification);
    }
    Ok(buf)
}

/// Reads a manifest or index blob and checks its size and digest.
pub fn read_verified(
    path: &Path,
    digest: &Digest,
    size: u64,
    limit: u64,
    pre: &mut Prefetched,
) -> Result<Vec<u8>, Rule> {
    let (source, meta) = open_blob_from(path, pre)?;
    if meta.len() != size {
        return Err(Rule::SizeMismatch {
            expected: size,
            actual: meta.len(),
        });
    }
    let bytes = read_open_limited(source, &meta, limit)?;
    check_whole(&bytes, digest, size)?;
    Ok(bytes)
}

/// Checks a whole file's bytes, read after its size was found to be
/// `size`: still that size, and of that digest.
fn check_whole(bytes: &[u8], digest: &Digest, size: u64) -> Result<(), Rule> {
    if bytes.len() as u64 != size {
        return Err(Rule::ChangedDuringVerification);
    }
    expect_digest(Digest::of_bytes(digest.algorithm(), bytes), digest)
}

fn expect_digest(actual: Digest, expected: &Digest) -> Result<(), Rule> {
    if &actual != expected {
        return Err(Rule::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Streams a blob through its hash with the caller's buffer (or hashes
/// the bytes the read-ahead holds for it), checking size and digest, and
/// that the file did not change meanwhile. Returns the identity that the
/// served file must keep.
///
/// A file with several links is hashed once per load and identity
/// (`linked`); its other names take that verdict.
pub fn hash_blob(
    path: &Path,
    digest: &Digest,
    size: u64,
    buf: &mut [u8],
    pre: &mut Prefetched,
    linked: &Linked,
) -> Result<FileIdentity, Rule> {
    let (source, meta) = open_blob_from(path, pre)?;
    if meta.len() != size {
        return Err(Rule::SizeMismatch {
            expected: size,
            actual: meta.len(),
        });
    }
    let before = FileIdentity::of(&meta);
    if meta.nlink() > 1 {
        return linked
            .verdict(before, digest, || {
                hash_open(source, before, digest, size, buf)
            })
            .map(|()| before);
    }
    hash_open(source, before, digest, size, buf).map(|()| before)
}

/// Hashes an open blob whose metadata showed `before`.
fn hash_open(
    source: Source,
    before: FileIdentity,
    digest: &Digest,
    size: u64,
    buf: &mut [u8],
) -> Result<(), Rule> {
    let mut file = match source {
        Source::File(file) => file,
        // Read whole while the file had the identity it still has.
        Source::Read(bytes) => return check_whole(&bytes, digest, size),
    };
    if size > buf.len() as u64 {
        // Only worth a syscall when the file takes several reads.
        advise_sequential(&file);
    }
    let mut hasher: Hasher = digest.algorithm().hasher();
    let mut total = 0u64;
    // Large files are hashed through a map (no copy out of the page cache);
    // whatever could not be mapped is read. Growth or shrinkage after the
    // fstat above shows in the identity checked at the end.
    if size >= mapped::MIN_MAPPED {
        match mapped::hash_file(&file, size, &mut hasher) {
            Ok(hashed) => total = hashed,
            Err(mapped::Fault) => {
                let after = file.metadata().map_err(|e| io_rule(&e))?;
                return Err(if FileIdentity::of(&after) != before {
                    Rule::ChangedDuringVerification
                } else {
                    Rule::Io(
                        "bus error while reading the mapped file (disk error or truncation)".into(),
                    )
                });
            }
        }
        // Read on from there: the rest if a window could not be mapped,
        // else nothing (end of file, as a `read()` of the whole file ends).
        file.seek(io::SeekFrom::Start(total))
            .map_err(|e| io_rule(&e))?;
    }
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_rule(&e)),
        };
        total += n as u64;
        if total > size {
            return Err(Rule::ChangedDuringVerification);
        }
        hasher.update(&buf[..n]);
    }
    let after = file.metadata().map_err(|e| io_rule(&e))?;
    if total != size || FileIdentity::of(&after) != before {
        return Err(Rule::ChangedDuringVerification);
    }
    expect_digest(hasher.finish(), digest)
}

fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // Purely a hint; failure changes nothing.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Opens a verified blob for serving, refusing it unless it is still the
/// very file that was verified (same device, inode, size, mtime and ctime)
/// and still a regular file reached without a symlink.
pub fn open_unchanged(path: &Path, expected: &FileIdentity) -> Result<File, Rule> {
    let (file, meta) = open_blob(path)?;
    if FileIdentity::of(&meta) != *expected {
        return Err(Rule::ChangedDuringVerification);
    }
    Ok(file)
}

/// The file's identity if it is still exactly `expected` (reached without
/// a symlink, a regular file); `None` otherwise.
pub fn still_same(path: &Path, expected: &FileIdentity) -> Option<FileIdentity> {
    let (_, meta) = open_blob(path).ok()?;
    let now = FileIdentity::of(&meta);
    (now == *expected).then_some(now)
}
