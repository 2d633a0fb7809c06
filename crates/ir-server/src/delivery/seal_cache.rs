//! The seals of the blobs served so far (see
//! [`crate::delivery::chunk_seal`]), bounded in memory.
//!
//! The first whole GET of a large blob hashes it with its digest algorithm
//! as it streams and builds its seal from the same bytes; once the digest
//! matched, the seal is kept here, and every later GET of the blob, whole or
//! a range, is checked chunk by chunk against it. Seals are keyed by digest
//! *and* file identity, so a seal never outlives the file it describes, and
//! belong to one catalog snapshot, so a reload starts afresh.
//!
//! Memory is bounded by a budget that counts finished seals and the ones
//! being built: a blob's seal is built by one stream at a time, and only if
//! its full size fits in what is left. When the budget is spent, blobs are
//! still served, with the whole-blob hash as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ir_oci::{Digest, FileIdentity};

use crate::delivery::chunk_seal::{seal_bytes, Seal, SealBuilder, SealKey, SEAL_CHUNK};

/// Default budget: 64 MiB of seals covers 1 TiB of served blobs.
pub const DEFAULT_BUDGET: u64 = 64 << 20;

/// What one seal costs besides its tags: its map entry (digest, file
/// identity, state), the shared `Seal` and the allocator's rounding.
/// Counted so that many small sealed blobs cannot exceed the budget.
pub const ENTRY_OVERHEAD: u64 = 256;

type Key = (Digest, FileIdentity);

fn key_of(digest: &Digest, identity: &FileIdentity) -> Key {
    (digest.clone(), *identity)
}

enum Entry {
    Building,
    Ready(Arc<Seal>),
}

#[derive(Default)]
struct Inner {
    used: u64,
    entries: HashMap<Key, Entry>,
}

/// Seals of one catalog snapshot.
pub struct Seals {
    budget: u64,
    /// The key of this snapshot's seals (`None`, and no seals, if the OS
    /// gave no randomness).
    key: Option<Arc<SealKey>>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Seals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seals(budget {} bytes)", self.budget)
    }
}

impl Default for Seals {
    fn default() -> Self {
        Seals::new(DEFAULT_BUDGET)
    }
}

/// What to do for a whole GET of a blob.
pub enum Lookup {
    /// Check each chunk against this seal.
    Sealed(Arc<Seal>),
    /// Hash the whole blob, and build its seal on the way.
    Build(Box<SealTicket>),
    /// Hash the whole blob only (small blob, budget spent, or another
    /// stream is building the seal).
    HashOnly,
}

