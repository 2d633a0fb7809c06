//! notation's `trustpolicy.json` (version 1.0): parsing, notation's validation rules, and the
//! choice of the statement that applies to a repository.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::dn::{self, DnMap};
use crate::Error;

/// Largest trust policy file read.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Most statements, scopes per statement, trust stores or identities per statement.
const MAX_ITEMS: usize = 1024;

/// A validated trust policy document.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    statements: Vec<PolicyStatement>,
}

/// One statement of `trustPolicies`.
#[derive(Debug, Clone)]
pub struct PolicyStatement {
    /// `name`, unique in the document.
    pub name: String,
    /// `registryScopes`: `host/repository` values, or the single `*`.
    pub registry_scopes: Vec<String>,
    /// The level with its overrides applied.
    pub verification: Verification,
    /// `trustStores`.
    pub trust_stores: Vec<TrustStoreRef>,
    /// `trustedIdentities`.
    pub trusted_identities: TrustedIdentities,
}

/// `signatureVerification.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every check enforced.
    Strict,
    /// Integrity and authenticity enforced, the rest logged.
    Permissive,
    /// Integrity enforced, the rest logged.
    Audit,
    /// No verification at all.
    Skip,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The failure refuses the signature.
    Enforce,
    /// The failure is reported in [`crate::Verified::warnings`].
    Log,
    /// The check is not run.
    Skip,
}

/// The effective action per check, after `override`.
///
/// Integrity (the signature and the target) is always enforced unless the level is `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// The level named in the policy.
    pub level: Level,
    /// Trust store chain and trusted identity.
    pub authenticity: Action,
    /// Certificate validity at verification time (or at the authentic signing time).
    pub authentic_timestamp: Action,
    /// The signature's `expiry`.
    pub expiry: Action,
    /// Revocation: never checked offline; see the crate documentation.
    pub revocation: Action,
}

/// `trustStores` entry `TYPE:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustStoreRef {
    /// Store type.
    pub kind: StoreKind,
    /// Store name (`[a-zA-Z0-9_.-]+`).
    pub name: String,
}

/// Trust store types notation defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    /// `ca`: roots for the `notary.x509` signing scheme.
    Ca,
    /// `signingAuthority`: roots for `notary.x509.signingAuthority`.
    SigningAuthority,
    /// `tsa`: timestamp authorities (timestamps are not verified by this crate).
    Tsa,
}

impl StoreKind {
    /// The directory name under `x509/` and the prefix in `trustStores`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Ca => "ca",
            StoreKind::SigningAuthority => "signingAuthority",
            StoreKind::Tsa => "tsa",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ca" => Some(StoreKind::Ca),
            "signingAuthority" => Some(StoreKind::SigningAuthority),
            "tsa" => Some(StoreKind::Tsa),
            _ => None,
        }
    }
}

/// `trustedIdentities`.
#[derive(Debug, Clone)]
pub enum TrustedIdentities {
    /// `["*"]`: any signer chaining to the trust stores.
    Any,
    /// `x509.subject:` values: the signer's subject must contain all attributes of one of them.
    Subjects(Vec<DnMap>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: String,
    #[serde(rename = "trustPolicies")]
    trust_policies: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    name: String,
    #[serde(rename = "registryScopes", default)]
    registry_scopes: Vec<String>,
    #[serde(rename = "signatureVerification")]
    signature_verification: RawVerification,
    #[serde(rename = "trustStores", default)]
    trust_stores: Vec<String>,
    #[serde(rename = "trustedIdentities", default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerification {
    level: String,
    #[serde(default)]
    r#override: BTreeMap<String, String>,
    #[serde(rename = "verifyTimestamp", default)]
    verify_timestamp: Option<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidPolicy(msg.into())
}

impl TrustPolicy {
    /// Reads and validates a `trustpolicy.json` file (regular file, at most 1 MiB).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(invalid(format!("{}: not a regular file", path.display())));
        }
        if meta.len() > MAX_POLICY_BYTES {
            return Err(invalid(format!("{}: larger than 1 MiB", path.display())));
        }
        let bytes = std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        Self::from_json(&bytes).map_err(|e| match e {
            Error::InvalidPolicy(m) => invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates a trust policy document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(invalid("larger than 1 MiB"));
        }
        // A repeated key is refused, never resolved to its last value.
        let doc: Document =
            ir_oci::json::from_slice(bytes).map_err(|e| invalid(format!("malformed: {e}")))?;
        if doc.version != "1.0" {
            return Err(invalid(format!(
                "version {:?} is not supported (only \"1.0\")",
                doc.version
            )));
        }
        if doc.trust_policies.is_empty() {
            return Err(invalid("trustPolicies is empty"));
        }
        if doc.trust_policies.len() > MAX_ITEMS {
            return Err(invalid("too many trust policy statements"));
        }
        let mut names = HashSet::new();
        let mut scopes = HashSet::new();
        let mut statements = Vec::with_capacity(doc.trust_policies.len());
        for raw in doc.trust_policies {
            let st = validate_statement(raw)?;
            if !names.insert(st.name.clone()) {
                return Err(invalid(format!(
                    "statement name {:?} is used more than once",
                    st.name
                )));
            }
            for scope in &st.registry_scopes {
                if !scopes.insert(scope.clone()) {
                    return Err(invalid(format!(
                        "registry scope {scope:?} is in more than one statement"
                    )));
                }
            }
            statements.push(st);
        }
        Ok(TrustPolicy { statements })
    }

