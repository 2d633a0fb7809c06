//! Reference values: what a realm must measure to be trusted.
//!
//! The input is the islet JSON of the seed (only `realm.reference-values`
//! matters: `rim`, `rems`, `hash-algo`, and optionally
//! `personalization-value`; `realm.name`, `realm.uuid` and `realm.version`
//! are kept for logs), a JSON array of such documents, or a directory of
//! `*.json` files each holding one of those (bounded counts and sizes,
//! files read in name order, other files ignored).
//!
//! Loading is strict: a key written twice in one object is an error
//! naming it (readers disagree on which one wins), a key that is not part
//! of the format is an error (a misspelled `aplications` must not silently mean "every
//! application"), and two entries that could match the same token (same
//! RIM and hash algorithm, a REM set in common, and no personalization
//! value that tells them apart) are an error naming both.
//!
//! ## Applications
//!
//! A realm may be limited to some applications with
//! `"applications": ["app", "team/*"]`. The canonical place is
//! `realm.applications` (it describes the realm); a top-level
//! `applications` is accepted as well, and a document that has both is
//! rejected as ambiguous. No list means every application; an empty list
//! means none. Patterns: `name` matches exactly; `prefix/*` matches every
//! name under `prefix/` (at any depth, not `prefix` itself); `*` matches
//! everything. No other use of `*` is allowed.
//!
//! ## Signature policy scope
//!
//! `realm.policy-scope` (`"HOST[:PORT]"`) names the registry host the
//! realm's images are judged under by the server's signature policy
//! (`--policy`): the realm sees `HOST/APPLICATION:TAG` as the policy
//! judges it, instead of the server's `--registry-host`. One policy file
//! can so hold production realms to signed images and let test realms pull
//! anything. No `policy-scope` means the server's own name.

use crate::hash::HashAlg;
use crate::token::RealmClaims;
pub use crate::verify_error::{MatchError, VerifyError};
use serde::Deserialize;
use std::path::Path;

/// Largest accepted reference-values file.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Most files read from a directory.
pub const MAX_FILES: usize = 1000;
/// Most realms in one reference set.
pub const MAX_REALMS: usize = 10_000;
/// Most alternative REM sets per realm.
pub const MAX_REM_SETS: usize = 1000;
/// Most application patterns per realm.
pub const MAX_APPLICATIONS: usize = 1000;

/// Why reference values could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A limit was exceeded.
    #[error("{what}: {found} exceeds the limit of {limit}")]
    TooLarge {
        /// What (file size, file count, realm count…).
        what: String,
        /// The size or count found.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// The JSON does not have the expected shape.
    #[error("{source_name}: invalid reference values JSON: {reason}")]
    Json {
        /// Where it came from (path or label).
        source_name: String,
        /// The decoding error.
        reason: String,
    },
    /// A value is invalid.
    #[error("{source_name}: {reason}")]
    Invalid {
        /// Where it came from, with the entry index.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// No realm at all was found.
    #[error("{0}: no reference values found")]
    Empty(String),
    /// Two entries could match the same token (same RIM, hash algorithm
    /// and a REM set, and no personalization value to tell them apart).
    #[error("ambiguous reference values: {first} and {second} could match the same token (give each a different personalization-value, or merge them)")]
    Ambiguous {
        /// The first entry (label).
        first: String,
        /// The second entry (label).
        second: String,
    },
}

/// The values a realm's token is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValues {
    /// Expected RIM (44238).
    pub rim: Vec<u8>,
    /// Alternative sets of the four REMs (44239); one must match.
    pub rems: Vec<[Vec<u8>; 4]>,
    /// Expected measurement hash algorithm (44236).
    pub hash_algo: HashAlg,
    /// Expected realm personalization value (44235), if the entry names
    /// one; `None` accepts any.
    pub personalization: Option<[u8; 64]>,
}

impl ReferenceValues {
    /// Compares the realm claims with these values: RIM, then REMs, then
    /// hash algorithm. The error names the first difference.
    pub fn check(&self, claims: &RealmClaims) -> Result<(), VerifyError> {
        self.check_counted(claims).map_err(|(_, e)| e)
    }

