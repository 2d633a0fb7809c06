//! Hashing large files through read-only memory maps, with a bus error
//! turned into an ordinary failure.
//!
//! Why: `read()` copies every byte from the page cache into a buffer before
//! it is hashed. On the machines of docs/benchmarks.md that copy costs
//! 15-20 % of a core (one core hashing with `read()`: 0.80-0.90 x
//! `openssl speed`; through a map: 0.95-1.0), which alone keeps start-up
//! verification under the goal of 0.9 x openssl per core.
//!
//! The hazard: touching a mapped page that no longer exists (the file was
//! truncated while it was hashed) or cannot be read (a disk error) raises
//! `SIGBUS`, which by default kills the process. So mapped hashing needs a
//! `SIGBUS` handler that recognises faults inside a window this module is
//! hashing: it maps zero pages over the rest of that window,
//! marks the window failed and returns, so the hashing runs to its end over
//! zeros; the caller then rejects the blob, as it would after a failed
//! `read()`. A fault anywhere else goes to the disposition that was there
//! before (Rust's own handler, then the default: the process dies, as
//! without this module). No crate offers this (`memmap2` maps, but leaves
//! `SIGBUS` to the caller), hence the hand-written handler.
//!
//! **The handler is process-wide**, so the library never installs it by
//! itself: a program opts in once, early, with [`install_sigbus_handler`]
//! (ir-server does in `main`). Until then [`hash_file`] maps nothing and
//! the caller reads the file instead, which is safe and somewhat slower. A
//! program that installs its own `SIGBUS` handler after this one must
//! chain to it, as this one chains to the previous disposition.
//!
//! The mapped bytes are only ever fed to the hash function, never parsed:
//! a concurrent writer can at worst change the digest (a mismatch) or the
//! file's identity, which the caller checks after hashing.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use crate::digest::Hasher;

/// Bytes mapped at a time. Mapped pages count in the process's resident
/// set (and its peak) while mapped, so the window is small: 2, 4 and
/// 16 MiB hashed equally fast (docs/benchmarks.md), and 2 MiB adds about
/// 2 MiB per worker to the peak.
pub const WINDOW: u64 = 2 << 20;

/// Files smaller than this are read: mapping does not pay for itself.
pub const MIN_MAPPED: u64 = 1 << 20;

/// Windows that may be hashed at once, process-wide. A hash that finds
/// every slot taken reads the rest instead.
const SLOTS: usize = 128;

/// A page of the file could not be read while mapped (the file shrank, or
/// a disk error): the hash went on over zeros and must be discarded.
#[derive(Debug, PartialEq, Eq)]
pub struct Fault;

/// A window being hashed: its address range while active (`start` is 0
/// when the slot is free), and whether a fault hit it.
struct Slot {
    claimed: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // used only to build SLOTS_TABLE
const FREE: Slot = Slot {
    claimed: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static SLOTS_TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
/// The `SIGBUS` disposition found when the handler was installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Feeds bytes `0..size` of `file` to `hasher` through read-only maps of
/// [`WINDOW`] bytes, asking the kernel to read the next window ahead while
/// one is hashed. Returns how many bytes were hashed: fewer than `size`
/// when a window could not be mapped, and none before
/// [`install_sigbus_handler`] (the caller reads the rest).
pub fn hash_file(file: &File, size: u64, hasher: &mut Hasher) -> Result<u64, Fault> {
    if !INSTALLED.load(Ordering::Acquire) {
        return Ok(0);
    }
    let mut offset = 0;
    while offset < size {
        let len = WINDOW.min(size - offset);
        let next = offset + len;
        // Have the kernel read the next window while this one is hashed
        // (a cold file's I/O overlaps the hashing). Asking further ahead
        // in larger steps was slower here: the ask itself blocks while it
        // submits the reads.
        if next < size {
            advise(
                file,
                next,
                WINDOW.min(size - next),
                libc::POSIX_FADV_WILLNEED,
            );
        }
        if !hash_window(file, offset, len as usize, hasher)? {
            return Ok(offset);
        }
        offset = next;
    }
    Ok(size)
}

/// Hashes `len` bytes of `file` from `offset` (a multiple of the page
/// size) through one map. False when nothing was hashed because the
/// window could not be mapped.
fn hash_window(file: &File, offset: u64, len: usize, hasher: &mut Hasher) -> Result<bool, Fault> {
    let Some(slot) = claim() else {
        return Ok(false);
    };
    // SAFETY: a private read-only map of an open file; the bytes are only
    // read by the hash function below while the map lives, and a page that
    // vanishes meanwhile raises SIGBUS, which `on_sigbus` handles for this
    // slot's range (registered before the first access).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map(file)
    };
    let map = match map {
        Ok(map) => map,
        Err(_) => {
            release(slot);
            return Ok(false);
        }
    };
    let start = map.as_ptr() as usize;
    slot.faulted.store(false, Ordering::Relaxed);
    slot.end.store(start + len, Ordering::Release);
    slot.start.store(start, Ordering::Release);
    // The handler runs on this thread: keep the compiler from moving the
    // map's reads before its registration or after its removal.
    compiler_fence(Ordering::SeqCst);
    hasher.update(&map);
    compiler_fence(Ordering::SeqCst);
    slot.start.store(0, Ordering::Release);
    let faulted = slot.faulted.load(Ordering::Acquire);
    drop(map);
    release(slot);
    if faulted {
        Err(Fault)
    } else {
        Ok(true)
    }
}

fn claim() -> Option<&'static Slot> {
    SLOTS_TABLE.iter().find(|s| {
        s.claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })
}

