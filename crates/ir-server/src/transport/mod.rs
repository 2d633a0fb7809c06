//! Accept loops. A transport is a [`Handshake`]: it turns an accepted TCP
//! stream into a byte stream plus what it learned about the peer
//! ([`ConnInfo`]). The loop around it is the same for every transport, and
//! bounds each flight of the handshake on its own, so that only the
//! server's work holds a slot, never a wait for the client's bytes:
//!
//! 1. with `--proxy-protocol`, a connection from outside
//!    `--proxy-protocol-from` is closed at once; a listed one's header is
//!    read, and names the peer from then on;
//! 2. at most `max_handshakes_per_address` connections per source address
//!    (IPv6: per prefix, see [`AddressKeying`]) are in a handshake at once,
//!    counting every step below; further ones are closed at once;
//! 3. the client's first flight (the TLS ClientHello), within
//!    `hello_timeout`;
//! 4. the client's next flight (for RA-TLS, its certificate and token),
//!    within `flight_timeout`;
//! 5. a verification slot (one of `max_handshakes`) held only while the
//!    server checks what arrived (token signatures, Veraison);
//!
//! all within `handshake_timeout`, each connection in its own task (one
//! slow client never delays another); rate-limited refusal logs; and
//! graceful shutdown.

pub mod cert_store;
pub mod client_access;
mod error;
mod guard;
mod per_address;
pub mod plain;
pub mod proxy_protocol;
pub mod ratls;

mod refusals;
pub mod server;
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
use crate::transport::server::{http_builder, serve_connection, ConnLimits, Shutdown};
pub use error::HandshakeError;
pub use guard::GuardedIo;
pub use per_address::{AddressKeying, PerAddress, DEFAULT_IPV6_PREFIX_LEN};
use proxy_protocol::{ProxyHeaderError, ProxySources};
pub use refusals::{bounded, RefusalLog, MAX_DETAIL};