    /// Like `check`, also returning how many checks passed before the
    /// failure (to find the closest realm).
    fn check_counted(&self, claims: &RealmClaims) -> Result<(), (u8, VerifyError)> {
        if claims.rim != self.rim {
            return Err((
                0,
                VerifyError::RimMismatch {
                    expected: hex::encode(&self.rim),
                    found: hex::encode(&claims.rim),
                },
            ));
        }
        if !self.rems.contains(&claims.rems) {
            return Err((
                1,
                VerifyError::NoRemSetMatched {
                    found: claims.rems.iter().map(hex::encode).collect(),
                },
            ));
        }
        if claims.measurement_hash_alg != self.hash_algo.name() {
            return Err((
                2,
                VerifyError::HashAlgMismatch {
                    expected: self.hash_algo.name().to_string(),
                    found: claims.measurement_hash_alg.clone(),
                },
            ));
        }
        if let Some(expected) = &self.personalization {
            if *expected != claims.personalization {
                return Err((
                    3,
                    VerifyError::PersonalizationMismatch {
                        expected: hex::encode(expected),
                        found: hex::encode(claims.personalization),
                    },
                ));
            }
        }
        Ok(())
    }

    /// Whether one token could satisfy both `self` and `other`: same RIM
    /// and hash algorithm, a REM set in common, and personalization values
    /// that do not tell them apart (either absent, or both equal).
    pub fn overlaps(&self, other: &ReferenceValues) -> bool {
        self.rim == other.rim
            && self.hash_algo == other.hash_algo
            && self.rems.iter().any(|set| other.rems.contains(set))
            && match (&self.personalization, &other.personalization) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// An application-name pattern of a realm's `applications` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppPattern {
    /// `*`: every application.
    Any,
    /// `prefix/*`: every name under the prefix (the string kept ends with `/`).
    Prefix(String),
    /// An exact name.
    Exact(String),
}

impl AppPattern {
    /// Parses a pattern (see the module docs).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty application pattern".into());
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        if let Some(prefix) = text.strip_suffix("/*") {
            if prefix.is_empty() || prefix.contains('*') {
                return Err(format!("invalid application pattern {text:?}"));
            }
            return Ok(Self::Prefix(format!("{prefix}/")));
        }
        if text.contains('*') {
            return Err(format!(
                "invalid application pattern {text:?} ('*' only as \"*\" or a final \"/*\")"
            ));
        }
        Ok(Self::Exact(text.to_string()))
    }

    /// Whether `app` matches.
    pub fn matches(&self, app: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(p) => app.len() > p.len() && app.starts_with(p.as_str()),
            Self::Exact(e) => app == e,
        }
    }
}

/// One trusted realm: descriptive fields for logs, the applications it
/// may pull, and its reference values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmReference {
    /// `realm.name`, if given.
    pub name: Option<String>,
    /// `realm.uuid`, if given.
    pub uuid: Option<String>,
    /// `realm.version`, if given.
    pub version: Option<String>,
    /// Where the entry came from (file path, with `[i]` for array entries).
    pub source: String,
    /// The applications it may pull; `None` means all.
    pub applications: Option<Vec<AppPattern>>,
    /// The registry host its images are judged under by the signature
    /// policy (`realm.policy-scope`); `None`: the server's.
    pub policy_scope: Option<String>,
    /// The reference values.
    pub values: ReferenceValues,
}

impl RealmReference {
    /// Whether a connection attested as this realm may access `app`.
    /// No list means every application.
    pub fn allows(&self, app: &str) -> bool {
        match &self.applications {
            None => true,
            Some(list) => list.iter().any(|p| p.matches(app)),
        }
    }

    /// A short label for logs: `name version (uuid) from source`.
    pub fn label(&self) -> String {
        format!(
            "{} {} ({}) from {}",
            self.name.as_deref().unwrap_or("unnamed realm"),
            self.version.as_deref().unwrap_or("-"),
            self.uuid.as_deref().unwrap_or("-"),
            self.source
        )
    }
}

/// A set of trusted realms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceSet {
    realms: Vec<RealmReference>,
}

// Unknown keys are refused at every level: the islet fields that only
// describe a realm are listed (and ignored) so that a misspelled key is an
// error rather than a silently dropped constraint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    realm: RawRealm,
    #[serde(default)]
    applications: Option<Vec<String>>,
    #[serde(default, rename = "version")]
    _version: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "issuer")]
    _issuer: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealm {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(rename = "reference-values")]
    reference_values: RawValues,
    #[serde(default)]
    applications: Option<Vec<String>>,
    #[serde(default, rename = "policy-scope")]
    policy_scope: Option<String>,
    #[serde(default, rename = "release-timestamp")]
    _release_timestamp: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "attestation-protocol")]
    _attestation_protocol: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "port")]
    _port: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValues {
    rim: String,
    rems: Vec<Vec<String>>,
    #[serde(rename = "hash-algo")]
    hash_algo: String,
    #[serde(default, rename = "personalization-value")]
    personalization_value: Option<String>,
}

