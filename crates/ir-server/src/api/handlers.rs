//! One function per endpoint. Each returns a full response or an
//! [`ApiError`]; HEAD bodies are dropped by the caller, so GET and HEAD
//! always agree on status and headers.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use ir_oci::media_type::OCI_INDEX;
use ir_oci::name::ReferenceError;
use ir_oci::{Application, Digest, Reference};
use serde_json::json;

use super::conn::ConnInfo;
use super::error::{error_response, ApiError, ErrorCode};
use super::range::{self, RangeOutcome};
use crate::delivery::Body;
use crate::snapshot::catalog::Catalog;

/// `Docker-Content-Digest`.
pub const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");
/// Content-addressed bytes never change, so caches may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const OCTET_STREAM: &str = "application/octet-stream";
const JSON: &str = "application/json";

type Answer = Result<Response<Body>, ApiError>;

fn hv(s: &str) -> HeaderValue {
    // Values here are digests, media types and numbers we produced or
    // validated; a value that is not a valid header is replaced, never
    // allowed to fail the response.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn json_response(value: &impl serde::Serialize, content_type: &'static str) -> (HeaderMap, Body) {
    // Serialised straight from borrowed data (no `serde_json::Value` tree
    // per request) into one buffer.
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, value).expect("JSON of strings serialises");
    let bytes = Bytes::from(buf);
    let mut h = HeaderMap::with_capacity(8);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, bytes.len().into());
    (h, Body::full(bytes))
}

/// `GET /v2/`.
pub fn base() -> Response<Body> {
    let (h, b) = json_response(&json!({}), JSON);
    response(StatusCode::OK, h, b)
}

/// The four manifest types nearly every manifest has, without a copy.
fn media_type_value(media_type: &str) -> HeaderValue {
    use ir_oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST};
    match media_type {
        OCI_MANIFEST => HeaderValue::from_static(OCI_MANIFEST),
        OCI_INDEX => HeaderValue::from_static(OCI_INDEX),
        DOCKER_MANIFEST => HeaderValue::from_static(DOCKER_MANIFEST),
        DOCKER_MANIFEST_LIST => HeaderValue::from_static(DOCKER_MANIFEST_LIST),
        other => hv(other),
    }
}

/// A digest's two header forms, `Docker-Content-Digest: sha256:…` and
/// `ETag: "sha256:…"` (on every manifest and blob response, HEAD
/// included), and for a manifest its `Content-Length`.
#[derive(Clone)]
struct DigestHeaders {
    digest: HeaderValue,
    etag: HeaderValue,
    /// The length of the digest's content, once a manifest was served.
    length: Option<HeaderValue>,
}

/// `"` + `sha512:` + 128 hex digits + `"`: the longest quoted digest.
const QUOTED_MAX: usize = 2 + 7 + 128;

/// A quoted digest in place, handed to [`Bytes::from_owner`]: one
/// allocation holds it and the reference count.
struct Quoted {
    buf: [u8; QUOTED_MAX],
    len: u8,
}

impl AsRef<[u8]> for Quoted {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Entries of [`RECENT`] per thread.
const RECENT_SLOTS: usize = 8;

/// A cached [`DigestHeaders`] and the digest it is for.
struct Recent {
    digest: Digest,
    headers: DigestHeaders,
}

thread_local! {
    /// The header values of digests served recently on this thread: a
    /// manifest or blob asked for again (many clients pulling the same
    /// images) costs no allocation, formatting or validation. Keyed by the
    /// whole digest, which names its content for good, so no reload can
    /// make an entry wrong (a moved tag is looked up in the snapshot
    /// first and finds another digest). Direct-mapped by the digest's
    /// first byte: a fixed, small number of entries per worker thread.
    static RECENT: RefCell<[Option<Recent>; RECENT_SLOTS]> =
        const { RefCell::new([const { None }; RECENT_SLOTS]) };
}

impl DigestHeaders {
    /// The headers of `digest`; with `length`, the content's length too.
    fn of(digest: &Digest, length: Option<usize>) -> Self {
        let slot = digest
            .bytes()
            .first()
            .map_or(0, |b| usize::from(*b) % RECENT_SLOTS);
        RECENT.with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                return Self::build(digest, length);
            };
            if let Some(r) = &mut recent[slot] {
                if r.digest == *digest {
                    if let (None, Some(len)) = (&r.headers.length, length) {
                        r.headers.length = Some(len.into());
                    }
                    return r.headers.clone();
                }
            }
            let headers = Self::build(digest, length);
            recent[slot] = Some(Recent {
                digest: digest.clone(),
                headers: headers.clone(),
            });
            headers
        })
    }

    /// Both values from one buffer (the digest value is a slice of the
    /// quoted one), written straight from the digest's bytes.
    fn build(digest: &Digest, length: Option<usize>) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let algorithm = digest.algorithm().as_str().as_bytes();
        let raw = digest.bytes();
        let mut q = Quoted {
            buf: [0; QUOTED_MAX],
            len: 0,
        };
        let hex_start = 1 + algorithm.len() + 1;
        let hex_end = hex_start + 2 * raw.len();
        q.buf[0] = b'"';
        q.buf[1..hex_start - 1].copy_from_slice(algorithm);
        q.buf[hex_start - 1] = b':';
        for (pair, byte) in q.buf[hex_start..hex_end].chunks_exact_mut(2).zip(raw) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        q.buf[hex_end] = b'"';
        q.len = (hex_end + 1) as u8;
        let quoted = Bytes::from_owner(q);
        Self {
            digest: shared_value(quoted.slice(1..quoted.len() - 1)),
            etag: shared_value(quoted),
            length: length.map(HeaderValue::from),
        }
    }

    /// The ETag, for comparing with `If-None-Match` and `If-Range`.
    fn etag(&self) -> &[u8] {
        self.etag.as_bytes()
    }

    fn etag_value(&self) -> HeaderValue {
        self.etag.clone()
    }

    fn digest_value(&self) -> HeaderValue {
        self.digest.clone()
    }
}

