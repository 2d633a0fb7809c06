//! Streams a blob from disk while checking it, so that a client never gets
//! bytes that differ from what was verified.
//!
//! Each stream checks its bytes in one of three ways ([`Check`]):
//!
//! - a blob's first whole GET hashes it with its digest algorithm as it
//!   streams; the last chunk is sent only after the digest matched, so a
//!   file altered on disk yields a cut-off response (which every client
//!   rejects) and the blob is withdrawn. The same pass builds the blob's
//!   chunk seal ([`crate::delivery::seal_cache`]), kept once the digest matched;
//! - once sealed, every GET of the blob, whole or a range, reads whole
//!   aligned chunks and checks each against the seal *before* sending any
//!   of it (GMAC, a tenth of the cost of SHA-256 here);
//! - a range of a large blob not sealed yet cannot be hashed without
//!   reading the whole blob; it is protected by the file identity check
//!   (device, inode, size, mtime, ctime) before the first and after the
//!   last byte, since no unprivileged write can preserve ctime.
//!
//! A whole GET may also fill the blob's verified copy in memory
//! ([`crate::delivery::blob_cache`]) with the bytes it checked; the copy is kept only
//! once the whole blob passed, and later requests are sent from it.
//!
//! Reads happen on the blocking pool one chunk at a time, one chunk ahead
//! of the client: the next chunk is read and checked while the previous one
//! is written out, and nothing more is read until the client took it, so a
//! slow reader holds no thread and at most two chunks of memory.

use std::fs::File;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ir_oci::digest::Hasher;
use ir_oci::{Application, Digest, FileIdentity};
use tokio::task::JoinHandle;

use crate::delivery::blob_cache::FillTicket;
use crate::delivery::chunk_seal::Seal;
use crate::delivery::seal_cache::SealTicket;

/// Bytes read per step: one seal chunk, large enough to amortise the hop
/// to the blocking pool, small enough to bound memory per connection.
pub const CHUNK: usize = crate::delivery::chunk_seal::SEAL_CHUNK;

/// Why a stream was cut off.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The file no longer matches what was verified.
    #[error("blob {0} changed on disk after verification; response cut off and blob withdrawn")]
    Changed(Digest),
    /// Reading failed.
    #[error("reading blob {digest}: {error}")]
    Io {
        /// The blob.
        digest: Digest,
        /// The error.
        error: std::io::Error,
    },
    /// The blocking read task died.
    #[error("blob read task failed")]
    Task,
}

/// How a stream checks the bytes it sends.
pub enum Check {
    /// Hash the whole blob with its digest algorithm and hold back the last
    /// chunk until it matched; build the blob's seal on the way if given a
    /// ticket. Only for whole-blob streams.
    Digest(Box<Hasher>, Option<Box<SealTicket>>),
    /// Check every chunk against the blob's seal before sending any of it.
    Seal(Arc<Seal>),
    /// Compare the file's identity after the last byte (it was compared
    /// when the file was opened).
    Identity,
}

struct Reader {
    file: File,
    /// Next offset to read.
    pos: u64,
    /// First byte wanted (reads under a seal start at its chunk).
    start: u64,
    /// One past the last byte wanted.
    end: u64,
    check: Check,
    digest: Digest,
    identity: FileIdentity,
    /// Try page-cache-only reads on the async worker first.
    inline: bool,
    /// The blob's copy in memory being filled (whole GETs only).
    fill: Option<FillTicket>,
}

/// `preadv2` into the spare capacity of `buf` (up to `len` bytes in all),
/// with `RWF_NOWAIT` when `nowait`: the standard library has no
/// page-cache-only read, and reading into uninitialised capacity saves
/// zeroing every chunk first.
fn pread_into(
    file: &File,
    buf: &mut BytesMut,
    len: usize,
    at: u64,
    nowait: bool,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let have = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..len - have];
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    let offset = libc::off_t::try_from(at)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `iov` points at `spare.len()` writable bytes owned by `buf`,
    // valid for the duration of the call; the kernel writes at most that
    // many, and `set_len` below covers only the bytes it reported written.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the first `n` bytes of the spare capacity were initialised by
    // the read (n <= iov_len).
    unsafe { buf.set_len(have + n) };
    Ok(n)
}

