//! `ir-server probe [URL]`: a health check for images without an HTTP
//! client (the distroless image's `HEALTHCHECK`). It sends one `GET` and
//! exits 0 on a 2xx status, 1 otherwise. Without a URL it asks the metrics
//! listener named by `IR_SERVER_METRICS_ADDR` for `/readyz` (an unspecified
//! address such as `0.0.0.0` is reached on loopback).
//!
//! Plain `http://` only: probes go to the metrics listener (`/readyz`),
//! which speaks plain HTTP/1.1 whatever the API port speaks. Written on
//! blocking `std::net` because a one-shot request needs neither the async
//! runtime nor a client crate, and every step is bounded by `--timeout`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// The first argument that selects this subcommand (`ir-server probe …`).
/// Flags-only invocations never start with it, so they are unaffected.
pub const SUBCOMMAND: &str = "probe";

/// Longest status line and headers read from the server.
const MAX_HEAD: usize = 8 << 10;

/// `ir-server probe`: exit 0 if URL answers a 2xx status.
#[derive(Debug, Parser)]
#[command(name = "ir-server probe", version)]
pub struct ProbeArgs {
    /// plain-HTTP URL to GET, e.g. http://127.0.0.1:9090/readyz (default:
    /// /readyz on IR_SERVER_METRICS_ADDR)
    pub url: Option<String>,

    /// seconds allowed for connecting and the answer
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("not a plain http:// URL: {0}")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not an HTTP status line.
    #[error("not an HTTP answer")]
    Malformed,
    /// The server answered a status other than 2xx.
    #[error("status {0}")]
    Status(u16),
}

/// Runs the subcommand with `args` (the words after `probe`).
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = ProbeArgs::parse_from(std::iter::once(SUBCOMMAND.into()).chain(args));
    let url = match args.url.or_else(default_url) {
        Some(url) => url,
        None => {
            eprintln!("probe: give a URL, or set IR_SERVER_METRICS_ADDR to ADDR:PORT");
            return ExitCode::FAILURE;
        }
    };
    match probe(&url, Duration::from_secs(args.timeout.max(1))) {
        Ok(status) => {
            println!("{url} {status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `/readyz` on `IR_SERVER_METRICS_ADDR`, if that is an address.
fn default_url() -> Option<String> {
    let addr = std::env::var("IR_SERVER_METRICS_ADDR").ok()?;
    readyz_url(addr.parse().ok()?).into()
}

fn readyz_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/readyz")
}

/// GETs `url` and returns its status if it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let (authority, path) = split_url(url)?;
    let deadline = Instant::now() + timeout;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ProbeError::Url(url.to_string()))?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)?;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    tcp.set_write_timeout(Some(remaining()))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ir-server-probe\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        tcp.set_read_timeout(Some(remaining()))?;
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = parse_status(&head).ok_or(ProbeError::Malformed)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// `http://host:port/path` → (`host:port`, `/path`); port 80 by default.
fn split_url(url: &str) -> Result<(String, &str), ProbeError> {
    let bad = || ProbeError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        return Err(bad());
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path))
}

/// The status code of `HTTP/1.x NNN …`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9090/readyz").unwrap(),
            ("127.0.0.1:9090".to_string(), "/readyz")
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".to_string(), "/")
        );
        assert_eq!(
            split_url("http://[::1]/x").unwrap(),
            ("[::1]:80".to_string(), "/x")
        );
        for bad in [
            "https://a/",
            "a:1/",
            "http:///x",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_url_reaches_unspecified_addresses_on_loopback() {
        assert_eq!(
            readyz_url("0.0.0.0:9090".parse().unwrap()),
            "http://127.0.0.1:9090/readyz"
        );
        assert_eq!(
            readyz_url("[::]:9".parse().unwrap()),
            "http://[::1]:9/readyz"
        );
        assert_eq!(
            readyz_url("10.0.0.1:9090".parse().unwrap()),
            "http://10.0.0.1:9090/readyz"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000\r\n"), None);
    }
}
