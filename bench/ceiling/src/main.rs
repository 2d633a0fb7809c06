//! `ceiling FILE PORT`: answers every request on 127.0.0.1:PORT with
//! FILE's bytes as an OCI manifest, with the headers ir-server sends for a
//! manifest GET by tag (Content-Type, Content-Length,
//! Docker-Content-Digest, ETag, Docker-Distribution-API-Version; hyper adds
//! Date), and no routing, lookup, logging or metrics: the most the stack can
//! do for a manifest GET. Used by bench/compare.sh and
//! bench/instructions.sh.
//!
//! The stack is ir-server's: tokio's multi-threaded runtime with its
//! default worker count, hyper-util's auto builder with the settings of
//! ir-server's `transport::server::http_builder` (a timer, the 20 s
//! header read timeout, a 64 KiB head limit, keep-alive; HTTP/2 stream and
//! header list limits), TCP_NODELAY, jemalloc as the global allocator. The
//! header names are constants and the digest's values are built once.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sha2::Digest as _;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");
const API_VERSION_HEADER: HeaderName = HeaderName::from_static("docker-distribution-api-version");

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: ceiling MANIFEST_FILE PORT");
        std::process::exit(2);
    };
    let body = Bytes::from(std::fs::read(&file).expect("the manifest file"));
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)));
    let digest_value = HeaderValue::from_str(&digest).unwrap();
    let etag_value = HeaderValue::from_str(&format!("\"{digest}\"")).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .expect("bind");
    // As ir-server's http_builder (crates/ir-server/src/transport/server.rs)
    // with its default limits.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(20))
        .max_buf_size(64 << 10)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(64 << 10);
    let builder = std::sync::Arc::new(builder);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (body, digest_value, etag_value, builder) = (
            body.clone(),
            digest_value.clone(),
            etag_value.clone(),
            builder.clone(),
        );
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let mut r = Response::new(Full::new(body.clone()));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static(MANIFEST));
                h.insert(CONTENT_LENGTH, body.len().into());
                h.insert(DIGEST_HEADER, digest_value.clone());
                h.insert(ETAG, etag_value.clone());
                h.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
