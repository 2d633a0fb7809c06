//! The OCI Distribution pull API: routing, handlers and responses.
//!
//! Everything here answers from the verified [`Catalog`](crate::catalog)
//! snapshot; the only file system access is opening a blob that the
//! snapshot vouches for, checked against the identity recorded at
//! verification.

pub mod access_log;
pub mod body;
pub mod error;
mod handlers;
pub mod range;
pub mod route;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use ir_oci::RepoName;

pub use body::Body;
pub use error::{ApiError, ErrorCode};

use crate::catalog::{Catalog, SharedCatalog};

/// Header every response carries, as the Docker registry API defines it.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// Which applications a connection may see. `None` means all; RA-TLS
/// connections of a realm limited to some applications carry a filter, and
/// everything else answers as if those applications did not exist.
pub type Visibility = Option<Arc<dyn Fn(&RepoName) -> bool + Send + Sync>>;

/// The signature policy scope a connection is held to, asked at each
/// request: RA-TLS realms take it from their reference entry in force, so
/// a reload that changes it applies to open connections. `None`, or an
/// answer of `None`: the server's `--registry-host`.
pub type PolicyScope = Option<Arc<dyn Fn() -> Option<Arc<str>> + Send + Sync>>;

/// Liveness path on the main port (outside `/v2/`, so it cannot collide).
pub const HEALTH_PATH: &str = "/healthz";
/// Readiness path on the main port: 200 once the first load finished.
pub const READY_PATH: &str = "/readyz";

/// State shared by every request.
pub struct ApiState {
    /// The served snapshot.
    pub catalog: SharedCatalog,
    /// Log one line per request at info.
    pub access_log: bool,
    /// Set once the first load finished; until then the API answers 503.
    pub ready: AtomicBool,
    /// Set once shutdown was requested: `/readyz` answers 503 so that
    /// balancers take the replica out while its last requests finish.
    pub draining: AtomicBool,
    /// Loads, and the RA-TLS platform check, for `/status`.
    pub status: Arc<crate::status::ServerStatus>,
    /// Registry authentication (`--htpasswd`, tokens); `None`: off.
    pub auth: Option<Arc<crate::auth::Auth>>,
}

impl ApiState {
    /// State serving `catalog`, ready at once (the catalog is loaded).
    pub fn new(catalog: SharedCatalog, access_log: bool) -> Self {
        ApiState {
            catalog,
            access_log,
            ready: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            status: Arc::default(),
            auth: None,
        }
    }

    /// The same state, requiring credentials as `auth` says.
    pub fn with_auth(mut self, auth: Option<Arc<crate::auth::Auth>>) -> Self {
        self.auth = auth;
        self
    }

    /// State whose catalog is still to be loaded: the API answers 503
    /// until [`ApiState::set_ready`].
    pub fn loading(catalog: SharedCatalog, access_log: bool) -> Self {
        ApiState {
            ready: AtomicBool::new(false),
            ..ApiState::new(catalog, access_log)
        }
    }

    /// Marks the first load as finished.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// True once the first load finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks shutdown as requested (see [`ApiState::draining`]).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once shutdown was requested.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The answer to a probe path (`/healthz`, `/readyz`) as status and
    /// text, or `None` for any other path. The one definition of both
    /// probes, served on the API port and on the metrics listener.
    pub fn probe(&self, path: &str) -> Option<(StatusCode, &'static str)> {
        match path {
            HEALTH_PATH => Some((StatusCode::OK, "ok\n")),
            READY_PATH if self.is_draining() => {
                Some((StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"))
            }
            READY_PATH if self.is_ready() => Some((StatusCode::OK, "ok\n")),
            READY_PATH => Some((StatusCode::SERVICE_UNAVAILABLE, "not ready\n")),
            _ => None,
        }
    }
}

/// What the transport knows about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Applications this connection may see.
    pub visibility: Visibility,
    /// Closed between requests once this old (RA-TLS: attested
    /// connections attest again).
    pub max_age: Option<std::time::Duration>,
    /// RA-TLS: the name of the reference entry the client attested as
    /// (for the access log).
    pub realm: Option<Arc<str>>,
    /// RA-TLS: the signature policy scope the realm is held to (its
    /// entry's `policy-scope`, read at each request); `None`: the server's
    /// `--registry-host`.
    pub policy_scope: PolicyScope,
}

impl ConnInfo {
    /// A connection that may see everything.
    pub fn open(peer: SocketAddr) -> Self {
        ConnInfo {
            peer,
            visibility: None,
            max_age: None,
            realm: None,
            policy_scope: None,
        }
    }