fn shared_value(bytes: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// RFC 9110 §13.1.2: weak comparison of each listed tag, or `*`.
fn none_match<B>(req: &Request<B>, tags: &DigestHeaders) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|v| {
            v.to_str().is_ok_and(|v| {
                let etag = tags.etag();
                v.split(',')
                    .map(str::trim)
                    .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == etag)
            })
        })
}

fn not_modified(tags: &DigestHeaders) -> Response<Body> {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, tags.etag_value());
    h.insert(DIGEST_HEADER, tags.digest_value());
    response(StatusCode::NOT_MODIFIED, h, Body::Empty)
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

/// `GET|HEAD /v2/<name>/manifests/<reference>`.
pub fn manifest<B>(app: &Application, reference: &str, req: &Request<B>) -> Answer {
    // A tag of the application is found as it is (a valid tag, so
    // parsing it would find the same); anything else is parsed, for the
    // digest or for the right error.
    if let Some(found) = app
        .tags
        .get(reference)
        .and_then(|d| app.manifests.get_key_value(d))
    {
        return Ok(manifest_response(found, false, req));
    }
    let reference = Reference::parse(reference).map_err(|e| match e {
        ReferenceError::Tag(e) => ApiError::new(ErrorCode::TagInvalid, e.to_string()),
        ReferenceError::Digest(e) => ApiError::new(ErrorCode::DigestInvalid, e.to_string()),
    })?;
    let by_digest = matches!(reference, Reference::Digest(_));
    let found = match &reference {
        Reference::Tag(t) => app.tags.get(t).and_then(|d| app.manifests.get_key_value(d)),
        Reference::Digest(d) => app.manifests.get_key_value(d),
    };
    let found = found.ok_or_else(|| {
        let shown = match &reference {
            Reference::Tag(t) => t.to_string(),
            Reference::Digest(d) => d.to_string(),
        };
        ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("manifest {shown} is not known in {}", app.name),
        )
    })?;
    Ok(manifest_response(found, by_digest, req))
}

/// The answer for a manifest found: 200, or 304 for a matching
/// `If-None-Match`.
fn manifest_response<B>(
    (digest, m): (&Digest, &ir_oci::model::Manifest),
    by_digest: bool,
    req: &Request<B>,
) -> Response<Body> {
    let tags = DigestHeaders::of(digest, Some(m.bytes.len()));
    if none_match(req, &tags) {
        return not_modified(&tags);
    }
    log_unacceptable(req, &m.media_type);
    let mut h = HeaderMap::with_capacity(8);
    h.insert(header::CONTENT_TYPE, media_type_value(&m.media_type));
    if let Some(length) = tags.length.clone() {
        h.insert(header::CONTENT_LENGTH, length);
    }
    h.insert(DIGEST_HEADER, tags.digest);
    h.insert(header::ETAG, tags.etag);
    if by_digest {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    }
    response(StatusCode::OK, h, Body::full(m.bytes.clone()))
}

/// Content is immutable and may be signed, so it is never converted: a
/// client whose `Accept` does not list the stored type still gets it (and
/// decides), which is what every mainstream client copes with. Logged at
/// debug for operators chasing a client problem.
fn log_unacceptable<B>(req: &Request<B>, media_type: &str) {
    // Only worth the parsing (and its allocation) when someone listens.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let accepts: Vec<&str> = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    if !accepts.is_empty()
        && !accepts
            .iter()
            .any(|t| *t == media_type || *t == "*/*" || *t == "application/*")
    {
        tracing::debug!(media_type, accept = ?accepts, "serving a manifest type the client did not list in Accept");
    }
}