impl ReferenceSet {
    /// A set of the given realms.
    pub fn new(realms: Vec<RealmReference>) -> Self {
        Self { realms }
    }

    /// The realms, in load order.
    pub fn realms(&self) -> &[RealmReference] {
        &self.realms
    }

    /// Number of realms.
    pub fn len(&self) -> usize {
        self.realms.len()
    }

    /// Whether the set has no realm.
    pub fn is_empty(&self) -> bool {
        self.realms.is_empty()
    }

    /// Parses JSON text: one document or an array of documents.
    /// `source_name` labels entries in errors and logs.
    pub fn from_json(bytes: &[u8], source_name: &str) -> Result<Self, ReferenceError> {
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(ReferenceError::TooLarge {
                what: format!("{source_name}: size"),
                found: bytes.len() as u64,
                limit: MAX_FILE_SIZE,
            });
        }
        // Strict: a key written twice (`"applications"` twice, the later
        // one wider) is refused, naming the key, instead of last-wins.
        let value: serde_json::Value =
            ir_oci::json::from_slice(bytes).map_err(|e| ReferenceError::Json {
                source_name: source_name.to_string(),
                reason: e.to_string(),
            })?;
        let docs = match value {
            serde_json::Value::Array(items) => {
                if items.len() > MAX_REALMS {
                    return Err(ReferenceError::TooLarge {
                        what: format!("{source_name}: realm count"),
                        found: items.len() as u64,
                        limit: MAX_REALMS as u64,
                    });
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{source_name}[{i}]"), v))
                    .collect()
            }
            other => vec![(source_name.to_string(), other)],
        };
        let mut realms = Vec::with_capacity(docs.len());
        for (label, value) in docs {
            let raw: RawDoc = serde_json::from_value(value).map_err(|e| ReferenceError::Json {
                source_name: label.clone(),
                reason: e.to_string(),
            })?;
            realms.push(convert(raw, &label)?);
        }
        if realms.is_empty() {
            return Err(ReferenceError::Empty(source_name.to_string()));
        }
        check_unambiguous(&realms)?;
        Ok(Self { realms })
    }

    /// Loads a file (one document or an array) or a directory of `*.json`
    /// files.
    pub fn load(path: &Path) -> Result<Self, ReferenceError> {
        let meta = std::fs::metadata(path).map_err(|source| io_err(path, source))?;
        if meta.is_dir() {
            Self::load_dir(path)
        } else {
            Self::load_file(path)
        }
    }

    /// Loads one file.
    pub fn load_file(path: &Path) -> Result<Self, ReferenceError> {
        let len = std::fs::metadata(path)
            .map_err(|source| io_err(path, source))?
            .len();
        if len > MAX_FILE_SIZE {
            return Err(ReferenceError::TooLarge {
                what: format!("{}: size", path.display()),
                found: len,
                limit: MAX_FILE_SIZE,
            });
        }
        let bytes = std::fs::read(path).map_err(|source| io_err(path, source))?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Loads every `*.json` regular file of a directory (not recursive,
    /// hidden files skipped), in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, ReferenceError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|source| io_err(dir, source))? {
            let entry = entry.map_err(|source| io_err(dir, source))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            if !std::fs::metadata(&path)
                .map_err(|source| io_err(&path, source))?
                .is_file()
            {
                continue;
            }
            files.push(path);
            if files.len() > MAX_FILES {
                return Err(ReferenceError::TooLarge {
                    what: format!("{}: number of .json files", dir.display()),
                    found: files.len() as u64,
                    limit: MAX_FILES as u64,
                });
            }
        }
        files.sort();
        let mut realms = Vec::new();
        for file in files {
            realms.extend(Self::load_file(&file)?.realms);
            if realms.len() > MAX_REALMS {
                return Err(ReferenceError::TooLarge {
                    what: format!("{}: realm count", dir.display()),
                    found: realms.len() as u64,
                    limit: MAX_REALMS as u64,
                });
            }
        }
        if realms.is_empty() {
            return Err(ReferenceError::Empty(dir.display().to_string()));
        }
        check_unambiguous(&realms)?;
        Ok(Self { realms })
    }

