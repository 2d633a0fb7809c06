//! Errors the API returns, one variant per distribution-spec error code,
//! each with its status. Every error response carries the spec's JSON body
//! `{"errors":[{"code","message","detail"}]}`; HEAD responses carry the same
//! status and headers without the body.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::delivery::Body;

/// An error code of the distribution spec (plus the few that clients of the
/// Docker registry API know), with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 404: blob unknown to the repository.
    BlobUnknown,
    /// 400: malformed digest.
    DigestInvalid,
    /// 404: manifest unknown to the repository.
    ManifestUnknown,
    /// 400: malformed repository name.
    NameInvalid,
    /// 404: repository not served.
    NameUnknown,
    /// 400: malformed tag (Docker registry API code).
    TagInvalid,
    /// 405: the registry is read-only; push and delete are not supported.
    Unsupported,
    /// 404: no such endpoint (reported with the `UNSUPPORTED` code, since
    /// the spec has no code for an unknown path).
    NoSuchEndpoint,
    /// 400: `n` is not a valid page size (Docker registry API code).
    PaginationNumberInvalid,
    /// 416: no requested range overlaps the blob. The spec has no code for
    /// this; we use `RANGE_NOT_SATISFIABLE`.
    RangeNotSatisfiable,
    /// 503: the registry is still loading (no spec code; `UNAVAILABLE`).
    Unavailable,
    /// 401: credentials are missing or refused (`--htpasswd`, tokens).
    Unauthorized,
}

impl ErrorCode {
    /// The code string of the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unsupported | ErrorCode::NoSuchEndpoint => "UNSUPPORTED",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown
            | ErrorCode::NoSuchEndpoint => StatusCode::NOT_FOUND,
            ErrorCode::DigestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error to answer with: a code, a message, and an optional detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The code (and so the status).
    pub code: ErrorCode,
    /// A one-line human message.
    pub message: String,
    /// Structured detail, if any.
    pub detail: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with a message and no detail.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> bytes::Bytes {
        let mut e = json!({"code": self.code.code(), "message": self.message});
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        serde_json::to_vec(&json!({ "errors": [e] }))
            .expect("JSON of strings serialises")
            .into()
    }
}

/// `Content-Type` of error bodies.
pub fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// Header name used for the `Allow` list of a 405.
pub const ALLOW: header::HeaderName = header::ALLOW;

/// The response for an error: its status and the spec's JSON body.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = e.body();
    Response::builder()
        .status(e.code.status())
        .header(header::CONTENT_TYPE, json_content_type())
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::full(body))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}
