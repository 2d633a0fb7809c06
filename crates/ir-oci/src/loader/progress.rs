//! How far a load has got, readable from another thread while it runs
//! (the server logs it, exports it as metrics and tells systemd).
//!
//! Applications count once their structure and small blobs are read and
//! checked; bytes are those of the large blobs (over
//! [`crate::loader::SMALL_BLOB`]), which are hashed after every
//! application's structure was read, so their total is known from then on
//! (0 before).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a load updates as it goes. Share one through
/// [`crate::LoadOptions::progress`].
#[derive(Debug, Default)]
pub struct LoadProgress {
    applications_total: AtomicU64,
    applications_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
}

/// A reading of [`LoadProgress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Applications found by discovery.
    pub applications_total: u64,
    /// Applications whose structure and small blobs are checked.
    pub applications_done: u64,
    /// Bytes of large blobs to check (0 until they are all known).
    pub bytes_total: u64,
    /// Bytes of large blobs checked (hashed or recognised unchanged).
    pub bytes_done: u64,
}

impl LoadProgress {
    /// Starts a new load: every counter back to 0.
    pub(crate) fn start(&self) {
        for c in [
            &self.applications_total,
            &self.applications_done,
            &self.bytes_total,
            &self.bytes_done,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn discovered(&self, applications: usize) {
        self.applications_total
            .store(applications as u64, Ordering::Relaxed);
    }

    pub(crate) fn application_done(&self) {
        self.applications_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn large_blobs(&self, bytes: u64) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn bytes_checked(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            applications_total: self.applications_total.load(Ordering::Relaxed),
            applications_done: self.applications_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }
}
