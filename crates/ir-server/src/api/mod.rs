//! The OCI Distribution pull API: routing, handlers and responses.
//!
//! Everything here answers from the verified [`Catalog`](crate::snapshot::catalog)
//! snapshot; the only file system access is opening a blob that the
//! snapshot vouches for, checked against the identity recorded at
//! verification.

pub mod access_log;
pub mod conn;

pub mod error;
mod handlers;
pub mod range;
pub mod readiness;
pub mod route;

use std::sync::Arc;

use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version,
};
use ir_oci::RepoName;

pub use conn::{ConnInfo, PolicyScope, Visibility};
pub use error::{error_response, ApiError, ErrorCode};
pub use readiness::{Readiness, HEALTH_PATH, READY_PATH};

use crate::delivery::Body;
use crate::metrics::status::{Observed, ServerStatus};
use crate::metrics::Metrics;
use crate::snapshot::catalog::{Catalog, SharedCatalog};

/// Header every response carries, as the Docker registry API defines it.
pub const API_VERSION_HEADER: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");

/// State shared by every request.
pub struct ApiState {
    /// The served snapshot.
    pub catalog: SharedCatalog,
    /// Log one line per request at info.
    pub access_log: bool,
    /// Ready once the first load finished (until then the API answers
    /// 503), draining once shutdown was requested.
    pub readiness: Arc<Readiness>,
    /// Loads, and the RA-TLS platform check, for `/status`.
    pub status: Arc<ServerStatus>,
    /// Where answered requests are counted (`None`: no metrics).
    pub metrics: Option<Arc<Metrics>>,
    /// Receipts and events (`--receipts`, `--events-url`), when on.
    pub audit: Option<Arc<crate::audit::Audit>>,
    /// Registry authentication (`--htpasswd`, tokens); `None`: off.
    pub auth: Option<Arc<crate::auth::Auth>>,
}

impl ApiState {
    /// State serving `catalog`, ready at once (the catalog is loaded).
    pub fn new(catalog: SharedCatalog, access_log: bool) -> Self {
        ApiState {
            catalog,
            access_log,
            readiness: Arc::new(Readiness::new(true)),
            status: Arc::default(),
            metrics: None,
            audit: None,
            auth: None,
        }
    }

    /// The same state, counting requests (and connections) in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same state, recording deliveries in `audit`; while its journal
    /// cannot keep up or be written, `/readyz` answers 503.
    pub fn with_audit(mut self, audit: Option<Arc<crate::audit::Audit>>) -> Self {
        if let Some(a) = &audit {
            let a = a.clone();
            self.readiness.set_degraded(move || {
                (!a.healthy()).then_some("receipts: the journal cannot be written or keep up\n")
            });
        }
        self.audit = audit;
        self
    }

    /// What the metrics listener reports on for this state.
    pub fn observed(&self) -> Observed {
        Observed {
            catalog: self.catalog.clone(),
            readiness: self.readiness.clone(),
            status: self.status.clone(),
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
            readiness: Arc::new(Readiness::new(false)),
            ..ApiState::new(catalog, access_log)
        }
    }

    /// Marks the first load as finished.
    pub fn set_ready(&self) {
        self.readiness.set_ready();
    }

    /// True once the first load finished.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Marks shutdown as requested.
    pub fn set_draining(&self) {
        self.readiness.set_draining();
    }

    /// True once shutdown was requested.
    pub fn is_draining(&self) -> bool {
        self.readiness.is_draining()
    }
}

