//! `ir-client serve`: a local registry endpoint (the OCI pull API, plain
//! HTTP on loopback or TLS) that forwards to one upstream registry over
//! ra-tls, https or http, so that any OCI client (podman, containerd,
//! docker, skopeo) pulls through this realm's attestation.
//!
//! Nothing unverified passes: a manifest is checked against the digest
//! asked for or the upstream's `Docker-Content-Digest` before any byte of
//! it is sent; a blob is hashed while it streams and its last chunk is
//! held back until the digest matches, so a wrong blob is cut before its
//! end; a `Range` is served only from a whole blob verified first. Names,
//! references and digests from local clients are parsed with ir-oci's
//! grammar before anything is forwarded.

mod cache;
mod upstream;

use crate::http::HttpOptions;
use crate::location::{ImageLocation, RegistryUrl};
use crate::pull::{parse_manifest, Client, ClientOptions, Content, Fetched, MAX_MANIFEST_SIZE};
use crate::signatures::SignaturePolicy;
use crate::{Error, ReferenceError, Transport};
use bytes::Bytes;
use cache::{Cache, Verified};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ir_oci::{Digest, RepoName, Tag};
use oci_spec::image::{Descriptor, MediaType};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use upstream::{Upstream, UpstreamError};

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// Largest list (tags, catalog, referrers) passed on.
const MAX_LIST: usize = 16 * 1024 * 1024;
/// Longest request path accepted.
const MAX_PATH: usize = 2048;
/// Local connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// Bound on a local TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Resumptions of one cut upstream blob transfer.
const MAX_RESUMES: u32 = 3;
/// Bound on a local client's request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks in flight between an upstream transfer and its local client.
const CHANNEL_CHUNKS: usize = 8;
/// Digests remembered (sizes from manifests, images the policy accepted).
const MAX_REMEMBERED: usize = 65_536;
/// How long a policy verdict of acceptance stands for the manifests it
/// covers, asked for by digest.
const ACCEPTED_FOR: Duration = Duration::from_secs(300);
/// Bytes read from a verified file at a time.
const FILE_CHUNK: usize = 256 * 1024;
/// A transfer's progress is logged (at `-v`) every this many bytes.
const PROGRESS_EVERY: u64 = 32 * 1024 * 1024;

/// What `ir-client serve` is given.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The upstream registry (`ra-tls://`, `https://` or `http://` and
    /// `host[:port]`).
    pub upstream: RegistryUrl,
    /// How to reach it (its scheme's).
    pub transport: Transport,
    /// Timeouts, retries, RA-TLS key type.
    pub http: HttpOptions,
    /// Attested (or plain) upstream connections kept for all local clients.
    pub connections: usize,
    /// The address to listen on; a non-loopback one needs `tls`.
    pub listen: SocketAddr,
    /// PEM certificate chain and key to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Manifests this policy refuses are answered 404.
    pub policy: Option<SignaturePolicy>,
    /// Where verified blobs and manifests are kept, by digest.
    pub cache: Option<PathBuf>,
    /// Bound on the cache's size in bytes.
    pub cache_size: u64,
    /// How long a refused attestation is answered from memory (503)
    /// before the upstream is tried again.
    pub refusal_memory: Duration,
}

impl ServeOptions {
    /// Options for `upstream` with the defaults of the command line.
    pub fn new(upstream: RegistryUrl, transport: Transport) -> Self {
        Self {
            upstream,
            transport,
            http: HttpOptions::default(),
            connections: 4,
            listen: DEFAULT_LISTEN.parse().expect("address"),
            tls: None,
            policy: None,
            cache: None,
            cache_size: 10 * 1024 * 1024 * 1024,
            refusal_memory: Duration::from_secs(10),
        }
    }
}

type BoxBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// The running endpoint's state.
pub struct Proxy {
    upstream: Upstream,
    authority: String,
    scheme: crate::Scheme,
    policy: Option<SignaturePolicy>,
    cache: Option<Cache>,
    /// Sizes of blobs as manifests passing through described them.
    sizes: Mutex<HashMap<Digest, u64>>,
    /// Manifests the policy accepted (and the manifests of accepted indexes).
    accepted: Mutex<HashMap<(RepoName, Digest), Instant>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A bounded insert: the set is emptied when full.
fn remember<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, k: K, v: V) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= MAX_REMEMBERED {
        m.clear();
    }
    m.insert(k, v);
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let io = |p: &PathBuf, e: String| Error::Io {
        path: p.display().to_string(),
        source: std::io::Error::other(e),
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io(cert, format!("--tls-cert: {e}")))?;
    if certs.is_empty() {
        return Err(io(cert, "--tls-cert: no certificate".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| io(key, format!("--tls-key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::ratls::provider())
        .with_safe_default_protocol_versions()
        .map_err(crate::TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| io(key, format!("--tls-cert/--tls-key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Proxy {
    /// Checks the options and builds the pool (no connection is made yet).
    pub fn new(options: ServeOptions) -> Result<Arc<Self>, Error> {
        if !options.listen.ip().is_loopback() && options.tls.is_none() {
            return Err(ReferenceError::Flags(
                "--listen: a non-loopback address is served only over TLS: give --tls-cert and --tls-key",
            )
            .into());
        }
        if options.transport.scheme() != options.upstream.scheme {
            return Err(ReferenceError::Flags("the upstream's scheme and transport differ").into());
        }
        let tls = match &options.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        // Over RA-TLS (ir-server speaks HTTP/2 there) each slot is one
        // connection: concurrent requests wait for it rather than each
        // opening and attesting another.
        let http = HttpOptions {
            http2_only: options.upstream.scheme == crate::Scheme::RaTls,
            // The pool retries, seeing a refusal met meanwhile.
            retries: 0,
            ..options.http.clone()
        };
        let mut slots = Vec::new();
        for _ in 0..options.connections.clamp(1, 64) {
            slots.push(Client::with_options(
                options.transport.clone(),
                ClientOptions {
                    http: http.clone(),
                    ..ClientOptions::default()
                },
            )?);
        }
        let cache = match &options.cache {
            Some(dir) => Some(Cache::open(dir, options.cache_size)?),
            None => None,
        };
        Ok(Arc::new(Self {
            upstream: Upstream::new(
                slots,
                options.upstream.base_url(),
                options.refusal_memory,
                options.http.retries,
            ),
            authority: options.upstream.authority.clone(),
            scheme: options.upstream.scheme,
            policy: options.policy,
            cache,
            sizes: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
            tls,
        }))
    }

    /// Attestations presented upstream so far (RA-TLS handshakes).
    pub fn attestations(&self) -> u64 {
        self.upstream.attestations()
    }

    /// Serves local clients on `listener` until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => p.expect("semaphore open"),
                _ = &mut shutdown => return Ok(()),
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return Ok(()),
            };
            let _ = tcp.set_nodelay(true);
            let tls = self.tls.clone();
            let proxy = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                // A local client that never finishes its headers is let go.
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                builder
                    .http2()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .max_concurrent_streams(256);
                use hyper_util::rt::TokioIo;
                match tls {
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                        else {
                            tracing::debug!(%peer, "local TLS handshake failed");
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    }
}

/// A local request's route, every part parsed with ir-oci's grammar.
enum Route {
    Base,
    Health,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, ir_oci::Reference),
    Blob(RepoName, Digest),
    Referrers(RepoName, Digest),
}

/// An answer that is an OCI error.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refusal(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

fn route(path: &str) -> Result<Route, Refusal> {
    let unknown = || refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    if path.len() > MAX_PATH {
        return Err(refusal(
            StatusCode::URI_TOO_LONG,
            "NAME_INVALID",
            "path too long",
        ));
    }
    match path {
        "/healthz" => return Ok(Route::Health),
        "/v2" | "/v2/" => return Ok(Route::Base),
        "/v2/_catalog" => return Ok(Route::Catalog),
        _ => {}
    }
    let rest = path.strip_prefix("/v2/").ok_or_else(unknown)?;
    let name = |n: &str| {
        RepoName::parse(n)
            .map_err(|e| refusal(StatusCode::BAD_REQUEST, "NAME_INVALID", e.to_string()))
    };
    let digest = |d: &str| {
        Digest::parse(d)
            .map_err(|e| refusal(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()))
    };
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    let mut parts = rest.rsplitn(3, '/');
    let (Some(target), Some(kind), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(unknown());
    };
    match kind {
        "manifests" => {
            let r = ir_oci::Reference::parse(target)
                .map_err(|e| refusal(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", e.to_string()))?;
            Ok(Route::Manifest(name(n)?, r))
        }
        "blobs" => Ok(Route::Blob(name(n)?, digest(target)?)),
        "referrers" => Ok(Route::Referrers(name(n)?, digest(target)?)),
        _ => Err(unknown()),
    }
}

/// The query's parameters (at most a few; values percent-decoded).
fn query(q: Option<&str>) -> Result<HashMap<String, String>, Refusal> {
    let bad = |why: &str| refusal(StatusCode::BAD_REQUEST, "UNSUPPORTED", why.to_string());
    let mut out = HashMap::new();
    let Some(q) = q else { return Ok(out) };
    for (i, pair) in q.split('&').enumerate() {
        if i >= 8 {
            return Err(bad("too many query parameters"));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let mut bytes = Vec::new();
        let mut it = v.bytes();
        while let Some(b) = it.next() {
            if b == b'%' {
                let h: Vec<u8> = it.by_ref().take(2).collect();
                if h.len() != 2 || !h.iter().all(u8::is_ascii_hexdigit) {
                    return Err(bad("bad percent-encoding"));
                }
                let s = std::str::from_utf8(&h).map_err(|_| bad("bad percent-encoding"))?;
                bytes.push(u8::from_str_radix(s, 16).map_err(|_| bad("bad percent-encoding"))?);
            } else {
                bytes.push(b);
            }
        }
        let v = String::from_utf8(bytes).map_err(|_| bad("query value is not UTF-8"))?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// `n`, a page size.
fn page_size(q: &HashMap<String, String>) -> Result<Option<u32>, Refusal> {
    q.get("n")
        .map(|n| {
            n.parse::<u32>().map_err(|_| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    "n is not a number",
                )
            })
        })
        .transpose()
}

/// The `<reference>` as written in a path.
fn reference_text(r: &ir_oci::Reference) -> String {
    match r {
        ir_oci::Reference::Tag(t) => t.as_str().to_string(),
        ir_oci::Reference::Digest(d) => d.to_string(),
    }
}

fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> BoxBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn error_response(r: Refusal) -> Response<BoxBody> {
    let body = serde_json::json!({"errors": [{"code": r.code, "message": r.message}]}).to_string();
    let mut resp = Response::new(full(body.clone()));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// What an upstream failure is to a local client.
fn upstream_refusal(e: UpstreamError, not_found: &'static str) -> Refusal {
    match e {
        UpstreamError::Attestation(why) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("upstream attestation: {why}"),
        ),
        UpstreamError::Failed(why) => refusal(
            StatusCode::BAD_GATEWAY,
            "UNAVAILABLE",
            format!("upstream: {why}"),
        ),
        UpstreamError::Status { status, message } => {
            // `message` is `: CODE: text` as ir-client reads OCI errors.
            let mut it = message.trim_start_matches(": ").splitn(2, ": ");
            let code = it.next().unwrap_or("");
            let text = it.next().unwrap_or("").to_string();
            let known = [
                "NAME_UNKNOWN",
                "MANIFEST_UNKNOWN",
                "BLOB_UNKNOWN",
                "NAME_INVALID",
                "DIGEST_INVALID",
                "MANIFEST_INVALID",
                "DENIED",
                "UNSUPPORTED",
                "TOOMANYREQUESTS",
            ];
            let code = known.iter().find(|k| **k == code).copied();
            match status {
                404 => refusal(
                    StatusCode::NOT_FOUND,
                    code.unwrap_or(not_found),
                    if text.is_empty() {
                        "unknown upstream".into()
                    } else {
                        text
                    },
                ),
                401 | 403 => refusal(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    format!("upstream answered {status}{message}"),
                ),
                429 => refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    format!("upstream answered {status}{message}"),
                ),
                400..=499 => refusal(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    code.unwrap_or("UNSUPPORTED"),
                    format!("upstream answered {status}{message}"),
                ),
                _ => refusal(
                    StatusCode::BAD_GATEWAY,
                    "UNAVAILABLE",
                    format!("upstream answered {status}{message}"),
                ),
            }
        }
    }
}

/// One access-log line per request.
struct Access {
    peer: SocketAddr,
    method: Method,
    path: String,
    digest: Option<String>,
    upstream: String,
    start: Instant,
}

impl Access {
    fn done(&self, status: u16, bytes: u64, outcome: &str) {
        tracing::info!(
            target: "ir_client::serve::access",
            client = %self.peer,
            method = %self.method,
            path = %self.path,
            digest = %self.digest.as_deref().unwrap_or("-"),
            status,
            bytes,
            upstream = %self.upstream,
            ms = self.start.elapsed().as_millis() as u64,
            "{outcome}"
        );
    }
}

/// A response body fed by a task.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn blob_response(
    status: StatusCode,
    digest: &Digest,
    len: u64,
    body: BoxBody,
) -> Response<BoxBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("docker-content-digest", v);
    }
    resp
}

/// A single range of `Range: bytes=...` within `size`: `None` to ignore
/// the header (not one byte range), `Some(None)` when unsatisfiable.
fn parse_range(v: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(None);
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            u64::MAX
        } else {
            b.parse().ok()?
        };
        if start > end {
            return None;
        }
        if start >= size {
            return Some(None);
        }
        (start, end.min(size - 1))
    };
    Some(Some(r))
}

/// The `Content-Type` of a manifest from upstream, if it looks like one.
fn media_type_header(resp: &reqwest::Response) -> Option<String> {
    let v = resp.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let v = v.split(';').next()?.trim();
    (!v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-/".contains(&b)))
    .then(|| v.to_string())
}

/// A sanitised `Link` header: a path on this endpoint, plain characters.
fn link_header(resp: &reqwest::Response) -> Option<HeaderValue> {
    let v = resp.headers().get(header::LINK)?.to_str().ok()?;
    let ok = v.starts_with("</v2/")
        && v.len() <= 1024
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/?=&<>;\"._-:, %+".contains(&b));
    ok.then(|| HeaderValue::from_str(v).ok()).flatten()
}

impl Proxy {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<BoxBody> {
        let mut access = Some(Access {
            peer,
            method: req.method().clone(),
            path: req.uri().path().chars().take(MAX_PATH).collect(),
            digest: None,
            upstream: "-".into(),
            start: Instant::now(),
        });
        let resp = match self.dispatch(&req, &mut access).await {
            Ok(r) => r,
            Err(r) => error_response(r),
        };
        if let Some(a) = access {
            let bytes = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .filter(|_| a.method != Method::HEAD)
                .unwrap_or(0);
            a.done(resp.status().as_u16(), bytes, "served");
        }
        resp
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        // Writes (uploads included) are refused before any path is read.
        let head = req.method() == Method::HEAD;
        if !(head || req.method() == Method::GET) {
            return Err(refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry endpoint is pull-only",
            ));
        }
        let route = route(req.uri().path())?;
        let q = query(req.uri().query())?;
        match route {
            Route::Base => {
                let mut resp = Response::new(full("{}"));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp.headers_mut().insert(
                    "docker-distribution-api-version",
                    HeaderValue::from_static("registry/2.0"),
                );
                Ok(resp)
            }
            Route::Health => self.health(access).await,
            Route::Catalog => {
                let mut path = "/v2/_catalog".to_string();
                let mut sep = '?';
                if let Some(n) = page_size(&q)? {
                    path.push_str(&format!("{sep}n={n}"));
                    sep = '&';
                }
                if let Some(last) = q.get("last") {
                    let last = RepoName::parse(last).map_err(|e| {
                        refusal(StatusCode::BAD_REQUEST, "NAME_INVALID", e.to_string())
                    })?;
                    path.push_str(&format!("{sep}last={last}", last = last.as_str()));
                }
                self.list(&path, "application/json", "NAME_UNKNOWN", access)
                    .await
            }
            Route::Tags(name) => {
                let mut path = format!("/v2/{}/tags/list", name.as_str());
                let mut sep = '?';
                if let Some(n) = page_size(&q)? {
                    path.push_str(&format!("{sep}n={n}"));
                    sep = '&';
                }
                if let Some(last) = q.get("last") {
                    let last = Tag::parse(last).map_err(|e| {
                        refusal(StatusCode::BAD_REQUEST, "TAG_INVALID", e.to_string())
                    })?;
                    path.push_str(&format!("{sep}last={}", last.as_str()));
                }
                self.list(&path, "application/json", "NAME_UNKNOWN", access)
                    .await
            }
            Route::Referrers(name, digest) => {
                let mut path = format!("/v2/{}/referrers/{digest}", name.as_str());
                if let Some(t) = q.get("artifactType") {
                    let ok = !t.is_empty()
                        && t.len() <= 255
                        && t.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b"!#$&^_.-/".contains(&b) || b == b'+'
                        });
                    if !ok {
                        return Err(refusal(
                            StatusCode::BAD_REQUEST,
                            "UNSUPPORTED",
                            "artifactType is not a media type",
                        ));
                    }
                    path.push_str(&format!("?artifactType={}", t.replace('+', "%2B")));
                }
                self.list(
                    &path,
                    "application/vnd.oci.image.index.v1+json",
                    "MANIFEST_UNKNOWN",
                    access,
                )
                .await
            }
            Route::Manifest(name, reference) => self.manifest(&name, &reference, access).await,
            Route::Blob(name, digest) => {
                if let Some(a) = access.as_mut() {
                    a.digest = Some(digest.to_string());
                }
                let range = req
                    .headers()
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if head {
                    self.blob_head(&name, &digest, access).await
                } else {
                    self.blob(&name, &digest, range.as_deref(), access).await
                }
            }
        }
    }

    async fn health(&self, access: &mut Option<Access>) -> Result<Response<BoxBody>, Refusal> {
        let r = match self.upstream.get("/v2/", None).await {
            Ok((_, conn)) => Ok(conn),
            // The registry answered: a connection could be had.
            Err(UpstreamError::Status { .. }) => Ok("-".into()),
            Err(e) => Err(e),
        };
        match r {
            Ok(conn) => {
                if let Some(a) = access.as_mut() {
                    a.upstream = conn.clone();
                }
                let body = serde_json::json!({"status": "ok", "upstream": self.upstream.base, "connection": conn}).to_string();
                let mut resp = Response::new(full(body));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(resp)
            }
            Err(e) => Err(upstream_refusal(e, "UNAVAILABLE")).map_err(|mut r| {
                r.status = StatusCode::SERVICE_UNAVAILABLE;
                r
            }),
        }
    }

    /// A JSON list (tags, catalog, referrers), bounded and checked to be a
    /// JSON object.
    async fn list(
        &self,
        path: &str,
        content_type: &'static str,
        not_found: &'static str,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        let (mut resp, conn) = self
            .upstream
            .get(path, Some(content_type))
            .await
            .map_err(|e| upstream_refusal(e, not_found))?;
        if let Some(a) = access.as_mut() {
            a.upstream = conn;
        }
        let link = link_header(&resp);
        let bad = |why: String| refusal(StatusCode::BAD_GATEWAY, "UNAVAILABLE", why);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| bad(format!("upstream: {}", crate::error::chain(&e))))?
        {
            if body.len() + chunk.len() > MAX_LIST {
                return Err(bad(format!("upstream list larger than {MAX_LIST} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body).is_err() {
            return Err(bad("upstream list is not a JSON object".into()));
        }
        let len = body.len();
        let mut out = Response::new(full(body));
        let h = out.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(l) = link {
            h.insert(header::LINK, l);
        }
        Ok(out)
    }
}

/// A verified manifest.
struct Manifest {
    digest: Digest,
    bytes: Vec<u8>,
    media_type: Option<String>,
}

impl Proxy {
    /// The manifest `reference` names, from the cache (by digest) or
    /// upstream, verified.
    async fn fetch_manifest(
        &self,
        name: &RepoName,
        reference: &ir_oci::Reference,
        access: &mut Option<Access>,
    ) -> Result<(Manifest, bool), Refusal> {
        if let (ir_oci::Reference::Digest(d), Some(cache)) = (reference, &self.cache) {
            if let Some(bytes) = cache.read(d, MAX_MANIFEST_SIZE as u64) {
                if let Some(a) = access.as_mut() {
                    a.upstream = "cache".into();
                }
                return Ok((
                    Manifest {
                        digest: d.clone(),
                        bytes,
                        media_type: None,
                    },
                    true,
                ));
            }
        }
        let path = format!(
            "/v2/{}/manifests/{}",
            name.as_str(),
            reference_text(reference)
        );
        let (mut resp, conn) = self
            .upstream
            .get(&path, Some(crate::pull::ACCEPT))
            .await
            .map_err(|e| upstream_refusal(e, "MANIFEST_UNKNOWN"))?;
        if let Some(a) = access.as_mut() {
            a.upstream = conn;
        }
        let bad = |why: String| refusal(StatusCode::BAD_GATEWAY, "MANIFEST_INVALID", why);
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_SIZE as u64)
        {
            return Err(bad(format!(
                "upstream manifest larger than {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let header_digest = match resp.headers().get("docker-content-digest") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| Digest::parse(s.trim()).ok())
                    .ok_or_else(|| bad("upstream Docker-Content-Digest is not a digest".into()))?,
            ),
        };
        let media_type = media_type_header(&resp);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| bad(format!("upstream: {}", crate::error::chain(&e))))?
        {
            if bytes.len() + chunk.len() > MAX_MANIFEST_SIZE {
                return Err(bad(format!(
                    "upstream manifest larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = match (reference, &header_digest) {
            (ir_oci::Reference::Digest(d), _) => d.clone(),
            (_, Some(h)) => h.clone(),
            (_, None) => return Err(bad(
                "upstream sent no Docker-Content-Digest for a tag: the manifest cannot be verified"
                    .into(),
            )),
        };
        for want in std::iter::once(&digest).chain(header_digest.as_ref()) {
            let found = Digest::of_bytes(want.algorithm(), &bytes);
            if found != *want {
                tracing::error!(%want, %found, "upstream manifest does not match its digest");
                return Err(bad(format!(
                    "upstream manifest does not match {want}: content has {found}"
                )));
            }
        }
        Ok((
            Manifest {
                digest,
                bytes,
                media_type,
            },
            false,
        ))
    }

    async fn manifest(
        &self,
        name: &RepoName,
        reference: &ir_oci::Reference,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        let (m, cached) = self.fetch_manifest(name, reference, access).await?;
        if let Some(a) = access.as_mut() {
            a.digest = Some(m.digest.to_string());
        }
        let parsed = parse_manifest(&m.digest, &m.bytes, m.media_type.as_deref()).ok();
        if let Some((_, content)) = &parsed {
            let ds: Vec<&Descriptor> = match content {
                Content::Manifest(i) => std::iter::once(i.config()).chain(i.layers()).collect(),
                Content::Index(i) => i.manifests().iter().collect(),
            };
            for d in ds {
                if let Ok(dg) = Digest::parse(d.digest().as_ref()) {
                    remember(&self.sizes, dg, d.size());
                }
            }
        }
        if let Some(policy) = &self.policy {
            self.judge(name, reference, &m, parsed.as_ref(), policy)
                .await?;
        }
        if let (Some(cache), false) = (&self.cache, cached) {
            cache.put(&m.digest, &m.bytes);
        }
        let media_type = parsed
            .as_ref()
            .map(|(t, _)| t.clone())
            .or(m.media_type)
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        let len = m.bytes.len();
        let mut resp = Response::new(full(m.bytes));
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&media_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&m.digest.to_string()) {
            h.insert("docker-content-digest", v);
        }
        Ok(resp)
    }

    /// The realm's signature policy on a manifest: accepted (or listed by
    /// an accepted index), or 404 and a log line naming the requirement.
    async fn judge(
        &self,
        name: &RepoName,
        reference: &ir_oci::Reference,
        m: &Manifest,
        parsed: Option<&(String, Content)>,
        policy: &SignaturePolicy,
    ) -> Result<(), Refusal> {
        // A manifest asked for by digest that an accepted image (its index)
        // named a short while ago is accepted with it; a tag is judged
        // each time.
        if let ir_oci::Reference::Digest(d) = reference {
            let a = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if a.get(&(name.clone(), d.clone()))
                .is_some_and(|at| at.elapsed() < ACCEPTED_FOR)
            {
                return Ok(());
            }
        }
        let refused = |why: String| {
            tracing::warn!(
                name = name.as_str(),
                digest = %m.digest,
                "the signature policy refuses the manifest: {why}"
            );
            refusal(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("refused by this realm's signature policy: {why}"),
            )
        };
        let Some((media_type, content)) = parsed else {
            return Err(refused("not an image manifest or index".into()));
        };
        let oci_digest = oci_spec::image::Digest::try_from(m.digest.to_string())
            .map_err(|e| refused(e.to_string()))?;
        let fetched = Fetched {
            descriptor: Descriptor::new(
                MediaType::from(media_type.as_str()),
                m.bytes.len() as u64,
                oci_digest,
            ),
            digest: m.digest.clone(),
            bytes: m.bytes.clone(),
            content: content.clone(),
        };
        let r = ImageLocation {
            scheme: self.scheme,
            authority: self.authority.clone(),
            name: name.clone(),
            reference: reference.clone(),
        };
        match self.upstream.any().judge(&r, &fetched, policy).await {
            Ok(signers) => {
                tracing::info!(name = name.as_str(), digest = %m.digest, signers = ?signers, "the signature policy accepts the manifest");
                let mut a = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
                if a.len() >= MAX_REMEMBERED {
                    a.clear();
                }
                let now = Instant::now();
                a.insert((name.clone(), m.digest.clone()), now);
                if let Content::Index(i) = content {
                    for d in i.manifests() {
                        if let Ok(dg) = Digest::parse(d.digest().as_ref()) {
                            a.insert((name.clone(), dg), now);
                        }
                    }
                }
                Ok(())
            }
            Err(Error::Refused { image, reason }) => Err(refused(format!("{image}: {reason}"))),
            Err(e) => Err(upstream_refusal(
                self.upstream.classify(e),
                "MANIFEST_UNKNOWN",
            )),
        }
    }

    /// The size a manifest gave `digest`, if one passed through.
    fn known_size(&self, digest: &Digest) -> Option<u64> {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .copied()
    }

    async fn blob_head(
        &self,
        name: &RepoName,
        digest: &Digest,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        if let Some(size) = self.cache.as_ref().and_then(|c| c.size_of(digest)) {
            if let Some(a) = access.as_mut() {
                a.upstream = "cache".into();
            }
            return Ok(blob_response(StatusCode::OK, digest, size, empty()));
        }
        let path = format!("/v2/{}/blobs/{digest}", name.as_str());
        let (resp, conn) = self
            .upstream
            .head(&path)
            .await
            .map_err(|e| upstream_refusal(e, "BLOB_UNKNOWN"))?;
        if let Some(a) = access.as_mut() {
            a.upstream = conn;
        }
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let len = match (len, self.known_size(digest)) {
            (Some(l), Some(k)) if l != k => {
                return Err(refusal(
                    StatusCode::BAD_GATEWAY,
                    "SIZE_INVALID",
                    format!("upstream says {l} bytes, the manifest {k}"),
                ))
            }
            (Some(l), _) => l,
            (None, Some(k)) => k,
            (None, None) => {
                return Err(refusal(
                    StatusCode::BAD_GATEWAY,
                    "SIZE_INVALID",
                    "upstream gave no Content-Length",
                ))
            }
        };
        Ok(blob_response(StatusCode::OK, digest, len, empty()))
    }

    async fn blob(
        self: &Arc<Self>,
        name: &RepoName,
        digest: &Digest,
        range: Option<&str>,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        if let Some(range) = range {
            // Ranges come only from a whole blob verified first.
            let v = self.verified_file(name, digest, access).await?;
            match parse_range(range, v.size) {
                None => return Ok(self.serve_file(v, digest, None, access)),
                Some(None) => {
                    let mut r = error_response(refusal(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UNKNOWN",
                        "range not satisfiable",
                    ));
                    if let Ok(h) = HeaderValue::from_str(&format!("bytes */{}", v.size)) {
                        r.headers_mut().insert(header::CONTENT_RANGE, h);
                    }
                    return Ok(r);
                }
                Some(Some(r)) => return Ok(self.serve_file(v, digest, Some(r), access)),
            }
        }
        let Some(cache) = &self.cache else {
            return self.stream(name, digest, None, access).await;
        };
        if let Some(v) = self.cached(digest).await {
            if let Some(a) = access.as_mut() {
                a.upstream = "cache".into();
            }
            return Ok(self.serve_file(v, digest, None, access));
        }
        // One download per digest: who gets the lock streams; the others
        // wait for it, then serve the cached copy.
        let flight = cache.flight(digest);
        let guard = match flight.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                let g = flight.lock_owned().await;
                if let Some(v) = self.cached(digest).await {
                    if let Some(a) = access.as_mut() {
                        a.upstream = "cache".into();
                    }
                    return Ok(self.serve_file(v, digest, None, access));
                }
                g
            }
        };
        self.stream(name, digest, Some(guard), access).await
    }

    async fn cached(self: &Arc<Self>, digest: &Digest) -> Option<Verified> {
        self.cache.as_ref()?.size_of(digest)?;
        let this = self.clone();
        let d = digest.clone();
        tokio::task::spawn_blocking(move || this.cache.as_ref()?.verified(&d))
            .await
            .ok()
            .flatten()
    }

    /// Checks an upstream blob answer's length against what is known.
    fn check_length(
        &self,
        digest: &Digest,
        resp: &reqwest::Response,
    ) -> Result<Option<u64>, Refusal> {
        let len = resp.content_length();
        match (len, self.known_size(digest)) {
            (Some(l), Some(k)) if l != k => Err(refusal(
                StatusCode::BAD_GATEWAY,
                "SIZE_INVALID",
                format!("upstream sends {l} bytes of {digest}, its manifest says {k}"),
            )),
            (Some(l), _) => Ok(Some(l)),
            (None, k) => Ok(k),
        }
    }

    /// Streams a blob from upstream, hashing it; its last chunk is sent
    /// only once the digest (and length) matched. With the cache, the
    /// bytes are kept too.
    async fn stream(
        self: &Arc<Self>,
        name: &RepoName,
        digest: &Digest,
        flight: Option<tokio::sync::OwnedMutexGuard<()>>,
        access: &mut Option<Access>,
    ) -> Result<Response<BoxBody>, Refusal> {
        let path = format!("/v2/{}/blobs/{digest}", name.as_str());
        let (mut resp, conn) = self
            .upstream
            .get(&path, None)
            .await
            .map_err(|e| upstream_refusal(e, "BLOB_UNKNOWN"))?;
        let expected = self.check_length(digest, &resp)?;
        let mut pending = match (&self.cache, &flight) {
            (Some(c), Some(_)) => c.begin(digest).ok(),
            _ => None,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let mut access = access.take();
        if let Some(a) = access.as_mut() {
            a.upstream = conn;
        }
        let this = self.clone();
        let d = digest.clone();
        let path = path.clone();
        tokio::spawn(async move {
            let digest = d;
            let _flight = flight;
            let mut hasher = digest.algorithm().hasher();
            let mut held: Option<Bytes> = None;
            let mut n = 0u64;
            let mut sent = 0u64;
            let mut client_gone = false;
            let mut next_progress = PROGRESS_EVERY;
            let mut skip = 0u64;
            let mut resumes = 0u32;
            let failure = loop {
                let cut = match resp.chunk().await {
                    Ok(Some(mut c)) => {
                        if skip > 0 {
                            let k = skip.min(c.len() as u64);
                            skip -= k;
                            let _ = c.split_to(k as usize);
                            if c.is_empty() {
                                continue;
                            }
                        }
                        n += c.len() as u64;
                        if expected.is_some_and(|e| n > e) {
                            break Some(format!(
                                "more than the {} bytes announced",
                                expected.unwrap_or(0)
                            ));
                        }
                        hasher.update(&c);
                        if let Some(p) = pending.as_mut() {
                            if let Err(e) = p.write(&c) {
                                tracing::warn!(%digest, error = %e, "cache: not kept");
                                pending = None;
                            }
                        }
                        if n >= next_progress {
                            tracing::debug!(%digest, bytes = n, total = ?expected, "upstream transfer");
                            next_progress += PROGRESS_EVERY;
                        }
                        if let Some(prev) = held.replace(c) {
                            let len = prev.len() as u64;
                            if tx.send(Ok(prev)).await.is_err() {
                                client_gone = true;
                                break None;
                            }
                            sent += len;
                        }
                        continue;
                    }
                    Ok(None) if expected.is_some_and(|e| n < e) => {
                        "upstream closed the transfer early".to_string()
                    }
                    Ok(None) => break None,
                    Err(e) => format!("upstream transfer cut: {}", crate::error::chain(&e)),
                };
                // A cut transfer resumes from the last byte received
                // (bounded); the whole blob is still hashed.
                if expected.is_none() || resumes >= MAX_RESUMES {
                    break Some(cut);
                }
                resumes += 1;
                tracing::debug!(%digest, offset = n, "{cut}: resuming");
                match this.upstream.resume(&path, n).await {
                    Ok((r, s)) => {
                        resp = r;
                        skip = s;
                    }
                    Err(e) => break Some(format!("{cut}; resuming: {e}")),
                }
            };
            if client_gone {
                if let Some(a) = &access {
                    a.done(200, sent, "client went away");
                }
                return;
            }
            let failure = failure.or_else(|| {
                let found = hasher.finish();
                if found != digest {
                    Some(format!(
                        "upstream blob does not match its digest: content has {found}"
                    ))
                } else if expected.is_some_and(|e| e != n) {
                    Some(format!("upstream sent {n} bytes of {:?}", expected))
                } else {
                    None
                }
            });
            match failure {
                Some(why) => {
                    tracing::error!(%digest, "{why}; the response is cut before its last byte");
                    let _ = tx.send(Err(std::io::Error::other(why))).await;
                    if let Some(a) = &access {
                        a.done(200, sent, "cut: not verified");
                    }
                }
                None => {
                    if let Some(last) = held.take() {
                        sent += last.len() as u64;
                        let _ = tx.send(Ok(last)).await;
                    }
                    if let (Some(cache), Some(p)) = (&this.cache, pending) {
                        if let Err(e) = cache.commit(p) {
                            tracing::warn!(%digest, error = %e, "cache: not kept");
                        }
                    }
                    if let Some(a) = &access {
                        a.done(200, sent, "served");
                    }
                }
            }
            if let Some(c) = &this.cache {
                c.land(&digest);
            }
        });
        let body = ChannelBody { rx }.boxed_unsync();
        let mut r = blob_response(StatusCode::OK, digest, expected.unwrap_or(0), body);
        if expected.is_none() {
            r.headers_mut().remove(header::CONTENT_LENGTH);
        }
        Ok(r)
    }

    /// The whole blob, verified, in a file: the cached copy, or a fresh
    /// download (kept in the cache when there is one).
    async fn verified_file(
        self: &Arc<Self>,
        name: &RepoName,
        digest: &Digest,
        access: &mut Option<Access>,
    ) -> Result<Verified, Refusal> {
        let _flight = match &self.cache {
            Some(c) => Some(c.flight(digest).lock_owned().await),
            None => None,
        };
        if let Some(v) = self.cached(digest).await {
            if let Some(a) = access.as_mut() {
                a.upstream = "cache".into();
            }
            return Ok(v);
        }
        let path = format!("/v2/{}/blobs/{digest}", name.as_str());
        let (mut resp, conn) = self
            .upstream
            .get(&path, None)
            .await
            .map_err(|e| upstream_refusal(e, "BLOB_UNKNOWN"))?;
        if let Some(a) = access.as_mut() {
            a.upstream = conn;
        }
        let expected = self.check_length(digest, &resp)?;
        let bad = |why: String| {
            tracing::error!(%digest, "{why}");
            refusal(StatusCode::BAD_GATEWAY, "BLOB_UNKNOWN", why)
        };
        let io = |e: std::io::Error| bad(format!("temporary file: {e}"));
        let mut pending = match &self.cache {
            Some(c) => Some(c.begin(digest).map_err(io)?),
            None => None,
        };
        let mut anon = match &pending {
            None => Some(tempfile::tempfile().map_err(io)?),
            Some(_) => None,
        };
        let mut hasher = digest.algorithm().hasher();
        let mut n = 0u64;
        while let Some(c) = resp.chunk().await.map_err(|e| {
            bad(format!(
                "upstream transfer cut: {}",
                crate::error::chain(&e)
            ))
        })? {
            n += c.len() as u64;
            if expected.is_some_and(|e| n > e) {
                return Err(bad("upstream sent more bytes than announced".into()));
            }
            hasher.update(&c);
            match (&mut pending, &mut anon) {
                (Some(p), _) => p.write(&c).map_err(io)?,
                (None, Some(f)) => std::io::Write::write_all(f, &c).map_err(io)?,
                (None, None) => unreachable!("one file"),
            }
        }
        let found = hasher.finish();
        if found != *digest || expected.is_some_and(|e| e != n) {
            return Err(bad(format!(
                "upstream blob does not match its digest or length: content has {found}, {n} bytes"
            )));
        }
        match (pending, anon) {
            (Some(p), _) => {
                let cache = self.cache.as_ref().expect("a pending file is the cache's");
                cache.commit(p).map_err(io)
            }
            (None, Some(f)) => {
                let id = cache::FileIdentity::of(&f.metadata().map_err(io)?);
                Ok(Verified {
                    file: Arc::new(f),
                    size: n,
                    id,
                })
            }
            (None, None) => unreachable!("one file"),
        }
    }

    /// Serves a verified file, whole or a range of it; its last chunk is
    /// sent only if the file is still as it was verified.
    fn serve_file(
        &self,
        v: Verified,
        digest: &Digest,
        range: Option<(u64, u64)>,
        access: &mut Option<Access>,
    ) -> Response<BoxBody> {
        let (start, end) = range.unwrap_or((0, v.size.saturating_sub(1)));
        let len = if v.size == 0 { 0 } else { end - start + 1 };
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let access = access.take();
        let size = v.size;
        let d = digest.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut left = len;
            let mut pos = start;
            let mut sent = 0u64;
            let r = (|| -> std::io::Result<()> {
                let mut held: Option<Bytes> = None;
                while left > 0 {
                    let want = FILE_CHUNK.min(left as usize);
                    let mut buf = vec![0u8; want];
                    v.file.read_exact_at(&mut buf, pos)?;
                    if let Some(prev) = held.replace(Bytes::from(buf)) {
                        let k = prev.len() as u64;
                        if tx.blocking_send(Ok(prev)).is_err() {
                            return Ok(());
                        }
                        sent += k;
                    }
                    left -= want as u64;
                    pos += want as u64;
                }
                if !v.unchanged() {
                    return Err(std::io::Error::other(format!(
                        "cached file of {d} changed while it was served"
                    )));
                }
                if let Some(last) = held {
                    let k = last.len() as u64;
                    if tx.blocking_send(Ok(last)).is_ok() {
                        sent += k;
                    }
                }
                Ok(())
            })();
            let outcome = match r {
                Ok(()) => "served",
                Err(e) => {
                    tracing::error!("{e}; the response is cut before its last byte");
                    let _ = tx.blocking_send(Err(e));
                    "cut: not verified"
                }
            };
            if let Some(a) = access {
                a.done(if range.is_some() { 206 } else { 200 }, sent, outcome);
            }
        });
        let status = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let mut r = blob_response(status, digest, len, ChannelBody { rx }.boxed_unsync());
        if range.is_some() {
            if let Ok(h) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, h);
            }
        }
        r
    }
}

/// Binds `options.listen` and serves until `shutdown`.
pub async fn run(options: ServeOptions, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let listen = options.listen;
    let proxy = Proxy::new(options)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Io {
            path: format!("--listen {listen}"),
            source,
        })?;
    tracing::info!(%listen, upstream = %proxy.upstream.base, "ir-client serve: listening");
    proxy.serve(listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_every_part_or_refuse() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(route("/v2/"), Ok(Route::Base)));
        assert!(matches!(route("/healthz"), Ok(Route::Health)));
        assert!(matches!(route("/v2/_catalog"), Ok(Route::Catalog)));
        assert!(matches!(route("/v2/a/b/tags/list"), Ok(Route::Tags(n)) if n.as_str() == "a/b"));
        assert!(matches!(
            route("/v2/team/app/manifests/1.0"),
            Ok(Route::Manifest(n, ir_oci::Reference::Tag(t))) if n.as_str() == "team/app" && t.as_str() == "1.0"
        ));
        assert!(matches!(
            route(&format!("/v2/app/blobs/{d}")),
            Ok(Route::Blob(..))
        ));
        assert!(matches!(
            route(&format!("/v2/app/referrers/{d}")),
            Ok(Route::Referrers(..))
        ));
        for (bad, code) in [
            ("/v2/../etc/manifests/x", "NAME_INVALID"),
            ("/v2/a%2fb/manifests/x", "NAME_INVALID"),
            ("/v2/App/blobs/sha256:00", "NAME_INVALID"),
            ("/v2/app/blobs/sha256:00", "DIGEST_INVALID"),
            ("/v2/app/blobs/latest", "DIGEST_INVALID"),
            ("/v2/app/manifests/-x", "MANIFEST_INVALID"),
            ("/v2/app/manifests/sha256:zz", "MANIFEST_INVALID"),
            ("/v2/app/uploads/x", "NOT_FOUND"),
            ("/v2/app", "NOT_FOUND"),
            ("/other", "NOT_FOUND"),
        ] {
            match route(bad) {
                Err(r) => assert_eq!(r.code, code, "{bad}"),
                Ok(_) => panic!("{bad} routed"),
            }
        }
        assert!(route(&format!("/v2/{}/tags/list", "a/".repeat(2000))).is_err());
    }

    #[test]
    fn queries_and_ranges() {
        let q = query(Some("n=10&last=a%2Bb&artifactType=application%2Fx")).unwrap();
        assert_eq!(q["n"], "10");
        assert_eq!(q["last"], "a+b");
        assert_eq!(q["artifactType"], "application/x");
        assert!(query(Some("n=%zz")).is_err());
        assert!(query(Some("n=%4")).is_err());
        assert!(query(Some(&"a=1&".repeat(20))).is_err());
        assert!(page_size(&query(Some("n=-1")).unwrap()).is_err());

        assert_eq!(parse_range("bytes=0-9", 100), Some(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=90-500", 100), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Some((90, 99))));
        assert_eq!(parse_range("bytes=-500", 100), Some(Some((0, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(None));
        assert_eq!(parse_range("bytes=-0", 100), Some(None));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-", 0), Some(None));
    }
}
