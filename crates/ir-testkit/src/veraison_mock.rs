//! A Veraison-compatible verifier for tests: the three calls of
//! Veraison's challenge-response API (see `ir_attest::veraison`), exactly, with EARs signed ES256 by a test key
//! ([`ir_attest::ear::test_util::EarSigner`]), and knobs to make it
//! misbehave.
//!
//! 1. `POST /challenge-response/v1/newSession?nonce=<padded base64url>`
//!    (Accept, if given, must allow the session media type) → `201`,
//!    `Location: session/<id>` (relative to the API root) and
//!    `{"status":"waiting","nonce","expiry","accept"}`;
//! 2. `POST /challenge-response/v1/session/<id>` with exactly
//!    `Content-Type: application/eat-collection; profile="http://arm.com/CCA-SSD/1.0.0"`
//!    → `200` and `{"status":"complete","nonce","expiry","accept","evidence","result":<EAR JWT>}`;
//! 3. `DELETE /challenge-response/v1/session/<id>` → `204`.
//!
//! The EAR's `eat_nonce` is the session's nonce, its `iat` is now, its
//! submods are those of [`Knobs::submods`]. It has the layout Veraison's
//! CCA scheme gives it: the `CCA_SSD_PLATFORM` and `CCA_REALM` submods carry
//! `ear.veraison.annotated-evidence`, the platform and realm claims of the
//! token sent (as Veraison's `ccatoken` writes them in JSON). The mock
//! does not appraise the token (it parses it only to annotate, and records
//! it): the point is to drive a relying party through every Veraison
//! outcome, including an EAR about another token
//! ([`Knobs::annotate_as`]). [`MockVeraison::start_tls`] serves HTTPS.
//!
//! ```no_run
//! # async fn demo() {
//! use ir_testkit::veraison_mock::{MockVeraison, Status};
//! let mock = MockVeraison::start().await;
//! let jwk = mock.public_jwk_json(); // the relying party's `-v` file
//! mock.knobs().set_status("CCA_SSD_PLATFORM", Status::Contraindicated);
//! mock.knobs().latency = std::time::Duration::from_secs(2);
//! assert_eq!(mock.counters().sessions_created, 0);
//! # let _ = (jwk, mock.url());
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ir_attest::ear::test_util::{veraison_annotated_evidence, EarSigner, EarSpec};
use ir_jose::rfc3339;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The session media type (Accept of both POSTs, Content-Type of answers).
pub const SESSION_MEDIA_TYPE: &str = "application/vnd.veraison.challenge-response-session+json";
/// The only evidence Content-Type accepted.
pub const EVIDENCE_MEDIA_TYPE: &str =
    "application/eat-collection; profile=\"http://arm.com/CCA-SSD/1.0.0\"";
/// The API root.
pub const API_PREFIX: &str = "/challenge-response/v1/";
/// The platform submod Veraison's CCA plug-in reports.
pub const PLATFORM_SUBMOD: &str = "CCA_SSD_PLATFORM";
/// The realm submod (ignored by relying parties).
pub const REALM_SUBMOD: &str = "CCA_REALM";
/// Largest evidence accepted.
pub const MAX_EVIDENCE: usize = 1024 * 1024;
/// Session lifetime announced in `expiry`.
const SESSION_LIFETIME: Duration = Duration::from_secs(300);

/// An EAR appraisal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `affirming`.
    Affirming,
    /// `warning`.
    Warning,
    /// `contraindicated`.
    Contraindicated,
    /// `none`.
    None,
}

impl Status {
    /// The `ear.status` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
            Status::None => "none",
        }
    }

    /// Parses `affirming`, `warning`, `contraindicated` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "affirming" => Status::Affirming,
            "warning" => Status::Warning,
            "contraindicated" => Status::Contraindicated,
            "none" => Status::None,
            _ => return None,
        })
    }
}

/// A call of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `POST newSession`.
    NewSession,
    /// `POST` of the evidence.
    Evidence,
    /// `DELETE` of the session.
    Delete,
}

impl Step {
    /// Parses `new-session`, `evidence` or `delete`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "new-session" | "newSession" => Step::NewSession,
            "evidence" => Step::Evidence,
            "delete" => Step::Delete,
            _ => return None,
        })
    }
}