    /// The policy scope for one request.
    pub(crate) fn scope(&self) -> Option<Arc<str>> {
        self.policy_scope.as_ref().and_then(|f| f())
    }

    /// This connection further limited to what `also` lets it see.
    pub fn restricted(&self, also: Visibility) -> ConnInfo {
        let visibility: Visibility = match (self.visibility.clone(), also) {
            (None, v) | (v, None) => v,
            (Some(a), Some(b)) => Some(Arc::new(move |n: &RepoName| a(n) && b(n))),
        };
        ConnInfo {
            visibility,
            ..self.clone()
        }
    }

    fn may_see(&self, name: &RepoName) -> bool {
        self.visibility.as_ref().is_none_or(|f| f(name))
    }
}

/// Answers one request. Never fails: every problem is an OCI error response.
pub async fn handle<B>(state: &ApiState, conn: &ConnInfo, req: Request<B>) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let (mut response, endpoint) = route_request(state, conn, &req).await;
    if method == Method::HEAD {
        *response.body_mut() = Body::Empty;
    }
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    if req.version() == Version::HTTP_10 {
        http10_order(&req, response.headers_mut());
    }
    crate::metrics::record_request(endpoint, &method, &response, started);
    response
}

/// Answers one request as [`handle`] does, with the access log line (when
/// it is on) written once the response body has ended.
pub async fn handle_logged<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: Request<B>,
) -> Response<access_log::Logged> {
    let entry = state.access_log.then(|| access_log::Entry::of(conn, &req));
    access_log::Logged::wrap(handle(state, conn, req).await, entry)
}

/// For an HTTP/1.0 client, `Connection: keep-alive` (when it asked for
/// that) and `Content-Length` come first in the head. hyper adds the same
/// `Connection` header for such a request anyway, after every other one
/// (and leaves one that is already there alone, so the connection's fate
/// is unchanged). Header order means nothing in HTTP, but simple 1.0
/// clients find both by scanning the head from its start: `ab -k` does so
/// case-insensitively, byte by byte, on every response, and behind two
/// 71-byte digest headers that scan took a large share of its time per
/// small response. HTTP/1.1 and HTTP/2 responses
/// are left as built.
fn http10_order<B>(req: &Request<B>, headers: &mut HeaderMap) {
    let keep_alive = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("keep-alive"));
    let mut ordered = HeaderMap::with_capacity(headers.len() + 1);
    if keep_alive {
        ordered.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if let Some(length) = headers.remove(header::CONTENT_LENGTH) {
        ordered.insert(header::CONTENT_LENGTH, length);
    }
    ordered.extend(std::mem::take(headers));
    *headers = ordered;
}

/// Answers a request, with the endpoint kind its path was routed to (the
/// path is parsed once, here, for both).
async fn route_request<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: &Request<B>,
) -> (Response<Body>, crate::metrics::Endpoint) {
    let parsed = route::parse(req.uri().path());
    let endpoint = route::endpoint_of(&parsed);
    (answer(state, conn, req, parsed).await, endpoint)
}

