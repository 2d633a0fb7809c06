//! containers-policy.json(5): the signature policy podman, skopeo, CRI-O
//! and the confidential-containers image agent read.
//!
//! Only `default` and `transports.docker` apply (ir-server serves a docker
//! registry API); other transports are parsed as JSON and otherwise
//! ignored, and [`Policy::ignored_transports`] names them. Requirements:
//! `insecureAcceptAnything`, `reject` and `sigstoreSigned` with keys, or
//! keyless with `fulcio` and `rekorPublicKey*` ([`crate::keyless`]). Any
//! other requirement, or a `sigstoreSigned` option this verifier does not
//! implement (`pki`, `rekorPublicKey*` with keys), is an error naming it:
//! accepting the file and ignoring the requirement would fail open.
//! Unknown fields are errors too, as in containers/image.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::docker_reference::{valid_host, DockerReference};
use crate::identity::SignedIdentity;
use crate::key::{PublicKey, MAX_KEY_FILE_BYTES};
use crate::keyless::{Keyless, MAX_CA_FILE_BYTES};

/// The largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 4 << 20;
/// Most keys in one requirement.
pub const MAX_KEYS_PER_REQUIREMENT: usize = 64;
/// Most requirements in one list.
pub const MAX_REQUIREMENTS: usize = 64;
/// Most scopes under `transports.docker`.
pub const MAX_SCOPES: usize = 10_000;

/// A parsed, validated policy with its keys loaded.
#[derive(Debug)]
pub struct Policy {
    default: Requirements,
    docker: BTreeMap<String, Requirements>,
    /// Whether a scope names a tag or digest (else no image's full
    /// reference needs looking up).
    reference_scopes: bool,
    ignored_transports: Vec<String>,
}

/// A requirement list and the scope it was found under (`default` for the
/// global default, `docker:""` for the transport default).
#[derive(Debug)]
pub struct Requirements {
    /// Where in the policy the list is.
    pub scope: String,
    /// All of them must be satisfied.
    pub list: Vec<Requirement>,
}

/// One requirement.
#[derive(Debug)]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `sigstoreSigned` with keys: one signature must verify with one of
    /// the keys (or, keyless, with a Fulcio certificate logged in Rekor),
    /// be for the image's digest and name an identity that `identity`
    /// accepts.
    SigstoreSigned {
        /// The trusted keys (none when keyless).
        keys: Vec<Arc<PublicKey>>,
        /// `fulcio` and `rekorPublicKey*`, instead of keys.
        keyless: Option<Arc<Keyless>>,
        /// What the signed docker reference must be.
        identity: SignedIdentity,
    },
}

impl Requirement {
    /// The requirement's `type` as the file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// Why a policy cannot be used. The message names the file and the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {at}: {why}")]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// Where in it (`default[0]`, `transports.docker["r.io/a"][1]`, ...).
    pub at: String,
    /// What is wrong.
    pub why: String,
}

type Fail = (String, String);

fn fail(at: impl Into<String>, why: impl Into<String>) -> Fail {
    (at.into(), why.into())
}

