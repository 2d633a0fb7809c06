//! `ceiling FILE PORT`: answers every request on 127.0.0.1:PORT with
//! FILE's bytes as an OCI manifest (Content-Type, Content-Length,
//! Docker-Content-Digest, ETag, Docker-Distribution-API-Version), with no
//! routing, lookup, logging or metrics: the most the stack can do for a
//! manifest GET. Used by bench/compare.sh.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::Digest as _;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

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
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (body, digest_value, etag_value) =
            (body.clone(), digest_value.clone(), etag_value.clone());
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let mut r = Response::new(Full::new(body.clone()));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static(MANIFEST));
                h.insert(CONTENT_LENGTH, body.len().into());
                h.insert("docker-content-digest", digest_value.clone());
                h.insert(ETAG, etag_value.clone());
                h.insert(
                    "docker-distribution-api-version",
                    HeaderValue::from_static("registry/2.0"),
                );
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