async fn answer<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: &Request<B>,
    parsed: Result<route::Route<'_>, route::RouteError>,
) -> Response<Body> {
    use route::Route;
    if let Some((status, text)) = state.probe(req.uri().path()) {
        return probe(status, text);
    }
    if let Some(auth) = &state.auth {
        if req.uri().path() == crate::auth::TOKEN_PATH {
            if let Some(r) = auth.token_endpoint(req).await {
                return r;
            }
        }
    }
    if !state.is_ready() {
        let mut r = error_response(&ApiError::new(
            ErrorCode::Unavailable,
            "the registry is still loading and verifying its content",
        ));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    // With authentication on, nothing is answered (not even that a path
    // or name is wrong) before the credentials are checked.
    if let Some(auth) = &state.auth {
        use crate::auth::challenge::Need;
        let need = match &parsed {
            Ok(Route::Manifest(name, _))
            | Ok(Route::Blob(name, _))
            | Ok(Route::Tags(name))
            | Ok(Route::Referrers(name, _)) => Need::Repository(name.as_str()),
            Ok(Route::Catalog) => Need::Catalog,
            _ => Need::Base,
        };
        return match auth.authorize(req.headers(), need).await {
            Ok(grant) => {
                let conn = conn.restricted(grant.visibility);
                let mut r = routed(state, &conn, req, parsed).await;
                r.extensions_mut()
                    .insert(crate::auth::AuthenticatedUser(grant.user));
                r
            }
            Err(refused) => refused,
        };
    }
    routed(state, conn, req, parsed).await
}

/// Answers a request the connection (and its credentials) may make.
async fn routed<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: &Request<B>,
    parsed: Result<route::Route<'_>, route::RouteError>,
) -> Response<Body> {
    use route::{Route, RouteError};
    let route = match parsed {
        Ok(r) => r,
        Err(RouteError::NoSuchEndpoint) => {
            return error_response(&ApiError::new(
                ErrorCode::NoSuchEndpoint,
                "no such endpoint in the OCI distribution pull API",
            ))
        }
        Err(RouteError::InvalidName(_, e)) => {
            return error_response(&ApiError::new(ErrorCode::NameInvalid, e.to_string()))
        }
    };
    let read_only = |allow: &'static str| {
        let mut r = error_response(&ApiError::new(
            ErrorCode::Unsupported,
            "this registry is read-only: only pulling is supported",
        ));
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        r
    };
    if let Route::Upload(_) = route {
        return read_only("");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return read_only("GET, HEAD");
    }
    let catalog = state.catalog.load();
    let scope = conn.scope();
    let app_of = |name: &RepoName| {
        catalog
            .application_in(scope.as_deref(), name)
            .filter(|_| conn.may_see(name))
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NameUnknown,
                    format!("repository {name} is not known to this registry"),
                )
                .with_detail(serde_json::json!({ "name": name.as_str() }))
            })
    };
    let result = match route {
        Route::Base => Ok(handlers::base()),
        Route::Catalog => handlers::catalog(&catalog, conn, req),
        Route::Manifest(name, reference) => match app_of(&name) {
            Ok(app) => handlers::manifest(&app, reference, req)
                .inspect(|r| count_download(&catalog, &name, false, req, r)),
            Err(e) => Err(e),
        },
        Route::Blob(name, digest) => match app_of(&name) {
            Ok(app) => handlers::blob(app, &catalog, digest, req)
                .await
                .inspect(|r| count_download(&catalog, &name, true, req, r)),
            Err(e) => Err(e),
        },
        Route::Tags(name) => app_of(&name).and_then(|app| handlers::tags(&app, req)),
        Route::Referrers(name, digest) => {
            app_of(&name).and_then(|app| handlers::referrers(&app, digest, req))
        }
        Route::Upload(_) => unreachable!("answered above"),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Counts a GET answered 200 or 206 in the application's download counters.
fn count_download<B>(
    catalog: &Catalog,
    name: &RepoName,
    blob: bool,
    req: &Request<B>,
    response: &Response<Body>,
) {
    let status = response.status();
    if req.method() == Method::GET
        && (status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT)
    {
        catalog.count_download(name, blob);
    }
}

/// A probe's answer (see [`ApiState::probe`]).
fn probe(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    r
}

/// The response for an error: its status and the spec's JSON body.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = e.body();
    Response::builder()
        .status(e.code.status())
        .header(header::CONTENT_TYPE, error::json_content_type())
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::full(body))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}
