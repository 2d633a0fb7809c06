//! Maps a request path to an endpoint of the pull API.
//!
//! Hand-written rather than a router's pattern syntax because repository
//! names contain slashes (`/v2/team/app/manifests/1.0`), which path-pattern
//! routers cannot express before a fixed suffix. The path is used raw,
//! never percent-decoded: no valid name, tag or digest contains `%`, so an
//! encoded `..` or `/` simply fails the grammar.

use ir_oci::{name::NameError, RepoName};

/// The endpoint kind a request path addresses: the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v2/`.
    Base,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `/v2/<name>/tags/list`.
    Tags,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
    /// `/v2/_catalog`.
    Catalog,
    /// Anything else: uploads, probes, unknown paths.
    Other,
}

impl Endpoint {
    /// Every kind, in label order.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Base,
        Endpoint::Manifest,
        Endpoint::Blob,
        Endpoint::Tags,
        Endpoint::Referrers,
        Endpoint::Catalog,
        Endpoint::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Manifest => "manifest",
            Endpoint::Blob => "blob",
            Endpoint::Tags => "tags",
            Endpoint::Referrers => "referrers",
            Endpoint::Catalog => "catalog",
            Endpoint::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// An endpoint, with the repository name already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(RepoName, &'a str),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(RepoName, &'a str),
    /// `/v2/<name>/blobs/uploads/…`: push only.
    Upload(RepoName),
    /// `/v2/<name>/tags/list`.
    Tags(RepoName),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(RepoName, &'a str),
}

/// Why a path is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not a path of the pull API.
    NoSuchEndpoint,
    /// The shape is an endpoint's (the first field), but the name is
    /// invalid.
    InvalidName(Endpoint, NameError),
}

impl Route<'_> {
    /// The endpoint kind (the metrics' `endpoint` label).
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Base => Endpoint::Base,
            Route::Catalog => Endpoint::Catalog,
            Route::Manifest(..) => Endpoint::Manifest,
            Route::Blob(..) => Endpoint::Blob,
            Route::Upload(_) => Endpoint::Other,
            Route::Tags(_) => Endpoint::Tags,
            Route::Referrers(..) => Endpoint::Referrers,
        }
    }
}

impl RouteError {
    /// The endpoint kind the path asked for: a path with an invalid name
    /// still counts for the endpoint its shape names.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            RouteError::NoSuchEndpoint => Endpoint::Other,
            RouteError::InvalidName(e, _) => *e,
        }
    }
}

/// The endpoint kind of a parse result.
pub fn endpoint_of(parsed: &Result<Route<'_>, RouteError>) -> Endpoint {
    match parsed {
        Ok(r) => r.endpoint(),
        Err(e) => e.endpoint(),
    }
}

/// Most path segments considered; names longer than this are invalid anyway.
const MAX_SEGMENTS: usize = 128;

/// Parses `path` (without query).
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        "/v2/_catalog" => return Ok(Route::Catalog),
        p => p.strip_prefix("/v2/").ok_or(RouteError::NoSuchEndpoint)?,
    };
    // Fewer than MAX_SEGMENTS segments (every real request): the last
    // segments are found from the end, without collecting them.
    if rest.len() < MAX_SEGMENTS - 1
        || rest.bytes().filter(|b| *b == b'/').count() < MAX_SEGMENTS - 1
    {
        return parse_short(rest);
    }
    parse_segments(rest)
}

/// [`parse_segments`] for a path of fewer than [`MAX_SEGMENTS`] segments,
/// with the same answers: the name is the text before the endpoint's
/// fixed segments.
fn parse_short(rest: &str) -> Result<Route<'_>, RouteError> {
    let name = |text: &str, endpoint: Endpoint| {
        RepoName::parse(text).map_err(|e| RouteError::InvalidName(endpoint, e))
    };
    let (head, last) = split_last(rest).ok_or(RouteError::NoSuchEndpoint)?;
    let (before, fixed) = split_last(head).ok_or(RouteError::NoSuchEndpoint)?;
    match (fixed, last) {
        ("tags", "list") => return Ok(Route::Tags(name(before, Endpoint::Tags)?)),
        ("manifests", reference) => {
            return Ok(Route::Manifest(
                name(before, Endpoint::Manifest)?,
                reference,
            ))
        }
        ("referrers", digest) => {
            return Ok(Route::Referrers(name(before, Endpoint::Referrers)?, digest))
        }
        ("blobs", "uploads") => return Ok(Route::Upload(name(before, Endpoint::Other)?)),
        ("blobs", digest) => return Ok(Route::Blob(name(before, Endpoint::Blob)?, digest)),
        _ => {}
    }
    match split_last(before) {
        Some((app, "blobs")) if fixed == "uploads" => {
            Ok(Route::Upload(name(app, Endpoint::Other)?))
        }
        _ => Err(RouteError::NoSuchEndpoint),
    }
}

