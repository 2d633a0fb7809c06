//! Streams a blob from disk while checking it, so that a client never gets
//! a complete response whose bytes differ from what was verified.
//!
//! Whole-blob responses are hashed as they stream; the last chunk is sent
//! only after the digest matched, so a file altered on disk yields a cut-off
//! response (which every client rejects) and the blob is withdrawn. Range
//! responses cannot be hashed without reading the whole blob; they are
//! protected by the file identity check (device, inode, size, mtime, ctime)
//! before the first and after the last byte, since no unprivileged write
//! can preserve ctime.
//!
//! Reads happen on the blocking pool one chunk at a time, one chunk ahead
//! of the client: the next chunk is read and hashed while the previous one
//! is written out, and nothing more is read until the client took it, so a
//! slow reader holds no thread and at most two chunks of memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ir_oci::digest::Hasher;
use ir_oci::{Application, Digest, FileIdentity};
use tokio::task::JoinHandle;

/// Bytes read per step. Large enough to amortise the hop to the blocking
/// pool, small enough to bound memory per connection.
pub const CHUNK: usize = 256 << 10;

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

struct Reader {
    file: File,
    pos: u64,
    end: u64,
    hasher: Option<Hasher>,
    digest: Digest,
    identity: FileIdentity,
}

impl Reader {
    fn read_chunk(&mut self) -> Result<Bytes, StreamError> {
        let want = CHUNK.min((self.end - self.pos) as usize);
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            match self
                .file
                .read_at(&mut buf[filled..], self.pos + filled as u64)
            {
                Ok(0) => return Err(StreamError::Changed(self.digest.clone())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(StreamError::Io {
                        digest: self.digest.clone(),
                        error,
                    })
                }
            }
        }
        self.pos += want as u64;
        if let Some(h) = &mut self.hasher {
            h.update(&buf);
        }
        if self.pos == self.end {
            self.check_final()?;
        }
        Ok(buf.freeze())
    }

    fn check_final(&mut self) -> Result<(), StreamError> {
        let changed = || StreamError::Changed(self.digest.clone());
        if let Some(h) = self.hasher.take() {
            if h.finish() != self.digest {
                return Err(changed());
            }
        }
        let meta = self.file.metadata().map_err(|_| changed())?;
        if FileIdentity::of(&meta) != self.identity {
            return Err(changed());
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

/// Reads (and hashes) the reader's next chunk on the blocking pool.
fn spawn_read(mut reader: Box<Reader>) -> ReadTask {
    tokio::task::spawn_blocking(move || {
        let r = reader.read_chunk();
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
    /// against `identity`. A whole-blob stream (`0..size`) is hashed.
    pub fn new(
        app: Arc<Application>,
        digest: Digest,
        identity: FileIdentity,
        file: File,
        start: u64,
        end: u64,
    ) -> Self {
        let hasher = (start == 0 && end == identity.size).then(|| digest.algorithm().hasher());
        let reader = Reader {
            file,
            pos: start,
            end,
            hasher,
            digest: digest.clone(),
            identity,
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
                State::Idle(reader) => {
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
                                    // hashed on the blocking pool while this
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
