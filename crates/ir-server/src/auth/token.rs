//! Registry bearer tokens in the distribution model (`auth.token`): JWTs
//! signed ES256 whose `access` claim names the repositories and actions
//! they grant, for one audience (the service) from one issuer.
//!
//! This server issues them itself (`--htpasswd`, signed with `--token-key`)
//! or accepts those of an external issuer (`--token-issuer` with the key
//! set `--token-jwks`). A token is accepted when its signature verifies
//! with the key its `kid` names, `iss` is the issuer, `aud` names the
//! service, `exp` is in the future and `nbf`/`iat` are not, and every size
//! is within bounds. An external issuer's clock may differ from ours by
//! [`LEEWAY`]; this server's own tokens get none (one clock), so a token
//! replayed after its lifetime is refused at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;

use serde::{Deserialize, Serialize};

use super::jws::{self, JwsError, PublicKey, SigningKey};

/// Clock skew tolerated on `exp`, `nbf` and `iat` of an external issuer's
/// tokens (distribution's).
pub const LEEWAY: Duration = Duration::from_secs(60);
/// Most `access` entries in a token.
pub const MAX_ACCESS: usize = 256;
/// Most actions in one entry.
const MAX_ACTIONS: usize = 16;
/// Longest string claim (`iss`, `sub`, a name, an action).
const MAX_STRING: usize = 512;
/// Most keys in a key set.
const MAX_KEYS: usize = 64;
/// Largest key set file.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// Most verified tokens remembered (then the memory starts afresh).
pub const MAX_CACHED: usize = 4096;

/// One `access` entry: a resource and the actions granted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// `pull`, `*`, ...
    pub actions: Vec<String>,
}

/// `aud`: one string or a list of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims read from and written into tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user.
    #[serde(default)]
    pub sub: String,
    aud: Audience,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<ResourceActions>,
}

impl Claims {
    /// True when the token grants `action` on the resource `kind:name`
    /// (`*` among the granted actions grants every action).
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Form, header or signature.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// The claims are not the expected JSON or exceed a bound.
    #[error("malformed claims: {0}")]
    Claims(String),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// `iss` is not the trusted issuer.
    #[error("untrusted issuer {0:?}")]
    Issuer(String),
    /// `aud` does not name this service.
    #[error("token is for another service")]
    Audience,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a token must satisfy, and the keys its signature may be made with.
///
/// A client presents the same token on every request of a pull; checking
/// its ECDSA signature each time would cost tens of microseconds, many
/// times a manifest request. So a token whose signature and claims were
/// checked is remembered by its SHA-256 (at most [`MAX_CACHED`]), and
/// later only its times are checked again: an expired token is refused
/// whether or not it is remembered.
#[derive(Debug)]
pub struct Verifier {
    issuer: String,
    service: String,
    keys: HashMap<String, PublicKey>,
    leeway: i64,
    verified: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
}

impl Verifier {
    /// Tokens of `issuer` for `service`, signed by one of `keys` (by kid),
    /// with [`LEEWAY`] for clock skew.
    pub fn new(issuer: String, service: String, keys: HashMap<String, PublicKey>) -> Self {
        Verifier {
            issuer,
            service,
            keys,
            leeway: LEEWAY.as_secs() as i64,
            verified: Mutex::default(),
        }
    }

    /// Checks `token` at time `at` (Unix seconds) and returns its claims.
    pub fn verify_at(&self, token: &str, at: i64) -> Result<Arc<Claims>, TokenError> {
        let mut key = [0u8; 32];
        key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(claims) = known {
            self.check_times(&claims, at)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token, at)?);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_CACHED {
            verified.clear();
        }
        verified.insert(key, claims.clone());
        Ok(claims)
    }

