//! A real realm's attestation token through the Linux RSI device
//! (feature `rsi`; compiled but not tested here: it needs a CCA realm).
//!
//! The interface assumed is islet's `linux-rsi` kernel module, as its
//! `rust-rsi` library drives it:
//!
//! - device `/dev/rsi`, opened read-write;
//! - `RSIIO_ATTESTATION_TOKEN = _IOWR('x', 194, struct rsi_attestation)`
//!   with
//!   ```c
//!   struct rsi_attestation {
//!       uint8_t  challenge[64]; /* in: the realm challenge */
//!       uint64_t token_len;     /* in: buffer size; out: token length */
//!       uint8_t *token;         /* in: user buffer for the token */
//!   };                          /* 80 bytes on arm64 */
//!   ```
//! - when the buffer is too small the ioctl fails with `ERANGE` and
//!   `token_len` holds the size needed; the call is then repeated once.
//!
//! Upstream Linux exposes CCA attestation through configfs-tsm
//! (`/sys/kernel/config/tsm/report`) instead; supporting it would be
//! another token source.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// The device's usual path.
pub const DEVICE: &str = "/dev/rsi";
/// Largest token accepted from the device.
pub const MAX_TOKEN: u64 = 64 * 1024;
const INITIAL_BUFFER: usize = 4096;

#[repr(C)]
struct RsiAttestation {
    challenge: [u8; 64],
    token_len: u64,
    token: *mut u8,
}

/// Linux `_IOWR(ty, nr, size)` (generic ioctl encoding: arm64, x86).
const fn iowr(ty: u8, nr: u8, size: usize) -> u64 {
    const IOC_READ_WRITE: u64 = 3;
    (IOC_READ_WRITE << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

/// `RSIIO_ATTESTATION_TOKEN`.
pub const RSIIO_ATTESTATION_TOKEN: u64 = iowr(b'x', 194, std::mem::size_of::<RsiAttestation>());

/// Asks the realm firmware, through `device`, for a CCA token whose realm
/// challenge is `realm_challenge`.
pub fn attestation_token(device: &Path, realm_challenge: &[u8; 64]) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)?;
    let mut buf = vec![0u8; INITIAL_BUFFER];
    for _ in 0..2 {
        let mut req = RsiAttestation {
            challenge: *realm_challenge,
            token_len: buf.len() as u64,
            token: buf.as_mut_ptr(),
        };
        // SAFETY: `req` is a live, properly laid out `rsi_attestation`
        // whose `token` points to `token_len` writable bytes of `buf`,
        // which outlives the call; the kernel writes at most that many.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                RSIIO_ATTESTATION_TOKEN as _,
                &mut req as *mut RsiAttestation,
            )
        };
        if rc == 0 {
            let n = usize::try_from(req.token_len).unwrap_or(usize::MAX);
            if n == 0 || n > buf.len() {
                return Err(io::Error::other(format!(
                    "device reported a token of {} bytes for a {}-byte buffer",
                    req.token_len,
                    buf.len()
                )));
            }
            buf.truncate(n);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE)
            && req.token_len > buf.len() as u64
            && req.token_len <= MAX_TOKEN
        {
            buf = vec![0u8; req.token_len as usize];
            continue;
        }
        return Err(err);
    }
    Err(io::Error::other("token size kept changing"))
}
