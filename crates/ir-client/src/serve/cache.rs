//! `--cache DIR`: verified blobs and manifests by digest, bounded by size
//! with least-recently-used eviction. The directory is 0700, files 0600;
//! a file is opened only as a regular file reached without a symlink, and
//! hashed again before it is served, unless it is one this process verified
//! itself and still holds open, unchanged since (same inode, size and
//! times): a repeated pull is served without hashing again.

use ir_oci::Digest;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most entries the cache keeps, whatever their sizes.
const MAX_ENTRIES: usize = 100_000;
/// Prefix of files being written.
const TMP_PREFIX: &str = ".tmp-";
/// Verified files held open, at most.
const MAX_HELD: usize = 64;

/// One cached file.
struct Entry {
    size: u64,
    used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    total: u64,
    tick: u64,
}

/// The cache.
pub(crate) struct Cache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    flights: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Files this process verified, held open (by file name).
    held: Mutex<HashMap<String, Held>>,
}

/// A cached file this process verified, held open.
struct Held {
    file: Arc<File>,
    id: FileIdentity,
    size: u64,
    used: u64,
}

/// Why the cache directory cannot be used.
fn dir_error(dir: &Path, why: impl std::fmt::Display) -> crate::Error {
    crate::Error::Io {
        path: dir.display().to_string(),
        source: std::io::Error::other(format!("--cache: {why}")),
    }
}

/// What tells a file from a changed one: device, inode, size, times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    pub(crate) fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The file name of `digest`: `<alg>-<hex>`.
fn file_name(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm(), digest.hex())
}

/// The digest a cache file name stands for.
fn digest_of_name(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::parse_parts(alg, hex).ok()
}

/// Opens `path` as a regular file reached without a symlink.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<(File, FileIdentity)> {
    let before = std::fs::symlink_metadata(path)?;
    if !before.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let id = FileIdentity::of(&meta);
    let was = FileIdentity::of(&before);
    if (id.dev, id.ino) != (was.dev, was.ino) {
        return Err(std::io::Error::other("file replaced while opened"));
    }
    Ok((file, id))
}

/// Hashes an open file from its start (at most `size` bytes).
fn hash_file(file: &mut File, digest: &Digest) -> std::io::Result<(Digest, u64)> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut hasher = digest.algorithm().hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = file.read(&mut buf)?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok((hasher.finish(), n))
}

/// A file being written into the cache.
pub(crate) struct Pending {
    file: tempfile::NamedTempFile,
    digest: Digest,
}

impl Pending {
    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }
}

/// A verified file, open (read it at offsets: the handle may be shared),
/// and what it was when it was verified.
pub(crate) struct Verified {
    pub(crate) file: Arc<File>,
    pub(crate) size: u64,
    pub(crate) id: FileIdentity,
}

impl Verified {
    /// Whether the file is still as it was verified.
    pub(crate) fn unchanged(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| FileIdentity::of(&m) == self.id)
    }
}

