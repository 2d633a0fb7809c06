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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

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

/// Tells open connections that the server is shutting down, and waits
/// until they have all ended.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<()>,
}

/// A connection's end of [`Shutdown`]; the server waits while it exists.
#[derive(Debug)]
pub struct ShutdownWatcher {
    rx: watch::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// No connection watching yet.
    pub fn new() -> Self {
        Shutdown {
            tx: watch::channel(()).0,
        }
    }

    /// A watcher for one more connection.
    pub fn watcher(&self) -> ShutdownWatcher {
        ShutdownWatcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Asks every watching connection to finish its requests in flight and
    /// close, and waits until all have.
    pub async fn drain(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// Serves HTTP on one established connection until it closes, or until
/// shutdown is requested (or the connection reaches its `max_age`, see
/// [`ConnInfo`]) and its requests in flight have finished: HTTP/1.1
/// closes after the response in progress, HTTP/2 sends GOAWAY.
pub async fn serve_connection<IO>(
    io: IO,
    conn: ConnInfo,
    state: Arc<ApiState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: ShutdownWatcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let max_age = conn.max_age;
    let service = service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(api::handle_logged(&state, &conn, req).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(connection);
    let aged = async {
        match max_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(aged);
    let mut rx = watcher.rx;
    let mut closing = false;
    let result = loop {
        // Biased: the connection, polled on every wakeup, comes first and
        // no random branch order is drawn per poll.
        tokio::select! {
            biased;
            r = connection.as_mut() => break r,
            _ = rx.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut aged, if !closing => {
                tracing::debug!(%peer, "connection reached its maximum age; closing between requests");
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    // Held until the connection ended, so shutdown waits for it.
    drop(rx);
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