fn release(slot: &Slot) {
    slot.claimed.store(false, Ordering::Release);
}

fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    // A hint; failure changes nothing.
    // SAFETY: plain syscall on an open descriptor.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, advice);
    }
}

/// Installs, once per process, the `SIGBUS` handler that lets
/// [`hash_file`] hash through memory maps (see the module docs: it is
/// process-wide and chains to the disposition found). Returns whether it
/// is in place; when it is not, hashing reads files instead.
pub fn install_sigbus_handler() -> bool {
    install();
    INSTALLED.load(Ordering::Acquire)
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page <= 0 {
            return;
        }
        PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        // SAFETY: sigaction with a zeroed struct reads the current
        // disposition only.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) } != 0 {
            return;
        }
        let _ = PREVIOUS.set(previous);
        // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO to get
        // the faulting address, SA_ONSTACK to run on the alternate stack
        // where the thread has one (as Rust's own handler does).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sa_mask is a field of the struct above.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installs a handler that only does async-signal-safe
        // work (atomics, mmap, sigaction, raise).
        if unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) } == 0 {
            INSTALLED.store(true, Ordering::Release);
        }
    });
}

/// The `SIGBUS` handler: a fault inside an active window is absorbed (zero
/// pages over the rest of the window, the window marked failed); anything
/// else goes to the previous disposition.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for a fault, not sent by a process.
    if code > 0 && absorb(addr) {
        return;
    }
    forward(signal, info, context);
}

/// Replaces the rest of the window holding `addr` with zero pages. False
/// when `addr` is in no active window.
fn absorb(addr: usize) -> bool {
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    for slot in &SLOTS_TABLE {
        let start = slot.start.load(Ordering::Acquire);
        let end = slot.end.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= end {
            continue;
        }
        let from = addr & !(page - 1);
        // SAFETY: replaces pages of this module's own live read-only map
        // (from `from` to its end) with anonymous zero pages; nothing else
        // uses that range, and the map's unmapping covers it.
        let zeros = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zeros == libc::MAP_FAILED {
            return false;
        }
        slot.faulted.store(true, Ordering::Release);
        return true;
    }
    false
}

/// Hands a signal that is not ours to the disposition found at install.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let handler = PREVIOUS.get().map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    let flags = PREVIOUS.get().map_or(0, |p| p.sa_flags);
    if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
        if flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO,
            // so it has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            f(signal, info, context);
        } else {
            // SAFETY: installed without SA_SIGINFO: the one-argument form.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(signal);
        }
        return;
    }
    // Default (or ignored, which the kernel does not honour for a fault):
    // restore the default and raise again; the signal is delivered as
    // soon as this handler returns, and a fault would recur anyway.
    // SAFETY: sigaction and raise are async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        libc::raise(libc::SIGBUS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use std::io::Write;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        assert!(install_sigbus_handler());
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        f.flush().unwrap();
        (f, bytes)
    }

    #[test]
    fn mapped_hash_equals_hash_of_the_bytes() {
        // Several windows and a partial last one.
        let len = 2 * WINDOW as usize + 12_345;
        let (f, bytes) = file_of(len);
        let file = File::open(f.path()).unwrap();
        let mut hasher = Algorithm::Sha256.hasher();
        assert_eq!(hash_file(&file, len as u64, &mut hasher), Ok(len as u64));
        assert_eq!(hasher.finish(), Digest::of_bytes(Algorithm::Sha256, &bytes));
    }

    #[test]
    fn a_file_truncated_while_mapped_is_a_fault_not_a_crash() {
        let len = 4 << 20;
        let (f, _) = file_of(len);
        let file = File::open(f.path()).unwrap();
        // The map is made for the size found before; the file then shrinks,
        // so touching the pages past its new end raises SIGBUS.
        f.as_file().set_len(1 << 20).unwrap();
        let mut hasher = Algorithm::Sha256.hasher();
        assert_eq!(hash_file(&file, len as u64, &mut hasher), Err(Fault));
        // The handler leaves nothing behind: the next hash works.
        let (g, bytes) = file_of(3 << 20);
        let mut hasher = Algorithm::Sha256.hasher();
        let n = bytes.len() as u64;
        assert_eq!(
            hash_file(&File::open(g.path()).unwrap(), n, &mut hasher),
            Ok(n)
        );
        assert_eq!(hasher.finish(), Digest::of_bytes(Algorithm::Sha256, &bytes));
    }
}
