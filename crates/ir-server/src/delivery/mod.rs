//! Blob delivery: sending only bytes that were verified.
//!
//! A blob's file lives in a root that whoever can write it may change at
//! any time, so nothing is sent straight from it. [`body()`] picks one of
//! three paths for every GET of a blob that is not in memory already
//! (manifests are served from their verified bytes by the handler):
//!
//! 1. **First whole download: hashed and sealed** ([`stream`]). The blob is
//!    hashed with its digest algorithm as it streams and the last chunk
//!    leaves only once the digest matched, so a changed file yields a
//!    cut-off response and the blob is withdrawn. The same pass builds the
//!    blob's [`chunk_seal`] (a GMAC tag per 256 KiB chunk, kept in [`seal_cache`]) and
//!    may fill its verified copy in memory ([`blob_cache`]).
//! 2. **Later downloads and ranges: sealed chunks checked** ([`stream`]).
//!    Every chunk read from the file is checked against the seal before
//!    any of it is sent. A range of a large blob not sealed yet is guarded
//!    by the file identity check (device, inode, size, mtime, ctime) before
//!    the first and after the last byte.
//! 3. **Verified copy in memory** ([`blob_cache`]). Once a whole download
//!    matched, its checked bytes stay in a sealed memfd that nothing can
//!    change; later downloads and ranges are sent from it without touching
//!    the disk.
//!
//! Blobs of one chunk or less take none of these paths: they are read and
//! hashed whole on every request, before anything is sent.

pub mod blob_cache;
pub mod body;
pub mod chunk_seal;
pub mod seal_cache;
pub mod stream;

pub use body::Body;

use std::sync::Arc;

use ir_oci::{Application, Blob, Digest};

use blob_cache::BlobCache;
use seal_cache::{Lookup, Seals};
use stream::{BlobStream, Check, CHUNK};

/// Why a blob could not be delivered: its file is no longer the one that
/// was verified (or no longer hashes to its digest). The blob has been
/// withdrawn from the snapshot when this is returned.
#[derive(Debug, thiserror::Error)]
#[error("blob {digest} was withdrawn: its file changed after verification ({why})")]
pub struct Withdrawn {
    /// The blob.
    pub digest: Digest,
    /// What the check found.
    pub why: WithdrawReason,
}

/// What a blob's file showed when it was opened to be sent.
#[derive(Debug, thiserror::Error)]
pub enum WithdrawReason {
    /// The file is no longer the one verified (identity or type changed).
    #[error(transparent)]
    Changed(#[from] ir_oci::Rule),
    /// The file could not be read.
    #[error(transparent)]
    Unreadable(#[from] std::io::Error),
    /// A small blob read whole no longer hashes to its digest.
    #[error("content no longer hashes to its digest")]
    DigestMismatch,
    /// The task that opens the file failed.
    #[error("blob open task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The body for bytes `start..end` of `blob` (`digest`) of `app`, checked
/// by whichever of the three paths applies (see the module docs), with the
/// snapshot's `seals` and the shared blob `cache`.
pub async fn body(
    app: &Arc<Application>,
    (seals, cache): (&Arc<Seals>, &Arc<BlobCache>),
    digest: Digest,
    blob: &Blob,
    (start, end): (u64, u64),
) -> Result<Body, Withdrawn> {
    let size = blob.size();
    let small = size <= CHUNK as u64;
    // Copies exist only of blobs over one chunk (no lock taken for the
    // others), and are used only at the size the model has.
    if let Some(copy) = (!small).then(|| cache.get(&digest)).flatten() {
        if copy.size() == size {
            match copy.bytes(start, end) {
                Ok(bytes) => return Ok(Body::chunked(bytes)),
                Err(e) => tracing::debug!(%digest, "blob copy not mapped, reading the file: {e}"),
            }
        }
    }
    let identity = blob.identity;
    let path = app.blob_path(&digest);
    let d = digest.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<Opened, WithdrawReason> {
        let file = ir_oci::open_unchanged(&path, &identity)?;
        if !small {
            return Ok(Opened::File(file));
        }
        let mut bytes = vec![0u8; size as usize];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, 0)?;
        if Digest::of_bytes(d.algorithm(), &bytes) != d {
            return Err(WithdrawReason::DigestMismatch);
        }
        Ok(Opened::Bytes(bytes.into()))
    })
    .await
    .unwrap_or_else(|e| Err(e.into()));

    match opened {
        Ok(Opened::Bytes(bytes)) => Ok(Body::full(bytes.slice(start as usize..end as usize))),
        Ok(Opened::File(file)) => {
            let whole = start == 0 && end == size;
            let check = if whole {
                match seals.lookup(&digest, &identity) {
                    Lookup::Sealed(seal) => Check::Seal(seal),
                    Lookup::Build(ticket) => {
                        Check::Digest(Box::new(digest.algorithm().hasher()), Some(ticket))
                    }
                    Lookup::HashOnly => Check::Digest(Box::new(digest.algorithm().hasher()), None),
                }
            } else {
                seals
                    .get(&digest, &identity)
                    .map_or(Check::Identity, Check::Seal)
            };
            let fill = whole.then(|| cache.reserve(&digest, size)).flatten();
            let stream = BlobStream::new(
                app.clone(),
                digest,
                identity,
                file,
                (start, end),
                check,
                fill,
            );
            Ok(Body::Blob(Box::new(stream)))
        }
        Err(why) => {
            blob.withdraw();
            Err(Withdrawn { digest, why })
        }
    }
}

enum Opened {
    Bytes(bytes::Bytes),
    File(std::fs::File),
}