impl Seals {
    /// A store that holds at most `budget` bytes of seals (0: none).
    pub fn new(budget: u64) -> Self {
        let key = match SealKey::random() {
            Ok(k) => Some(Arc::new(k)),
            Err(_) => {
                tracing::warn!("no randomness for a seal key: every download is hashed whole");
                None
            }
        };
        Seals {
            budget,
            key,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is left consistent at every step, so a panic elsewhere
        // while it was held does not make it unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seal of a blob, if one was built.
    pub fn get(&self, digest: &Digest, identity: &FileIdentity) -> Option<Arc<Seal>> {
        match self.lock().entries.get(&key_of(digest, identity)) {
            Some(Entry::Ready(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// For a whole GET: the seal, or a ticket to build it. Blobs of one
    /// chunk or less are never sealed: hashing them whole is as cheap.
    pub fn lookup(self: &Arc<Self>, digest: &Digest, identity: &FileIdentity) -> Lookup {
        if identity.size <= SEAL_CHUNK as u64 {
            return Lookup::HashOnly;
        }
        let cost = seal_bytes(identity.size) + ENTRY_OVERHEAD;
        let mut inner = self.lock();
        match inner.entries.get(&key_of(digest, identity)) {
            Some(Entry::Ready(s)) => return Lookup::Sealed(s.clone()),
            Some(Entry::Building) => return Lookup::HashOnly,
            None => {}
        }
        let Some(key) = &self.key else {
            return Lookup::HashOnly;
        };
        if inner.used.saturating_add(cost) > self.budget {
            return Lookup::HashOnly;
        }
        let Some(builder) = SealBuilder::new(key.clone(), identity.size) else {
            return Lookup::HashOnly;
        };
        inner.used += cost;
        inner
            .entries
            .insert(key_of(digest, identity), Entry::Building);
        Lookup::Build(Box::new(SealTicket {
            seals: self.clone(),
            key: Some((digest.clone(), *identity)),
            cost,
            builder: Some(builder),
        }))
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes reserved or held.
    pub fn used(&self) -> u64 {
        self.lock().used
    }
}

/// The right to build one blob's seal: feed it the bytes that are hashed
/// to the digest, and [`SealTicket::publish`] it once the digest matched.
/// Dropped unpublished (digest mismatch, client gone), it frees its place.
pub struct SealTicket {
    seals: Arc<Seals>,
    key: Option<Key>,
    cost: u64,
    builder: Option<SealBuilder>,
}

impl SealTicket {
    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(b) = &mut self.builder {
            b.update(bytes);
        }
    }

    /// Keeps the seal. Call only after the whole blob matched its digest.
    pub fn publish(mut self) {
        let Some(key) = self.key.take() else { return };
        let seal = self.builder.take().and_then(SealBuilder::finish);
        let mut inner = self.seals.lock();
        match seal {
            Some(seal) => {
                tracing::debug!(digest = %key.0, bytes = seal.heap_bytes(), "blob sealed");
                inner.entries.insert(key, Entry::Ready(Arc::new(seal)));
            }
            None => {
                inner.entries.remove(&key);
                inner.used -= self.cost;
            }
        }
    }
}

impl Drop for SealTicket {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut inner = self.seals.lock();
            inner.entries.remove(&key);
            inner.used -= self.cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir_oci::Algorithm;

    fn identity(size: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: size,
            size,
            mtime: 0,
            ctime: 0,
            mtime_nsec: 0,
            ctime_nsec: 0,
        }
    }

    fn feed_all(t: &mut SealTicket, size: u64) {
        let bytes = vec![7u8; size as usize];
        t.update(&bytes);
    }

    #[test]
    fn builds_once_then_serves_the_seal() {
        let seals = Arc::new(Seals::new(1 << 20));
        let d = Digest::of_bytes(Algorithm::Sha256, b"x");
        let id = identity(3 * SEAL_CHUNK as u64);
        let Lookup::Build(mut t) = seals.lookup(&d, &id) else {
            panic!("first lookup builds")
        };
        // A second stream meanwhile only hashes.
        assert!(matches!(seals.lookup(&d, &id), Lookup::HashOnly));
        feed_all(&mut t, id.size);
        t.publish();
        assert!(matches!(seals.lookup(&d, &id), Lookup::Sealed(_)));
        assert!(seals.get(&d, &id).is_some());
        assert_eq!(seals.used(), 48 + ENTRY_OVERHEAD);
        // Another file with the same digest has no seal.
        let other = FileIdentity { ino: 99, ..id };
        assert!(seals.get(&d, &other).is_none());
    }

    #[test]
    fn abandoned_or_short_builds_free_their_place() {
        let seals = Arc::new(Seals::new(1 << 20));
        let d = Digest::of_bytes(Algorithm::Sha256, b"y");
        let id = identity(2 * SEAL_CHUNK as u64);
        let Lookup::Build(t) = seals.lookup(&d, &id) else {
            panic!()
        };
        drop(t);
        assert_eq!(seals.used(), 0);
        let Lookup::Build(mut t) = seals.lookup(&d, &id) else {
            panic!("may build again")
        };
        t.update(&[0; 10]);
        t.publish();
        assert_eq!(seals.used(), 0);
        assert!(seals.get(&d, &id).is_none());
    }

    #[test]
    fn budget_and_small_blobs() {
        let seals = Arc::new(Seals::new(32 + ENTRY_OVERHEAD));
        let d = Digest::of_bytes(Algorithm::Sha256, b"z");
        assert!(matches!(
            seals.lookup(&d, &identity(SEAL_CHUNK as u64)),
            Lookup::HashOnly
        ));
        // 3 chunks = 48 bytes of tags: over the budget.
        assert!(matches!(
            seals.lookup(&d, &identity(3 * SEAL_CHUNK as u64)),
            Lookup::HashOnly
        ));
        let Lookup::Build(_t) = seals.lookup(&d, &identity(2 * SEAL_CHUNK as u64)) else {
            panic!("2 chunks fit")
        };
        assert_eq!(seals.used(), 32 + ENTRY_OVERHEAD);
        let none = Arc::new(Seals::new(0));
        assert!(matches!(
            none.lookup(&d, &identity(2 * SEAL_CHUNK as u64)),
            Lookup::HashOnly
        ));
    }
}
