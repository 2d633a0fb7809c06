//! Giving memory that a load freed back to the system.
//!
//! The binary's allocator is jemalloc (see `main.rs` for why). jemalloc
//! returns freed pages to the system lazily, after `dirty_decay_ms` (10 s);
//! a load frees far more than the model it leaves behind (parse trees, read
//! buffers, the maps of the I/O threads), so without a purge the resident
//! size just after a load is that of the load's peak.

/// Returns to the system, now, the pages that jemalloc holds free in any
/// arena. Measured with 10,000 applications x 10 tags (docs/benchmarks.md):
/// about 60 bytes per model entry less resident memory once ready.
///
/// Does nothing when jemalloc is not the global allocator (as in the
/// library's own tests): the control call then only touches jemalloc's
/// empty state.
pub fn release_freed() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge", MALLCTL_ARENAS_ALL being 4096 in
    // jemalloc 5.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a "purge" control takes no input and returns nothing (null
    // old/new pointers and zero length are what it expects); it only
    // releases pages jemalloc itself holds free.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(rc, "jemalloc purge refused");
    }
}
