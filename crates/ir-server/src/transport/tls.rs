//! TLS: rustls with TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate from a [`CertStore`](crate::tls::CertStore) that can be
//! rotated without a restart (new handshakes get the new pair; open
//! connections keep theirs).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Handshake;
use crate::api::ConnInfo;
use crate::client_access::ClientMap;

/// The TLS transport.
pub struct Tls {
    acceptor: TlsAcceptor,
    clients: Option<Arc<ClientMap>>,
}

impl Tls {
    /// A TLS transport with `config` (see [`crate::tls::server_config`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Tls {
            acceptor: TlsAcceptor::from(config),
            clients: None,
        }
    }

    /// The same, limiting each client to the applications `clients` maps
    /// its certificate to (`config` must require client certificates:
    /// [`crate::tls::server_config_with_client_auth`]).
    pub fn with_client_map(config: Arc<rustls::ServerConfig>, clients: Arc<ClientMap>) -> Self {
        Tls {
            acceptor: TlsAcceptor::from(config),
            clients: Some(clients),
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
            let (name, visibility) = clients.access(der);
            if name.is_none() {
                tracing::info!(%peer, "client certificate matches no --client-map entry: it sees no application");
            }
            info.realm = name;
            info.visibility = visibility;
        }
        Ok((stream, info))
    }
}