    /// The statement for repository `scope` (`host[:port]/repository`, no tag or digest):
    /// the statement naming it exactly, else the `*` statement, as notation chooses.
    pub fn statement_for(&self, scope: &str) -> Result<&PolicyStatement, Error> {
        if validate_scope(scope).is_err() {
            return Err(Error::NoApplicablePolicy(scope.to_string()));
        }
        let exact = self
            .statements
            .iter()
            .find(|s| s.registry_scopes.iter().any(|r| r == scope));
        let wildcard = || {
            self.statements
                .iter()
                .find(|s| s.registry_scopes.iter().any(|r| r == "*"))
        };
        exact
            .or_else(wildcard)
            .ok_or_else(|| Error::NoApplicablePolicy(scope.to_string()))
    }

    /// All statements, in file order.
    pub fn statements(&self) -> &[PolicyStatement] {
        &self.statements
    }
}

fn validate_statement(raw: RawStatement) -> Result<PolicyStatement, Error> {
    let name = raw.name;
    if name.is_empty() {
        return Err(invalid("a statement has no name"));
    }
    let ctx = |m: String| invalid(format!("statement {name:?}: {m}"));
    if raw.registry_scopes.is_empty() {
        return Err(ctx("registryScopes is empty".into()));
    }
    if raw.registry_scopes.len() > MAX_ITEMS
        || raw.trust_stores.len() > MAX_ITEMS
        || raw.trusted_identities.len() > MAX_ITEMS
    {
        return Err(ctx("too many values".into()));
    }
    if raw.registry_scopes.len() > 1 && raw.registry_scopes.iter().any(|s| s == "*") {
        return Err(ctx(
            "the wildcard scope '*' cannot be combined with other scopes".into(),
        ));
    }
    for scope in raw.registry_scopes.iter().filter(|s| *s != "*") {
        validate_scope(scope).map_err(&ctx)?;
    }
    let verification = parse_verification(&raw.signature_verification).map_err(&ctx)?;
    let (trust_stores, trusted_identities) = if verification.level == Level::Skip {
        if !raw.trust_stores.is_empty() || !raw.trusted_identities.is_empty() {
            return Err(ctx(
                "level skip must not name trust stores or trusted identities".into(),
            ));
        }
        (Vec::new(), TrustedIdentities::Subjects(Vec::new()))
    } else {
        if raw.trust_stores.is_empty() || raw.trusted_identities.is_empty() {
            return Err(ctx(
                "trustStores and trustedIdentities are both required".into()
            ));
        }
        let stores = raw
            .trust_stores
            .iter()
            .map(|s| parse_store_ref(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&ctx)?;
        let ids = parse_identities(&raw.trusted_identities).map_err(&ctx)?;
        (stores, ids)
    };
    Ok(PolicyStatement {
        name,
        registry_scopes: raw.registry_scopes,
        verification,
        trust_stores,
        trusted_identities,
    })
}

fn parse_verification(raw: &RawVerification) -> Result<Verification, String> {
    use Action::*;
    let (level, mut v) = match raw.level.as_str() {
        "strict" => (Level::Strict, [Enforce, Enforce, Enforce, Enforce]),
        "permissive" => (Level::Permissive, [Enforce, Log, Log, Log]),
        "audit" => (Level::Audit, [Log, Log, Log, Log]),
        "skip" => (Level::Skip, [Skip, Skip, Skip, Skip]),
        other => {
            return Err(format!(
                "signatureVerification level {other:?} is not supported"
            ))
        }
    };
    if let Some(vt) = &raw.verify_timestamp {
        if vt != "always" && vt != "afterCertExpiry" {
            return Err(format!("verifyTimestamp {vt:?} is not supported"));
        }
    }
    if level == Level::Skip && !raw.r#override.is_empty() {
        return Err("level skip cannot be overridden".into());
    }
    for (check, action) in &raw.r#override {
        let action = match action.as_str() {
            "enforce" => Enforce,
            "log" => Log,
            "skip" => Skip,
            other => return Err(format!("override action {other:?} is not supported")),
        };
        let slot = match check.as_str() {
            "integrity" => return Err("integrity cannot be overridden".into()),
            "authenticity" => 0,
            "authenticTimestamp" => 1,
            "expiry" => 2,
            "revocation" => 3,
            other => return Err(format!("override of {other:?} is not supported")),
        };
        if slot != 3 && action == Skip {
            return Err(format!("{check} cannot be skipped"));
        }
        v[slot] = action;
    }
    Ok(Verification {
        level,
        authenticity: v[0],
        authentic_timestamp: v[1],
        expiry: v[2],
        revocation: v[3],
    })
}

