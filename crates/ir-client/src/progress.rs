//! What a pull reports while it runs, per blob. The library calls a
//! [`Progress`]; the command line draws bars or prints lines with it.

use ir_oci::Digest;

/// Observer of blob downloads. Every method has a default that does
/// nothing; calls may come from several blobs at once.
pub trait Progress: Send + Sync {
    /// A blob of `size` bytes starts downloading.
    fn start(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more arrived.
    fn advance(&self, _digest: &Digest, _bytes: u64) {}
    /// The download restarts at `offset` (a resumed or restarted transfer).
    fn restart(&self, _digest: &Digest, _offset: u64, _why: &str) {}
    /// The blob is in place, verified; `downloaded` is false when it was
    /// already present.
    fn finish(&self, _digest: &Digest, _size: u64, _downloaded: bool) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}
