//! Plain HTTP: no handshake; HTTP/1.1 and h2c (prior knowledge).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Handshake, HandshakeError};
use crate::api::ConnInfo;

/// The plain TCP transport.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    type Hello = TcpStream;
    type Exchanged = TcpStream;

    async fn hello(&self, tcp: TcpStream, _peer: SocketAddr) -> Result<TcpStream, HandshakeError> {
        // Nothing to read first: HTTP's own header timeout covers silence.
        Ok(tcp)
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> Result<TcpStream, HandshakeError> {
        Ok(tcp)
    }

    async fn verify(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        _deadline: Instant,
    ) -> Result<(TcpStream, ConnInfo), HandshakeError> {
        Ok((tcp, ConnInfo::open(peer)))
    }
}
