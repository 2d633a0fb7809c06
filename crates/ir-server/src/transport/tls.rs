//! TLS: rustls with TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate from a [`CertStore`](crate::cert_store::CertStore) that can be
//! rotated without a restart (new handshakes get the new pair; open
//! connections keep theirs).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::{Handshake, HandshakeError};
use crate::api::ConnInfo;

/// The TLS transport.
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// A TLS transport with `config` (see [`crate::cert_store::server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Tls { config }
    }
}

/// Reads a TLS ClientHello (the first phase of the TLS transports).
pub(crate) async fn read_client_hello(
    tcp: TcpStream,
) -> Result<StartHandshake<TcpStream>, HandshakeError> {
    LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
        .await
        .map_err(HandshakeError::from_io)
}

impl Handshake for Tls {
    type Io = TlsStream<TcpStream>;
    type Hello = StartHandshake<TcpStream>;

    async fn hello(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> Result<Self::Hello, HandshakeError> {
        read_client_hello(tcp).await
    }

    async fn handshake(
        &self,
        hello: Self::Hello,
        peer: SocketAddr,
        _deadline: Instant,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        let stream = hello
            .into_stream(self.config.clone())
            .await
            .map_err(HandshakeError::from_io)?;
        Ok((stream, ConnInfo::open(peer)))
    }
}