fn blob_headers(tags: &DigestHeaders) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(8);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    h.insert(DIGEST_HEADER, tags.digest_value());
    h.insert(header::ETAG, tags.etag_value());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h
}

/// The range to send, after `If-Range` (RFC 9110 §13.1.5): a range is only
/// honoured when `If-Range` is absent or strongly matches the ETag. HEAD
/// ignores `Range`, as RFC 9110 defines it for GET only.
fn wanted_range<B>(req: &Request<B>, etag: &[u8], size: u64) -> RangeOutcome {
    if req.method() != http::Method::GET {
        return RangeOutcome::Full;
    }
    let Some(range) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return RangeOutcome::Full;
    };
    if let Some(if_range) = req.headers().get(header::IF_RANGE) {
        if if_range.as_bytes() != etag {
            return RangeOutcome::Full;
        }
    }
    range::evaluate(range, size)
}

fn unsatisfiable(size: u64) -> Response<Body> {
    let e = ApiError::new(
        ErrorCode::RangeNotSatisfiable,
        format!("no requested range lies within the blob's {size} bytes"),
    );
    let mut r = error_response(&e);
    r.headers_mut()
        .insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
    r
}

/// Sets status, `Content-Length` and `Content-Range` for an outcome;
/// returns the byte span to send, or `None` when unsatisfiable.
fn apply_range(
    h: &mut HeaderMap,
    outcome: RangeOutcome,
    size: u64,
) -> Option<(StatusCode, u64, u64)> {
    match outcome {
        RangeOutcome::Full => {
            h.insert(header::CONTENT_LENGTH, size.into());
            Some((StatusCode::OK, 0, size))
        }
        RangeOutcome::Partial { start, end } => {
            h.insert(header::CONTENT_LENGTH, (end - start + 1).into());
            h.insert(
                header::CONTENT_RANGE,
                hv(&format!("bytes {start}-{end}/{size}")),
            );
            Some((StatusCode::PARTIAL_CONTENT, start, end + 1))
        }
        RangeOutcome::Unsatisfiable => None,
    }
}

/// `GET|HEAD /v2/<name>/blobs/<digest>`. Manifests and indexes are blobs
/// too and are served from their verified bytes in memory; every other
/// blob's body comes from [`crate::delivery`].
pub async fn blob<B>(
    app: Arc<Application>,
    catalog: &Catalog,
    digest: &str,
    req: &Request<B>,
) -> Answer {
    let digest = parse_digest(digest)?;
    let unknown = || {
        ApiError::new(
            ErrorCode::BlobUnknown,
            format!("blob {digest} is not known in {}", app.name),
        )
    };
    let tags = DigestHeaders::of(&digest, None);

    if let Some(m) = app.manifests.get(&digest) {
        if none_match(req, &tags) {
            return Ok(not_modified(&tags));
        }
        let size = m.bytes.len() as u64;
        let mut h = blob_headers(&tags);
        let Some((status, start, end)) =
            apply_range(&mut h, wanted_range(req, tags.etag(), size), size)
        else {
            return Ok(unsatisfiable(size));
        };
        let body = Body::full(m.bytes.slice(start as usize..end as usize));
        return Ok(response(status, h, body));
    }

    let blob = app
        .blobs
        .get(&digest)
        .filter(|b| !b.is_withdrawn())
        .ok_or_else(unknown)?;
    if none_match(req, &tags) {
        return Ok(not_modified(&tags));
    }
    let size = blob.size();
    let mut h = blob_headers(&tags);
    let Some((status, start, end)) =
        apply_range(&mut h, wanted_range(req, tags.etag(), size), size)
    else {
        return Ok(unsatisfiable(size));
    };
    if req.method() == http::Method::HEAD {
        // HEAD answers from the model and never touches the file.
        return Ok(response(status, h, Body::Empty));
    }

    // Only verified bytes leave: `delivery` picks how they are checked.
    match crate::delivery::body(
        &app,
        (catalog.seals(), catalog.blob_cache()),
        digest,
        blob,
        (start, end),
    )
    .await
    {
        Ok(body) => Ok(response(status, h, body)),
        Err(withdrawn) => {
            tracing::error!(application = %app.name, digest = %withdrawn.digest, "blob withdrawn: its file changed after verification ({})", withdrawn.why);
            Err(ApiError::new(
                ErrorCode::BlobUnknown,
                format!(
                    "blob {} was withdrawn: its file changed after verification",
                    withdrawn.digest
                ),
            ))
        }
    }
}

/// Pagination parameters `n` and `last`.
struct Page {
    n: Option<usize>,
    last: Option<String>,
}