/// Turns an accepted connection into a stream to speak HTTP on, in three
/// phases: [`hello`](Handshake::hello) reads what the client sends first,
/// [`handshake`](Handshake::handshake) answers it and reads the client's
/// next flight (each under its own timeout, holding no slot), then
/// [`verify`](Handshake::verify) does the work that costs the server
/// (holding a verification slot).
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP runs on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What the first phase read (for TLS, the ClientHello).
    type Hello: Send + 'static;
    /// What the second phase produced (for TLS, the completed handshake).
    type Exchanged: Send + 'static;

    /// Reads the client's first flight.
    fn hello(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Hello, HandshakeError>> + Send;

    /// Answers the first flight and reads the client's next one; only
    /// cheap checks belong here (the loop bounds it by the flight timeout,
    /// not by a slot).
    fn handshake(
        &self,
        hello: Self::Hello,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Exchanged, HandshakeError>> + Send;

    /// Judges the exchanged handshake, by `deadline` (the loop also
    /// enforces it; a transport uses it to budget its own waits).
    fn verify(
        &self,
        exchanged: Self::Exchanged,
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
    /// Most handshakes being verified at once (verification slots).
    pub max_handshakes: usize,
    /// Most connections in a handshake at once from one source address
    /// (at any step, waiting included); further ones are closed at once.
    pub max_handshakes_per_address: usize,
    /// IPv6 prefix length that counts as one source address, for
    /// `max_handshakes_per_address` and the refusal log's budget.
    pub ipv6_prefix_len: u8,
    /// Time a client has to send its first flight (the TLS ClientHello);
    /// at most `handshake_timeout`.
    pub hello_timeout: Duration,
    /// Time a client has to send its next flight once the server answered
    /// its first (RA-TLS: its certificate with the token); at most what is
    /// left of `handshake_timeout`.
    pub flight_timeout: Duration,
    /// Time a client has to complete its handshake, from its connection to
    /// the end of its verification (including waiting for a slot).
    pub handshake_timeout: Duration,
    /// Time requests in flight get to finish after shutdown is requested.
    pub grace: Duration,
    /// Longest a response may wait for the client to take more bytes
    /// before the connection is closed (slow or stalled readers).
    pub send_timeout: Duration,
    /// Longest a connection may stay without a byte read or written
    /// (before its first request, and between requests).
    pub idle_timeout: Duration,
    /// `Some`: connections come from these balancers, each starting with a
    /// PROXY protocol header (v1 or v2) naming the real client;
    /// connections from elsewhere, or without a valid header, are refused.
    pub proxy_protocol: Option<ProxySources>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: ConnLimits::default(),
            max_connections: 10_000,
            max_handshakes: 256,
            max_handshakes_per_address: DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            flight_timeout: DEFAULT_FLIGHT_TIMEOUT,
            handshake_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            proxy_protocol: None,
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

/// Default bound on connections in a handshake per source address.
pub const DEFAULT_MAX_HANDSHAKES_PER_ADDRESS: usize = 16;

/// Default time for a client's first flight: a ClientHello is one small
/// packet, so a few seconds cover any real network.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Default time for a client's next flight: a realm fetches its token from
/// the platform before sending it, which takes well under a second on
/// hardware.
pub const DEFAULT_FLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

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
    let keying = AddressKeying::new(options.ipv6_prefix_len);
    let per_address = PerAddress::new(options.max_handshakes_per_address, keying);
    let refusals = Arc::new(RefusalLog::new(keying));
    let busy = Arc::new(RefusalLog::new(keying));
    let proxy_protocol = options.proxy_protocol.clone().map(Arc::new);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot before accepting, so a flood of
        // connections queues in the kernel's backlog instead of in memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
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
        let open = state.metrics.as_ref().map(|m| m.connection_opened());
        let connection = Connection {
            handshake: handshake.clone(),
            handshakes: handshakes.clone(),
            per_address: per_address.clone(),
            refusals: refusals.clone(),
            busy: busy.clone(),
            proxy_protocol: proxy_protocol.clone(),
            timeout: options.handshake_timeout,
            hello_timeout: options.hello_timeout.min(options.handshake_timeout),
            flight_timeout: options.flight_timeout,
        };
        let state = state.clone();
        let builder = builder.clone();
        let watcher = draining.watcher();
        let send_timeout = options.send_timeout;
        let idle_timeout = options.idle_timeout;
        tokio::spawn(async move {
            let _open = open;
            if let Some((io, info)) = connection.establish(tcp, peer).await {
                let io = GuardedIo::new(io, permit, send_timeout, idle_timeout);
                serve_connection(io, info, state, builder, watcher).await;
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

/// What one connection's handshake runs with.
struct Connection<H> {
    handshake: Arc<H>,
    handshakes: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    refusals: Arc<RefusalLog>,
    /// Connections closed for their address's cap: a budget of lines of
    /// their own, so a flood from an address does not use up the lines a
    /// refused realm at that address needs.
    busy: Arc<RefusalLog>,
    proxy_protocol: Option<Arc<ProxySources>>,
    timeout: Duration,
    hello_timeout: Duration,
    flight_timeout: Duration,
}

impl<H: Handshake> Connection<H> {
    /// Runs the handshake's steps (see the module's documentation); `None`
    /// when the connection was refused or dropped (and logged as such).
    async fn establish(self, mut tcp: TcpStream, peer: SocketAddr) -> Option<(H::Io, ConnInfo)> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let hello_deadline = started + self.hello_timeout;
        // Behind balancers, only they may connect; the client their header
        // names is the peer from here on (handshake, limits, logs, metrics).
        let peer = match &self.proxy_protocol {
            None => peer,
            Some(sources) if !sources.contains(peer.ip()) => {
                self.refusals
                    .refused(peer, &ProxyHeaderError::NotFromProxy.into());
                return None;
            }
            Some(_) => {
                match tokio::time::timeout_at(
                    hello_deadline,
                    proxy_protocol::read_header(&mut tcp, peer),
                )
                .await
                {
                    Ok(Ok(client)) => client,
                    Ok(Err(e)) => {
                        self.refusals.refused(peer, &e.into());
                        return None;
                    }
                    Err(_) => {
                        let e = HandshakeError::HelloTimeout(self.hello_timeout);
                        tracing::debug!(%peer, reason = e.reason(), "connection dropped: {e}");
                        return None;
                    }
                }
            }
        };
        // Counted from here until the handshake ends, whatever it waits for.
        let Some(_address_slot) = self.per_address.try_acquire(peer.ip()) else {
            let e = HandshakeError::AddressBusy(self.per_address.limit());
            self.busy.refused(peer, &e);
            return None;
        };
        let hello =
            match tokio::time::timeout_at(hello_deadline, self.handshake.hello(tcp, peer)).await {
                Ok(Ok(hello)) => hello,
                // A TLS error (not TLS at all, say) is worth a line.
                Ok(Err(e @ HandshakeError::Tls(_))) => {
                    self.refusals.refused(peer, &e);
                    return None;
                }
                // Closed or silent before saying anything (port scans, TCP
                // health checks, floods): not worth a line, nor a share of
                // the address's log lines that a refused realm needs.
                Ok(Err(e)) => {
                    tracing::debug!(%peer, reason = e.reason(), "connection dropped: {e}");
                    return None;
                }
                Err(_) => {
                    let e = HandshakeError::HelloTimeout(self.hello_timeout);
                    tracing::debug!(%peer, reason = e.reason(), "connection dropped: {e}");
                    return None;
                }
            };
        // The client's next flight: still no slot, its own timeout.
        let flight_deadline = (Instant::now() + self.flight_timeout).min(deadline);
        let exchanged =
            match tokio::time::timeout_at(flight_deadline, self.handshake.handshake(hello, peer))
                .await
            {
                Ok(Ok(exchanged)) => exchanged,
                Ok(Err(e)) => {
                    self.refusals.refused(peer, &e);
                    return None;
                }
                Err(_) => {
                    let e = if flight_deadline < deadline {
                        HandshakeError::FlightTimeout(self.flight_timeout)
                    } else {
                        HandshakeError::Timeout(self.timeout)
                    };
                    self.refusals.refused(peer, &e);
                    return None;
                }
            };
        // The server's work: a verification slot, within the deadline.
        let verified = async {
            let _slot = self
                .handshakes
                .acquire()
                .await
                .map_err(|_| HandshakeError::ShuttingDown)?;
            self.handshake.verify(exchanged, peer, deadline).await
        };
        match tokio::time::timeout_at(deadline, verified).await {
            Ok(Ok(established)) => Some(established),
            Ok(Err(e)) => {
                self.refusals.refused(peer, &e);
                None
            }
            Err(_) => {
                self.refusals
                    .refused(peer, &HandshakeError::Timeout(self.timeout));
                None
            }
        }
    }
}