    /// The first realm whose reference values the claims satisfy, or the
    /// closest failure (the realm that passed the most checks: RIM, then
    /// REMs, then hash algorithm; the first such realm on ties).
    pub fn match_claims(&self, claims: &RealmClaims) -> Result<&RealmReference, MatchError> {
        let mut closest: Option<(u8, &RealmReference, VerifyError)> = None;
        for realm in &self.realms {
            match realm.values.check_counted(claims) {
                Ok(()) => return Ok(realm),
                Err((score, err)) => {
                    if closest.as_ref().is_none_or(|(best, _, _)| score > *best) {
                        closest = Some((score, realm, err));
                    }
                }
            }
        }
        match closest {
            None => Err(MatchError::Empty),
            Some((_, realm, reason)) => Err(MatchError::NoMatch {
                realm: realm.label(),
                checked: self.realms.len(),
                reason: Box::new(reason),
            }),
        }
    }
}

/// Refuses a set where one token could match two entries: which of them
/// (and so which `applications`) applies would depend on the order of the
/// entries. Entries are grouped by RIM first, so the pairwise comparison
/// only runs among entries that share one.
fn check_unambiguous(realms: &[RealmReference]) -> Result<(), ReferenceError> {
    let mut by_rim: std::collections::HashMap<&[u8], Vec<&RealmReference>> =
        std::collections::HashMap::new();
    for realm in realms {
        by_rim.entry(&realm.values.rim).or_default().push(realm);
    }
    for group in by_rim.values() {
        for (i, a) in group.iter().enumerate() {
            if let Some(b) = group[i + 1..].iter().find(|b| a.values.overlaps(&b.values)) {
                return Err(ReferenceError::Ambiguous {
                    first: a.label(),
                    second: b.label(),
                });
            }
        }
    }
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> ReferenceError {
    ReferenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn convert(raw: RawDoc, label: &str) -> Result<RealmReference, ReferenceError> {
    let invalid = |reason: String| ReferenceError::Invalid {
        source_name: label.to_string(),
        reason,
    };
    let values = raw.realm.reference_values;
    let hash_algo = HashAlg::from_name(&values.hash_algo).ok_or_else(|| {
        invalid(format!(
            "hash-algo {:?} is not sha-256, sha-384 or sha-512",
            values.hash_algo
        ))
    })?;
    let n = hash_algo.output_len();
    let measurement = |what: &str, text: &str| -> Result<Vec<u8>, ReferenceError> {
        let bytes = hex::decode(text).map_err(|e| invalid(format!("{what} is not hex: {e}")))?;
        if bytes.len() != n {
            return Err(invalid(format!(
                "{what} has {} bytes, {hash_algo} needs {n}",
                bytes.len()
            )));
        }
        Ok(bytes)
    };
    let rim = measurement("rim", &values.rim)?;
    if values.rems.is_empty() || values.rems.len() > MAX_REM_SETS {
        return Err(invalid(format!(
            "rems must list 1 to {MAX_REM_SETS} sets, found {}",
            values.rems.len()
        )));
    }
    let mut rems = Vec::with_capacity(values.rems.len());
    for (i, set) in values.rems.iter().enumerate() {
        if set.len() != 4 {
            return Err(invalid(format!(
                "rems[{i}] must have 4 entries, found {}",
                set.len()
            )));
        }
        let mut out: [Vec<u8>; 4] = Default::default();
        for (j, (slot, text)) in out.iter_mut().zip(set).enumerate() {
            *slot = measurement(&format!("rems[{i}][{j}]"), text)?;
        }
        rems.push(out);
    }
    let personalization = match &values.personalization_value {
        None => None,
        Some(text) => {
            let bytes = hex::decode(text)
                .map_err(|e| invalid(format!("personalization-value is not hex: {e}")))?;
            let bytes: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
                invalid(format!(
                    "personalization-value has {} bytes, needs 64",
                    b.len()
                ))
            })?;
            Some(bytes)
        }
    };
    let applications = match (raw.realm.applications, raw.applications) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "\"applications\" given both at top level and under \"realm\"".into(),
            ))
        }
        (Some(list), None) | (None, Some(list)) => {
            if list.len() > MAX_APPLICATIONS {
                return Err(invalid(format!(
                    "more than {MAX_APPLICATIONS} applications"
                )));
            }
            Some(
                list.iter()
                    .map(|p| AppPattern::parse(p).map_err(&invalid))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        (None, None) => None,
    };
    if let Some(scope) = &raw.realm.policy_scope {
        if !is_host(scope) {
            return Err(invalid(format!(
                "policy-scope {scope:?} is not a registry host (HOST[:PORT])"
            )));
        }
    }
    Ok(RealmReference {
        name: raw.realm.name,
        uuid: raw.realm.uuid,
        version: raw.realm.version,
        source: label.to_string(),
        applications,
        policy_scope: raw.realm.policy_scope,
        values: ReferenceValues {
            rim,
            rems,
            hash_algo,
            personalization,
        },
    })
}