/// How the mock behaves; change it at any time through
/// [`MockVeraison::knobs`]. Each request reads the knobs when it arrives.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// The submods of the EAR and their statuses, in order. Default:
    /// `CCA_SSD_PLATFORM` affirming, `CCA_REALM` warning (as Veraison
    /// reports a realm it has no reference values for).
    pub submods: Vec<(String, Status)>,
    /// Delay before answering the evidence upload (the appraisal time).
    pub latency: Duration,
    /// Delay before answering newSession.
    pub new_session_latency: Duration,
    /// Answer this HTTP status (with a problem-details body) at this step
    /// instead of doing it.
    pub fail: Option<(Step, u16)>,
    /// Sign the EAR with an `eat_nonce` other than the session's.
    pub wrong_nonce: bool,
    /// Sign the EAR with another key than [`MockVeraison::public_jwk_json`]'s.
    pub bad_signature: bool,
    /// The session `status` after the evidence upload (default
    /// `complete`; anything else is sent without a `result`).
    pub session_status: String,
    /// Seconds added to the EAR's `iat` (negative: a stale EAR).
    pub iat_offset: i64,
    /// Annotate the EAR with this token's claims instead of those of the
    /// token sent (an EAR Veraison issued for other evidence).
    pub annotate_as: Option<Vec<u8>>,
    /// Leave `ear.veraison.annotated-evidence` out of every submod.
    pub omit_annotated_evidence: bool,
    /// Answer newSession with this `Location` instead of `session/<id>`.
    pub location: Option<String>,
    /// Name this `kid` in the EAR's JWS header.
    pub kid: Option<String>,
    /// Delay before a session DELETE removes the session (dropped, with
    /// the session kept, if the client goes away first).
    pub delete_latency: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            submods: vec![
                (PLATFORM_SUBMOD.into(), Status::Affirming),
                (REALM_SUBMOD.into(), Status::Warning),
            ],
            latency: Duration::ZERO,
            new_session_latency: Duration::ZERO,
            fail: None,
            wrong_nonce: false,
            bad_signature: false,
            session_status: "complete".into(),
            iat_offset: 0,
            annotate_as: None,
            omit_annotated_evidence: false,
            location: None,
            kid: None,
            delete_latency: Duration::ZERO,
        }
    }
}

impl Knobs {
    /// Sets a submod's status (adding the submod if absent).
    pub fn set_status(&mut self, submod: &str, status: Status) -> &mut Self {
        match self.submods.iter_mut().find(|(n, _)| n == submod) {
            Some(entry) => entry.1 = status,
            None => self.submods.push((submod.to_string(), status)),
        }
        self
    }
}

/// What the mock has seen (a snapshot; see [`MockVeraison::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sessions created (201 answers).
    pub sessions_created: u64,
    /// Sessions deleted (204 answers).
    pub sessions_deleted: u64,
    /// Evidence uploads received (whatever the answer).
    pub evidence_posts: u64,
    /// EARs issued.
    pub ears_issued: u64,
    /// Requests received, all kinds.
    pub requests: u64,
}

#[derive(Default)]
struct AtomicCounters {
    sessions_created: AtomicU64,
    sessions_deleted: AtomicU64,
    evidence_posts: AtomicU64,
    ears_issued: AtomicU64,
    requests: AtomicU64,
}

struct Session {
    nonce: Vec<u8>,
    nonce_text: String,
    expiry: String,
}

struct Inner {
    signer: EarSigner,
    other_signer: EarSigner,
    knobs: Arc<Mutex<Knobs>>,
    counters: AtomicCounters,
    sessions: Mutex<HashMap<u64, Session>>,
    next_id: AtomicU64,
    last_evidence: Mutex<Option<Vec<u8>>>,
}

/// A running mock Veraison on 127.0.0.1. Stops when dropped.
pub struct MockVeraison {
    inner: Arc<Inner>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

struct Running {
    accept: JoinHandle<()>,
    close: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.close.send(true);
    }
}

