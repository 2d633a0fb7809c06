//! TLS: rustls with TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate from a [`CertStore`](crate::transport::cert_store::CertStore) that can be
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
use crate::transport::client_access::{ClientMap, SharedClientMap};

/// The TLS transport.
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    clients: Option<Arc<SharedClientMap>>,
}

impl Tls {
    /// A TLS transport with `config` (see [`crate::transport::cert_store::server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Tls {
            config,
            clients: None,
        }
    }

    /// The same, limiting each client to the applications `clients` maps
    /// its certificate to (`config` must require client certificates:
    /// [`crate::transport::cert_store::server_config_with_client_auth`]).
    pub fn with_client_map(config: Arc<rustls::ServerConfig>, clients: Arc<ClientMap>) -> Self {
        let fixed = SharedClientMap::new(Default::default(), (*clients).clone());
        Self::with_shared_client_map(config, fixed)
    }

    /// The same with the map in force in `clients` at each request (the
    /// access map reloaded on SIGHUP).
    pub fn with_shared_client_map(
        config: Arc<rustls::ServerConfig>,
        clients: Arc<SharedClientMap>,
    ) -> Self {
        Tls {
            config,
            clients: Some(clients),
        }
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
    type Exchanged = (Self::Io, ConnInfo);

    async fn hello(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> Result<Self::Hello, HandshakeError> {
        read_client_hello(tcp).await
    }

    /// The whole TLS handshake (a client certificate's chain, if any, is
    /// checked in it: a few signatures, like the handshake's own).
    async fn handshake(
        &self,
        hello: Self::Hello,
        peer: SocketAddr,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        let stream = hello
            .into_stream(self.config.clone())
            .await
            .map_err(HandshakeError::from_io)?;
        let mut info = ConnInfo::open(peer);
        if let Some(clients) = &self.clients {
            // The verifier required a certificate; no certificate here
            // would be a bug, and sees nothing.
            let der = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or(&[][..], |c| c.as_ref());
            let (name, visibility) = clients.live_access(der);
            if name.is_none() {
                tracing::info!(%peer, "client certificate matches no --client-map entry: it sees no application");
            }
            info.realm = name;
            info.visibility = visibility;
            info.identity = crate::audit::identity::certificate_identity(der).map(Arc::new);
        }
        Ok((stream, info))
    }

    async fn verify(
        &self,
        exchanged: (Self::Io, ConnInfo),
        _peer: SocketAddr,
        _deadline: Instant,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        Ok(exchanged)
    }
}