impl Policy {
    /// Reads and validates the policy at `path`, loading every key it
    /// names.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| PolicyError {
                file: file.clone(),
                at: "file".into(),
                why: e.to_string(),
            })?;
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(PolicyError {
                file,
                at: "file".into(),
                why: format!("larger than {MAX_POLICY_BYTES} bytes"),
            });
        }
        Policy::from_json(&bytes, &file)
    }

    /// Validates a policy given as JSON; `file` names it in errors.
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self, PolicyError> {
        parse(bytes).map_err(|(at, why)| PolicyError {
            file: file.to_owned(),
            at,
            why,
        })
    }

    /// The requirements for an image named `image`: the most specific
    /// `transports.docker` scope (the reference itself, its repository,
    /// each parent namespace, the host, `*.domain` wildcards), then the
    /// transport's `""`, then `default`.
    pub fn requirements_for(&self, image: &DockerReference) -> &Requirements {
        if self.docker.is_empty() {
            return &self.default;
        }
        // Most specific first, stopping at the first scope configured.
        let mut found = None;
        for_each_scope(image, self.reference_scopes, |scope| {
            found = self.docker.get(scope);
            found.is_some()
        });
        found
            .or_else(|| self.docker.get(""))
            .unwrap_or(&self.default)
    }

    /// Transports other than `docker` that the file configures (ignored).
    pub fn ignored_transports(&self) -> &[String] {
        &self.ignored_transports
    }

    /// Every distinct key of the policy, for reports.
    pub fn key_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        seen.extend(self.keys().map(|k| k.fingerprint().to_owned()));
        seen.len()
    }

    /// Every key of every requirement.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<PublicKey>> {
        std::iter::once(&self.default)
            .chain(self.docker.values())
            .flat_map(|reqs| reqs.list.iter())
            .flat_map(|r| match r {
                Requirement::SigstoreSigned { keys, .. } => keys.as_slice(),
                _ => &[],
            })
    }

    /// Reads every key file again and revokes each key whose file no
    /// longer holds it (unreadable, not a key, or another key): used when
    /// the policy cannot be read again, so that a key taken away stops
    /// accepting at once rather than at the next restart. Returns each
    /// revoked key's file and why.
    pub fn revoke_unloadable_keys(&self) -> Vec<(String, String)> {
        let mut revoked = Vec::new();
        for key in self.keys() {
            let Some(file) = key.file() else {
                continue;
            };
            let why = match read_key(file) {
                Ok(now) if now.fingerprint() == key.fingerprint() => None,
                Ok(now) => Some(format!(
                    "{} now holds another key ({})",
                    file.display(),
                    now.fingerprint()
                )),
                Err(why) => Some(why),
            };
            key.revoke(why.is_some());
            if let Some(why) = why {
                revoked.push((key.fingerprint().to_owned(), why));
            }
        }
        revoked
    }
}

/// The scopes looked up for `image`, most specific first (containers/image
/// `PolicyConfigurationIdentity` and `...Namespaces` of the docker
/// transport).
pub fn scopes_of(image: &DockerReference) -> Vec<String> {
    let mut out = Vec::new();
    for_each_scope(image, true, |scope| {
        out.push(scope.to_owned());
        false
    });
    out
}

/// Calls `visit` with each scope of [`scopes_of`], in order, until it
/// returns true (without the image's full reference unless `reference`).
fn for_each_scope(image: &DockerReference, reference: bool, mut visit: impl FnMut(&str) -> bool) {
    if reference && visit(&image.to_string()) {
        return;
    }
    let mut name = image.name();
    loop {
        if visit(&name) {
            return;
        }
        match name.rfind('/') {
            Some(i) => name.truncate(i),
            None => break,
        }
    }
    let host = name.split(':').next().unwrap_or_default();
    let mut rest = host;
    let mut scope = String::with_capacity(host.len() + 2);
    while let Some(i) = rest.find('.') {
        rest = &rest[i + 1..];
        scope.clear();
        scope.push_str("*.");
        scope.push_str(rest);
        if visit(&scope) {
            return;
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Policy, Fail> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(fail("file", "not UTF-8"));
    }
    // A repeated key is refused (serde_json would keep the last value, so
    // `{"default":[reject],"default":[insecureAcceptAnything]}` would
    // accept everything), as containers/image does.
    let root: Value = ir_oci::json::from_slice(bytes).map_err(|e| match e {
        ir_oci::json::StrictJsonError::DuplicateKey { key, path } => {
            fail(path, format!("duplicate key {key:?}"))
        }
        e => fail("file", format!("not JSON: {e}")),
    })?;
    let root = object(&root, "file")?;
    known_keys(root, "file", &["default", "transports"])?;
    let default = root
        .get("default")
        .ok_or_else(|| fail("file", "\"default\" is missing"))?;
    let default = requirements(default, "default")?;
    let mut docker = BTreeMap::new();
    let mut ignored_transports = Vec::new();
    if let Some(transports) = root.get("transports") {
        for (transport, scopes) in object(transports, "transports")? {
            if transport != "docker" {
                ignored_transports.push(transport.clone());
                continue;
            }
            let scopes = object(scopes, "transports.docker")?;
            if scopes.len() > MAX_SCOPES {
                return Err(fail(
                    "transports.docker",
                    format!("more than {MAX_SCOPES} scopes"),
                ));
            }
            for (scope, reqs) in scopes {
                let at = format!("transports.docker[{scope:?}]");
                validate_scope(scope).map_err(|why| fail(&at, why))?;
                let mut reqs = requirements(reqs, &at)?;
                reqs.scope = if scope.is_empty() {
                    "transports.docker[\"\"]".into()
                } else {
                    at
                };
                docker.insert(scope.clone(), reqs);
            }
        }
    }
    let reference_scopes = docker.keys().any(|scope| {
        scope.contains('@')
            || scope
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
    });
    Ok(Policy {
        default,
        docker,
        reference_scopes,
        ignored_transports,
    })
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Fail> {
    v.as_object()
        .ok_or_else(|| fail(at, "must be a JSON object"))
}

/// An object with its `"type"` (requirements and identities).
fn typed_object<'a>(v: &'a Value, at: &str) -> Result<(&'a Map<String, Value>, &'a str), Fail> {
    let m = object(v, at)?;
    let kind = m
        .get("type")
        .ok_or_else(|| fail(at, "\"type\" is missing"))?;
    Ok((m, string(kind, at)?))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, Fail> {
    v.as_str().ok_or_else(|| fail(at, "must be a string"))
}

fn known_keys(m: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), Fail> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(fail(at, format!("unknown field {k:?}"))),
        None => Ok(()),
    }
}