fn query_pairs<B>(req: &Request<B>) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .take(64)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn page<B>(req: &Request<B>) -> Result<Page, ApiError> {
    let mut p = Page {
        n: None,
        last: None,
    };
    for (k, v) in query_pairs(req) {
        match k.as_str() {
            "n" => {
                let n = v.parse::<usize>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::PaginationNumberInvalid,
                        format!("n={v:.40} is not a non-negative integer"),
                    )
                })?;
                p.n = Some(n);
            }
            "last" => p.last = Some(v),
            _ => {}
        }
    }
    Ok(p)
}

/// Applies `n`/`last` to sorted `items`; returns the page and, when cut,
/// the `Link` header for the next page.
fn paginate<'a>(
    items: impl Iterator<Item = &'a str>,
    p: &Page,
    path: &str,
) -> (Vec<&'a str>, Option<String>) {
    let mut after = items
        .filter(|i| p.last.as_deref().is_none_or(|l| *i > l))
        .peekable();
    let Some(n) = p.n else {
        return (after.collect(), None);
    };
    let page: Vec<&str> = after.by_ref().take(n).collect();
    let link = match (page.last(), after.peek()) {
        (Some(last), Some(_)) => {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.to_string())
                .append_pair("last", last)
                .finish();
            Some(format!("<{path}?{q}>; rel=\"next\""))
        }
        _ => None,
    };
    (page, link)
}

/// Body of `tags/list`.
#[derive(serde::Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

/// Body of `_catalog`.
#[derive(serde::Serialize)]
struct Repositories<'a> {
    repositories: Vec<&'a str>,
}

/// `GET /v2/<name>/tags/list`.
pub fn tags<B>(app: &Application, req: &Request<B>) -> Answer {
    let p = page(req)?;
    let path = format!("/v2/{}/tags/list", app.name);
    let (tags, link) = paginate(app.tags.keys().map(|t| t.as_str()), &p, &path);
    let (mut h, body) = json_response(
        &TagList {
            name: app.name.as_str(),
            tags,
        },
        JSON,
    );
    if let Some(link) = link {
        h.insert(header::LINK, hv(&link));
    }
    Ok(response(StatusCode::OK, h, body))
}

/// `GET /v2/_catalog`, as the Docker registry API defines it: the names
/// this connection is served, in its policy scope's view (an RA-TLS realm
/// held to a scope with no view yet lists nothing, as it is served
/// nothing).
pub fn catalog<B>(catalog: &Catalog, conn: &ConnInfo, req: &Request<B>) -> Answer {
    let p = page(req)?;
    let scope = conn.scope();
    let names = catalog
        .names()
        .filter(|n| conn.may_see(n) && catalog.application_in(scope.as_deref(), n).is_some())
        .map(|n| n.as_str());
    let (repos, link) = paginate(names, &p, "/v2/_catalog");
    let (mut h, body) = json_response(
        &Repositories {
            repositories: repos,
        },
        JSON,
    );
    if let Some(link) = link {
        h.insert(header::LINK, hv(&link));
    }
    Ok(response(StatusCode::OK, h, body))
}

/// `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1).
pub fn referrers<B>(app: &Application, digest: &str, req: &Request<B>) -> Answer {
    let subject = parse_digest(digest)?;
    let filter: Option<String> = query_pairs(req)
        .find(|(k, _)| k == "artifactType")
        .map(|(_, v)| v);
    let mut manifests = Vec::new();
    for d in app.referrers.get(&subject).into_iter().flatten() {
        let Some(m) = app.manifests.get(d) else {
            continue;
        };
        let Some(r) = &m.referring else {
            continue; // listed as a referrer, so it has a subject
        };
        if let Some(f) = &filter {
            if r.artifact_type.as_deref() != Some(f.as_str()) {
                continue;
            }
        }
        let mut desc =
            json!({"mediaType": &*m.media_type, "digest": &*d.text(), "size": m.bytes.len()});
        if let Some(t) = &r.artifact_type {
            desc["artifactType"] = json!(&**t);
        }
        if let Some(a) = &r.annotations {
            desc["annotations"] = json!(a);
        }
        manifests.push(desc);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let (mut h, body) = json_response(&index, OCI_INDEX);
    if filter.is_some() {
        h.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response(StatusCode::OK, h, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_headers_are_the_digest_text() {
        for text in [
            format!("sha256:{}", "0123456789abcdef".repeat(4)),
            format!("sha512:{}", "fedcba9876543210".repeat(8)),
        ] {
            let digest = Digest::parse(&text).unwrap();
            for _ in 0..2 {
                // Built, then from this thread's cache.
                let tags = DigestHeaders::of(&digest, Some(561));
                assert_eq!(tags.digest_value(), text.as_str());
                assert_eq!(tags.etag_value(), format!("\"{text}\"").as_str());
                assert_eq!(tags.etag(), format!("\"{text}\"").as_bytes());
                assert_eq!(tags.length.unwrap(), "561");
            }
        }
    }
}
