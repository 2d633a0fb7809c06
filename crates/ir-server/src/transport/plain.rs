//! Plain HTTP: no handshake; HTTP/1.1 and h2c (prior knowledge).

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::Handshake;
use crate::api::ConnInfo;

/// The plain TCP transport.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(TcpStream, ConnInfo), String> {
        Ok((tcp, ConnInfo::open(peer)))
    }
}
