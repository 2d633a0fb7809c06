//! Hostile requests: traversal in every form, malformed digests, oversized
//! heads, abusive ranges, slowloris, stalled readers and connection floods.
//! Each is refused or bounded, and other clients keep being served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{client, TestServer};
use ir_server::transport::server::ConnLimits;
use ir_server::transport::{plain::Plain, ServeOptions};
use ir_testkit::Root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    _root: Root,
    server: TestServer,
    layer: String,
    size: usize,
}

/// One application with a 8 MiB layer, served with tight, test-sized limits.
async fn setup(max_connections: usize) -> Setup {
    let root = Root::new();
    let app = root.layout("app");
    let size = 8 << 20;
    let image = app.image(&vec![1u8; size]);
    app.set_index(&[image.tagged("latest")]);
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let options = ServeOptions {
        limits: ConnLimits {
            header_read_timeout: Duration::from_secs(1),
            ..ConnLimits::default()
        },
        max_connections,
        handshake_timeout: Duration::from_secs(1),
        grace: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = TestServer::serve_with(registry, Arc::new(Plain), options, "http").await;
    Setup {
        _root: root,
        server,
        layer: image.layers[0].digest_str().to_string(),
        size,
    }
}

/// Sends raw bytes and returns everything the server answers (until it
/// closes, or 5 s).
async fn raw(server: &TestServer, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn still_serving(server: &TestServer) {
    let r = client()
        .get(server.url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn traversal_in_every_form_is_refused() {
    let s = setup(100).await;
    let paths = [
        "/v2/../../etc/passwd",
        "/v2/app/../../../etc/passwd/manifests/latest",
        "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
        "/v2/app%2f..%2f..%2fetc/manifests/latest",
        "/v2/app/blobs/..%2f..%2f..%2fetc%2fpasswd",
        "/v2//etc/passwd/manifests/latest",
        "/v2/app\\..\\..\\etc/manifests/latest",
        "/v2//app/manifests/latest",
        "/v2/app/blobs/sha256:..%2f..%2findex.json",
        "/v2/app/blobs/sha256/../../index.json",
        "/v2/app/manifests/..",
        "/v2/app/manifests/%2e%2e",
        "//etc/passwd",
        "/etc/passwd",
        "/v2/app/blobs/%2Fetc%2Fpasswd",
    ];
    for path in paths {
        let r = raw(
            &s.server,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_of(&r);
        assert!(matches!(status, 400 | 404), "{path}: {status}\n{r}");
        assert!(!r.contains("root:"), "{path} leaked a file");
        assert!(
            r.contains("\"errors\""),
            "{path}: not an OCI error body\n{r}"
        );
    }
    // Absolute-form request targets are routed by path only.
    let r = raw(
        &s.server,
        b"GET http://evil/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 404, "{r}");
    still_serving(&s.server).await;
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let s = setup(100).await;
    let hex = "a".repeat(64);
    for d in [
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}a"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("md5:{}", &hex[..32]),
        format!("sha1:{}", &hex[..40]),
        format!("sha256:{}%2f{}", &hex[..31], &hex[..32]),
        format!("sha256:{}\\{}", &hex[..31], &hex[..32]),
        "sha256:".to_string(),
        format!("SHA256:{hex}"),
        format!("sha512:{hex}"),
    ] {
        let r = raw(
            &s.server,
            format!("GET /v2/app/blobs/{d} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&r), 400, "{d}\n{r}");
        assert!(r.contains("DIGEST_INVALID"), "{d}\n{r}");
    }
}

#[tokio::test]
async fn oversized_heads_are_refused_and_others_served() {
    let s = setup(100).await;
    // A request line of several MiB.
    let long = format!(
        "GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a/".repeat(2 << 20)
    );
    let r = raw(&s.server, long.as_bytes()).await;
    assert!(
        matches!(status_of(&r), 400 | 414 | 431) || r.is_empty(),
        "{}",
        &r[..r.len().min(200)]
    );
    // A huge header.
    let big = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200 << 10)
    );
    let r = raw(&s.server, big.as_bytes()).await;
    assert!(
        matches!(status_of(&r), 400 | 431) || r.is_empty(),
        "{}",
        &r[..r.len().min(200)]
    );
    // Thousands of headers.
    let mut many = String::from("GET /v2/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..5000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(&s.server, many.as_bytes()).await;
    assert!(
        matches!(status_of(&r), 400 | 431) || r.is_empty(),
        "{}",
        &r[..r.len().min(200)]
    );
    still_serving(&s.server).await;
}

#[tokio::test]
async fn abusive_ranges_get_the_whole_blob_once() {
    let s = setup(100).await;
    let url = s.server.url(&format!("/v2/app/blobs/{}", s.layer));
    let thousands = format!(
        "bytes={}",
        (0..5000)
            .map(|i| format!("{}-{}", i, i + 10))
            .collect::<Vec<_>>()
            .join(",")
    );
    let overlapping = "bytes=0-100,50-150,0-,-10".to_string();
    for range in [thousands, overlapping] {
        let r = client()
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), s.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_dropped_and_does_not_slow_others() {
    let s = setup(100).await;
    let addr = s.server.addr;
    let slow = tokio::spawn(async move {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        for b in b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .chain(b"z".repeat(100).iter())
        {
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    });
    // Meanwhile others are served at once.
    for _ in 0..20 {
        let t = Instant::now();
        still_serving(&s.server).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let (elapsed, answer) = slow.await.unwrap();
    assert!(
        !answer.contains("200 OK"),
        "a trickled request was served: {answer}"
    );
    assert!(elapsed < Duration::from_secs(10), "held for {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_disconnected() {
    let s = setup(100).await;
    let mut c = TcpStream::connect(s.server.addr).await.unwrap();
    c.write_all(format!("GET /v2/app/blobs/{} HTTP/1.1\r\nHost: x\r\n\r\n", s.layer).as_bytes())
        .await
        .unwrap();
    // Read nothing while the send timeout (1 s) passes; others are served.
    for _ in 0..10 {
        still_serving(&s.server).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now drain: the server gave up, so the body is incomplete.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
    assert!(
        got.len() < s.size,
        "the stalled response was completed ({} bytes)",
        got.len()
    );
    still_serving(&s.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_bounded_and_the_server_keeps_answering() {
    let s = setup(64).await;
    // Five times more idle connections than slots: 64 are held, the rest
    // wait in the kernel's accept backlog. Each idle one is dropped when
    // its idle timeout (1 s) passes, so the queue drains at 64 per
    // second and an honest client behind it is served within ~5 s.
    let mut idle = Vec::new();
    for _ in 0..5 * 64 {
        idle.push(TcpStream::connect(s.server.addr).await.unwrap());
    }
    // A real client still gets its answer: idle connections time out on
    // their headers (1 s) and free their slots.
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(12),
        client().get(s.server.url("/v2/")).send(),
    )
    .await
    .expect("served within the bound")
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(12));
    drop(idle);
    still_serving(&s.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let s = setup(100).await;
    let mut c = TcpStream::connect(s.server.addr).await.unwrap();
    c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then nothing: the connection must not be held forever.
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("idle connection closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_use_outlives_the_idle_timeout() {
    // One request every 300 ms for 3 s on one keep-alive connection: three
    // times the idle timeout (1 s), yet never silent for a whole second.
    let s = setup(100).await;
    let mut c = TcpStream::connect(s.server.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..10 {
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "request {i} on a busy connection was not answered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
