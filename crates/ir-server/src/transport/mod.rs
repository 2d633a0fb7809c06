//! Accept loops. A transport is a [`Handshake`]: it turns an accepted TCP
//! stream into a byte stream plus what it learned about the peer
//! ([`ConnInfo`]). The loop around it is the same for every transport:
//! a bound on open connections, a bound and a timeout on handshakes (run
//! in each connection's own task, so one slow client never delays
//! another), and graceful shutdown.

mod guard;
pub mod plain;
pub mod proxy_protocol;
pub mod ratls;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::{ApiState, ConnInfo};
use crate::server::{http_builder, serve_connection, ConnLimits};
pub use guard::GuardedIo;

/// Turns an accepted connection into a stream to speak HTTP on.
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP runs on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Performs the transport's handshake. An error is a one-line reason,
    /// logged with the peer's address.
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<(Self::Io, ConnInfo), String>> + Send;
}

/// Bounds for an accept loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTP limits per connection.
    pub limits: ConnLimits,
    /// Most connections open at once; further clients wait in the kernel's
    /// accept backlog.
    pub max_connections: usize,
    /// Most handshakes in progress at once.
    pub max_handshakes: usize,
    /// Time a client has to complete its handshake (including waiting for a
    /// handshake slot).
    pub handshake_timeout: Duration,
    /// Time requests in flight get to finish after shutdown is requested.
    pub grace: Duration,
    /// Longest a response may wait for the client to take more bytes
    /// before the connection is closed (slow or stalled readers).
    pub send_timeout: Duration,
    /// Longest a connection may stay without a byte read or written
    /// (before its first request, and between requests).
    pub idle_timeout: Duration,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// naming the real client; connections without one are refused.
    pub proxy_protocol: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: ConnLimits::default(),
            max_connections: 10_000,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            proxy_protocol: false,
        }
    }
}

/// Binds a listening socket with an accept queue of `backlog` connections
/// (the kernel caps it at `net.core.somaxconn`). Connections beyond
/// `max_connections` wait there, so a deep queue absorbs bursts instead of
/// refusing them; the standard library's 128 is too shallow for a registry
/// that many nodes pull from at once.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Default accept queue length (see [`bind`]).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Accepts connections on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to the grace period for requests in flight.
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    handshake: Arc<H>,
    state: Arc<ApiState>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(http_builder(&options.limits));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let handshakes = Arc::new(Semaphore::new(options.max_handshakes));
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot before accepting, so a flood of
        // connections queues in the kernel's backlog instead of in memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => break,
        };
        let (mut tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let open = crate::metrics::connection_opened();
        let handshake = handshake.clone();
        let handshakes = handshakes.clone();
        let state = state.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let timeout = options.handshake_timeout;
        let send_timeout = options.send_timeout;
        let idle_timeout = options.idle_timeout;
        let proxy_protocol = options.proxy_protocol;
        tokio::spawn(async move {
            let _open = open;
            let attempt = async {
                let _slot = handshakes
                    .acquire()
                    .await
                    .map_err(|_| "shutting down".to_string())?;
                // Behind a balancer, the client it names is the peer from
                // here on (handshake, limits, logs, metrics).
                let client = if proxy_protocol {
                    proxy_protocol::read_header(&mut tcp, peer)
                        .await
                        .map_err(|e| e.to_string())?
                } else {
                    peer
                };
                handshake.handshake(tcp, client).await
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok((io, info))) => {
                    let io = GuardedIo::new(io, permit, send_timeout, idle_timeout);
                    serve_connection(io, info, state, builder, watcher).await;
                }
                Ok(Err(reason)) => tracing::warn!(%peer, "connection refused: {reason}"),
                Err(_) => {
                    tracing::info!(%peer, "handshake not completed within {timeout:?}; connection dropped")
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        options.grace
    );
    if tokio::time::timeout(options.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}
