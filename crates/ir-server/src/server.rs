//! Serving HTTP on accepted connections: HTTP/1.1 with keep-alive and
//! HTTP/2 (h2c prior knowledge on plain TCP, ALPN `h2` under TLS), with
//! bounded header sizes and read timeouts, and graceful shutdown.
//!
//! Transports (plain, TLS, RA-TLS) only turn an accepted TCP stream into a
//! byte stream plus a [`ConnInfo`]; this module does the rest the same way
//! for all of them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::{self, ApiState, ConnInfo};

/// Limits applied to every connection.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time allowed for a client to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes.
    pub max_head_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(20),
            max_head_bytes: 64 << 10,
            max_h2_streams: 128,
        }
    }
}

/// Builds the HTTP/1.1 + HTTP/2 connection builder with `limits`.
pub fn http_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(limits.max_head_bytes as u32);
    // No HTTP/2 keep-alive pings: idle connections are closed by the idle
    // timeout (see transport::GuardedIo), which pings would defeat.
    b
}

/// Serves HTTP on one established connection until it closes, or until
/// shutdown is requested and its requests in flight have finished.
pub async fn serve_connection<IO>(
    io: IO,
    conn: ConnInfo,
    state: Arc<ApiState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(api::handle_logged(&state, &conn, req).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
