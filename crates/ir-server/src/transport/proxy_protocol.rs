//! The PROXY protocol (`--proxy-protocol`): a load balancer in TCP mode
//! (haproxy `send-proxy` or `send-proxy-v2`) prefixes each connection with
//! a header naming the real client, which then stands for the peer in
//! logs, metrics and per-address limits.
//!
//! Both versions are parsed by the `ppp` crate. The header is taken off the
//! socket with `peek` and then exactly its length is read, so the bytes
//! after it (a TLS ClientHello, an HTTP request) stay on the socket for the
//! transport. When the option is on, only the balancers' addresses
//! (`--proxy-protocol-from`, a list of [`Cidr`]s) may connect at all:
//! a connection from any other address is closed before a byte is read,
//! so a client that reaches the port directly cannot name an address of
//! its choosing; and a connection without a valid header is refused.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
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
    /// The connection does not come from an address in
    /// `--proxy-protocol-from`.
    #[error("PROXY protocol: connection from an address not in --proxy-protocol-from")]
    NotFromProxy,
}

/// An address block, `ADDRESS/LENGTH` or a single `ADDRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

/// Why a `--proxy-protocol-from` entry is not an address block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS` or `ADDRESS/LENGTH`.
    #[error("{0:?} is not an IP address or ADDRESS/LENGTH block")]
    Syntax(String),
    /// The prefix length is longer than the address.
    #[error("{0:?}: the prefix length is longer than the address (32 for IPv4, 128 for IPv6)")]
    Length(String),
    /// Bits set after the prefix: probably a typo, refused rather than
    /// guessed at.
    #[error("{given:?} has bits set after its /{len} prefix (the block is {network}/{len})")]
    HostBits {
        /// The entry as given.
        given: String,
        /// The block's network address.
        network: IpAddr,
        /// The prefix length.
        len: u8,
    },
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.len) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                // Digits only: no sign, no spaces, no leading `+`.
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                (a, Some(l.parse::<u8>().map_err(|_| syntax())?))
            }
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(CidrError::Length(s.to_string()));
        }
        let network = mask(ip, len);
        if network != ip {
            return Err(CidrError::HostBits {
                given: s.to_string(),
                network,
                len,
            });
        }
        Ok(Cidr { network, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// The addresses allowed to send PROXY headers (`--proxy-protocol-from`);
/// empty, none is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySources(Vec<Cidr>);

impl ProxySources {
    /// The balancers in `blocks`.
    pub fn new(blocks: Vec<Cidr>) -> Self {
        ProxySources(blocks)
    }

    /// Whether a connection from `ip` may send a header.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
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
    fn cidrs() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::a01:1".parse().unwrap()), "IPv6, not IPv4");
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "x/8",
            "10.0.0/8",
            "10.0.0.0/8/8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        let sources = ProxySources::new(vec![c, v6]);
        assert!(sources.contains("10.1.0.1".parse().unwrap()));
        assert!(!sources.contains("127.0.0.1".parse().unwrap()));
        assert!(!ProxySources::default().contains("10.1.0.1".parse().unwrap()));
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
