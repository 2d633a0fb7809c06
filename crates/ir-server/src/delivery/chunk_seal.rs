//! Chunk seals: per-chunk authentication tags of a blob whose whole content
//! already matched its OCI digest, so that later reads can be checked chunk
//! by chunk instead of re-hashing the whole blob with the (slow) digest
//! algorithm.
//!
//! Why: re-hashing every byte sent with SHA-256 costs about 0.55 s of a
//! core per GiB here and capped big downloads well below what the disk and
//! network allow. A seal is built once, from the very bytes that were
//! hashed to the blob's digest, and holds a 16-byte tag per [`SEAL_CHUNK`]
//! (1/16384 of the blob's size). Checking a chunk against its tag costs a
//! tenth of SHA-256, checks every chunk *before* any of it is sent rather
//! than the whole blob after the fact, and lets a byte range be checked
//! without reading the whole blob.
//!
//! The tag is GMAC (AES-256-GCM over no plaintext, the chunk as additional
//! data) under a key drawn from the OS at random for each [`SealKey`] and
//! never written anywhere, with a nonce unique to the seal and the chunk.
//! Chosen because it is by far the fastest authenticator available here:
//! aws-lc (already linked for TLS) runs it with VAES/VPCLMULQDQ several
//! times faster than BLAKE3 or SHA-256 (`cargo bench -p ir-server --bench
//! hot` measures it; docs/benchmarks.md has the numbers). Soundness:
//! whoever changes a blob file does not know the key and never sees a tag
//! (they stay in the server's memory), so a changed chunk passes only if it
//! hits a GHASH collision under an unknown key: probability at most
//! (chunk length in 16-byte blocks) / 2^128, about 2^-114 per attempt, and
//! every failed attempt withdraws the blob.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// The sealed unit. Chunk `i` covers bytes `i * SEAL_CHUNK ..` up to the
/// next chunk or the end of the blob.
pub const SEAL_CHUNK: usize = 256 << 10;

/// Bytes per chunk tag.
pub const TAG_BYTES: u64 = 16;

/// Most chunks a seal may have (the chunk index is 32 bits of the nonce):
/// blobs of up to 1 PiB.
pub const MAX_CHUNKS: u64 = 1 << 32;

type Tag = [u8; TAG_BYTES as usize];

/// The number of chunks of a blob of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(SEAL_CHUNK as u64)
}

/// Heap bytes a seal of a blob of `size` bytes takes.
pub fn seal_bytes(size: u64) -> u64 {
    chunk_count(size).saturating_mul(TAG_BYTES)
}

/// A secret key for seals, and the counter that makes their nonces unique.
pub struct SealKey {
    key: LessSafeKey,
    next_seal: AtomicU64,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(secret)")
    }
}

impl SealKey {
    /// A key from the operating system's random generator.
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes)?);
        Ok(SealKey {
            key,
            next_seal: AtomicU64::new(0),
        })
    }

    /// The tag of chunk `index` of seal `seal`.
    fn tag(&self, seal: u64, index: u64, chunk: &[u8]) -> Option<Tag> {
        let index = u32::try_from(index).ok()?;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&seal.to_be_bytes());
        nonce[8..].copy_from_slice(&index.to_be_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(chunk),
                &mut [],
            )
            .ok()?;
        tag.as_ref().try_into().ok()
    }
}

/// One tag per chunk of a blob of a known size.
#[derive(Debug, Clone)]
pub struct Seal {
    key: Arc<SealKey>,
    id: u64,
    size: u64,
    tags: Box<[Tag]>,
}

