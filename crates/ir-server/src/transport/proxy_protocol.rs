//! The PROXY protocol (`--proxy-protocol`): a load balancer in TCP mode
//! (haproxy `send-proxy` or `send-proxy-v2`) prefixes each connection with
//! a header naming the real client, which then stands for the peer in
//! logs, metrics and per-address limits.
//!
//! Both versions are parsed by the `ppp` crate. The header is taken off the
//! socket with `peek` and then exactly its length is read, so the bytes
//! after it (a TLS ClientHello, an HTTP request) stay on the socket for the
//! transport. When the option is on, a connection without a valid header
//! is refused: a client that could connect directly must not be able to
//! name its own address.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest header accepted (v1 is at most 107 bytes; v2 is 16 bytes plus
/// its addresses and TLVs, which haproxy keeps small).
pub const MAX_HEADER: usize = 1024;

/// Pause before peeking again at a header that arrived in pieces (rare:
/// balancers send it in the connection's first segment). The handshake
/// timeout bounds the wait as a whole.
const RETRY: Duration = Duration::from_millis(5);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection closed before a complete header.
    #[error("PROXY protocol: connection closed before a complete header")]
    Closed,
    /// The first bytes are not a PROXY protocol header.
    #[error("PROXY protocol: no valid header ({0})")]
    Invalid(String),
    /// The header is longer than [`MAX_HEADER`].
    #[error("PROXY protocol: header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// Reading the socket failed.
    #[error("PROXY protocol: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `tcp` and returns the client
/// address it names. A v2 `LOCAL` header (the balancer's own health
/// check) and a v1 `UNKNOWN` one name no client: `peer` (the balancer) is
/// returned. The caller bounds the time this takes.
pub async fn read_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        match parse(&buf[..n]) {
            Parsed::Complete { len, client } => {
                tcp.read_exact(&mut buf[..len]).await?;
                return Ok(client.unwrap_or(peer));
            }
            Parsed::Invalid(why) => return Err(ProxyHeaderError::Invalid(why)),
            Parsed::Incomplete if n == MAX_HEADER => return Err(ProxyHeaderError::TooLong),
            Parsed::Incomplete => {
                if n == seen {
                    tokio::time::sleep(RETRY).await;
                }
                seen = n;
            }
        }
    }
}

/// What the first bytes of a connection hold.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A header of `len` bytes naming `client` (`None`: no client named).
    Complete {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// The start of a header: more bytes are needed.
    Incomplete,
    /// Not a header.
    Invalid(String),
}

fn parse(bytes: &[u8]) -> Parsed {
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => Parsed::Complete {
            len: h.header.len(),
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Parsed::Complete {
            len: h.header.len(),
            client: match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                // UNIX sockets or an unspecified family name no IP client.
                (v2::Command::Proxy, _) => None,
            },
        },
        HeaderResult::V1(Err(e)) => Parsed::Invalid(e.to_string()),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2_tcp4(command: u8) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(0x20 | command);
        h.push(0x11); // TCP over IPv4
        h.extend_from_slice(&12u16.to_be_bytes());
        h.extend_from_slice(&[192, 0, 2, 7, 127, 0, 0, 1]);
        h.extend_from_slice(&40000u16.to_be_bytes());
        h.extend_from_slice(&1337u16.to_be_bytes());
        h
    }

    #[test]
    fn v1_headers() {
        let h = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1337\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Parsed::Complete {
                len: 43,
                client: Some("192.0.2.7:40000".parse().unwrap())
            }
        );
        let h = b"PROXY TCP6 2001:db8::1 ::1 40000 1337\r\n";
        assert_eq!(
            parse(h),
            Parsed::Complete {
                len: h.len(),
                client: Some("[2001:db8::1]:40000".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Complete {
                len: 15,
                client: None
            }
        );
        assert_eq!(parse(b"PROXY TCP4 192.0"), Parsed::Incomplete);
    }

    #[test]
    fn v2_headers() {
        let mut h = v2_tcp4(1);
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01"); // a ClientHello follows
        assert_eq!(
            parse(&h),
            Parsed::Complete {
                len,
                client: Some("192.0.2.7:40000".parse().unwrap())
            }
        );
        assert_eq!(parse(&v2_tcp4(0)), Parsed::Complete { len, client: None });
        assert_eq!(parse(&v2_tcp4(1)[..20]), Parsed::Incomplete);
    }

    #[test]
    fn other_traffic_is_invalid() {
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 99999\r\n",
        ] {
            assert!(matches!(parse(bytes), Parsed::Invalid(_)), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn the_bytes_after_the_header_stay_on_the_socket() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut bytes = v2_tcp4(1);
            // Split across writes: the reader must wait for the rest.
            c.write_all(&bytes[..10]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            bytes.extend_from_slice(b"hello");
            c.write_all(&bytes[10..]).await.unwrap();
            c
        });
        let (mut tcp, peer) = listener.accept().await.unwrap();
        let client_addr = read_header(&mut tcp, peer).await.unwrap();
        assert_eq!(client_addr, "192.0.2.7:40000".parse().unwrap());
        let mut rest = [0u8; 5];
        tcp.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello");
        drop(client.await.unwrap());
    }
}
