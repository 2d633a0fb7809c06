//! TLS: rustls with TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate from a [`CertStore`](crate::cert_store::CertStore) that can be
//! rotated without a restart (new handshakes get the new pair; open
//! connections keep theirs).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Handshake;
use crate::api::ConnInfo;

/// The TLS transport.
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// A TLS transport with `config` (see [`crate::cert_store::server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Tls {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Handshake for Tls {
    type Io = TlsStream<TcpStream>;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Self::Io, ConnInfo), String> {
        let stream = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok((stream, ConnInfo::open(peer)))
    }
}
