//! Chunk seals: per-chunk hashes of a blob whose whole content already
//! matched its OCI digest, so that later reads can be checked chunk by
//! chunk instead of re-hashing the whole blob with the (slower) digest
//! algorithm.
//!
//! Why: a server that re-hashes every byte it sends with SHA-256 spends
//! about 0.6 s of a core per GiB served. A seal is built once, from the very
//! bytes that were hashed to the blob's digest, and holds one BLAKE3 hash
//! (32 bytes) per [`SEAL_CHUNK`] of the blob: 1/8192 of its size. Checking a
//! chunk against its seal entry costs a fraction of SHA-256 here (BLAKE3 is
//! SIMD-parallel within a chunk), checks every chunk *before* it is used
//! rather than the whole blob after the fact, and lets a byte range be
//! checked without reading the whole blob. BLAKE3's 128-bit collision
//! resistance matches SHA-256's, so a seal is as strong as the digest it
//! was derived from.
//!
//! The chunk index is implied by position; a chunk moved elsewhere in the
//! file fails the hash of its new position unless the bytes are the same.

/// The sealed unit. Chunk `i` covers bytes `i * SEAL_CHUNK ..` up to the
/// next chunk or the end of the blob.
pub const SEAL_CHUNK: usize = 256 << 10;

/// One hash per chunk of a blob of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    size: u64,
    hashes: Box<[[u8; 32]]>,
}

/// The number of chunks of a blob of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(SEAL_CHUNK as u64)
}

/// Heap bytes a seal of a blob of `size` bytes takes.
pub fn seal_bytes(size: u64) -> u64 {
    chunk_count(size).saturating_mul(32)
}

impl Seal {
    /// The size of the sealed blob.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.hashes.len() * 32
    }

    /// The byte span of chunk `index`, or `None` past the end.
    pub fn chunk_span(&self, index: u64) -> Option<std::ops::Range<u64>> {
        let start = index.checked_mul(SEAL_CHUNK as u64)?;
        (start < self.size).then(|| start..(start + SEAL_CHUNK as u64).min(self.size))
    }

    /// True when `bytes` are exactly chunk `index` as sealed: right length
    /// and right hash.
    pub fn verify(&self, index: u64, bytes: &[u8]) -> bool {
        let Some(span) = self.chunk_span(index) else {
            return false;
        };
        if bytes.len() as u64 != span.end - span.start {
            return false;
        }
        // `blake3::Hash`'s equality is constant time; nothing here is
        // secret, but it costs nothing.
        blake3::Hash::from_bytes(self.hashes[index as usize]) == blake3::hash(bytes)
    }
}

/// Builds a [`Seal`] from a blob's bytes fed in order, in pieces of any
/// size. Feed it the same bytes that are hashed to the blob's digest, and
/// keep the seal only if that digest matched.
#[derive(Debug)]
pub struct SealBuilder {
    size: u64,
    fed: u64,
    hashes: Vec<[u8; 32]>,
    current: blake3::Hasher,
    current_len: usize,
}

impl SealBuilder {
    /// A builder for a blob of `size` bytes. Memory grows to
    /// [`seal_bytes`]`(size)` as the bytes come in.
    pub fn new(size: u64) -> Self {
        SealBuilder {
            size,
            fed: 0,
            hashes: Vec::new(),
            current: blake3::Hasher::new(),
            current_len: 0,
        }
    }

    /// Feeds the next bytes of the blob.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.fed = self.fed.saturating_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let take = (SEAL_CHUNK - self.current_len).min(bytes.len());
            if take == SEAL_CHUNK {
                // A whole aligned chunk: hash it in one call (the common
                // case when the caller reads in SEAL_CHUNK steps).
                self.hashes.push(*blake3::hash(&bytes[..take]).as_bytes());
            } else {
                self.current.update(&bytes[..take]);
                self.current_len += take;
                if self.current_len == SEAL_CHUNK {
                    self.push_current();
                }
            }
            bytes = &bytes[take..];
        }
    }

    fn push_current(&mut self) {
        self.hashes.push(*self.current.finalize().as_bytes());
        self.current.reset();
        self.current_len = 0;
    }

    /// The seal, or `None` when the bytes fed were not exactly `size`.
    pub fn finish(mut self) -> Option<Seal> {
        if self.fed != self.size {
            return None;
        }
        if self.current_len > 0 {
            self.push_current();
        }
        debug_assert_eq!(self.hashes.len() as u64, chunk_count(self.size));
        Some(Seal {
            size: self.size,
            hashes: self.hashes.into_boxed_slice(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    fn seal_of(bytes: &[u8], piece: usize) -> Seal {
        let mut b = SealBuilder::new(bytes.len() as u64);
        for p in bytes.chunks(piece) {
            b.update(p);
        }
        b.finish().expect("all bytes fed")
    }

    #[test]
    fn sizes_and_spans() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(SEAL_CHUNK as u64), 1);
        assert_eq!(chunk_count(SEAL_CHUNK as u64 + 1), 2);
        assert_eq!(seal_bytes(256 << 20), 1024 * 32);
        let s = seal_of(&content(SEAL_CHUNK + 10), SEAL_CHUNK);
        assert_eq!(s.chunk_span(0), Some(0..SEAL_CHUNK as u64));
        assert_eq!(
            s.chunk_span(1),
            Some(SEAL_CHUNK as u64..SEAL_CHUNK as u64 + 10)
        );
        assert_eq!(s.chunk_span(2), None);
        assert_eq!(s.chunk_span(u64::MAX), None);
        assert_eq!(s.heap_bytes(), 64);
        assert_eq!(s.size(), SEAL_CHUNK as u64 + 10);
    }

    #[test]
    fn piece_size_does_not_change_the_seal() {
        let bytes = content(3 * SEAL_CHUNK + 12345);
        let whole = seal_of(&bytes, SEAL_CHUNK);
        for piece in [1000, 4096, SEAL_CHUNK - 1, SEAL_CHUNK + 1, bytes.len()] {
            assert_eq!(seal_of(&bytes, piece), whole, "piece {piece}");
        }
    }

    #[test]
    fn verifies_every_chunk_and_rejects_changes() {
        let bytes = content(2 * SEAL_CHUNK + 100);
        let s = seal_of(&bytes, 65536);
        let chunks: Vec<&[u8]> = bytes.chunks(SEAL_CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            assert!(s.verify(i as u64, c), "chunk {i}");
        }
        // One flipped bit, a wrong position, a short or long chunk, an
        // index past the end: all refused.
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
    fn wrong_length_fed_gives_no_seal() {
        let mut b = SealBuilder::new(10);
        b.update(&[0; 9]);
        assert!(b.finish().is_none());
        let mut b = SealBuilder::new(10);
        b.update(&[0; 11]);
        assert!(b.finish().is_none());
        let b = SealBuilder::new(0);
        assert_eq!(b.finish().map(|s| s.heap_bytes()), Some(0));
    }
}