/// `""`, `*.domain`, or a normalized docker reference (a repository,
/// namespace or host, or a full reference with tag or digest).
fn validate_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        return if valid_host(domain) && !domain.contains(':') {
            Ok(())
        } else {
            Err("a wildcard scope is \"*.\" and a domain without port".into())
        };
    }
    if !scope.contains('/') {
        // As in a reference, a first component without '.' or ':' that is
        // not localhost is a Docker Hub repository, not a host.
        let host_like = scope.contains('.') || scope.contains(':') || scope == "localhost";
        return if valid_host(scope) && host_like {
            Ok(())
        } else {
            Err(
                "not a registry host (a Docker Hub repository is written docker.io/library/NAME)"
                    .into(),
            )
        };
    }
    match DockerReference::parse(scope) {
        Ok(r) if r.to_string() == scope => Ok(()),
        Ok(r) => Err(format!("not in normalized form (write {r})")),
        Err(e) => Err(e.to_string()),
    }
}

fn requirements(v: &Value, at: &str) -> Result<Requirements, Fail> {
    let list = v
        .as_array()
        .ok_or_else(|| fail(at, "must be a list of requirements"))?;
    if list.is_empty() {
        return Err(fail(at, "an empty requirement list is not allowed"));
    }
    if list.len() > MAX_REQUIREMENTS {
        return Err(fail(
            at,
            format!("more than {MAX_REQUIREMENTS} requirements"),
        ));
    }
    let list = list
        .iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{at}[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Requirements {
        scope: at.to_owned(),
        list,
    })
}