impl std::fmt::Debug for MockVeraison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockVeraison")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockVeraison {
    /// Starts a mock on `127.0.0.1` with a port chosen by the OS and a
    /// fresh signing key. Needs a tokio runtime.
    pub async fn start() -> MockVeraison {
        Self::start_on("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts a mock on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<MockVeraison> {
        Self::start_with(addr, None).await
    }

    /// Starts a mock serving HTTPS on `addr` with this certificate chain
    /// and private key (PEM). Its [`url`](Self::url) is
    /// `https://localhost:<port>`, so the certificate must name
    /// `localhost`.
    pub async fn start_tls(
        addr: SocketAddr,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<MockVeraison> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(format!("private key: {e}")))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_with(addr, Some(acceptor)).await
    }

    async fn start_with(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<MockVeraison> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            signer: EarSigner::generate(),
            other_signer: EarSigner::generate(),
            knobs: Arc::new(Mutex::new(Knobs::default())),
            counters: AtomicCounters::default(),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            last_evidence: Mutex::new(None),
        });
        let running = spawn(listener, inner.clone(), tls.clone());
        Ok(MockVeraison {
            inner,
            addr,
            running: Mutex::new(Some(running)),
            tls,
        })
    }

    /// The base URL, a relying party's `-u`: `http://127.0.0.1:<port>`,
    /// or `https://localhost:<port>` when serving HTTPS.
    pub fn url(&self) -> String {
        if self.tls.is_some() {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The EAR verification key as a JWK (a relying party's `-v` file).
    pub fn public_jwk_json(&self) -> String {
        self.inner.signer.public_jwk()
    }

    /// Writes [`public_jwk_json`](Self::public_jwk_json) to `path`.
    pub fn write_public_jwk(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.public_jwk_json())
    }

    /// The EAR signer (to mint EARs by hand or build a verifier).
    pub fn signer(&self) -> &EarSigner {
        &self.inner.signer
    }

    /// The other key, the one [`Knobs::bad_signature`] signs with (also a
    /// rotated key's stand-in).
    pub fn other_signer(&self) -> &EarSigner {
        &self.inner.other_signer
    }

    /// The knobs, locked: `mock.knobs().latency = …`. Do not hold the
    /// guard across an `.await`.
    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.inner.knobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared knobs, for handing to other tasks.
    pub fn knobs_handle(&self) -> Arc<Mutex<Knobs>> {
        self.inner.knobs.clone()
    }

    /// Resets the knobs to their defaults.
    pub fn reset_knobs(&self) {
        *self.knobs() = Knobs::default();
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let c = &self.inner.counters;
        Counters {
            sessions_created: c.sessions_created.load(Ordering::SeqCst),
            sessions_deleted: c.sessions_deleted.load(Ordering::SeqCst),
            evidence_posts: c.evidence_posts.load(Ordering::SeqCst),
            ears_issued: c.ears_issued.load(Ordering::SeqCst),
            requests: c.requests.load(Ordering::SeqCst),
        }
    }

    /// Sessions created and not deleted.
    pub fn open_sessions(&self) -> usize {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The last evidence (token) uploaded.
    pub fn last_evidence(&self) -> Option<Vec<u8>> {
        self.inner
            .last_evidence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes the mock unreachable: closes the listener (connections are
    /// refused) and drops open connections. Sessions are kept.
    pub fn stop_listening(&self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Listens again on the same address after
    /// [`stop_listening`](Self::stop_listening).
    pub async fn resume_listening(&self) -> std::io::Result<()> {
        if self.is_listening() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(spawn(listener, self.inner.clone(), self.tls.clone()));
        Ok(())
    }

    /// Whether the mock accepts connections.
    pub fn is_listening(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

fn spawn(
    listener: TcpListener,
    inner: Arc<Inner>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Running {
    let (close, closed) = watch::channel(false);
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let inner = inner.clone();
            let mut closed = closed.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let inner = inner.clone();
                    async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = closed.wait_for(|c| *c) => {}
                        }
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                        let Ok(Ok(stream)) = handshake.await else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = closed.wait_for(|c| *c) => {}
                        }
                    }
                }
            });
        }
    });
    Running { accept, close }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if !content_type.is_empty() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("valid content type"),
        );
    }
    r
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    respond(status, "application/problem+json", body.to_string())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn session_json(s: &Session, status: &str) -> serde_json::Value {
    json!({
        "status": status,
        "nonce": s.nonce_text,
        "expiry": s.expiry,
        "accept": [EVIDENCE_MEDIA_TYPE],
    })
}

fn accepts_session(req: &Request<Incoming>) -> bool {
    let values: Vec<&str> = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    values.is_empty()
        || values.iter().flat_map(|v| v.split(',')).any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t == SESSION_MEDIA_TYPE || t == "*/*" || t == "application/*"
        })
}

async fn handle(inner: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    inner.counters.requests.fetch_add(1, Ordering::SeqCst);
    let knobs = inner
        .knobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return problem(StatusCode::NOT_FOUND, "not a challenge-response path");
    };
    let step = match (req.method(), rest) {
        (&Method::POST, "newSession") => Step::NewSession,
        (&Method::POST, r) if r.starts_with("session/") => Step::Evidence,
        (&Method::DELETE, r) if r.starts_with("session/") => Step::Delete,
        (_, "newSession") => {
            return problem(StatusCode::METHOD_NOT_ALLOWED, "newSession takes POST")
        }
        (_, r) if r.starts_with("session/") => {
            return problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "sessions take POST or DELETE",
            )
        }
        _ => return problem(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    if step == Step::Evidence {
        inner.counters.evidence_posts.fetch_add(1, Ordering::SeqCst);
    }
    if let Some((fail_step, code)) = knobs.fail {
        if fail_step == step {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return problem(status, "failure injected by the mock's knobs");
        }
    }
    match step {
        Step::NewSession => new_session(inner, &knobs, req).await,
        Step::Evidence => {
            let id = rest.trim_start_matches("session/").to_string();
            evidence(inner, &knobs, req, &id).await
        }
        Step::Delete => {
            if !knobs.delete_latency.is_zero() {
                tokio::time::sleep(knobs.delete_latency).await;
            }
            let id = rest.trim_start_matches("session/");
            let removed = id
                .parse::<u64>()
                .ok()
                .and_then(|id| {
                    inner
                        .sessions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id)
                })
                .is_some();
            if removed {
                inner
                    .counters
                    .sessions_deleted
                    .fetch_add(1, Ordering::SeqCst);
                respond(StatusCode::NO_CONTENT, "", Bytes::new())
            } else {
                problem(StatusCode::NOT_FOUND, "no such session")
            }
        }
    }
}

