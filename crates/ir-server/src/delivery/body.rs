//! The response body type: nothing, bytes in memory (in one frame or in
//! chunks), or a verified blob stream. An enum rather than a boxed trait
//! object, so the common cases (manifests, JSON, errors) cost no
//! allocation beyond their bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::delivery::stream::{BlobStream, StreamError, CHUNK};

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// No body (HEAD, 304, …).
    Empty,
    /// Bytes held in memory, sent in one frame.
    Full(Option<Bytes>),
    /// Large bytes held in memory (a blob's verified copy), sent in frames
    /// of one blob chunk, as a blob stream would be.
    Chunked(Bytes),
    /// A blob read from disk and checked while it streams.
    Blob(Box<BlobStream>),
}

impl Body {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }

    /// A body of large `bytes`, sent chunk by chunk.
    pub fn chunked(bytes: Bytes) -> Self {
        Body::Chunked(bytes)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match &mut *self {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Chunked(b) if b.is_empty() => Poll::Ready(None),
            Body::Chunked(b) => {
                let frame = b.split_to(b.len().min(CHUNK));
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Body::Blob(s) => s.poll_chunk(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Chunked(b) => b.is_empty(),
            Body::Blob(s) => s.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Chunked(b) => SizeHint::with_exact(b.len() as u64),
            Body::Blob(s) => SizeHint::with_exact(s.remaining()),
        }
    }
}
