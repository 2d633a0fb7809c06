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
    #[cfg(feature = "jemalloc")]
    jemalloc_purge();
    // The system allocator (feature `jemalloc` off): glibc keeps freed
    // memory in its arenas; malloc_trim(0) gives the free pages back.
    #[cfg(all(not(feature = "jemalloc"), target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory glibc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(feature = "jemalloc")]
fn jemalloc_purge() {
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

/// Memory available to this process: physical memory, or the limit of
/// its cgroup (v2 `memory.max`) if that is lower. Sizes defaults such as
/// the blob cache's, so that a server in a small container does not claim
/// what a large host has.
pub fn available_bytes() -> u64 {
    let physical = physical_bytes();
    match cgroup_limit_bytes() {
        Some(limit) if limit > 0 => physical.min(limit),
        _ => physical,
    }
}

fn physical_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(size)) {
        (Ok(p), Ok(s)) => p.saturating_mul(s),
        _ => 0,
    }
}

/// The memory limit of this process's cgroup, if it has one: v2
/// `memory.max`, or v1 `memory.limit_in_bytes` (a huge number when
/// unlimited, which `min` then ignores).
fn cgroup_limit_bytes() -> Option<u64> {
    // Lines of /proc/self/cgroup are "0::/path" (v2) or "N:memory:/path"
    // (v1). The paths come from the kernel, but are still only joined
    // under /sys/fs/cgroup, and never with "..".
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (dir, file, path) = own.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        match controllers {
            "" => Some(("", "memory.max", path)),
            "memory" => Some(("memory", "memory.limit_in_bytes", path)),
            _ => None,
        }
    })?;
    let path = path.trim().trim_start_matches('/');
    if path.split('/').any(|c| c == "..") {
        return None;
    }
    let at = std::path::Path::new("/sys/fs/cgroup")
        .join(dir)
        .join(path)
        .join(file);
    std::fs::read_to_string(at).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn available_memory_is_known_and_within_physical() {
        let available = super::available_bytes();
        assert!(available > 0);
        assert!(available <= super::physical_bytes());
    }
}
