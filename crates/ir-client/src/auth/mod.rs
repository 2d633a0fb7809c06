//! Registry authentication, for every request the client sends: a `401`
//! with a `WWW-Authenticate` challenge ([`challenge`]) is answered with a
//! token from the realm it names ([`token`]; anonymous, or with the
//! registry's credentials) or, where the registry asks for it, with Basic
//! credentials; the request is then sent again. Tokens are kept until
//! they expire.
//!
//! Credentials come from the Docker/containers auth files
//! ([`authfile`]) and credential helpers ([`helper`]). They never appear
//! in logs or error messages: [`Secret`] prints as `***` and the
//! `Authorization` headers are marked sensitive.

pub mod authfile;
pub mod challenge;
mod credentials;
pub mod helper;
pub mod token;

pub use credentials::{Credentials, Secret};
pub use token::is_loopback;

use crate::location::Scheme;
use crate::AuthError;
use authfile::{AuthFile, Source};
use challenge::Challenge;
use reqwest::header::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use token::TokenCache;

/// How long Basic credentials, once asked for, are sent unasked.
const BASIC_LIFETIME: Duration = Duration::from_secs(3600);
/// Most registries and repositories whose credentials are remembered.
const MAX_REMEMBERED: usize = 1024;

/// Where credentials come from.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// The auth file to use, which must exist (`--authfile`,
    /// `REGISTRY_AUTH_FILE`); when set, no other file is read.
    pub authfile: Option<PathBuf>,
    /// Auth files read, in this order, when they exist (and `authfile`
    /// is `None`).
    pub default_files: Vec<PathBuf>,
}

impl AuthOptions {
    /// The usual places: `authfile`, else `REGISTRY_AUTH_FILE`, else
    /// `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`) and
    /// `~/.docker/config.json`, the first that has the registry.
    pub fn standard(authfile: Option<PathBuf>) -> Self {
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let authfile = authfile.or_else(|| env("REGISTRY_AUTH_FILE").map(PathBuf::from));
        let mut default_files = Vec::new();
        if authfile.is_none() {
            let home = env("HOME").map(PathBuf::from);
            if let Some(d) = env("XDG_RUNTIME_DIR") {
                default_files.push(PathBuf::from(d).join("containers/auth.json"));
            }
            let config = env("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".config")));
            if let Some(c) = config {
                default_files.push(c.join("containers/auth.json"));
            }
            if let Some(h) = home {
                default_files.push(h.join(".docker/config.json"));
            }
        }
        Self {
            authfile,
            default_files,
        }
    }
}

/// What a request URL is for: its registry, repository and the scope a
/// token for it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host[:port]`.
    pub host: String,
    /// The repository, for repository requests.
    pub repository: Option<String>,
    /// `repository:NAME:pull` or `registry:catalog:*`.
    pub scope: Option<String>,
}

impl Target {
    pub(crate) fn of(url: &reqwest::Url) -> Self {
        // IPv6 hosts come bracketed.
        let name = url.host_str().unwrap_or("");
        let host = match url.port() {
            Some(p) => format!("{name}:{p}"),
            None => name.to_string(),
        };
        let (repository, scope) = match url.path().strip_prefix("/v2/") {
            Some("_catalog") => (None, Some("registry:catalog:*".to_string())),
            Some(rest) => {
                let repo = rest
                    .rsplit_once('/')
                    .and_then(|(head, _)| head.rsplit_once('/'))
                    .filter(|(_, kind)| ["manifests", "blobs", "tags", "referrers"].contains(kind))
                    .map(|(name, _)| name.to_string());
                let scope = repo.as_ref().map(|r| format!("repository:{r}:pull"));
                (repo, scope)
            }
            None => (None, None),
        };
        Self {
            host,
            repository,
            scope,
        }
    }

    fn key(&self) -> String {
        format!(
            "{} {}",
            self.host.to_ascii_lowercase(),
            self.scope.as_deref().unwrap_or("")
        )
    }
}