fn requirement(v: &Value, at: &str) -> Result<Requirement, Fail> {
    let (m, kind) = typed_object(v, at)?;
    match kind {
        "insecureAcceptAnything" => {
            known_keys(m, at, &["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            known_keys(m, at, &["type"])?;
            Ok(Requirement::Reject)
        }
        "sigstoreSigned" => sigstore_signed(m, at),
        "signedBy" => Err(fail(
            at,
            "requirement \"signedBy\" (GPG simple signing) is not supported; use \"sigstoreSigned\" with cosign keys",
        )),
        other => Err(fail(
            at,
            format!("requirement {other:?} is not supported (supported: insecureAcceptAnything, reject, sigstoreSigned)"),
        )),
    }
}

fn sigstore_signed(m: &Map<String, Value>, at: &str) -> Result<Requirement, Fail> {
    if m.contains_key("fulcio") {
        return sigstore_keyless(m, at);
    }
    for unsupported in [
        "pki",
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    ] {
        if m.contains_key(unsupported) {
            return Err(fail(
                at,
                format!("sigstoreSigned with {unsupported:?} is not supported: keys (keyPath, keyPaths, keyData, keyDatas) alone, or fulcio with rekorPublicKey*, are verified offline"),
            ));
        }
    }
    known_keys(
        m,
        at,
        &[
            "type",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
            "signedIdentity",
        ],
    )?;
    let given: Vec<&str> = ["keyPath", "keyPaths", "keyData", "keyDatas"]
        .into_iter()
        .filter(|k| m.contains_key(*k))
        .collect();
    if given.len() != 1 {
        return Err(fail(
            at,
            "exactly one of keyPath, keyPaths, keyData, keyDatas is required",
        ));
    }
    let field = given[0];
    let value = &m[field];
    let items: Vec<&str> = match field {
        "keyPath" | "keyData" => vec![string(value, &format!("{at}.{field}"))?],
        _ => {
            let list = value
                .as_array()
                .ok_or_else(|| fail(format!("{at}.{field}"), "must be a list"))?;
            if list.is_empty() || list.len() > MAX_KEYS_PER_REQUIREMENT {
                return Err(fail(
                    format!("{at}.{field}"),
                    format!("must list 1 to {MAX_KEYS_PER_REQUIREMENT} keys"),
                ));
            }
            list.iter()
                .map(|v| string(v, &format!("{at}.{field}")))
                .collect::<Result<_, _>>()?
        }
    };
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key_at = format!("{at}.{field}[{i}]");
        let key = if field.starts_with("keyPath") {
            read_key(Path::new(item)).map_err(|why| fail(&key_at, why))?
        } else {
            PublicKey::from_key_data(item).map_err(|e| fail(&key_at, e.to_string()))?
        };
        keys.push(Arc::new(key));
    }
    let identity = requirement_identity(m, at)?;
    Ok(Requirement::SigstoreSigned {
        keys,
        keyless: None,
        identity,
    })
}

fn requirement_identity(m: &Map<String, Value>, at: &str) -> Result<SignedIdentity, Fail> {
    match m.get("signedIdentity") {
        None => Ok(SignedIdentity::MatchRepoDigestOrExact),
        Some(v) => signed_identity(v, &format!("{at}.signedIdentity")),
    }
}

/// `sigstoreSigned` with `fulcio` (`caPath` or `caData`, `oidcIssuer`,
/// `subjectEmail`) and exactly one of `rekorPublicKeyPath(s)` /
/// `rekorPublicKeyData(s)`, as containers/image defines them.
fn sigstore_keyless(m: &Map<String, Value>, at: &str) -> Result<Requirement, Fail> {
    const REKOR: [&str; 4] = [
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    ];
    if m.contains_key("pki") {
        return Err(fail(at, "sigstoreSigned with \"pki\" is not supported"));
    }
    known_keys(
        m,
        at,
        &[
            "type",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
            "fulcio",
            "rekorPublicKeyPath",
            "rekorPublicKeyPaths",
            "rekorPublicKeyData",
            "rekorPublicKeyDatas",
            "signedIdentity",
        ],
    )?;
    if let Some(k) = ["keyPath", "keyPaths", "keyData", "keyDatas"]
        .into_iter()
        .find(|k| m.contains_key(*k))
    {
        return Err(fail(
            at,
            format!("fulcio and {k} are exclusive (exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio)"),
        ));
    }
    let given: Vec<&str> = REKOR.into_iter().filter(|k| m.contains_key(*k)).collect();
    if given.len() != 1 {
        return Err(fail(
            at,
            "fulcio requires exactly one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData, rekorPublicKeyDatas",
        ));
    }
    let field = given[0];
    let rekor_at = format!("{at}.{field}");
    let items: Vec<&str> = match &m[field] {
        Value::Array(list) => {
            if !field.ends_with('s') {
                return Err(fail(&rekor_at, "must be a string"));
            }
            if list.is_empty() || list.len() > MAX_KEYS_PER_REQUIREMENT {
                return Err(fail(
                    &rekor_at,
                    format!("must list 1 to {MAX_KEYS_PER_REQUIREMENT} keys"),
                ));
            }
            list.iter()
                .map(|v| string(v, &rekor_at))
                .collect::<Result<_, _>>()?
        }
        v if !field.ends_with('s') => vec![string(v, &rekor_at)?],
        _ => return Err(fail(&rekor_at, "must be a list")),
    };
    let mut rekor = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key_at = format!("{rekor_at}[{i}]");
        let key = if field.starts_with("rekorPublicKeyPath") {
            read_key(Path::new(item)).map_err(|why| fail(&key_at, why))?
        } else {
            PublicKey::from_key_data(item).map_err(|e| fail(&key_at, e.to_string()))?
        };
        rekor.push(Arc::new(key));
    }

    let fulcio_at = format!("{at}.fulcio");
    let f = object(&m["fulcio"], &fulcio_at)?;
    known_keys(
        f,
        &fulcio_at,
        &["caPath", "caData", "oidcIssuer", "subjectEmail"],
    )?;
    let field_of = |name: &str| -> Result<&str, Fail> {
        string(
            f.get(name)
                .ok_or_else(|| fail(&fulcio_at, format!("{name:?} is missing")))?,
            &format!("{fulcio_at}.{name}"),
        )
    };
    let ca = match (f.get("caPath"), f.get("caData")) {
        (Some(_), None) => {
            let path = Path::new(field_of("caPath")?);
            read_bounded(path, MAX_CA_FILE_BYTES)
                .map_err(|why| fail(format!("{fulcio_at}.caPath"), why))?
        }
        (None, Some(_)) => base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            field_of("caData")?.trim(),
        )
        .map_err(|e| fail(format!("{fulcio_at}.caData"), format!("not base64: {e}")))?,
        _ => {
            return Err(fail(
                &fulcio_at,
                "exactly one of caPath and caData is required",
            ))
        }
    };
    let keyless = Keyless::new(
        &ca,
        field_of("oidcIssuer")?,
        field_of("subjectEmail")?,
        rekor,
    )
    .map_err(|why| fail(&fulcio_at, why))?;
    Ok(Requirement::SigstoreSigned {
        keys: Vec::new(),
        keyless: Some(Arc::new(keyless)),
        identity: requirement_identity(m, at)?,
    })
}

