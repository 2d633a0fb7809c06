//! Client certificates for plain TLS (`--client-ca`) and the access map
//! (`--access-map`, alias `--client-map`).
//!
//! With `--client-ca FILE`, TLS mode requires every client to present a
//! certificate issued by a CA in FILE (rustls's WebPKI verifier: chain,
//! validity, client-auth usage). The access map says which applications
//! each identity sees, in the shape of the RA-TLS `applications` list:
//! client certificates, and users who log in (`--htpasswd` users, or the
//! subject of a bearer token):
//!
//! ```json
//! { "clients": [
//!     { "name": "ci",    "subject": "CN=ci-runner,O=Example", "applications": ["team/*"] },
//!     { "name": "nodes", "common_name": "node-pool",          "applications": ["base", "app"] },
//!     { "name": "ops",   "san": "ops.example.com" },
//!     { "user": "guest-42", "applications": ["app"] }
//! ] }
//! ```
//!
//! A certificate entry matches on the whole subject (RFC 4514 text as
//! x509-parser prints it, spaces after commas ignored), on the subject's
//! common name, or on one DNS, e-mail or URI subject alternative name; a
//! `user` entry matches that user name exactly. The first entry that
//! matches applies, and one without `applications` sees everything. An
//! identity that matches no entry sees nothing (fail closed). Hidden
//! applications answer exactly like missing ones (404 `NAME_UNKNOWN`, left
//! out of the catalog), as for realms.
//!
//! The map is read again on SIGHUP ([`SharedClientMap::reload`]): a map
//! that cannot be used keeps the one in force. A new map applies to the
//! next request, on open connections too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use ir_attest::reference_values::AppPattern;
use ir_oci::RepoName;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use x509_parser::extensions::GeneralName;

use crate::api::conn::Visibility;

/// Most entries in a client map.
pub const MAX_CLIENTS: usize = 10_000;
/// Largest client map file.
const MAX_MAP_BYTES: u64 = 4 << 20;

/// Why the client CA or the map could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientAccessError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("--client-ca {0}: no CA certificate (PEM) found")]
    NoCa(String),
    /// rustls refused the CA set.
    #[error("--client-ca {0}: {1}")]
    Verifier(String, String),
    /// The map is not valid.
    #[error("--access-map {0}: {1}")]
    Map(String, #[source] MapError),
}

/// Why a client map document is not valid.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file is over 4 MiB.
    #[error("file too large")]
    TooLarge,
    /// Not strict JSON of the map's shape.
    #[error(transparent)]
    Json(#[from] ir_oci::json::StrictJsonError),
    /// More than [`MAX_CLIENTS`] entries.
    #[error("more than {MAX_CLIENTS} clients")]
    TooManyClients,
    /// An entry names none or several of the ways to match a certificate.
    #[error("client {0}: give exactly one of \"subject\", \"common_name\", \"san\", \"user\"")]
    OneKey(usize),
    /// An entry's application pattern does not parse.
    #[error("client {client}: {reason}")]
    Pattern {
        /// The entry's index.
        client: usize,
        /// What the pattern parser said.
        reason: String,
    },
}

/// The verifier that requires a certificate from the CAs in `path`.
pub fn verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, ClientAccessError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| ClientAccessError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ClientAccessError::Verifier(shown.clone(), e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ClientAccessError::Verifier(shown.clone(), e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientAccessError::NoCa(shown));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| ClientAccessError::Verifier(shown, e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    clients: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: Option<String>,
    subject: Option<String>,
    common_name: Option<String>,
    san: Option<String>,
    user: Option<String>,
    applications: Option<Vec<String>>,
}

/// What an entry matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Subject(String),
    CommonName(String),
    San(String),
    User(String),
}

/// One entry of the map.
#[derive(Debug, Clone)]
struct Entry {
    name: Arc<str>,
    key: Key,
    applications: Option<Arc<[AppPattern]>>,
}

