//! `--proxy-protocol` with `--proxy-protocol-from`: only the listed
//! balancers may connect, and the client their header names is the peer; a
//! client that reaches the port directly with a header of its own is closed
//! unserved, and the address it claims appears nowhere.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ir_server::api::ApiState;
use ir_server::snapshot::catalog::{self, Catalog};
use ir_server::transport::plain::Plain;
use ir_server::transport::proxy_protocol::ProxySources;
use ir_server::transport::server::ConnLimits;
use ir_testkit::Root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::options;

/// Log lines written while a test runs (on its own thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serves one application over plain HTTP with the access log on, taking
/// PROXY headers from `sources`.
async fn serve(sources: &str) -> (Root, SocketAddr) {
    let root = Root::new();
    root.good("app");
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let state = Arc::new(ApiState::new(catalog::shared(Catalog::new(registry)), true));
    let listener = ir_server::transport::bind("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = options(ConnLimits::default());
    let blocks = sources.split(',').map(|c| c.parse().unwrap()).collect();
    options.proxy_protocol = Some(ProxySources::new(blocks));
    tokio::spawn(ir_server::transport::serve(
        listener,
        Arc::new(Plain),
        state,
        options,
        std::future::pending(),
    ));
    (root, addr)
}

/// Connects from `source`, sends `bytes`, and returns all the server sends
/// back before it closes.
async fn exchange(server: SocketAddr, source: &str, bytes: &[u8]) -> Vec<u8> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut tcp = socket.connect(server).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server neither answered nor closed");
    out
}

fn request(claimed: &str) -> Vec<u8> {
    format!(
        "PROXY TCP4 {claimed} 127.0.0.1 40000 1337\r\n\
         GET /v2/app/tags/list HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// One test: the access log's line is only written by this module, and a
/// second test's thread without a subscriber could turn it off for this
/// one (tracing caches interest per call site, process-wide).
#[tokio::test]
async fn a_header_from_an_unlisted_address_is_refused() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);

    let (_root, server) = serve("127.0.0.2/32,10.0.0.0/8").await;
    // Another test's thread may have computed the callsites' interest (and
    // the global level) without this subscriber: compute it again.
    tracing::callsite::rebuild_interest_cache();
    // Directly, from 127.0.0.1 (not a balancer): closed, nothing served.
    let direct = exchange(server, "127.0.0.1", &request("192.0.2.99")).await;
    assert!(direct.is_empty(), "{}", String::from_utf8_lossy(&direct));
    // The same from the balancer: served, for the client it names.
    let proxied = exchange(server, "127.0.0.2", &request("192.0.2.77")).await;
    let text = String::from_utf8_lossy(&proxied);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"app\""), "{text}");
    // From the balancer without a header: closed, nothing served.
    let bare = b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n";
    assert!(exchange(server, "127.0.0.2", bare).await.is_empty());

    // The access log line is written once the response is done, which the
    // client may see first.
    let logged = || String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
    for _ in 0..100 {
        if logged().contains("192.0.2.77") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = logged();
    assert!(
        log.contains("192.0.2.77"),
        "the access log names the client: {log}"
    );
    assert!(
        !log.contains("192.0.2.99"),
        "the address a direct client claimed was used: {log}"
    );
    assert!(
        log.contains("peer=127.0.0.1:") && log.contains("not in --proxy-protocol-from"),
        "the refusal names the real source: {log}"
    );
}