/// Answers challenges and remembers what worked.
pub(crate) struct Authenticator {
    files: Vec<AuthFile>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    tokens: TokenCache,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "files",
                &self.files.iter().map(|f| f.path()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reads the auth files `options` names (a missing `authfile` is an
    /// error; missing default files are skipped).
    pub(crate) fn new(options: &AuthOptions) -> Result<Self, AuthError> {
        let mut files = Vec::new();
        if let Some(path) = &options.authfile {
            match AuthFile::read(path)? {
                Some(f) => files.push(f),
                None => {
                    return Err(AuthError::File {
                        path: path.clone(),
                        source: std::io::ErrorKind::NotFound.into(),
                    })
                }
            }
        } else {
            for path in &options.default_files {
                files.extend(AuthFile::read(path)?);
            }
        }
        Ok(Self {
            files,
            credentials: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
        })
    }

    /// The `Authorization` value to send with a request for `target`,
    /// when one is known and valid.
    pub(crate) fn cached(&self, target: &Target) -> Option<HeaderValue> {
        self.tokens.get(&target.key())
    }

    /// The credentials for `target`, from the first auth file that has
    /// its registry (looked up once).
    async fn credentials(&self, target: &Target) -> Result<Option<Credentials>, AuthError> {
        let key = format!(
            "{}/{}",
            target.host.to_ascii_lowercase(),
            target.repository.as_deref().unwrap_or("")
        );
        if let Some(c) = self.credentials.lock().expect("credentials").get(&key) {
            return Ok(c.clone());
        }
        let mut found = None;
        for f in &self.files {
            match f.lookup(&target.host, target.repository.as_deref()) {
                Some(Source::Inline(c)) => found = Some(c),
                Some(Source::Helper(h)) => found = helper::get(&h, &target.host).await?,
                None => continue,
            }
            break;
        }
        let mut remembered = self.credentials.lock().expect("credentials");
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, found.clone());
        Ok(found)
    }

    /// Answers the challenge of a 401 for `target` from a registry
    /// reached with `scheme`: `true` when there is now something new to
    /// send (a token, Basic credentials), `false` when there is nothing
    /// to answer with.
    pub(crate) async fn answer(
        &self,
        client: &reqwest::Client,
        scheme: Scheme,
        target: &Target,
        headers: &HeaderMap,
    ) -> Result<bool, AuthError> {
        match challenge::of(headers) {
            None => Ok(false),
            Some(Challenge::Basic) => {
                let Some(Credentials::Basic { user, password }) = self.credentials(target).await?
                else {
                    return Ok(false);
                };
                if scheme == Scheme::Http && !is_loopback(&target.host) {
                    return Err(AuthError::PlainHttp {
                        host: target.host.clone(),
                    });
                }
                self.tokens.put(
                    target.key(),
                    token::basic_header(&user, &password),
                    BASIC_LIFETIME,
                );
                Ok(true)
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let realm = token::check_realm(scheme, &target.host, &realm)?;
                let credentials = self.credentials(target).await?;
                let scope = scope.or_else(|| target.scope.clone());
                let (token, lifetime) = token::fetch(
                    client,
                    &target.host,
                    realm,
                    service.as_deref(),
                    scope.as_deref(),
                    credentials.as_ref(),
                )
                .await?;
                self.tokens.put(
                    target.key(),
                    token::sensitive(&format!("Bearer {}", token.expose())),
                    lifetime,
                );
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        let t = |u: &str| Target::of(&reqwest::Url::parse(u).unwrap());
        let app = t("http://127.0.0.1:5000/v2/team/app/manifests/latest");
        assert_eq!(app.host, "127.0.0.1:5000");
        assert_eq!(app.repository.as_deref(), Some("team/app"));
        assert_eq!(app.scope.as_deref(), Some("repository:team/app:pull"));
        assert_eq!(
            t("https://r/v2/a/tags/list").scope.as_deref(),
            Some("repository:a:pull")
        );
        assert_eq!(
            t("https://r/v2/a/blobs/sha256:00").repository.as_deref(),
            Some("a")
        );
        assert_eq!(
            t("https://r/v2/_catalog").scope.as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(t("https://r/v2/").scope, None);
        assert_eq!(t("https://[::1]:5000/v2/").host, "[::1]:5000");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::Basic {
            user: "me".into(),
            password: Secret::new("hunter2".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
