//! Keeping the allocator's memory close to what the server really uses.

/// Caps glibc's malloc arenas at one per core (its default is eight per
/// core), before any thread starts.
///
/// Each thread that allocates gets an arena of its own up to that cap, and
/// the loader runs many threads (16 per core, see `--io-threads`): the
/// model they build ends up spread over 16 arenas on 2 cores, each keeping
/// the holes its thread's temporaries left. Measured with 10,000
/// applications x 10 tags (docs/benchmarks.md): 296 bytes per entry with
/// the default, 248 with two arenas, with no measurable change in load
/// time or request rate. Elsewhere than glibc this does nothing.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tuning parameter of the allocator;
        // called first thing in main, before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores);
        }
    }
}

/// Returns to the system the memory that loading freed but the allocator
/// kept (parse trees, read buffers and maps of the verification threads).
///
/// A load allocates much more than the model it leaves behind, on threads
/// that then exit; glibc keeps those pages in its arenas, where they count
/// in the resident size of a server that may never allocate that much
/// again. `malloc_trim` releases the free pages of every arena. Elsewhere
/// than glibc this does nothing.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has
    // no preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
        let info = libc::mallinfo2();
        tracing::debug!(
            in_use = info.uordblks,
            free_kept = info.fordblks,
            mmapped = info.hblkhd,
            "heap after releasing what the load freed"
        );
    }
}