async fn new_session(
    inner: &Inner,
    knobs: &Knobs,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if !accepts_session(&req) {
        return problem(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must allow the session media type",
        );
    }
    let nonce_text = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "nonce")
            .map(|(_, v)| v.into_owned())
    });
    let Some(nonce_text) = nonce_text else {
        return problem(StatusCode::BAD_REQUEST, "no nonce query parameter");
    };
    // Padded base64url, as the protocol says.
    let nonce = match base64::engine::general_purpose::URL_SAFE.decode(&nonce_text) {
        Ok(n) if (8..=64).contains(&n.len()) => n,
        Ok(n) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("nonce has {} bytes, expected 8 to 64", n.len()),
            )
        }
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("nonce is not padded base64url: {e}"),
            )
        }
    };
    if !knobs.new_session_latency.is_zero() {
        tokio::time::sleep(knobs.new_session_latency).await;
    }
    let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
    let session = Session {
        nonce,
        nonce_text,
        expiry: rfc3339(now_unix() + SESSION_LIFETIME.as_secs() as i64),
    };
    let body = session_json(&session, "waiting").to_string();
    inner
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, session);
    inner
        .counters
        .sessions_created
        .fetch_add(1, Ordering::SeqCst);
    let mut r = respond(StatusCode::CREATED, SESSION_MEDIA_TYPE, body);
    let location = knobs
        .location
        .clone()
        .unwrap_or_else(|| format!("session/{id}"));
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
        }
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "bad Location knob"),
    }
    r
}

async fn evidence(
    inner: &Inner,
    knobs: &Knobs,
    req: Request<Incoming>,
    id: &str,
) -> Response<Full<Bytes>> {
    if !accepts_session(&req) {
        return problem(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must allow the session media type",
        );
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(EVIDENCE_MEDIA_TYPE) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("evidence must be {EVIDENCE_MEDIA_TYPE}, got {content_type:?}"),
        );
    }
    let id: Option<u64> = id.parse().ok();
    let (nonce, nonce_text, expiry) = {
        let sessions = inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match id.and_then(|id| sessions.get(&id)) {
            Some(s) => (s.nonce.clone(), s.nonce_text.clone(), s.expiry.clone()),
            None => return problem(StatusCode::NOT_FOUND, "no such session"),
        }
    };
    let token = match Limited::new(req.into_body(), MAX_EVIDENCE).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("evidence: {e}")),
    };
    if token.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "empty evidence");
    }
    *inner
        .last_evidence
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(token.to_vec());
    if !knobs.latency.is_zero() {
        tokio::time::sleep(knobs.latency).await;
    }
    let session = Session {
        nonce: nonce.clone(),
        nonce_text,
        expiry,
    };
    let mut body = session_json(&session, &knobs.session_status);
    body["evidence"] = json!({
        "type": "application/eat-collection; profile=\"http://arm.com/CCA-SSD/1.0.0\"",
        "value": base64::engine::general_purpose::STANDARD.encode(&token),
    });
    if knobs.session_status == "complete" {
        let mut spec = EarSpec::affirming(&nonce);
        spec.iat = now_unix() + knobs.iat_offset;
        spec.submods = knobs
            .submods
            .iter()
            .map(|(n, s)| (n.clone(), s.as_str().to_string()))
            .collect();
        let annotated_from = knobs.annotate_as.as_deref().unwrap_or(&token);
        if !knobs.omit_annotated_evidence {
            if let Ok(parsed) = ir_attest::CcaToken::parse(annotated_from) {
                spec.annotated = veraison_annotated_evidence(&parsed);
            }
        }
        if knobs.wrong_nonce {
            let mut other = nonce.clone();
            other[0] ^= 0xff;
            spec.nonce_text = Some(base64::engine::general_purpose::URL_SAFE.encode(other));
        }
        let signer = if knobs.bad_signature {
            &inner.other_signer
        } else {
            &inner.signer
        };
        body["result"] = json!(signer.sign_claims_with_kid(&spec.claims(), knobs.kid.as_deref()));
        inner.counters.ears_issued.fetch_add(1, Ordering::SeqCst);
    }
    respond(StatusCode::OK, SESSION_MEDIA_TYPE, body.to_string())
}
