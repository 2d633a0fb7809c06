//! Registry authentication: `--htpasswd` users with Basic credentials and
//! this server's token endpoint, or bearer tokens of an external issuer
//! (`--token-issuer`, `--token-jwks`), in distribution's model.
//!
//! With authentication on, every API request needs credentials. Without
//! them the answer is 401 `UNAUTHORIZED` with a bearer challenge naming
//! the realm, the service and the scope the request needs
//! ([`challenge`]). Clients then fetch a token from the realm (this
//! server's `GET /token` with `--htpasswd`: [`Auth::token_endpoint`]) and
//! present it; Basic credentials on API requests are accepted too, as
//! distribution's htpasswd mode does. Tokens grant only `pull` on the
//! repositories the access map lets the user see, and the catalog; a
//! token is refused with `error="invalid_token"` (bad signature, unknown
//! key, expired, other issuer or service) or `error="insufficient_scope"`
//! (valid, but not for this repository).
//!
//! - [`htpasswd`]: the user file, bcrypt, the verification cache;
//! - [`jws`]: compact JWS with ES256, on aws-lc-rs;
//! - [`token`]: claims, issuing, verifying, key sets, scopes;
//! - [`challenge`]: the 401 answers;
//! - [`reload`]: SIGHUP reads the user file, the token key, the key set
//!   and the access map again.

pub mod challenge;
pub mod htpasswd;
pub mod jws;
pub mod reload;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use ir_oci::RepoName;
use tokio::sync::Semaphore;

use crate::api::conn::Visibility;
use crate::api::error::{error_response, ApiError, ErrorCode};
use crate::delivery::Body;
use crate::transport::client_access::SharedClientMap;
use challenge::{BearerError, Need};
use htpasswd::Htpasswd;
use token::{Issuer, ResourceActions, Scope, Verifier};

/// The token endpoint's path on the API port.
pub const TOKEN_PATH: &str = "/token";
/// Most `scope` parameters read from one token request.
const MAX_SCOPES: usize = 32;
/// How long a request waits for a bcrypt slot before 503.
const BCRYPT_WAIT: Duration = Duration::from_secs(10);

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// This server issues them (`--htpasswd`): signed with the key in the
    /// file, or with a key generated at start when `None`.
    Local {
        /// `--htpasswd`.
        htpasswd: PathBuf,
        /// `--token-key`.
        key: Option<PathBuf>,
        /// `--token-ttl`.
        ttl: Duration,
    },
    /// An external issuer signs them with a key in the set (`--token-jwks`).
    External {
        /// `--token-jwks`.
        jwks: PathBuf,
    },
}

/// The authentication settings, checked by [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Where tokens come from.
    pub source: TokenSource,
    /// The challenge's realm: the token endpoint's URL.
    pub realm: String,
    /// The service: the tokens' audience.
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// `--access-map`: what each user may see (`None`: everything).
    pub access_map: Option<PathBuf>,
}

/// Why authentication cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user file.
    #[error(transparent)]
    Htpasswd(#[from] htpasswd::HtpasswdError),
    /// The signing key.
    #[error("--token-key {0}: {1}")]
    Key(String, String),
    /// The key set.
    #[error("--token-jwks {0}: {1}")]
    Jwks(String, String),
    /// The access map.
    #[error(transparent)]
    AccessMap(#[from] crate::transport::client_access::ClientAccessError),
}

/// The user a response was answered for (a response extension, for the
/// access log).
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub Arc<str>);

/// Who a request was authenticated as, and what it may see.
pub struct Grant {
    /// The user (a token's subject).
    pub user: Arc<str>,
    /// The applications the user may see.
    pub visibility: Visibility,
}

/// What the files give, replaced whole by a reload: a request sees the
/// old set or the new one.
struct Inputs {
    /// `--htpasswd`.
    passwords: Option<Arc<Htpasswd>>,
    /// This server's tokens (`--htpasswd`, `--token-key`).
    issuer: Option<Arc<Issuer>>,
    /// The tokens accepted (this server's, or `--token-jwks`).
    verifier: Arc<Verifier>,
}

/// Authentication in force.
pub struct Auth {
    realm: String,
    service: String,
    config: AuthConfig,
    inputs: ArcSwap<Inputs>,
    access: Option<Arc<SharedClientMap>>,
    bcrypt_slots: Semaphore,
    reloading: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .finish()
    }
}

impl Auth {
    /// Reads the files `config` names.
    pub fn load(config: &AuthConfig) -> Result<Self, AuthError> {
        let access = match &config.access_map {
            Some(p) => Some(SharedClientMap::load(p)?),
            None => None,
        };
        Self::load_with_access(config, access)
    }