/// The access map: which applications each client certificate or user
/// may see.
#[derive(Debug, Clone)]
pub struct ClientMap {
    entries: Vec<Entry>,
}

/// A subject as compared: RFC 4514 text without the spaces after commas.
fn normalise_subject(s: &str) -> String {
    s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

impl ClientMap {
    /// Reads and checks the map at `path`.
    pub fn load(path: &Path) -> Result<ClientMap, ClientAccessError> {
        let shown = path.display().to_string();
        let read = || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(path)?
                .take(MAX_MAP_BYTES + 1)
                .read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let bytes = read().map_err(|source| ClientAccessError::Read {
            path: shown.clone(),
            source,
        })?;
        if bytes.len() as u64 > MAX_MAP_BYTES {
            return Err(ClientAccessError::Map(shown, MapError::TooLarge));
        }
        ClientMap::from_json(&bytes).map_err(|e| ClientAccessError::Map(shown, e))
    }

    /// Parses a map document.
    pub fn from_json(bytes: &[u8]) -> Result<ClientMap, MapError> {
        let raw: RawMap = ir_oci::json::from_slice(bytes)?;
        if raw.clients.len() > MAX_CLIENTS {
            return Err(MapError::TooManyClients);
        }
        let mut entries = Vec::with_capacity(raw.clients.len());
        for (i, e) in raw.clients.into_iter().enumerate() {
            let key = match (e.subject, e.common_name, e.san, e.user) {
                (Some(s), None, None, None) => Key::Subject(normalise_subject(&s)),
                (None, Some(cn), None, None) => Key::CommonName(cn),
                (None, None, Some(san), None) => Key::San(san),
                (None, None, None, Some(user)) if !user.is_empty() => Key::User(user),
                _ => return Err(MapError::OneKey(i)),
            };
            let applications = match e.applications {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|p| {
                            AppPattern::parse(p)
                                .map_err(|reason| MapError::Pattern { client: i, reason })
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .into(),
                ),
            };
            let name = e.name.unwrap_or_else(|| match &key {
                Key::Subject(s) | Key::CommonName(s) | Key::San(s) | Key::User(s) => s.clone(),
            });
            entries.push(Entry {
                name: name.into(),
                key,
                applications,
            });
        }
        Ok(ClientMap { entries })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without entries (every client then sees nothing).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry's name and what a client with certificate `der` may see:
    /// `None` for the name when no entry matches (then it sees nothing).
    pub fn access(&self, der: &[u8]) -> (Option<Arc<str>>, Visibility) {
        match CertNames::of(der) {
            Some(names) => self.access_by_names(&names),
            None => Self::visibility_of(None),
        }
    }

    /// [`ClientMap::access`] for a certificate's names.
    fn access_by_names(&self, names: &CertNames) -> (Option<Arc<str>>, Visibility) {
        let found = self.entries.iter().find(|e| match &e.key {
            Key::Subject(s) => *s == names.subject,
            Key::CommonName(cn) => names.cns.iter().any(|c| c == cn),
            Key::San(san) => names.sans.iter().any(|s| s == san),
            Key::User(_) => false,
        });
        Self::visibility_of(found)
    }

    /// The entry's name and what user `user` (an `--htpasswd` user or a
    /// token's subject) may see: nothing when no `user` entry names it.
    pub fn for_user(&self, user: &str) -> (Option<Arc<str>>, Visibility) {
        let found = self
            .entries
            .iter()
            .find(|e| matches!(&e.key, Key::User(u) if u == user));
        Self::visibility_of(found)
    }

    /// True when user `user` may see application `name`.
    pub fn user_may_see(&self, user: &str, name: &RepoName) -> bool {
        self.for_user(user).1.is_none_or(|f| f(name))
    }

    fn visibility_of(found: Option<&Entry>) -> (Option<Arc<str>>, Visibility) {
        match found {
            None => (None, Some(Arc::new(|_: &RepoName| false))),
            Some(e) => {
                let visibility: Visibility = e.applications.clone().map(|patterns| {
                    Arc::new(move |name: &RepoName| {
                        patterns.iter().any(|p| p.matches(name.as_str()))
                    }) as _
                });
                (Some(e.name.clone()), visibility)
            }
        }
    }
}

/// What a certificate is matched on: its subject, common names, and DNS,
/// e-mail and URI subject alternative names.
#[derive(Debug, Clone)]
struct CertNames {
    subject: String,
    cns: Vec<String>,
    sans: Vec<String>,
}

impl CertNames {
    /// The names of certificate `der` (`None`: it does not parse).
    fn of(der: &[u8]) -> Option<CertNames> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = normalise_subject(&cert.subject().to_string());
        let cns = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(s)
                        | GeneralName::RFC822Name(s)
                        | GeneralName::URI(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(CertNames { subject, cns, sans })
    }
}

/// The access map in force, read from its file and replaced whole by
/// [`SharedClientMap::reload`]; requests see the old map or the new one,
/// never a mix.
#[derive(Debug)]
pub struct SharedClientMap {
    path: PathBuf,
    current: ArcSwap<ClientMap>,
}

impl SharedClientMap {
    /// `map`, read from `path` (read again by a reload).
    pub fn new(path: PathBuf, map: ClientMap) -> Arc<Self> {
        Arc::new(SharedClientMap {
            path,
            current: ArcSwap::from_pointee(map),
        })
    }

    /// Reads and checks the map at `path`.
    pub fn load(path: &Path) -> Result<Arc<Self>, ClientAccessError> {
        Ok(Self::new(path.to_owned(), ClientMap::load(path)?))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The map in force now.
    pub fn current(&self) -> Arc<ClientMap> {
        self.current.load_full()
    }

    /// The map in force now, for a short look (no reference count taken).
    pub fn peek(&self) -> arc_swap::Guard<Arc<ClientMap>> {
        self.current.load()
    }

    /// Reads the file again and, when it is a valid map, puts it in force
    /// (its number of entries); otherwise the map in force stays.
    pub fn reload(&self) -> Result<usize, ClientAccessError> {
        let map = ClientMap::load(&self.path)?;
        let n = map.len();
        self.current.store(Arc::new(map));
        Ok(n)
    }

    /// The entry's name (at the handshake) and what the client with
    /// certificate `der` may see, judged by the map in force at each
    /// request: a reload applies to open connections too.
    pub fn live_access(self: &Arc<Self>, der: &[u8]) -> (Option<Arc<str>>, Visibility) {
        let Some(names) = CertNames::of(der) else {
            return ClientMap::visibility_of(None);
        };
        let map = self.current();
        let (name, first) = map.access_by_names(&names);
        // The verdict for the map it was made with, made again only when
        // another map is in force.
        let memo = Mutex::new((map, first));
        let shared = self.clone();
        let visibility = move |app: &RepoName| {
            let now = shared.current.load();
            let verdict = {
                let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
                if !Arc::ptr_eq(&memo.0, &now) {
                    let verdict = now.access_by_names(&names).1;
                    *memo = (arc_swap::Guard::into_inner(now), verdict);
                }
                memo.1.clone()
            };
            verdict.is_none_or(|f| f(app))
        };
        (name, Some(Arc::new(visibility)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn sees(map: &ClientMap, der: &[u8], app: &str) -> bool {
        let (_, v) = map.access(der);
        v.is_none_or(|f| f(&RepoName::parse(app).unwrap()))
    }

    #[test]
    fn entries_match_subject_common_name_or_san() {
        let map = ClientMap::from_json(
            br#"{"clients": [
                {"name": "ci", "subject": "CN=ci-runner, O=Example", "applications": ["team/*"]},
                {"common_name": "node", "applications": ["app"]},
                {"name": "ops", "san": "ops.example.com"}
            ]}"#,
        )
        .unwrap();
        let ci = cert("ci-runner", &[]);
        assert_eq!(map.access(&ci).0.as_deref(), Some("ci"));
        assert!(sees(&map, &ci, "team/x"));
        assert!(!sees(&map, &ci, "app"));
        let node = cert("node", &["n1.example.com"]);
        assert_eq!(map.access(&node).0.as_deref(), Some("node"));
        assert!(sees(&map, &node, "app"));
        assert!(!sees(&map, &node, "team/x"));
        let ops = cert("someone", &["ops.example.com"]);
        assert!(sees(&map, &ops, "anything"));
        let stranger = cert("stranger", &["x.example.com"]);
        assert_eq!(map.access(&stranger).0, None);
        assert!(!sees(&map, &stranger, "app"));
        assert!(!sees(&map, b"not a certificate", "app"));
    }

    #[test]
    fn user_entries_match_users_only() {
        let map = ClientMap::from_json(
            br#"{"clients": [
                {"user": "alice", "applications": ["team/*"]},
                {"user": "root"},
                {"common_name": "alice", "applications": ["other"]}
            ]}"#,
        )
        .unwrap();
        let app = |s: &str| RepoName::parse(s).unwrap();
        assert_eq!(map.for_user("alice").0.as_deref(), Some("alice"));
        assert!(map.user_may_see("alice", &app("team/x")));
        assert!(!map.user_may_see("alice", &app("other")));
        assert!(map.user_may_see("root", &app("anything")));
        assert!(!map.user_may_see("mallory", &app("team/x")));
        assert_eq!(map.for_user("Alice").0, None, "names match exactly");
        // A certificate never matches a user entry, nor a user a certificate's.
        let cert_alice = cert("alice", &[]);
        assert!(sees(&map, &cert_alice, "other"));
        assert!(!sees(&map, &cert_alice, "team/x"));
        let root_cert = cert("root", &[]);
        assert_eq!(map.access(&root_cert).0, None);
        assert!(ClientMap::from_json(br#"{"clients": [{"user": "a", "san": "b"}]}"#).is_err());
        assert!(ClientMap::from_json(br#"{"clients": [{"user": ""}]}"#).is_err());
    }

    #[test]
    fn a_reloaded_map_applies_to_access_given_before() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("map.json");
        let write = |apps: &str| {
            let doc =
                format!(r#"{{"clients": [{{"common_name": "node", "applications": [{apps}]}}]}}"#);
            std::fs::write(&path, doc).unwrap();
        };
        write(r#""app", "other""#);
        let shared = SharedClientMap::load(&path).unwrap();
        let node = cert("node", &[]);
        let (name, v) = shared.live_access(&node);
        assert_eq!(name.as_deref(), Some("node"));
        let v = v.unwrap();
        let app = |s: &str| RepoName::parse(s).unwrap();
        assert!(v(&app("app")) && v(&app("other")));
        write(r#""app""#);
        assert_eq!(shared.reload().unwrap(), 1);
        assert!(v(&app("app")) && !v(&app("other")), "the new map applies");
        std::fs::write(&path, "{").unwrap();
        assert!(shared.reload().is_err());
        assert!(
            v(&app("app")) && !v(&app("other")),
            "a broken map changes nothing"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(shared.reload().is_err());
        assert!(v(&app("app")), "a missing file changes nothing");
        assert!(shared
            .live_access(b"junk")
            .1
            .is_some_and(|v| !v(&app("app"))));
    }

    #[test]
    fn bad_maps_are_refused() {
        for doc in [
            &br#"{"clients": [{"applications": ["a"]}]}"#[..],
            br#"{"clients": [{"subject": "CN=a", "san": "b"}]}"#,
            br#"{"clients": [{"san": "b", "applications": ["a*"]}]}"#,
            br#"{"clients": [{"san": "b", "extra": 1}]}"#,
            br#"{}"#,
        ] {
            assert!(
                ClientMap::from_json(doc).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }
}
