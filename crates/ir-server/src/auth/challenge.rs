//! The 401 answers: `WWW-Authenticate` challenges and OCI error bodies as
//! distribution's token authentication gives them (registry/auth/token):
//! `Bearer realm="...",service="..."`, then `scope="..."` naming what the
//! request needs (none for `/v2/` itself), then `error="invalid_token"`
//! or `error="insufficient_scope"` when a token was presented and
//! refused; the body is `UNAUTHORIZED` with the access asked for.

use http::{header, HeaderValue, Response};

use crate::api::error::{error_response, ApiError, ErrorCode};
use crate::delivery::Body;

/// Why a bearer request was refused, as the challenge's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No (usable) credentials: no `error` parameter.
    Required,
    /// The token is malformed, expired, for another service or issuer, or
    /// signed by an untrusted key.
    InvalidToken,
    /// The token is valid but does not grant what the request needs.
    InsufficientScope,
}

/// What a request needs, as a resource scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// `/v2/` and anything that is not a repository or the catalog: valid
    /// credentials, no scope.
    Base,
    /// Pulling from the repository named.
    Repository(&'a str),
    /// Listing the catalog (`registry:catalog:*`).
    Catalog,
}

impl Need<'_> {
    /// The scope parameter, if any.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Base => None,
            Need::Repository(name) => Some(format!("repository:{name}:pull")),
            Need::Catalog => Some("registry:catalog:*".into()),
        }
    }

    fn detail(&self) -> serde_json::Value {
        let (kind, name, action) = match self {
            Need::Base => return serde_json::Value::Null,
            Need::Repository(name) => ("repository", *name, "pull"),
            Need::Catalog => ("registry", "catalog", "*"),
        };
        serde_json::json!([{ "Type": kind, "Class": "", "Name": name, "Action": action }])
    }
}

/// The `WWW-Authenticate` value of a bearer challenge. `realm` and
/// `service` are checked at start-up to hold no quote or control
/// character; a repository name cannot hold one.
pub fn bearer(realm: &str, service: &str, need: Need<'_>, error: BearerError) -> String {
    let mut v = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(scope) = need.scope() {
        v.push_str(&format!(",scope=\"{scope}\""));
    }
    match error {
        BearerError::Required => {}
        BearerError::InvalidToken => v.push_str(",error=\"invalid_token\""),
        BearerError::InsufficientScope => v.push_str(",error=\"insufficient_scope\""),
    }
    v
}

/// A 401 `UNAUTHORIZED` with `challenge` as its `WWW-Authenticate`.
pub fn unauthorized(challenge: &str, need: Need<'_>, message: &str) -> Response<Body> {
    let mut e = ApiError::new(ErrorCode::Unauthorized, message);
    let detail = need.detail();
    if !detail.is_null() {
        e = e.with_detail(detail);
    }
    let mut r = error_response(&e);
    if let Ok(v) = HeaderValue::from_str(challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_distributions() {
        assert_eq!(
            bearer("https://r/token", "r", Need::Base, BearerError::Required),
            r#"Bearer realm="https://r/token",service="r""#
        );
        assert_eq!(
            bearer(
                "https://r/token",
                "r",
                Need::Repository("a/b"),
                BearerError::InsufficientScope
            ),
            r#"Bearer realm="https://r/token",service="r",scope="repository:a/b:pull",error="insufficient_scope""#
        );
        assert_eq!(
            bearer("u", "s", Need::Catalog, BearerError::InvalidToken),
            r#"Bearer realm="u",service="s",scope="registry:catalog:*",error="invalid_token""#
        );
    }
}
