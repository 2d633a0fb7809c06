//! Verified copies of large blobs in memory, sent from there instead of
//! being read from disk and checked again on every download.
//!
//! Why: a blob on disk lives in page-cache pages of a file that whoever can
//! write the root may change at any time, so every download copies each
//! chunk into private memory and checks it there (its digest, or its seal:
//! see [`crate::delivery::stream`]) before the socket
//! copies it once more. For large blobs that first copy is a fifth of the
//! CPU of a download (docs/benchmarks.md). This cache keeps the private,
//! checked copy instead, once per blob:
//!
//! - **What goes in**: the very bytes a whole download hashed to the blob's
//!   digest (or checked against its seal), written as they stream, and kept
//!   only once the whole blob matched. A mismatch, an error or a client
//!   that left discards the copy.
//! - **Where**: one `memfd` per blob, sealed once filled (`F_SEAL_WRITE`,
//!   `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL`), so that nothing, this
//!   process included, can change or truncate it afterwards. It is mapped
//!   read-only while responses send from it, and unmapped once idle for a
//!   while ([`BlobCache::unmap_idle`]): idle, the cache is shared memory
//!   charged to the server's cgroup, not resident set size.
//! - **Bounds**: at most `budget` bytes (page-rounded sizes; copies being
//!   filled count). To make room, idle copies go, least recently used
//!   first; a copy a response is sending from is never evicted. One that a
//!   reload dropped counts until its last response ends.
//! - **Keys**: the digest alone. Bytes that hashed to a digest are that blob
//!   in every application; which blob a request may have (application,
//!   withdrawn or not) is still decided by the handler, the cache only says
//!   where its bytes come from.
//!
//! Linux only in spirit: `memfd_create` and file seals are Linux APIs, as
//! are the other system calls this server relies on.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ir_oci::Digest;

/// Blobs this size or smaller are not cached: they are read and hashed
/// whole on every request, which costs about as much as mapping a copy.
pub const MIN_CACHED: u64 = crate::delivery::chunk_seal::SEAL_CHUNK as u64 + 1;

/// The default budget's share of the memory available to the server.
const DEFAULT_SHARE: u64 = 8;
/// The default budget's ceiling.
const DEFAULT_MAX: u64 = 1 << 30;

/// The default budget: an eighth of the memory available to the server
/// (physical memory, or its cgroup's `memory.max` if lower), at most 1 GiB.
pub fn default_budget() -> u64 {
    (crate::process::memory::available_bytes() / DEFAULT_SHARE).min(DEFAULT_MAX)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

enum Slot {
    /// A download is writing the copy; no other may start one.
    Filling,
    /// Ready, with the clock value of its last use.
    Ready(Arc<CachedBlob>, u64),
}

#[derive(Default)]
struct Inner {
    /// Bytes held by ready copies still alive (in the map or in use by a
    /// response) plus bytes reserved by copies being filled.
    used: u64,
    /// Use counter for least-recently-used eviction.
    clock: u64,
    slots: HashMap<Digest, Slot>,
}

/// The cache. Shared by every catalog snapshot (its keys are digests, not
/// files), and pruned to the served blobs on reload.
pub struct BlobCache {
    budget: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobCache(budget {} bytes)", self.budget)
    }
}

