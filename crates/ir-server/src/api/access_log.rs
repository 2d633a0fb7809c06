//! The access log: one line per request (target `access`), written when the
//! response ends rather than when its head is ready, so that it says what
//! happened: the body bytes actually handed to the connection, the time to
//! the last byte, and whether the body was sent in full (a client that
//! disconnects mid-blob logs `completed=false`).
//!
//! The line's fields travel with the body ([`Logged`]): the request's
//! method, URI and user agent are cheap clones (hyper keeps them in shared
//! buffers), in one boxed [`Entry`] per request. Boxed because hyper moves
//! the body by value several times per response: inline, the entry's
//! ~240 bytes were copied each time even with the access log off
//! (measured with callgrind: 5 % more instructions per small GET).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Method, Request, Response, Uri};
use http_body::{Frame, SizeHint};

use super::conn::ConnInfo;
use crate::delivery::stream::StreamError;
use crate::delivery::Body;

/// What the line says about the request, gathered before it is answered.
#[derive(Debug)]
pub struct Entry {
    peer: SocketAddr,
    realm: Option<Arc<str>>,
    user: Option<Arc<str>>,
    method: Method,
    uri: Uri,
    user_agent: Option<HeaderValue>,
    started: Instant,
    status: u16,
    sent: u64,
    failed: bool,
}

impl Entry {
    /// The fields of `req` on `conn`, timed from now.
    pub fn of<B>(conn: &ConnInfo, req: &Request<B>) -> Box<Entry> {
        Box::new(Entry {
            peer: conn.peer,
            realm: conn.realm.clone(),
            user: None,
            method: req.method().clone(),
            uri: req.uri().clone(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            started: Instant::now(),
            status: 0,
            sent: 0,
            failed: false,
        })
    }
}

/// A response body that writes its access log line when it ends or is
/// dropped.
#[derive(Debug)]
pub struct Logged {
    inner: Body,
    entry: Option<Box<Entry>>,
}

impl Logged {
    /// `response` with its line written at its end (`entry`: `None` when
    /// the access log is off).
    pub fn wrap(response: Response<Body>, mut entry: Option<Box<Entry>>) -> Response<Logged> {
        if let Some(e) = entry.as_mut() {
            e.status = response.status().as_u16();
            e.user = response
                .extensions()
                .get::<crate::auth::AuthenticatedUser>()
                .map(|u| u.0.clone());
        }
        response.map(|inner| Logged { inner, entry })
    }

    fn finish(&mut self) {
        let Some(e) = self.entry.take() else { return };
        let completed = !e.failed && http_body::Body::is_end_stream(&self.inner);
        let ua = e
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "access",
            peer = %e.peer,
            method = %e.method,
            path = %e.uri.path(),
            status = e.status,
            bytes = e.sent,
            micros = e.started.elapsed().as_micros() as u64,
            completed,
            user_agent = ua,
            realm = e.realm.as_deref().unwrap_or("-"),
            user = e.user.as_deref().unwrap_or("-"),
        );
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(e) = this.entry.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        e.sent += data.remaining() as u64;
                    }
                }
                Poll::Ready(Some(Err(_))) => e.failed = true,
                Poll::Ready(None) => this.finish(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}
