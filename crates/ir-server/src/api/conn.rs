//! What the transport knows about a connection: the peer, and what it may
//! see (its applications and its signature policy scope).

use std::net::SocketAddr;
use std::sync::Arc;

use ir_oci::RepoName;

/// Which applications a connection may see. `None` means all; RA-TLS
/// connections of a realm limited to some applications carry a filter, and
/// everything else answers as if those applications did not exist.
pub type Visibility = Option<Arc<dyn Fn(&RepoName) -> bool + Send + Sync>>;

/// The signature policy scope a connection is held to, asked at each
/// request: RA-TLS realms take it from their reference entry in force, so
/// a reload that changes it applies to open connections. `None`, or an
/// answer of `None`: the server's `--registry-host`.
pub type PolicyScope = Option<Arc<dyn Fn() -> Option<Arc<str>> + Send + Sync>>;

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
    /// Who the client is, for delivery receipts: an attested realm's
    /// measurements or a client certificate's subject.
    pub identity: Option<Arc<ir_receipts::Identity>>,
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
            identity: None,
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

    pub(crate) fn may_see(&self, name: &RepoName) -> bool {
        self.visibility.as_ref().is_none_or(|f| f(name))
    }
}