impl Default for BlobCache {
    /// No cache (budget 0).
    fn default() -> Self {
        BlobCache {
            budget: 0,
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl BlobCache {
    /// A cache of at most `budget` bytes (0: off).
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(BlobCache {
            budget,
            ..BlobCache::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every step leaves the map consistent, so a panic elsewhere while
        // it was held does not make it unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held or reserved.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// The verified copy of a blob, if there is one.
    pub fn get(&self, digest: &Digest) -> Option<Arc<CachedBlob>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        match inner.slots.get_mut(digest) {
            Some(Slot::Ready(blob, used)) => {
                *used = now;
                Some(blob.clone())
            }
            _ => None,
        }
    }

    /// The right to fill the copy of a blob of `size` bytes, if it is large
    /// enough to be worth it, fits in the budget (after evicting the least
    /// recently used copies if need be), and no copy exists or is being
    /// filled.
    pub fn reserve(self: &Arc<Self>, digest: &Digest, size: u64) -> Option<FillTicket> {
        if size < MIN_CACHED {
            return None;
        }
        let page = page_size();
        let cost = size.div_ceil(page).checked_mul(page)?;
        if cost > self.budget {
            return None;
        }
        let evicted = {
            let mut inner = self.lock();
            if inner.slots.contains_key(digest) {
                return None;
            }
            // Evict idle copies, oldest first, until the new one fits. A
            // copy a response is sending from would free nothing yet: it
            // stays (and it is evidently in demand).
            let mut idle: Vec<(u64, Digest, u64)> = inner
                .slots
                .iter()
                .filter_map(|(d, s)| match s {
                    Slot::Ready(blob, used) if Arc::strong_count(blob) == 1 => {
                        Some((*used, d.clone(), blob.cost.load(Ordering::Relaxed)))
                    }
                    _ => None,
                })
                .collect();
            idle.sort_unstable_by_key(|(used, _, _)| *used);
            let mut freed = 0u64;
            let mut victims = Vec::new();
            for (_, d, c) in idle {
                if inner.used - freed + cost <= self.budget {
                    break;
                }
                freed += c;
                victims.push(d);
            }
            if inner.used - freed + cost > self.budget {
                return None;
            }
            let mut evicted = Vec::with_capacity(victims.len());
            for d in victims {
                if let Some(Slot::Ready(blob, _)) = inner.slots.remove(&d) {
                    tracing::debug!(digest = %d, "blob copy evicted from memory");
                    evicted.push(blob);
                }
            }
            // Their bytes are handed over now; their drop (below, outside
            // the lock) finds the cache gone from their accounting.
            inner.used = inner.used - freed + cost;
            inner.slots.insert(digest.clone(), Slot::Filling);
            evicted
        };
        for blob in evicted {
            blob.forget_cost();
        }
        // From here on, dropping the ticket undoes the reservation.
        let mut ticket = FillTicket {
            cache: self.clone(),
            digest: Some(digest.clone()),
            file: None,
            size,
            cost,
            written: 0,
        };
        match new_memfd(size) {
            Ok(file) => {
                ticket.file = Some(file);
                Some(ticket)
            }
            Err(e) => {
                tracing::debug!("no memory file for a blob copy: {e}");
                None
            }
        }
    }

    /// Unmaps the copies that no response used for `idle`. Run now and then
    /// (the binary: every few seconds), so that a copy pulled back to back
    /// stays mapped (mapping and unmapping 256 MiB costs a sixth of sending
    /// it) while an idle one holds no resident memory.
    pub fn unmap_idle(&self, idle: Duration) {
        let ready: Vec<Arc<CachedBlob>> = {
            let inner = self.lock();
            inner
                .slots
                .values()
                .filter_map(|s| match s {
                    Slot::Ready(blob, _) => Some(blob.clone()),
                    Slot::Filling => None,
                })
                .collect()
        };
        let now = Instant::now();
        for blob in &ready {
            blob.unmap_if_idle(now, idle);
        }
    }

    /// The digests of the blobs with a ready copy.
    pub fn digests(&self) -> Vec<Digest> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Ready(..)))
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Drops the copies of blobs that `keep` says are no longer served (a
    /// reload removed them); copies being filled finish as usual.
    pub fn retain(&self, keep: impl Fn(&Digest) -> bool) {
        let mut dropped = Vec::new();
        {
            let mut inner = self.lock();
            inner.slots.retain(|d, s| match s {
                Slot::Ready(blob, _) if !keep(d) => {
                    dropped.push(blob.clone());
                    false
                }
                _ => true,
            });
        }
        // Outside the lock: each drop gives its bytes back under it.
        drop(dropped);
    }

    fn release(&self, cost: u64) {
        let mut inner = self.lock();
        inner.used = inner.used.saturating_sub(cost);
    }
}

/// An anonymous memory file that can be sealed, `size` bytes long.
fn new_memfd(size: u64) -> std::io::Result<File> {
    // SAFETY: a valid NUL-terminated name and flags; the returned
    // descriptor is owned by the `File` below and nowhere else.
    let fd = unsafe {
        libc::memfd_create(
            c"ir-server-blob".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    Ok(file)
}

/// The right to fill one blob's copy: give it every byte of the blob, in
/// order, as it is checked, and [`FillTicket::publish`] it once the whole
/// blob matched. Dropped unpublished, it frees its place.
pub struct FillTicket {
    cache: Arc<BlobCache>,
    /// `None` once published or given up.
    digest: Option<Digest>,
    /// `None` after a write failed: the copy is given up.
    file: Option<File>,
    size: u64,
    cost: u64,
    written: u64,
}

impl FillTicket {
    /// Appends the next checked bytes of the blob.
    pub fn write(&mut self, bytes: &[u8]) {
        let Some(file) = &self.file else { return };
        let fits = self.written + bytes.len() as u64 <= self.size;
        match file.write_all_at(bytes, self.written) {
            Ok(()) if fits => self.written += bytes.len() as u64,
            Ok(()) => self.file = None,
            Err(e) => {
                tracing::debug!("writing a blob copy to memory failed: {e}");
                self.file = None;
            }
        }
    }

    /// Keeps the copy. Call only after the whole blob was checked (its
    /// digest matched, or every chunk matched its seal).
    pub fn publish(mut self) {
        let (Some(digest), Some(file)) = (self.digest.clone(), self.file.take()) else {
            return;
        };
        if self.written != self.size {
            return;
        }
        if let Err(e) = seal(&file, self.size) {
            tracing::debug!("sealing a blob copy failed: {e}");
            return;
        }
        let blob = Arc::new(CachedBlob {
            file,
            size: self.size,
            cost: AtomicU64::new(self.cost),
            cache: Arc::downgrade(&self.cache),
            mapped: Mutex::new(MapState {
                mapping: None,
                last_used: Instant::now(),
            }),
        });
        // The reservation now belongs to `blob`.
        self.digest = None;
        let mut inner = self.cache.lock();
        inner.clock += 1;
        let now = inner.clock;
        tracing::debug!(%digest, bytes = self.size, "blob copy kept in memory");
        inner.slots.insert(digest, Slot::Ready(blob, now));
    }
}

impl Drop for FillTicket {
    fn drop(&mut self) {
        if let Some(digest) = self.digest.take() {
            let mut inner = self.cache.lock();
            inner.slots.remove(&digest);
            inner.used = inner.used.saturating_sub(self.cost);
        }
    }
}

/// Seals a filled memory file against any change and checks its size.
fn seal(file: &File, size: u64) -> std::io::Result<()> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a descriptor we own, with an int argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if file.metadata()?.len() != size {
        return Err(std::io::Error::other("memory file size changed"));
    }
    Ok(())
}

/// One blob's sealed, verified copy.
pub struct CachedBlob {
    file: File,
    size: u64,
    /// Bytes it counts in the budget; 0 once eviction took them back.
    cost: AtomicU64,
    cache: Weak<BlobCache>,
    /// The mapping responses send from, while the copy is in use.
    mapped: Mutex<MapState>,
}

/// Whether a copy is mapped, and when it was last used.
struct MapState {
    mapping: Option<Arc<Mapping>>,
    last_used: Instant,
}

impl std::fmt::Debug for CachedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedBlob({} bytes)", self.size)
    }
}

impl CachedBlob {
    /// Stops counting this copy in the budget (eviction already did).
    fn forget_cost(&self) {
        self.cost.store(0, Ordering::Relaxed);
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes `start..end` of the blob, from a read-only mapping of the
    /// whole copy that lives at least as long as the returned `Bytes` (or
    /// any slice of it). Responses share one mapping; it is kept between
    /// responses until [`BlobCache::unmap_idle`] finds it unused.
    pub fn bytes(self: &Arc<Self>, start: u64, end: u64) -> std::io::Result<Bytes> {
        if start > end || end > self.size {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        if start == end {
            return Ok(Bytes::new());
        }
        let shared = SharedMapping {
            mapping: self.mapping()?,
            _blob: self.clone(),
        };
        // In range: `end <= size`, the mapping's length, which fits usize.
        Ok(Bytes::from_owner(shared).slice(start as usize..end as usize))
    }

    /// The mapping, made if there is none.
    fn mapping(&self) -> std::io::Result<Arc<Mapping>> {
        let mut state = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        state.last_used = Instant::now();
        if let Some(m) = &state.mapping {
            return Ok(m.clone());
        }
        let len = usize::try_from(self.size)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh read-only shared mapping of the whole of a sealed
        // memory file: the file can neither shrink (no SIGBUS) nor change
        // (the bytes stay what was checked), and the mapping is unmapped
        // exactly once, by `Mapping::drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        let m = Arc::new(Mapping { ptr, len });
        state.mapping = Some(m.clone());
        Ok(m)
    }

    /// Drops the mapping if no response uses it and none did for `idle`.
    fn unmap_if_idle(&self, now: Instant, idle: Duration) {
        let mut state = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        let unused = state
            .mapping
            .as_ref()
            .is_some_and(|m| Arc::strong_count(m) == 1);
        if unused && now.saturating_duration_since(state.last_used) >= idle {
            state.mapping = None;
        }
    }

    /// True while the copy is mapped.
    pub fn is_mapped(&self) -> bool {
        let state = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        state.mapping.is_some()
    }
}

impl Drop for CachedBlob {
    fn drop(&mut self) {
        let cost = self.cost.swap(0, Ordering::Relaxed);
        if cost > 0 {
            if let Some(cache) = self.cache.upgrade() {
                cache.release(cost);
            }
        }
    }
}

/// A read-only mapping of a whole [`CachedBlob`]. Its pages stay valid
/// after the copy's file is closed; the copy's budget is held by the
/// responses' [`SharedMapping`]s.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only memory of a sealed file: no thread can
// write it, so sharing and sending the pointer is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// A response's share of a [`Mapping`] (what its `Bytes` own), which keeps
/// the copy, and so its place in the budget, alive.
struct SharedMapping {
    mapping: Arc<Mapping>,
    _blob: Arc<CachedBlob>,
}

impl AsRef<[u8]> for SharedMapping {
    fn as_ref(&self) -> &[u8] {
        self.mapping.as_ref().as_ref()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `CachedBlob::mapping`,
        // once; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir_oci::Algorithm;

    fn digest(tag: &[u8]) -> Digest {
        Digest::of_bytes(Algorithm::Sha256, tag)
    }

    fn pattern(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    fn fill(cache: &Arc<BlobCache>, d: &Digest, bytes: &[u8]) -> bool {
        let Some(mut t) = cache.reserve(d, bytes.len() as u64) else {
            return false;
        };
        for c in bytes.chunks(100_000) {
            t.write(c);
        }
        t.publish();
        true
    }

    #[test]
    fn a_published_copy_serves_exact_ranges() {
        let cache = BlobCache::new(8 << 20);
        let d = digest(b"a");
        let content = pattern(1_000_003);
        assert!(fill(&cache, &d, &content));
        let blob = cache.get(&d).expect("kept");
        assert_eq!(blob.size(), content.len() as u64);
        for (a, b) in [
            (0, 1_000_003),
            (1, 2),
            (4095, 4097),
            (999_000, 1_000_003),
            (5, 5),
        ] {
            let got = blob.bytes(a, b).unwrap();
            assert_eq!(&got[..], &content[a as usize..b as usize], "{a}..{b}");
        }
        assert!(blob.bytes(0, 1_000_004).is_err());
        assert!(blob.bytes(9, 8).is_err());
    }

    #[test]
    fn a_sealed_copy_cannot_be_changed() {
        let cache = BlobCache::new(8 << 20);
        let d = digest(b"b");
        assert!(fill(&cache, &d, &pattern(300_000)));
        let blob = cache.get(&d).unwrap();
        assert!(blob.file.write_all_at(b"x", 0).is_err(), "write refused");
        assert!(blob.file.set_len(10).is_err(), "shrink refused");
        assert!(blob.file.set_len(400_000).is_err(), "growth refused");
        // SAFETY: F_GET_SEALS on a descriptor we own.
        let seals = unsafe { libc::fcntl(blob.file.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        assert_ne!(seals & libc::F_SEAL_SEAL, 0);
    }

    #[test]
    fn incomplete_or_abandoned_copies_are_not_kept() {
        let cache = BlobCache::new(8 << 20);
        let d = digest(b"c");
        let mut t = cache.reserve(&d, 500_000).unwrap();
        // Another download meanwhile does not fill a second copy.
        assert!(cache.reserve(&d, 500_000).is_none());
        t.write(&[1; 1000]);
        t.publish();
        assert!(cache.get(&d).is_none());
        assert_eq!(cache.used(), 0);
        let t = cache.reserve(&d, 500_000).unwrap();
        assert!(cache.used() >= 500_000);
        drop(t);
        assert_eq!(cache.used(), 0);
        // More bytes than announced: given up.
        let mut t = cache.reserve(&d, 300_000).unwrap();
        t.write(&[1; 300_000]);
        t.write(&[1; 1]);
        t.publish();
        assert!(cache.get(&d).is_none());
    }

    #[test]
    fn small_blobs_and_the_budget() {
        let cache = BlobCache::new(1 << 20);
        assert!(cache.reserve(&digest(b"s"), MIN_CACHED - 1).is_none());
        assert!(cache.reserve(&digest(b"big"), (1 << 20) + 1).is_none());
        let off = BlobCache::new(0);
        assert!(off.reserve(&digest(b"s"), MIN_CACHED).is_none());
    }

    #[test]
    fn least_recently_used_copies_make_room() {
        let cache = BlobCache::new(1 << 20);
        let (a, b, c) = (digest(b"1"), digest(b"2"), digest(b"3"));
        let size = 400_000;
        assert!(fill(&cache, &a, &pattern(size)));
        assert!(fill(&cache, &b, &pattern(size)));
        // `a` used last: `b` goes.
        assert!(cache.get(&a).is_some());
        assert!(fill(&cache, &c, &pattern(size)));
        assert!(cache.get(&b).is_none());
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some());
        assert!(cache.used() <= cache.budget());
    }

    #[test]
    fn a_copy_being_sent_is_not_evicted() {
        let cache = BlobCache::new(1 << 20);
        let (a, b) = (digest(b"x"), digest(b"y"));
        let size = 600_000;
        assert!(fill(&cache, &a, &pattern(size)));
        let sending = cache.get(&a).unwrap().bytes(0, 10).unwrap();
        // A response sends from `a`: it is not evicted, and there is no
        // room for `b` yet.
        assert!(cache.reserve(&b, size as u64).is_none());
        assert!(cache.get(&a).is_some());
        assert_eq!(&sending[..], &pattern(size)[..10]);
        drop(sending);
        assert!(fill(&cache, &b, &pattern(size)));
        assert!(cache.get(&a).is_none());
        assert!(cache.used() <= cache.budget());
    }

    #[test]
    fn idle_copies_are_unmapped_and_mapped_again_on_use() {
        let cache = BlobCache::new(4 << 20);
        let d = digest(b"m");
        let content = pattern(700_000);
        assert!(fill(&cache, &d, &content));
        let blob = cache.get(&d).unwrap();
        assert!(!blob.is_mapped(), "an unused copy is not mapped");
        let sending = blob.bytes(10, 20).unwrap();
        cache.unmap_idle(Duration::ZERO);
        assert!(blob.is_mapped(), "a response still sends from it");
        drop(sending);
        cache.unmap_idle(Duration::from_secs(3600));
        assert!(blob.is_mapped(), "used recently");
        cache.unmap_idle(Duration::ZERO);
        assert!(!blob.is_mapped());
        assert_eq!(
            &blob.bytes(699_990, 700_000).unwrap()[..],
            &content[699_990..]
        );
    }

    #[test]
    fn retain_drops_copies_no_longer_served() {
        let cache = BlobCache::new(4 << 20);
        let (a, b) = (digest(b"keep"), digest(b"gone"));
        assert!(fill(&cache, &a, &pattern(300_000)));
        assert!(fill(&cache, &b, &pattern(300_000)));
        cache.retain(|d| *d == a);
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none());
        assert!(cache.used() < 2 * 300_000);
    }
}