impl Reader {
    fn changed(&self) -> StreamError {
        StreamError::Changed(self.digest.clone())
    }

    /// Reads `len` bytes at `at` into a fresh buffer. With `nowait`, only
    /// from the page cache: `Ok(None)` when some byte would have to come
    /// from the disk, so that the caller retries on the blocking pool.
    fn read_exact(
        &mut self,
        at: u64,
        len: usize,
        nowait: bool,
    ) -> Result<Option<BytesMut>, StreamError> {
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let filled = buf.len();
            match pread_into(&self.file, &mut buf, len, at + filled as u64, nowait) {
                Ok(0) => return Err(self.changed()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if nowait && e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
                Err(e) if nowait => {
                    // RWF_NOWAIT unsupported here (old kernel, some file
                    // systems): stop trying it for this stream.
                    tracing::debug!("no page-cache-only reads: {e}");
                    self.inline = false;
                    return Ok(None);
                }
                Err(error) => {
                    return Err(StreamError::Io {
                        digest: self.digest.clone(),
                        error,
                    })
                }
            }
            if nowait && buf.len() < len {
                // Part of the range is not cached: let the blocking pool
                // do the rest rather than wait here.
                return Ok(None);
            }
        }
        Ok(Some(buf))
    }

    /// The next chunk, or `Ok(None)` with `nowait` when it is not all in
    /// the page cache. Digest checks (SHA-256 of a whole blob, slow) always
    /// run on the blocking pool, never with `nowait`.
    fn read_chunk(&mut self, nowait: bool) -> Result<Option<Bytes>, StreamError> {
        if let Check::Seal(seal) = &self.check {
            let seal = seal.clone();
            let index = self.pos / CHUNK as u64;
            let span = seal.chunk_span(index).ok_or_else(|| self.changed())?;
            let Some(buf) =
                self.read_exact(span.start, (span.end - span.start) as usize, nowait)?
            else {
                return Ok(None);
            };
            if !seal.verify(index, &buf) {
                return Err(self.changed());
            }
            if let Some(fill) = &mut self.fill {
                fill.write(&buf);
            }
            let from = (self.start.max(span.start) - span.start) as usize;
            let to = (self.end.min(span.end) - span.start) as usize;
            self.pos = span.end;
            if self.pos >= self.end {
                self.check_identity()?;
                if let Some(fill) = self.fill.take() {
                    fill.publish();
                }
            }
            return Ok(Some(buf.freeze().slice(from..to)));
        }
        let want = CHUNK.min((self.end - self.pos) as usize);
        let Some(buf) = self.read_exact(self.pos, want, nowait)? else {
            return Ok(None);
        };
        self.pos += want as u64;
        if let Check::Digest(hasher, ticket) = &mut self.check {
            hasher.update(&buf);
            if let Some(t) = ticket {
                t.update(&buf);
            }
            if let Some(fill) = &mut self.fill {
                fill.write(&buf);
            }
        }
        if self.pos == self.end {
            self.check_final()?;
        }
        Ok(Some(buf.freeze()))
    }

    /// True when the next chunk may be read on the async worker: its check
    /// is cheap (a seal or none) and page-cache-only reads work here.
    fn may_read_inline(&self) -> bool {
        self.inline && !matches!(self.check, Check::Digest(..))
    }

    fn check_identity(&self) -> Result<(), StreamError> {
        let meta = self.file.metadata().map_err(|_| self.changed())?;
        if FileIdentity::of(&meta) != self.identity {
            return Err(self.changed());
        }
        Ok(())
    }

    fn check_final(&mut self) -> Result<(), StreamError> {
        let ticket = match std::mem::replace(&mut self.check, Check::Identity) {
            Check::Digest(hasher, ticket) => {
                if hasher.finish() != self.digest {
                    return Err(self.changed());
                }
                ticket
            }
            _ => None,
        };
        self.check_identity()?;
        if let Some(t) = ticket {
            t.publish();
        }
        if let Some(fill) = self.fill.take() {
            fill.publish();
        }
        Ok(())
    }
}