    /// Reads the files `config` names but the access map, `access` (shared
    /// with the TLS transport's client certificates, reloaded by
    /// [`reload::reload_inputs`]).
    pub fn load_with_access(
        config: &AuthConfig,
        access: Option<Arc<SharedClientMap>>,
    ) -> Result<Self, AuthError> {
        let inputs = match &config.source {
            TokenSource::Local { htpasswd, key, ttl } => {
                let passwords = Htpasswd::load(htpasswd)?;
                let key = match key {
                    Some(path) => read_token_key(path)?,
                    None => jws::SigningKey::generate()
                        .map_err(|e| AuthError::Key(String::new(), e.to_string()))?,
                };
                let issuer = Issuer::new(key, config.issuer.clone(), config.service.clone(), *ttl);
                Inputs {
                    verifier: Arc::new(issuer.verifier()),
                    passwords: Some(Arc::new(passwords)),
                    issuer: Some(Arc::new(issuer)),
                }
            }
            TokenSource::External { jwks } => {
                let keys = token::load_jwks(jwks)
                    .map_err(|e| AuthError::Jwks(jwks.display().to_string(), e))?;
                let verifier = Verifier::new(config.issuer.clone(), config.service.clone(), keys);
                Inputs {
                    passwords: None,
                    issuer: None,
                    verifier: Arc::new(verifier),
                }
            }
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Auth {
            realm: config.realm.clone(),
            service: config.service.clone(),
            config: config.clone(),
            inputs: ArcSwap::from_pointee(inputs),
            access,
            bcrypt_slots: Semaphore::new(cores),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// A line for the start-up log.
    pub fn describe(&self) -> String {
        let who = match &self.inputs.load().passwords {
            Some(p) => format!(
                "{} --htpasswd user(s), tokens issued at {}",
                p.len(),
                self.realm
            ),
            None => format!("tokens of an external issuer (realm {})", self.realm),
        };
        let map = if self.access.is_some() {
            "each user sees what --access-map lists"
        } else {
            "every user sees every application"
        };
        format!(
            "authentication required: {who}, service {:?}; {map}",
            self.service
        )
    }

    /// The access map for users, if any.
    pub fn access_map(&self) -> Option<&Arc<SharedClientMap>> {
        self.access.as_ref()
    }

    fn visibility(&self, user: &str) -> Visibility {
        match &self.access {
            None => None,
            Some(map) => map.peek().for_user(user).1,
        }
    }

    fn may_see(&self, user: &str, name: &RepoName) -> bool {
        self.access
            .as_ref()
            .is_none_or(|map| map.peek().user_may_see(user, name))
    }

    fn challenge(&self, need: Need<'_>, error: BearerError, message: &str) -> Response<Body> {
        let value = challenge::bearer(&self.realm, &self.service, need, error);
        challenge::unauthorized(&value, need, message)
    }

    /// Checks a request's credentials for what it needs: the grant, or the
    /// response to send instead (401 with a challenge; 503 when password
    /// checks are saturated).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        need: Need<'_>,
    ) -> Result<Grant, Response<Body>> {
        let required = || self.challenge(need, BearerError::Required, "authentication required");
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(required());
        };
        let Some((scheme, credentials)) = value.to_str().ok().and_then(|v| v.split_once(' '))
        else {
            return Err(required());
        };
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            return match self.check_basic(credentials).await? {
                Some(user) => Ok(Grant {
                    visibility: self.visibility(&user),
                    user: user.into(),
                }),
                None => Err(required()),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(required());
        }
        self.check_bearer(credentials, need)
            .map_err(|(error, message)| self.challenge(need, error, message))
    }

    /// Checks a bearer token for what the request needs: the grant, or
    /// the challenge's error and message.
    fn check_bearer(
        &self,
        token: &str,
        need: Need<'_>,
    ) -> Result<Grant, (BearerError, &'static str)> {
        let invalid = || (BearerError::InvalidToken, "invalid token");
        let inputs = self.inputs.load();
        let claims = inputs.verifier.verify(token).map_err(|e| {
            tracing::debug!("bearer token refused: {e}");
            invalid()
        })?;
        // This server's token for a user no longer in the file: refused
        // as soon as the file without them is in force.
        if let Some(passwords) = &inputs.passwords {
            if !claims.sub.is_empty() && !passwords.contains(&claims.sub) {
                tracing::debug!(
                    "bearer token refused: user {:?} is not in --htpasswd",
                    claims.sub
                );
                return Err(invalid());
            }
        }
        let granted = match need {
            Need::Base => true,
            Need::Repository(name) => claims.grants("repository", name, "pull"),
            Need::Catalog => claims.grants("registry", "catalog", "*"),
        };
        if !granted {
            return Err((
                BearerError::InsufficientScope,
                "the token does not grant this access",
            ));
        }
        Ok(Grant {
            visibility: self.visibility(&claims.sub),
            user: claims.sub.as_str().into(),
        })
    }

    /// The user Basic `credentials` (base64 `user:password`) log in as, or
    /// `None` when they are malformed or wrong (or passwords are off).
    async fn check_basic(&self, credentials: &str) -> Result<Option<String>, Response<Body>> {
        let Some(passwords) = self.inputs.load().passwords.clone() else {
            return Ok(None);
        };
        if credentials.len() > 4 * htpasswd::MAX_PASSWORD {
            return Ok(None);
        }
        let Some((user, password)) = STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return Ok(None);
        };
        if passwords.cached(&user, &password) {
            return Ok(Some(user));
        }
        let busy = || {
            let mut r = error_response(&ApiError::new(
                ErrorCode::Unavailable,
                "too many password checks at once; retry",
            ));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        };
        let _slot = match tokio::time::timeout(BCRYPT_WAIT, self.bcrypt_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(busy()),
        };
        let checked = tokio::task::spawn_blocking(move || {
            let ok = passwords.verify(&user, &password);
            ok.then_some(user)
        })
        .await;
        Ok(checked.ok().flatten())
    }