impl Seal {
    /// The size of the sealed blob.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.tags.len() * TAG_BYTES as usize
    }

    /// The byte span of chunk `index`, or `None` past the end.
    pub fn chunk_span(&self, index: u64) -> Option<std::ops::Range<u64>> {
        let start = index.checked_mul(SEAL_CHUNK as u64)?;
        (start < self.size).then(|| start..(start + SEAL_CHUNK as u64).min(self.size))
    }

    /// True when `bytes` are exactly chunk `index` as sealed: right length
    /// and right tag.
    pub fn verify(&self, index: u64, bytes: &[u8]) -> bool {
        let Some(span) = self.chunk_span(index) else {
            return false;
        };
        if bytes.len() as u64 != span.end - span.start {
            return false;
        }
        let Some(tag) = self.key.tag(self.id, index, bytes) else {
            return false;
        };
        aws_lc_rs::constant_time::verify_slices_are_equal(&tag, &self.tags[index as usize]).is_ok()
    }
}

/// Builds a [`Seal`] from a blob's bytes fed in order, in pieces of any
/// size. Feed it the same bytes that are hashed to the blob's digest, and
/// keep the seal only if that digest matched.
#[derive(Debug)]
pub struct SealBuilder {
    key: Arc<SealKey>,
    id: u64,
    size: u64,
    fed: u64,
    tags: Vec<Tag>,
    /// A chunk fed in several pieces, until it is whole.
    partial: Vec<u8>,
    failed: bool,
}

impl SealBuilder {
    /// A builder for a blob of `size` bytes, or `None` when the blob has
    /// more than [`MAX_CHUNKS`] chunks. Memory grows to [`seal_bytes`] as
    /// the bytes come in.
    pub fn new(key: Arc<SealKey>, size: u64) -> Option<Self> {
        if chunk_count(size) > MAX_CHUNKS {
            return None;
        }
        // Every seal gets its own nonces: a fresh number from the key.
        let id = key.next_seal.fetch_add(1, Ordering::Relaxed);
        Some(SealBuilder {
            key,
            id,
            size,
            fed: 0,
            tags: Vec::new(),
            partial: Vec::new(),
            failed: false,
        })
    }