impl Cache {
    /// Opens (creating it 0700) the cache directory and indexes what it
    /// holds; leftovers of interrupted writes are removed.
    pub(crate) fn open(dir: &Path, limit: u64) -> Result<Self, crate::Error> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => return Err(dir_error(dir, "is a symlink")),
            Ok(m) if !m.is_dir() => return Err(dir_error(dir, "not a directory")),
            Ok(m) => {
                // The directory must be ours.
                if process_uid().is_some_and(|u| u != m.uid()) {
                    return Err(dir_error(dir, "owned by another user"));
                }
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| dir_error(dir, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| dir_error(dir, e))?;
            }
            Err(e) => return Err(dir_error(dir, e)),
        }
        let mut state = State::default();
        for e in std::fs::read_dir(dir).map_err(|e| dir_error(dir, e))? {
            let e = e.map_err(|e| dir_error(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if name.starts_with(TMP_PREFIX) && ft.is_file() {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if !ft.is_file() || digest_of_name(&name).is_none() {
                continue;
            }
            if state.entries.len() >= MAX_ENTRIES {
                break;
            }
            let Ok(m) = e.metadata() else { continue };
            state.total += m.len();
            state.entries.insert(
                name,
                Entry {
                    size: m.len(),
                    used: 0,
                },
            );
        }
        let cache = Self {
            dir: dir.to_path_buf(),
            limit,
            state: Mutex::new(state),
            flights: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        };
        cache.evict(None);
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a file just verified open (the least recently used one is
    /// let go beyond [`MAX_HELD`]).
    fn hold(&self, name: &str, v: &Verified) {
        let used = self.lock().tick;
        let mut h = self.held_lock();
        if h.len() >= MAX_HELD && !h.contains_key(name) {
            if let Some(k) = h.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                h.remove(&k);
            }
        }
        h.insert(
            name.to_string(),
            Held {
                file: v.file.clone(),
                id: v.id,
                size: v.size,
                used,
            },
        );
    }

    /// Removes least-recently-used entries until the cache fits its bound
    /// (never `keep`).
    fn evict(&self, keep: Option<&str>) {
        let mut s = self.lock();
        while s.total > self.limit || s.entries.len() > MAX_ENTRIES {
            let Some(victim) = s
                .entries
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = s.entries.remove(&victim) {
                s.total -= e.size;
            }
            self.held_lock().remove(&victim);
            let _ = std::fs::remove_file(self.dir.join(&victim));
            tracing::debug!(file = victim, "cache: evicted");
        }
    }

    fn forget(&self, name: &str) {
        let mut s = self.lock();
        if let Some(e) = s.entries.remove(name) {
            s.total -= e.size;
        }
        self.held_lock().remove(name);
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Whether `digest` is cached (not verified).
    pub(crate) fn size_of(&self, digest: &Digest) -> Option<u64> {
        self.lock().entries.get(&file_name(digest)).map(|e| e.size)
    }

    /// The cached file of `digest`: one this process verified and holds
    /// open, if unchanged since; else the file hashed again now (and then
    /// held). A file that no longer matches is removed (`None`). Blocking.
    pub(crate) fn verified(&self, digest: &Digest) -> Option<Verified> {
        let name = file_name(digest);
        let tick = {
            let mut s = self.lock();
            s.tick += 1;
            let tick = s.tick;
            s.entries.get_mut(&name)?.used = tick;
            tick
        };
        {
            let mut h = self.held_lock();
            if let Some(e) = h.get_mut(&name) {
                e.used = tick;
                let v = Verified {
                    file: e.file.clone(),
                    size: e.size,
                    id: e.id,
                };
                if v.unchanged() {
                    return Some(v);
                }
                // Changed since it was verified: hashed again from its path.
                h.remove(&name);
            }
        }
        let check = || -> std::io::Result<Verified> {
            let (mut file, id) = open_regular(&self.dir.join(&name))?;
            let (found, size) = hash_file(&mut file, digest)?;
            if found != *digest || size != id.size {
                return Err(std::io::Error::other(format!("content has digest {found}")));
            }
            // Unchanged while it was hashed.
            if FileIdentity::of(&file.metadata()?) != id {
                return Err(std::io::Error::other("changed while it was hashed"));
            }
            Ok(Verified {
                file: Arc::new(file),
                size,
                id,
            })
        };
        match check() {
            Ok(v) => {
                self.hold(&name, &v);
                Some(v)
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "cache: a cached file does not verify; removed");
                self.forget(&name);
                None
            }
        }
    }

    /// A new file for `digest`, 0600 in the cache directory.
    pub(crate) fn begin(&self, digest: &Digest) -> std::io::Result<Pending> {
        let file = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.dir)?;
        Ok(Pending {
            file,
            digest: digest.clone(),
        })
    }

    /// Keeps a file whose content the caller verified against its digest;
    /// returns it open (and holds it open).
    pub(crate) fn commit(&self, pending: Pending) -> std::io::Result<Verified> {
        let name = file_name(&pending.digest);
        let file = pending
            .file
            .persist(self.dir.join(&name))
            .map_err(|e| e.error)?;
        // After the rename, which may change the file's ctime.
        let id = FileIdentity::of(&file.metadata()?);
        let size = id.size;
        let v = Verified {
            file: Arc::new(file),
            size,
            id,
        };
        {
            let mut s = self.lock();
            s.tick += 1;
            let used = s.tick;
            if let Some(old) = s.entries.insert(name.clone(), Entry { size, used }) {
                s.total -= old.size;
            }
            s.total += size;
        }
        self.hold(&name, &v);
        self.evict(Some(&name));
        if size > self.limit {
            self.forget(&name);
        }
        Ok(v)
    }

    /// Keeps verified bytes (a manifest).
    pub(crate) fn put(&self, digest: &Digest, bytes: &[u8]) {
        let r = self.begin(digest).and_then(|mut p| {
            p.write(bytes)?;
            self.commit(p)
        });
        if let Err(e) = r {
            tracing::warn!(%digest, error = %e, "cache: not kept");
        }
    }

    /// A cached small file (a manifest), verified; at most `max` bytes.
    pub(crate) fn read(&self, digest: &Digest, max: u64) -> Option<Vec<u8>> {
        if self.size_of(digest)? > max {
            return None;
        }
        use std::os::unix::fs::FileExt;
        let v = self.verified(digest)?;
        if v.size > max {
            return None;
        }
        let mut out = vec![0u8; v.size as usize];
        v.file.read_exact_at(&mut out, 0).ok()?;
        v.unchanged().then_some(out)
    }

    /// The single-flight lock of `digest`: who holds it downloads.
    pub(crate) fn flight(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() > 10_000 {
            f.retain(|_, m| Arc::strong_count(m) > 1);
        }
        f.entry(digest.clone()).or_default().clone()
    }

    /// Drops the single-flight lock of `digest` once nobody waits on it.
    pub(crate) fn land(&self, digest: &Digest) {
        let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if f.get(digest).is_some_and(|m| Arc::strong_count(m) <= 2) {
            f.remove(digest);
        }
    }
}

/// The process's user id, from `/proc/self` (no libc call).
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}