/// `s` around its last `/` (a byte search: cheaper than a `char` one).
fn split_last(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().rposition(|b| b == b'/')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Parses the part of a path after `/v2/` segment by segment, at most
/// [`MAX_SEGMENTS`] of them (the last one keeps any further slashes).
fn parse_segments(rest: &str) -> Result<Route<'_>, RouteError> {
    let segments: Vec<&str> = rest.splitn(MAX_SEGMENTS, '/').collect();
    let n = segments.len();
    let name_of = |k: usize, endpoint: Endpoint| -> Result<RepoName, RouteError> {
        if k == 0 {
            return Err(RouteError::NoSuchEndpoint);
        }
        // The name is the raw text before the endpoint's fixed segments.
        let len: usize = segments[..k].iter().map(|s| s.len()).sum::<usize>() + k - 1;
        RepoName::parse(&rest[..len]).map_err(|e| RouteError::InvalidName(endpoint, e))
    };
    let tail = |k: usize| &segments[n.saturating_sub(k)..];
    match tail(3) {
        [_, "tags", "list"] => return Ok(Route::Tags(name_of(n - 2, Endpoint::Tags)?)),
        [_, "manifests", reference] => {
            return Ok(Route::Manifest(
                name_of(n - 2, Endpoint::Manifest)?,
                reference,
            ))
        }
        [_, "referrers", digest] => {
            return Ok(Route::Referrers(
                name_of(n - 2, Endpoint::Referrers)?,
                digest,
            ))
        }
        [_, "blobs", "uploads"] => return Ok(Route::Upload(name_of(n - 2, Endpoint::Other)?)),
        [_, "blobs", digest] => return Ok(Route::Blob(name_of(n - 2, Endpoint::Blob)?, digest)),
        _ => {}
    }
    if let [_, "blobs", "uploads", _] = tail(4) {
        return Ok(Route::Upload(name_of(n - 3, Endpoint::Other)?));
    }
    Err(RouteError::NoSuchEndpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(parse("/v2/app/tags/list"), Ok(Route::Tags(name("app"))));
        assert_eq!(
            parse("/v2/team/app/manifests/1.0"),
            Ok(Route::Manifest(name("team/app"), "1.0"))
        );
        assert_eq!(
            parse("/v2/a/manifests/manifests/x"),
            Ok(Route::Manifest(name("a/manifests"), "x"))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:x"),
            Ok(Route::Blob(name("a/b"), "sha256:x"))
        );
        assert_eq!(
            parse("/v2/a/referrers/d"),
            Ok(Route::Referrers(name("a"), "d"))
        );
        assert_eq!(parse("/v2/a/blobs/uploads/"), Ok(Route::Upload(name("a"))));
        assert_eq!(
            parse("/v2/a/blobs/uploads/123"),
            Ok(Route::Upload(name("a")))
        );
        assert_eq!(parse("/v2/a/blobs/uploads"), Ok(Route::Upload(name("a"))));
    }

    #[test]
    fn rejects_hostile_paths() {
        for p in [
            "/v2/../etc/manifests/x",
            "/v2/a/../b/manifests/x",
            "/v2/%2e%2e/manifests/x",
            "/v2/a%2fb/manifests/x",
            "/v2/a//b/manifests/x",
            "/v2//a/manifests/x",
            "/v2/a\\b/manifests/x",
            "/v2/A/manifests/x",
        ] {
            assert!(matches!(parse(p), Err(RouteError::InvalidName(..))), "{p}");
        }
        for p in [
            "/",
            "/v1/",
            "/v2x",
            "/v2/manifests/x",
            "/v2/a",
            "/v2/a/tags",
            "/etc/passwd",
            "/v2/a/blobs",
        ] {
            assert_eq!(parse(p), Err(RouteError::NoSuchEndpoint), "{p}");
        }
    }

    #[test]
    fn endpoint_kinds() {
        for (path, kind) in [
            ("/v2/", Endpoint::Base),
            ("/v2", Endpoint::Base),
            ("/v2/_catalog", Endpoint::Catalog),
            ("/v2/a/tags/list", Endpoint::Tags),
            ("/v2/team/app/manifests/1.0", Endpoint::Manifest),
            ("/v2/a/manifests/manifests/x", Endpoint::Manifest),
            ("/v2/a/b/blobs/sha256:x", Endpoint::Blob),
            ("/v2/a/referrers/d", Endpoint::Referrers),
            ("/v2/a/blobs/uploads/", Endpoint::Other),
            ("/v2/a/blobs/uploads/123", Endpoint::Other),
            ("/v2/a/blobs/uploads", Endpoint::Other),
            ("/v2/manifests/x", Endpoint::Other),
            ("/v2/a", Endpoint::Other),
            ("/healthz", Endpoint::Other),
            ("/", Endpoint::Other),
            // An invalid name counts for the endpoint its shape names.
            ("/v2/A/manifests/x", Endpoint::Manifest),
            ("/v2/A/blobs/sha256:x", Endpoint::Blob),
        ] {
            assert_eq!(endpoint_of(&parse(path)), kind, "{path}");
        }
    }

    #[test]
    fn short_paths_parse_as_segments() {
        let parts = [
            "",
            "a",
            "b",
            "A",
            "manifests",
            "blobs",
            "uploads",
            "tags",
            "list",
            "referrers",
            "sha256:x",
            "..",
            "x",
        ];
        let mut paths = vec![String::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for p in &paths {
                for part in parts {
                    longer.push(if p.is_empty() {
                        part.to_string()
                    } else {
                        format!("{p}/{part}")
                    });
                }
            }
            paths.extend(longer);
        }
        for rest in &paths {
            assert_eq!(parse_short(rest), parse_segments(rest), "/v2/{rest}");
        }
    }

    #[test]
    fn bounded_on_huge_paths() {
        let p = format!("/v2/{}manifests/x", "a/".repeat(100_000));
        assert!(parse(&p).is_err());
    }
}