fn parse_store_ref(s: &str) -> Result<TrustStoreRef, String> {
    let (kind, name) = s
        .split_once(':')
        .ok_or_else(|| format!("trust store {s:?} is not TYPE:NAME"))?;
    let kind = StoreKind::parse(kind)
        .ok_or_else(|| format!("trust store type {kind:?} is not supported"))?;
    if !is_valid_store_name(name) {
        return Err(format!("trust store name {name:?} is not [a-zA-Z0-9_.-]+"));
    }
    Ok(TrustStoreRef {
        kind,
        name: name.to_string(),
    })
}

/// notation's rule for trust store names (they are directory names).
pub(crate) fn is_valid_store_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn parse_identities(ids: &[String]) -> Result<TrustedIdentities, String> {
    if ids.iter().any(|i| i == "*") {
        if ids.len() > 1 {
            return Err("the wildcard identity '*' cannot be combined with others".into());
        }
        return Ok(TrustedIdentities::Any);
    }
    let mut dns = Vec::new();
    for id in ids {
        let (prefix, value) = id
            .split_once(':')
            .ok_or_else(|| format!("trusted identity {id:?} has no TYPE: prefix"))?;
        if prefix != "x509.subject" {
            // notation hands other identity types to plugins, which this crate does not run.
            return Err(format!("trusted identity type {prefix:?} is not supported"));
        }
        let dn = dn::parse_identity_dn(value.trim())
            .map_err(|m| format!("trusted identity {id:?}: {m}"))?;
        dns.push((id, dn));
    }
    for (i, (a, da)) in dns.iter().enumerate() {
        for (j, (b, db)) in dns.iter().enumerate() {
            if i != j && dn::is_subset(da, db) {
                return Err(format!("trusted identities {a:?} and {b:?} overlap"));
            }
        }
    }
    Ok(TrustedIdentities::Subjects(
        dns.into_iter().map(|(_, d)| d).collect(),
    ))
}

/// notation's registry scope format: `domain[:port]/repository`, distribution's grammar
/// (ir-oci's [`ir_oci::name::is_registry_host`] and [`ir_oci::RepoName`]).
fn validate_scope(scope: &str) -> Result<(), String> {
    let err = || {
        format!("registry scope {scope:?} is not a fully qualified repository (domain/repository)")
    };
    if scope.len() > 4096 || scope.contains('*') {
        return Err(err());
    }
    let (domain, repo) = scope.split_once('/').ok_or_else(err)?;
    // The host and the repository follow the grammars ir-oci parses every
    // reference with (ir_oci::name).
    if !ir_oci::name::is_registry_host(domain) {
        return Err(err());
    }
    if ir_oci::RepoName::parse(repo).is_err() {
        return Err(err());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_grammar() {
        for ok in [
            "example.com/repo",
            "localhost:5000/a/b-c",
            "local/my__x",
            "r.io/a.b_c--d",
        ] {
            assert!(validate_scope(ok).is_ok(), "{ok}");
        }
        for bad in [
            "example.com",
            "example.com/",
            "example.com/Repo",
            "example.com/repo:tag",
            "example.com/repo@sha256:00",
            "example.com/*",
            "-x.com/r",
            "x.com:/r",
            "x.com/a//b",
        ] {
            assert!(validate_scope(bad).is_err(), "{bad}");
        }
    }
}