    fn check_times(&self, claims: &Claims, at: i64) -> Result<(), TokenError> {
        let leeway = self.leeway;
        if claims.exp.saturating_add(leeway) <= at {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|t| t > at.saturating_add(leeway))
            || claims.iat.is_some_and(|t| t > at.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    fn verify_uncached(&self, token: &str, at: i64) -> Result<Claims, TokenError> {
        let payload = jws::verify(token, |kid| self.keys.get(kid))?;
        let claims: Claims =
            ir_oci::json::from_slice(&payload).map_err(|e| TokenError::Claims(e.to_string()))?;
        let long = |s: &str| s.len() > MAX_STRING;
        if long(&claims.iss)
            || long(&claims.sub)
            || claims.access.len() > MAX_ACCESS
            || claims.access.iter().any(|a| {
                long(&a.kind)
                    || long(&a.name)
                    || a.actions.len() > MAX_ACTIONS
                    || a.actions.iter().any(|x| long(x))
            })
        {
            return Err(TokenError::Claims("a claim exceeds its bound".into()));
        }
        self.check_times(&claims, at)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer(claims.iss));
        }
        let for_us = match &claims.aud {
            Audience::One(a) => *a == self.service,
            Audience::Many(list) => list.len() <= MAX_ACCESS && list.contains(&self.service),
        };
        if !for_us {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }

    /// Checks `token` now.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        self.verify_at(token, now())
    }

    /// True when `keys` are exactly the keys this verifier accepts.
    pub fn has_keys(&self, keys: &HashMap<String, PublicKey>) -> bool {
        self.keys == *keys
    }
}

/// Issues this server's tokens.
#[derive(Debug)]
pub struct Issuer {
    key: SigningKey,
    issuer: String,
    service: String,
    ttl: Duration,
}

impl Issuer {
    /// Tokens of `issuer` for `service`, valid for `ttl`, signed by `key`.
    pub fn new(key: SigningKey, issuer: String, service: String, ttl: Duration) -> Self {
        Issuer {
            key,
            issuer,
            service,
            ttl,
        }
    }

    /// The verifier of exactly these tokens.
    pub fn verifier(&self) -> Verifier {
        let keys = HashMap::from([(self.key.kid().to_owned(), self.key.public().clone())]);
        let mut v = Verifier::new(self.issuer.clone(), self.service.clone(), keys);
        v.leeway = 0;
        v
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The tokens' lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `sub` granting `access`, issued at `at`.
    pub fn issue_at(
        &self,
        sub: &str,
        access: Vec<ResourceActions>,
        at: i64,
    ) -> Result<String, JwsError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| JwsError::Key("no randomness".into()))?;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: Audience::One(self.service.clone()),
            exp: at.saturating_add(self.ttl.as_secs() as i64),
            nbf: Some(at),
            iat: Some(at),
            jti: Some(jti.iter().map(|b| format!("{b:02x}")).collect()),
            access,
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| JwsError::Key(e.to_string()))?;
        self.key.sign(&payload)
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: Option<String>,
    kid: Option<String>,
    x: Option<String>,
    y: Option<String>,
    alg: Option<String>,
    d: Option<serde_json::Value>,
}

/// Reads a JWK set of EC P-256 public keys, each with a `kid`.
pub fn load_jwks(path: &Path) -> Result<HashMap<String, PublicKey>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_JWKS_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err("file too large".into());
    }
    let raw: RawJwks = ir_oci::json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if raw.keys.is_empty() {
        return Err("no key in \"keys\"".into());
    }
    if raw.keys.len() > MAX_KEYS {
        return Err(format!("more than {MAX_KEYS} keys"));
    }
    let mut keys = HashMap::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let at = |why: &str| format!("key {i}: {why}");
        if k.d.is_some() {
            return Err(at("holds a private key (\"d\"): give public keys only"));
        }
        if k.kty != "EC" || k.crv.as_deref() != Some("P-256") {
            return Err(at("only EC P-256 keys (ES256) are accepted"));
        }
        if k.alg.as_deref().is_some_and(|a| a != "ES256") {
            return Err(at("\"alg\" must be ES256"));
        }
        let kid = k
            .kid
            .filter(|s| !s.is_empty())
            .ok_or_else(|| at("no \"kid\""))?;
        let (Some(x), Some(y)) = (k.x, k.y) else {
            return Err(at("no \"x\" or \"y\""));
        };
        let key = PublicKey::from_coordinates(&x, &y).map_err(|e| at(&e.to_string()))?;
        if keys.insert(kid.clone(), key).is_some() {
            return Err(at(&format!("kid {kid:?} appears twice")));
        }
    }
    Ok(keys)
}

