//! The Docker and containers auth files (`auth.json`, `config.json`):
//! `auths.<host>.auth` (base64 `user:password`) or
//! `auths.<host>.identitytoken`, `credHelpers.<host>` and `credsStore`
//! (credential helpers, [`super::helper`]).

use super::credentials::{Credentials, Secret};
use crate::AuthError;
use base64::Engine as _;
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest auth file read.
pub const MAX_AUTH_FILE: u64 = 1024 * 1024;

/// Where the credentials for one registry are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the file itself.
    Inline(Credentials),
    /// From `docker-credential-<name>`.
    Helper(String),
}

/// One auth file, parsed.
#[derive(Debug, Default)]
pub struct AuthFile {
    path: PathBuf,
    /// Normalized key (`host[:port][/repository…]`) -> credentials.
    auths: HashMap<String, Credentials>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

#[derive(serde::Deserialize)]
struct Raw {
    #[serde(default)]
    auths: HashMap<String, RawEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// A key as written (`https://index.docker.io/v1/`, `host:5000`,
/// `host/team/app`) as `host[:port][/path]`, lowercase host.
fn normalize(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key);
    match key.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => key.to_ascii_lowercase(),
    }
}

/// The keys that may hold `host`'s credentials for `repository`, most
/// specific first: `host/team/app`, `host/team`, `host` (and Docker
/// Hub's other names).
fn candidates(host: &str, repository: Option<&str>) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    let mut out = Vec::new();
    if let Some(repo) = repository {
        let mut path = repo;
        loop {
            out.push(format!("{host}/{path}"));
            match path.rfind('/') {
                Some(i) => path = &path[..i],
                None => break,
            }
        }
    }
    out.push(host.clone());
    if ["docker.io", "registry-1.docker.io", "index.docker.io"].contains(&host.as_str()) {
        out.extend(["docker.io", "registry-1.docker.io", "index.docker.io"].map(String::from));
    }
    out
}

fn valid_helper(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl AuthFile {
    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, AuthError> {
        let io = |source| AuthError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_AUTH_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_AUTH_FILE {
            return Err(AuthError::FileTooLarge {
                path: path.to_path_buf(),
                limit: MAX_AUTH_FILE,
            });
        }
        Self::parse(path, &bytes).map(Some)
    }

    /// Parses an auth file's bytes; errors say where, never what (the
    /// file holds passwords).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, AuthError> {
        let syntax = |why: String| AuthError::FileSyntax {
            path: path.to_path_buf(),
            why,
        };
        let raw: Raw = ir_oci::json::from_slice(bytes).map_err(|e| match e {
            ir_oci::json::StrictJsonError::DuplicateKey { key, path } => {
                syntax(format!("duplicate key {key:?} at {path}"))
            }
            ir_oci::json::StrictJsonError::Invalid(e) => syntax(format!(
                "not an auth file (JSON {:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            )),
        })?;
        let mut out = Self {
            path: path.to_path_buf(),
            ..Self::default()
        };
        for (key, entry) in raw.auths {
            let entry_err = |why| AuthError::Entry {
                path: path.to_path_buf(),
                host: key.clone(),
                why,
            };
            let creds = match (entry.identitytoken.filter(|t| !t.is_empty()), entry.auth) {
                (Some(token), _) => Credentials::IdentityToken(Secret::new(token)),
                (None, Some(auth)) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| entry_err("auth is not base64"))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| entry_err("auth is not UTF-8 user:password"))?;
                    let (user, password) = text
                        .split_once(':')
                        .ok_or_else(|| entry_err("auth is not user:password"))?;
                    if user.is_empty() {
                        return Err(entry_err("auth has an empty user name"));
                    }
                    Credentials::Basic {
                        user: user.to_string(),
                        password: Secret::new(password.to_string()),
                    }
                }
                // An empty entry: the credentials are in `credsStore`.
                _ => continue,
            };
            out.auths.insert(normalize(&key), creds);
        }
        for (key, helper) in raw.cred_helpers {
            if !valid_helper(&helper) {
                return Err(syntax(format!("credHelpers.{key}: invalid helper name")));
            }
            out.helpers.insert(normalize(&key), helper);
        }
        if let Some(store) = raw.creds_store.filter(|s| !s.is_empty()) {
            if !valid_helper(&store) {
                return Err(syntax("credsStore: invalid helper name".into()));
            }
            out.store = Some(store);
        }
        Ok(out)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `host`'s credentials for `repository` are, if this file
    /// says: a `credHelpers` entry, else an `auths` entry, else
    /// `credsStore`.
    pub fn lookup(&self, host: &str, repository: Option<&str>) -> Option<Source> {
        let keys = candidates(host, repository);
        if let Some(h) = keys.iter().find_map(|k| self.helpers.get(k)) {
            return Some(Source::Helper(h.clone()));
        }
        if let Some(c) = keys.iter().find_map(|k| self.auths.get(k)) {
            return Some(Source::Inline(c.clone()));
        }
        self.store.clone().map(Source::Helper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_auths_helpers_and_store() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "reg.example:5000": {{"auth": "{}"}},
                "reg.example:5000/team/app": {{"identitytoken": "tok"}},
                "store.example": {{}}
            }},
            "credHelpers": {{"helped.example": "ecr-login"}},
            "credsStore": "desktop",
            "HttpHeaders": {{"X": "y"}}}}"#,
            b64("hub:pw"),
            b64("me:pa:ss")
        );
        let f = AuthFile::parse(Path::new("a.json"), json.as_bytes()).unwrap();
        let basic = |u: &str, p: &str| {
            Some(Source::Inline(Credentials::Basic {
                user: u.into(),
                password: Secret::new(p.into()),
            }))
        };
        assert_eq!(f.lookup("docker.io", Some("library/x")), basic("hub", "pw"));
        assert_eq!(
            f.lookup("REG.example:5000", Some("other")),
            basic("me", "pa:ss")
        );
        assert_eq!(
            f.lookup("reg.example:5000", Some("team/app/sub")),
            Some(Source::Inline(Credentials::IdentityToken(Secret::new(
                "tok".into()
            ))))
        );
        assert_eq!(
            f.lookup("helped.example", None),
            Some(Source::Helper("ecr-login".into()))
        );
        assert_eq!(
            f.lookup("store.example", None),
            Some(Source::Helper("desktop".into()))
        );
    }

    #[test]
    fn errors_never_show_the_secrets() {
        let path = Path::new("a.json");
        for (json, want) in [
            (
                r#"{"auths": {"h": {"auth": "c2VjcmV0"}}}"#,
                "not user:password",
            ),
            (r#"{"auths": {"h": {"auth": "!!secret!!"}}}"#, "not base64"),
            (r#"{"auths": {"h": {"auth": 12345678}}}"#, "line 1"),
            (
                r#"{"auths": {"h": {"auth": "x"}, "h": {}}}"#,
                "duplicate key \"h\"",
            ),
            (r#"{"credsStore": "../../bin/sh"}"#, "invalid helper name"),
        ] {
            let e = AuthFile::parse(path, json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
            for secret in ["secret", "c2VjcmV0", "12345678"] {
                assert!(!e.contains(secret), "{e}");
            }
        }
    }
}