    fn push(&mut self, chunk: &[u8]) {
        match self.key.tag(self.id, self.tags.len() as u64, chunk) {
            Some(tag) => self.tags.push(tag),
            None => self.failed = true,
        }
    }

    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.fed = self.fed.saturating_add(bytes.len() as u64);
        if self.fed > self.size {
            self.failed = true;
        }
        if self.failed {
            return;
        }
        while !bytes.is_empty() {
            let take = (SEAL_CHUNK - self.partial.len()).min(bytes.len());
            if self.partial.is_empty() && take == SEAL_CHUNK {
                // A whole aligned chunk: no copy (the common case when the
                // caller reads in SEAL_CHUNK steps).
                self.push(&bytes[..take]);
            } else {
                self.partial.extend_from_slice(&bytes[..take]);
                if self.partial.len() == SEAL_CHUNK {
                    let chunk = std::mem::take(&mut self.partial);
                    self.push(&chunk);
                }
            }
            bytes = &bytes[take..];
        }
    }

    /// The seal, or `None` when the bytes fed were not exactly `size`.
    pub fn finish(mut self) -> Option<Seal> {
        if self.fed != self.size || self.failed {
            return None;
        }
        if !self.partial.is_empty() {
            let chunk = std::mem::take(&mut self.partial);
            self.push(&chunk);
        }
        (self.tags.len() as u64 == chunk_count(self.size) && !self.failed).then(|| Seal {
            key: self.key,
            id: self.id,
            size: self.size,
            tags: self.tags.into_boxed_slice(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<SealKey> {
        Arc::new(SealKey::random().unwrap())
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    fn seal_of(key: &Arc<SealKey>, bytes: &[u8], piece: usize) -> Seal {
        let mut b = SealBuilder::new(key.clone(), bytes.len() as u64).unwrap();
        for p in bytes.chunks(piece) {
            b.update(p);
        }
        b.finish().expect("all bytes fed")
    }

    fn verifies_all(seal: &Seal, bytes: &[u8]) -> bool {
        bytes
            .chunks(SEAL_CHUNK)
            .enumerate()
            .all(|(i, c)| seal.verify(i as u64, c))
    }

    #[test]
    fn sizes_and_spans() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(SEAL_CHUNK as u64), 1);
        assert_eq!(chunk_count(SEAL_CHUNK as u64 + 1), 2);
        assert_eq!(seal_bytes(256 << 20), 1024 * 16);
        let s = seal_of(&key(), &content(SEAL_CHUNK + 10), SEAL_CHUNK);
        assert_eq!(s.chunk_span(0), Some(0..SEAL_CHUNK as u64));
        assert_eq!(
            s.chunk_span(1),
            Some(SEAL_CHUNK as u64..SEAL_CHUNK as u64 + 10)
        );
        assert_eq!(s.chunk_span(2), None);
        assert_eq!(s.chunk_span(u64::MAX), None);
        assert_eq!(s.heap_bytes(), 32);
        assert_eq!(s.size(), SEAL_CHUNK as u64 + 10);
        assert!(SealBuilder::new(key(), MAX_CHUNKS * SEAL_CHUNK as u64).is_some());
        assert!(SealBuilder::new(key(), MAX_CHUNKS * SEAL_CHUNK as u64 + 1).is_none());
    }

    #[test]
    fn piece_size_does_not_change_what_verifies() {
        let key = key();
        let bytes = content(3 * SEAL_CHUNK + 12345);
        for piece in [
            1000,
            4096,
            SEAL_CHUNK - 1,
            SEAL_CHUNK,
            SEAL_CHUNK + 1,
            bytes.len(),
        ] {
            let s = seal_of(&key, &bytes, piece);
            assert!(verifies_all(&s, &bytes), "piece {piece}");
        }
    }

    #[test]
    fn verifies_every_chunk_and_rejects_changes() {
        let key = key();
        let bytes = content(2 * SEAL_CHUNK + 100);
        let s = seal_of(&key, &bytes, 65536);
        let chunks: Vec<&[u8]> = bytes.chunks(SEAL_CHUNK).collect();
        assert!(verifies_all(&s, &bytes));
        // One flipped bit, a chunk at another position, a short or long
        // chunk, an index past the end: all refused.
        let mut flipped = chunks[1].to_vec();
        flipped[SEAL_CHUNK / 2] ^= 1;
        assert!(!s.verify(1, &flipped));
        assert!(!s.verify(0, chunks[1]));
        assert!(!s.verify(1, &chunks[1][..SEAL_CHUNK - 1]));
        let mut long = chunks[2].to_vec();
        long.push(0);
        assert!(!s.verify(2, &long));
        assert!(!s.verify(3, chunks[2]));
    }

    #[test]
    fn seals_are_bound_to_their_key_and_nonce() {
        let bytes = content(SEAL_CHUNK);
        let (k1, k2) = (key(), key());
        let a = seal_of(&k1, &bytes, SEAL_CHUNK);
        let b = seal_of(&k1, &bytes, SEAL_CHUNK);
        let c = seal_of(&k2, &bytes, SEAL_CHUNK);
        // Same bytes and key, different seals: different tags (fresh
        // nonces); another key: different tags too.
        assert_ne!(a.tags, b.tags);
        assert_ne!(a.tags, c.tags);
        assert!(a.verify(0, &bytes) && b.verify(0, &bytes) && c.verify(0, &bytes));
        // A tag moved to another seal does not verify there.
        let mut moved = b.clone();
        moved.tags = a.tags.clone();
        assert!(!moved.verify(0, &bytes));
    }

    #[test]
    fn wrong_length_fed_gives_no_seal() {
        let mut b = SealBuilder::new(key(), 10).unwrap();
        b.update(&[0; 9]);
        assert!(b.finish().is_none());
        let mut b = SealBuilder::new(key(), 10).unwrap();
        b.update(&[0; 11]);
        assert!(b.finish().is_none());
        let b = SealBuilder::new(key(), 0).unwrap();
        assert_eq!(b.finish().map(|s| s.heap_bytes()), Some(0));
    }
}