/// One requested scope (`type:name:actions`), as in the `scope`
/// parameter of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Resource type (a class in parentheses is dropped).
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Actions asked for.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one resource scope; `None` when it is not of the form
    /// `type:name:action[,action]`.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() || actions.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.split(',').map(str::to_owned).collect(),
        })
    }
}

/// Unix seconds as RFC 3339 UTC (`issued_at` of token responses).
pub use ir_jose::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(ttl: u64) -> Issuer {
        Issuer::new(
            SigningKey::generate().unwrap(),
            "iss".into(),
            "svc".into(),
            Duration::from_secs(ttl),
        )
    }

    fn pull(name: &str) -> Vec<ResourceActions> {
        vec![ResourceActions {
            kind: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into()],
        }]
    }

    #[test]
    fn issued_tokens_verify_within_their_lifetime() {
        let i = issuer(300);
        let v = i.verifier();
        let t = i.issue_at("alice", pull("app"), 1_000_000).unwrap();
        let c = v.verify_at(&t, 1_000_100).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.grants("repository", "app", "pull"));
        assert!(!c.grants("repository", "other", "pull"));
        assert!(!c.grants("repository", "app", "push"));
        v.verify_at(&t, 1_000_299).unwrap();
        // Remembered, and still refused once expired.
        assert_eq!(v.verified.lock().unwrap().len(), 1);
        assert_eq!(
            v.verify_at(&t, 1_000_300).unwrap_err(),
            TokenError::Expired,
            "own tokens: no leeway"
        );
        assert_eq!(
            v.verify_at(&t, 1_000_000 - 1).unwrap_err(),
            TokenError::NotYetValid
        );
        // An external issuer's token gets the leeway.
        let keys = HashMap::from([(i.key.kid().to_owned(), i.key.public().clone())]);
        let external = Verifier::new("iss".into(), "svc".into(), keys);
        external.verify_at(&t, 1_000_300 + 59).unwrap();
        assert_eq!(
            external.verify_at(&t, 1_000_300 + 60).unwrap_err(),
            TokenError::Expired
        );
        // Another issuer's verifier (same service) refuses it: other key.
        assert!(matches!(
            issuer(300).verifier().verify_at(&t, 1_000_000),
            Err(TokenError::Jws(JwsError::UnknownKey(_)))
        ));
    }

    #[test]
    fn issuer_and_audience_are_checked() {
        let i = issuer(300);
        let keys = HashMap::from([(i.key.kid().to_owned(), i.key.public().clone())]);
        let t = i.issue_at("a", vec![], 1000).unwrap();
        let other_iss = Verifier::new("x".into(), "svc".into(), keys.clone());
        assert!(matches!(
            other_iss.verify_at(&t, 1000),
            Err(TokenError::Issuer(_))
        ));
        let other_aud = Verifier::new("iss".into(), "x".into(), keys);
        assert_eq!(
            other_aud.verify_at(&t, 1000).unwrap_err(),
            TokenError::Audience
        );
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push").unwrap(),
            Scope {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()]
            }
        );
        assert_eq!(
            Scope::parse("repository(plugin):a:pull").unwrap().kind,
            "repository"
        );
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().name, "catalog");
        for bad in [
            "",
            "repository",
            "repository:a",
            "repository::pull",
            ":a:pull",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }
}