/// Answers one request. Never fails: every problem is an OCI error response.
pub async fn handle<B>(state: &ApiState, conn: &ConnInfo, req: Request<B>) -> Response<Body> {
    // The clock is read only for the request histogram.
    let started = state.metrics.is_some().then(std::time::Instant::now);
    let method = req.method().clone();
    // The path is parsed once, here, for the answer and the endpoint label.
    let parsed = route::parse(req.uri().path());
    let endpoint = route::endpoint_of(&parsed);
    let mut response = answer(state, conn, &req, parsed).await;
    if method == Method::HEAD {
        *response.body_mut() = Body::Empty;
    }
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    if req.version() == Version::HTTP_10 {
        http10_order(&req, response.headers_mut());
    }
    if let (Some(m), Some(started)) = (&state.metrics, started) {
        m.record_request(endpoint, &method, &response, started);
    }
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

async fn answer<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: &Request<B>,
    parsed: Result<route::Route<'_>, route::RouteError>,
) -> Response<Body> {
    use route::Route;
    if let Some((status, text)) = state.readiness.probe(req.uri().path()) {
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
                let mut conn = conn.restricted(grant.visibility);
                if state.audit.is_some() {
                    // Receipts name the user (a realm or certificate, if
                    // any, is still the connection's; the user is who asked).
                    conn.identity = Some(crate::audit::identity::user_identity(&grant.user));
                }
                let mut r = routed(state, &conn, req, parsed).await;
                r.extensions_mut()
                    .insert(crate::auth::AuthenticatedUser(grant.user));
                r
            }
            Err(refused) => {
                audit_auth_refusal(state, conn, req, &refused, &parsed);
                refused
            }
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
                .inspect(|r| {
                    count_download(&catalog, &name, false, req, r);
                    audit_delivery(state, conn, &name, reference, req, r);
                })
                .inspect_err(|_| audit_withheld(state, conn, &catalog, &name, reference)),
            Err(e) => {
                audit_withheld(state, conn, &catalog, &name, reference);
                Err(e)
            }
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

/// Records a manifest served by GET (200) in the receipts and events.
fn audit_delivery<B>(
    state: &ApiState,
    conn: &ConnInfo,
    name: &RepoName,
    reference: &str,
    req: &Request<B>,
    response: &Response<Body>,
) {
    let Some(audit) = &state.audit else { return };
    if req.method() != Method::GET || response.status() != StatusCode::OK {
        return;
    }
    // Names parsed once, not per request.
    static DIGEST: header::HeaderName = header::HeaderName::from_static("docker-content-digest");
    let header = |h: &header::HeaderName| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // A tag never contains ':', a digest always does.
    let tag = (!reference.contains(':')).then_some(reference);
    audit.delivered(
        conn.peer,
        conn.identity.as_ref(),
        conn.scope(),
        name.as_str(),
        tag,
        header(&DIGEST),
        header(&header::CONTENT_TYPE),
    );
}

/// Reports credentials the server refused (not the first, anonymous
/// challenge every client meets) as a refused pull.
fn audit_auth_refusal<B>(
    state: &ApiState,
    conn: &ConnInfo,
    req: &Request<B>,
    refused: &Response<Body>,
    parsed: &Result<route::Route<'_>, route::RouteError>,
) {
    let Some(audit) = &state.audit else { return };
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return;
    }
    let challenge = refused
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reason = match challenge
        .split("error=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    {
        Some(code) => code.to_string(),
        None => format!("status {}", refused.status().as_u16()),
    };
    let application = match parsed {
        Ok(route::Route::Manifest(n, _))
        | Ok(route::Route::Blob(n, _))
        | Ok(route::Route::Tags(n))
        | Ok(route::Route::Referrers(n, _)) => Some(n.as_str()),
        _ => None,
    };
    audit.refused(conn.peer, "authentication", &reason, application);
}

/// Reports a manifest the client may see but the signature policy
/// withholds as a refused pull (an event), answered as missing.
fn audit_withheld(
    state: &ApiState,
    conn: &ConnInfo,
    catalog: &Catalog,
    name: &RepoName,
    reference: &str,
) {
    let Some(audit) = &state.audit else { return };
    if conn.may_see(name) && catalog.withheld_by_policy(conn.scope().as_deref(), name, reference) {
        audit.refused(
            conn.peer,
            "policy",
            "the signature policy refuses this image",
            Some(name.as_str()),
        );
    }
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