/// `HOST[:PORT]`: DNS labels (or an IPv4 address) and an optional port,
/// the grammar of `ir_oci::name::is_registry_host` without IPv6 (ir-attest
/// does not depend on ir-oci; the server checks scopes again with it).
fn is_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (s, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
        && !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(extra_top: &str, extra_realm: &str) -> String {
        format!(
            r#"{{ {extra_top} "realm": {{ {extra_realm} "name": "r", "reference-values": {{
                "rim": "{}", "rems": [["{z}","{z}","{z}","{z}"]], "hash-algo": "sha-256" }} }} }}"#,
            "11".repeat(32),
            z = "00".repeat(32)
        )
    }

    #[test]
    fn patterns() {
        let p = |s| AppPattern::parse(s).unwrap();
        assert!(p("app").matches("app"));
        assert!(!p("app").matches("app2"));
        assert!(p("team/*").matches("team/x"));
        assert!(p("team/*").matches("team/x/y"));
        assert!(!p("team/*").matches("team"));
        assert!(!p("team/*").matches("team/"));
        assert!(!p("team/*").matches("teamx/y"));
        assert!(p("*").matches("anything"));
        for bad in ["", "/*", "a*", "a/*/b", "*/x", "a/**"] {
            assert!(AppPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn applications_placement() {
        let all = ReferenceSet::from_json(doc("", "").as_bytes(), "t").unwrap();
        assert!(all.realms()[0].allows("whatever"));
        let under = ReferenceSet::from_json(
            doc("", r#""applications": ["app", "team/*"],"#).as_bytes(),
            "t",
        )
        .unwrap();
        let r = &under.realms()[0];
        assert!(r.allows("app") && r.allows("team/a") && !r.allows("other"));
        let top =
            ReferenceSet::from_json(doc(r#""applications": ["x"],"#, "").as_bytes(), "t").unwrap();
        assert!(top.realms()[0].allows("x") && !top.realms()[0].allows("y"));
        let none =
            ReferenceSet::from_json(doc("", r#""applications": [],"#).as_bytes(), "t").unwrap();
        assert!(!none.realms()[0].allows("x"));
        let both = doc(r#""applications": ["x"],"#, r#""applications": ["x"],"#);
        assert!(matches!(
            ReferenceSet::from_json(both.as_bytes(), "t"),
            Err(ReferenceError::Invalid { .. })
        ));
    }

    #[test]
    fn policy_scope_is_a_host() {
        let none = ReferenceSet::from_json(doc("", "").as_bytes(), "t").unwrap();
        assert_eq!(none.realms()[0].policy_scope, None);
        let test = ReferenceSet::from_json(
            doc("", r#""policy-scope": "test.registry:5000","#).as_bytes(),
            "t",
        )
        .unwrap();
        assert_eq!(
            test.realms()[0].policy_scope.as_deref(),
            Some("test.registry:5000")
        );
        for bad in ["", "a/b", "-x", "x:port", "x y"] {
            let d = doc("", &format!(r#""policy-scope": "{bad}","#));
            assert!(
                matches!(
                    ReferenceSet::from_json(d.as_bytes(), "t"),
                    Err(ReferenceError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let bad_hex = doc("", "").replace(&"11".repeat(32), "zz");
        assert!(ReferenceSet::from_json(bad_hex.as_bytes(), "t").is_err());
        let short = doc("", "").replace(&"11".repeat(32), "11");
        assert!(ReferenceSet::from_json(short.as_bytes(), "t").is_err());
        let algo = doc("", "").replace("sha-256", "md5");
        assert!(ReferenceSet::from_json(algo.as_bytes(), "t").is_err());
        assert!(ReferenceSet::from_json(b"[]", "t").is_err());
        assert!(ReferenceSet::from_json(b"{}", "t").is_err());
    }

    fn entry(name: &str, extra_values: &str) -> String {
        format!(
            r#"{{ "realm": {{ "name": "{name}", "reference-values": {{ {extra_values}
                "rim": "{}", "rems": [["{z}","{z}","{z}","{z}"]], "hash-algo": "sha-256" }} }} }}"#,
            "11".repeat(32),
            z = "00".repeat(32)
        )
    }

    #[test]
    fn ambiguous_reference_entries_rejected_at_load() {
        let pv = |b: &str| format!(r#""personalization-value": "{}","#, b.repeat(64));
        // Same measurements, no personalization value: ambiguous.
        let same = format!("[{}, {}]", entry("first", ""), entry("second", ""));
        let err = ReferenceSet::from_json(same.as_bytes(), "t").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ReferenceError::Ambiguous { .. }), "{text}");
        assert!(text.contains("first") && text.contains("second"), "{text}");
        // One with, one without: a token with that value matches both.
        let half = format!("[{}, {}]", entry("first", &pv("aa")), entry("second", ""));
        assert!(matches!(
            ReferenceSet::from_json(half.as_bytes(), "t"),
            Err(ReferenceError::Ambiguous { .. })
        ));
        // The same value twice.
        let twice = format!(
            "[{}, {}]",
            entry("first", &pv("aa")),
            entry("second", &pv("aa"))
        );
        assert!(matches!(
            ReferenceSet::from_json(twice.as_bytes(), "t"),
            Err(ReferenceError::Ambiguous { .. })
        ));
        // Different values tell them apart.
        let apart = format!(
            "[{}, {}]",
            entry("first", &pv("aa")),
            entry("second", &pv("bb"))
        );
        assert_eq!(
            ReferenceSet::from_json(apart.as_bytes(), "t")
                .unwrap()
                .len(),
            2
        );
        // Across the files of a directory too.
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("a.json"), entry("first", "")).unwrap();
        std::fs::write(dir.path().join("b.json"), entry("second", "")).unwrap();
        let err = ReferenceSet::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.json") && err.contains("b.json"), "{err}");
    }

    #[test]
    fn misspelled_applications_key_is_rejected() {
        for (top, realm) in [
            (r#""aplications": ["x"],"#, ""),
            ("", r#""aplications": ["x"],"#),
            ("", r#""personalisation-value": "00","#),
        ] {
            let text = doc(top, realm);
            let err = ReferenceSet::from_json(text.as_bytes(), "t").unwrap_err();
            assert!(
                err.to_string().contains("unknown field"),
                "{top}{realm}: {err}"
            );
        }
        let in_values = entry("r", r#""aplications": ["x"],"#);
        assert!(ReferenceSet::from_json(in_values.as_bytes(), "t").is_err());
        // The islet descriptive fields are still accepted.
        let islet = doc(
            r#""version": "0.1", "issuer": {"name": "x", "url": "y"},"#,
            r#""release-timestamp": "2024-09-09T05:21:31Z", "attestation-protocol": "HTTPS/RA-TLSv1.0", "port": 8088,"#,
        );
        ReferenceSet::from_json(islet.as_bytes(), "t").unwrap();
    }

    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        // The later, wider list would win with a last-wins reader.
        let text = doc("", r#""applications": ["app"], "applications": ["*"],"#);
        let err = ReferenceSet::from_json(text.as_bytes(), "/etc/refs.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/refs.json") && err.contains("duplicate key \"applications\""),
            "{err}"
        );
        let nested = entry("r", "").replace(r#""rim":"#, r#""rim": "00", "rim":"#);
        let err = ReferenceSet::from_json(nested.as_bytes(), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"rim\""), "{err}");
    }

    #[test]
    fn personalization_value_is_matched() {
        let text = entry(
            "r",
            &format!(r#""personalization-value": "{}","#, "aa".repeat(64)),
        );
        let set = ReferenceSet::from_json(text.as_bytes(), "t").unwrap();
        assert_eq!(set.realms()[0].values.personalization, Some([0xaa; 64]));
        let short = entry("r", r#""personalization-value": "aa","#);
        assert!(ReferenceSet::from_json(short.as_bytes(), "t").is_err());
    }
}