enum State {
    Idle(Box<Reader>),
    Reading(ReadTask),
    Done,
}

type ReadTask = JoinHandle<(Box<Reader>, Result<Bytes, StreamError>)>;

/// Reads (and checks) the reader's next chunk on the blocking pool.
fn spawn_read(mut reader: Box<Reader>) -> ReadTask {
    tokio::task::spawn_blocking(move || {
        let r = reader
            .read_chunk(false)
            .and_then(|c| c.ok_or(StreamError::Task));
        (reader, r)
    })
}

/// A blob body: `start..end` of a verified file.
pub struct BlobStream {
    state: State,
    remaining: u64,
    app: Arc<Application>,
    digest: Digest,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStream({}, {} left)", self.digest, self.remaining)
    }
}

impl BlobStream {
    /// Streams bytes `start..end` of `file`, which was opened and checked
    /// against `identity`, checking them as `check` says. A [`Check::Digest`]
    /// needs the whole blob (`0..size`); anything else falls back to
    /// [`Check::Identity`]. `fill`, if given, receives the checked bytes of
    /// a whole GET checked by digest or seal (it is dropped otherwise).
    pub fn new(
        app: Arc<Application>,
        digest: Digest,
        identity: FileIdentity,
        file: File,
        (start, end): (u64, u64),
        check: Check,
        fill: Option<FillTicket>,
    ) -> Self {
        let whole = start == 0 && end == identity.size;
        let check = match check {
            Check::Digest(..) if !whole => Check::Identity,
            Check::Seal(seal) if seal.size() != identity.size => Check::Identity,
            other => other,
        };
        let fill = fill.filter(|_| whole && !matches!(check, Check::Identity));
        let pos = match check {
            Check::Seal(_) => start - start % CHUNK as u64,
            _ => start,
        };
        let reader = Reader {
            file,
            pos,
            start,
            end,
            check,
            digest: digest.clone(),
            identity,
            inline: true,
            fill,
        };
        let state = if start == end {
            State::Done
        } else {
            State::Idle(Box::new(reader))
        };
        BlobStream {
            state,
            remaining: end - start,
            app,
            digest,
        }
    }

    /// Bytes not yet sent.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Polls for the next chunk.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Idle(mut reader) => {
                    if reader.may_read_inline() {
                        // Cached chunk with a cheap check: read and verify
                        // it right here, sparing two thread hand-offs.
                        match reader.read_chunk(true) {
                            Ok(Some(bytes)) => {
                                self.remaining -= bytes.len() as u64;
                                if self.remaining > 0 {
                                    self.state = State::Idle(reader);
                                }
                                return Poll::Ready(Some(Ok(bytes)));
                            }
                            Ok(None) => {}
                            Err(e) => {
                                self.fail(&e);
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                    }
                    self.state = State::Reading(spawn_read(reader));
                }
                State::Reading(mut handle) => match std::pin::Pin::new(&mut handle).poll(cx) {
                    Poll::Pending => {
                        self.state = State::Reading(handle);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Some(Err(StreamError::Task))),
                    Poll::Ready(Ok((reader, result))) => {
                        return Poll::Ready(Some(match result {
                            Ok(bytes) => {
                                self.remaining -= bytes.len() as u64;
                                if self.remaining > 0 {
                                    // Read ahead: the next chunk is read and
                                    // checked on the blocking pool while this
                                    // one is written to the socket. At most
                                    // one chunk waits in memory; a reader that
                                    // stops taking bytes holds no thread.
                                    self.state = State::Reading(spawn_read(reader));
                                }
                                Ok(bytes)
                            }
                            Err(e) => {
                                self.fail(&e);
                                Err(e)
                            }
                        }));
                    }
                },
            }
        }
    }

    fn fail(&self, e: &StreamError) {
        if let StreamError::Changed(_) = e {
            if let Some(blob) = self.app.blobs.get(&self.digest) {
                blob.withdraw();
            }
        }
        tracing::error!(application = %self.app.name, "{e}");
    }
}

use std::future::Future;