/// A file's bytes, at most `limit` of them.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

fn read_key(path: &Path) -> Result<PublicKey, String> {
    if let Some(uri) = path.to_str().filter(|p| p.starts_with("kbs:")) {
        return Err(format!(
            "{uri} is a key broker (KBS) resource, which the confidential-containers agent fetches; ir-server reads keys from files: put the public key in a file and name its path"
        ));
    }
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES as u64 + 1).read_to_end(&mut pem))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if pem.len() > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        ));
    }
    PublicKey::from_pem(&pem)
        .map(|k| k.read_from(path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn signed_identity(v: &Value, at: &str) -> Result<SignedIdentity, Fail> {
    let (m, kind) = typed_object(v, at)?;
    let reference = |field: &str| -> Result<DockerReference, Fail> {
        let text = string(
            m.get(field)
                .ok_or_else(|| fail(at, format!("{field:?} is missing")))?,
            at,
        )?;
        DockerReference::parse(text).map_err(|e| fail(at, e.to_string()))
    };
    match kind {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
            known_keys(m, at, &["type"])?;
            Ok(match kind {
                "matchExact" => SignedIdentity::MatchExact,
                "matchRepository" => SignedIdentity::MatchRepository,
                _ => SignedIdentity::MatchRepoDigestOrExact,
            })
        }
        "exactReference" => {
            known_keys(m, at, &["type", "dockerReference"])?;
            let r = reference("dockerReference")?;
            if r.is_name_only() {
                return Err(fail(at, "dockerReference must have a tag or a digest"));
            }
            Ok(SignedIdentity::ExactReference(r))
        }
        "exactRepository" => {
            known_keys(m, at, &["type", "dockerRepository"])?;
            let r = reference("dockerRepository")?;
            if !r.is_name_only() {
                return Err(fail(at, "dockerRepository must not have a tag or a digest"));
            }
            Ok(SignedIdentity::ExactRepository(r))
        }
        "remapIdentity" => {
            known_keys(m, at, &["type", "prefix", "signedPrefix"])?;
            let prefix = |field: &str| -> Result<String, Fail> {
                let p = string(
                    m.get(field)
                        .ok_or_else(|| fail(at, format!("{field:?} is missing")))?,
                    at,
                )?;
                validate_prefix(p).map_err(|why| fail(at, format!("{field}: {why}")))?;
                Ok(p.to_owned())
            };
            Ok(SignedIdentity::RemapIdentity {
                prefix: prefix("prefix")?,
                signed_prefix: prefix("signedPrefix")?,
            })
        }
        other => Err(fail(at, format!("unknown signedIdentity type {other:?}"))),
    }
}

/// A remapping prefix: a host, or a normalized repository or namespace
/// without tag or digest.
fn validate_prefix(p: &str) -> Result<(), String> {
    if !p.contains('/') {
        return if valid_host(p) {
            Ok(())
        } else {
            Err(format!("{p:?} is not a registry host"))
        };
    }
    match DockerReference::parse(p) {
        Ok(r) if r.is_name_only() && r.to_string() == p => Ok(()),
        Ok(_) => Err(format!(
            "{p:?} must be a normalized name without tag or digest"
        )),
        Err(e) => Err(e.to_string()),
    }
}