    /// `GET /token?service=..&scope=..`: a token for the Basic credentials
    /// given (or an anonymous one, granting nothing), granting `pull` on
    /// each repository asked for that the user may see, and the catalog.
    /// `None` when this server issues no tokens (the path is not served).
    pub async fn token_endpoint<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let issuer = self.inputs.load().issuer.clone()?;
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = error_response(&ApiError::new(
                ErrorCode::Unsupported,
                "the token endpoint answers GET",
            ));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(r);
        }
        let basic_refusal = |message: &str| {
            let mut r = error_response(&ApiError::new(ErrorCode::Unauthorized, message));
            let v = format!("Basic realm=\"{}\"", self.service);
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        };
        let mut scopes = Vec::new();
        let query = req.uri().query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "service" if *v != *self.service => {
                    return Some(basic_refusal("the token is asked for another service"))
                }
                "scope" => {
                    for s in v.split(' ').filter(|s| !s.is_empty()) {
                        if scopes.len() == MAX_SCOPES {
                            break;
                        }
                        scopes.extend(Scope::parse(s));
                    }
                }
                _ => {}
            }
        }
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let user = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => {
                let basic = v
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(s, _)| s.eq_ignore_ascii_case("basic"));
                let Some((_, credentials)) = basic else {
                    return Some(basic_refusal("Basic credentials expected"));
                };
                match self.check_basic(credentials.trim()).await {
                    Ok(Some(user)) => Some(user),
                    Ok(None) => return Some(basic_refusal("invalid user name or password")),
                    Err(busy) => return Some(busy),
                }
            }
            _ => return Some(basic_refusal("one Authorization header expected")),
        };
        let mut access: Vec<ResourceActions> = Vec::new();
        if let Some(user) = &user {
            for scope in &scopes {
                let wants = |a: &str| scope.actions.iter().any(|x| x == a);
                let grant = match scope.kind.as_str() {
                    "repository" if wants("pull") => RepoName::parse(&scope.name)
                        .is_ok_and(|n| self.may_see(user, &n))
                        .then_some("pull"),
                    "registry" if scope.name == "catalog" && wants("*") => Some("*"),
                    _ => None,
                };
                if let Some(action) = grant {
                    let entry = ResourceActions {
                        kind: scope.kind.clone(),
                        name: scope.name.clone(),
                        actions: vec![action.to_owned()],
                    };
                    if !access.contains(&entry) {
                        access.push(entry);
                    }
                }
            }
        }
        let now = token::now();
        let token = match issuer.issue_at(user.as_deref().unwrap_or(""), access, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("token endpoint: {e}");
                let mut r = Response::new(Body::Empty);
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return Some(r);
            }
        };
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": issuer.ttl().as_secs(),
            "issued_at": token::rfc3339(now),
        })
        .to_string();
        let mut r = Response::new(Body::full(body.clone()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, body.len().into());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(r)
    }
}

/// Reads `--token-key` (a P-256 private key in PEM, 64 KiB at most).
pub fn read_token_key(path: &std::path::Path) -> Result<jws::SigningKey, AuthError> {
    jws::SigningKey::from_pem_file(path)
        .map_err(|e| AuthError::Key(path.display().to_string(), e.to_string()))
}
