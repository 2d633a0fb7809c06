//! Accept loops. A transport is a [`Handshake`]: it turns an accepted TCP
//! stream into a byte stream plus what it learned about the peer
//! ([`ConnInfo`]). The loop around it is the same for every transport:
//! a bound on open connections; the client's first flight (the TLS
//! ClientHello) read under a short timeout *before* a handshake slot is
//! taken, so silent connections cannot hold the slots; a bound on
//! handshakes in progress, overall and per source address; a timeout on
//! the whole handshake (each in its own task, so one slow client never
//! delays another); rate-limited refusal logs; and graceful shutdown.

mod error;
mod guard;
mod per_address;
pub mod plain;
pub mod proxy_protocol;
pub mod ratls;
mod refusals;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::{ApiState, ConnInfo};
use crate::server::{http_builder, serve_connection, ConnLimits, Shutdown};
pub use error::HandshakeError;
pub use guard::GuardedIo;
pub use per_address::PerAddress;
pub use refusals::{bounded, RefusalLog, MAX_DETAIL};

/// Turns an accepted connection into a stream to speak HTTP on, in two
/// phases: [`hello`](Handshake::hello) reads what the client sends first
/// (under a short timeout, holding no handshake slot), then
/// [`handshake`](Handshake::handshake) does the work that costs the
/// server (holding a slot).
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP runs on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What the first phase read (for TLS, the ClientHello).
    type Hello: Send + 'static;

    /// Reads the client's first flight.
    fn hello(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Hello, HandshakeError>> + Send;

    /// Completes the handshake, by `deadline` (the loop also enforces it;
    /// a transport uses it to budget its own waits).
    fn handshake(
        &self,
        hello: Self::Hello,
        peer: SocketAddr,
        deadline: Instant,
    ) -> impl Future<Output = Result<(Self::Io, ConnInfo), HandshakeError>> + Send;
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
    /// Most handshakes in progress at once from one source address.
    pub max_handshakes_per_address: usize,
    /// Time a client has to send its first flight (the TLS ClientHello),
    /// before it takes a handshake slot; at most `handshake_timeout`.
    pub hello_timeout: Duration,
    /// Time a client has to complete its handshake (including its hello and
    /// waiting for a handshake slot).
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
            max_handshakes_per_address: DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
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

/// Default bound on handshakes in progress per source address.
pub const DEFAULT_MAX_HANDSHAKES_PER_ADDRESS: usize = 16;

/// Default time for a client's first flight: a ClientHello is one small
/// packet, so a few seconds cover any real network.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);

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
    let draining = Shutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let handshakes = Arc::new(Semaphore::new(options.max_handshakes));
    let per_address = PerAddress::new(options.max_handshakes_per_address);
    let refusals = Arc::new(RefusalLog::default());
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
        let per_address = per_address.clone();
        let refusals = refusals.clone();
        let state = state.clone();
        let builder = builder.clone();
        let watcher = draining.watcher();
        let timeout = options.handshake_timeout;
        let hello_timeout = options.hello_timeout.min(timeout);
        let send_timeout = options.send_timeout;
        let idle_timeout = options.idle_timeout;
        let proxy_protocol = options.proxy_protocol;
        tokio::spawn(async move {
            let _open = open;
            let deadline = Instant::now() + timeout;
            // The first flight holds no handshake slot: a silent client
            // costs a connection slot for `hello_timeout` and nothing more.
            let first_flight = async {
                // Behind a balancer, the client its PROXY header names is
                // the peer from here on (handshake, limits, logs, metrics).
                let peer = if proxy_protocol {
                    proxy_protocol::read_header(&mut tcp, peer).await?
                } else {
                    peer
                };
                handshake.hello(tcp, peer).await.map(|hello| (hello, peer))
            };
            let (hello, peer) = match tokio::time::timeout(hello_timeout, first_flight).await {
                Ok(Ok(first)) => first,
                // A TLS error (not TLS at all, say) or a missing PROXY
                // header is worth a line.
                Ok(Err(e @ (HandshakeError::Tls(_) | HandshakeError::ProxyHeader(_)))) => {
                    return refusals.refused(peer, &e)
                }
                // Closed or silent before saying anything (port scans, TCP
                // health checks, floods): not worth a line, nor a share of
                // the address's log lines that a refused realm needs.
                Ok(Err(e)) => {
                    return tracing::debug!(%peer, reason = e.reason(), "connection dropped: {e}")
                }
                Err(_) => {
                    let e = HandshakeError::HelloTimeout(hello_timeout);
                    return tracing::debug!(%peer, reason = e.reason(), "connection dropped: {e}");
                }
            };
            let attempt = async {
                let _address_slot = per_address.acquire(peer.ip()).await;
                let _slot = handshakes
                    .acquire()
                    .await
                    .map_err(|_| HandshakeError::ShuttingDown)?;
                handshake.handshake(hello, peer, deadline).await
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok((io, info))) => {
                    let io = GuardedIo::new(io, permit, send_timeout, idle_timeout);
                    serve_connection(io, info, state, builder, watcher).await;
                }
                Ok(Err(e)) => refusals.refused(peer, &e),
                Err(_) => refusals.refused(peer, &HandshakeError::Timeout(timeout)),
            }
        });
    }
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        options.grace
    );
    if tokio::time::timeout(options.grace, draining.drain())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}
