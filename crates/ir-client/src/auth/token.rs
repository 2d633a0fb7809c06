//! The distribution token flow: a token from the realm a `Bearer`
//! challenge names, anonymous or with credentials, kept until it expires.

use super::credentials::{Credentials, Secret};
use crate::location::Scheme;
use crate::AuthError;
use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token's lifetime when the endpoint does not say (the distribution
/// spec's default).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Longest lifetime believed, whatever the endpoint says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token is not used in its last seconds.
const MARGIN: Duration = Duration::from_secs(5);
/// Largest token response read.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Most tokens kept.
const MAX_TOKENS: usize = 1024;

/// The realm's URL, if credentials (or a request for a token) may go
/// there from a registry reached with `scheme` at `host`: https, or
/// plain http only between a plain-http registry on this machine and a
/// realm on this machine. An RA-TLS registry's realm is the registry
/// itself (its attested certificate goes nowhere else).
pub fn check_realm(scheme: Scheme, host: &str, realm: &str) -> Result<reqwest::Url, AuthError> {
    let parsed = reqwest::Url::parse(realm).ok();
    let printable = parsed
        .as_ref()
        .map_or_else(|| "(not a URL)".into(), printable);
    let refuse = |why| AuthError::Realm {
        host: host.to_string(),
        realm: printable.clone(),
        why,
    };
    let url = parsed.ok_or_else(|| refuse("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("a realm with a user name is refused"));
    }
    let realm_host = url.host_str().ok_or_else(|| refuse("no host"))?;
    match (url.scheme(), scheme) {
        ("https", Scheme::RaTls) => {
            let authority = match url.port() {
                Some(p) => format!("{realm_host}:{p}"),
                None => realm_host.to_string(),
            };
            if !authority.eq_ignore_ascii_case(host) {
                return Err(refuse(
                    "an ra-tls registry's token realm must be on the registry itself",
                ));
            }
        }
        ("https", _) => {}
        ("http", Scheme::Http) if is_loopback(host) && is_loopback(realm_host) => {}
        ("http", _) => {
            return Err(refuse(
                "plain http is refused (only a plain-http registry on this machine may name a plain-http realm on this machine)",
            ))
        }
        _ => return Err(refuse("not an http(s) URL")),
    }
    Ok(url)
}

/// A realm as errors show it: scheme, host, port and path (no user
/// name, password or query).
fn printable(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

/// Whether `host` (`name[:port]`, `[v6]:port`) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host.matches(':').count() > 1 {
        host // a bare IPv6 address
    } else {
        host.split(':').next().unwrap_or("")
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[derive(serde::Deserialize)]
struct Response {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks `realm` for a token for `service` and `scope`, with `creds` when
/// given: Basic for a user and password, the OAuth2 refresh-token grant
/// for an identity token. Returns the token and how long it lasts.
pub async fn fetch(
    client: &reqwest::Client,
    host: &str,
    realm: reqwest::Url,
    service: Option<&str>,
    scope: Option<&str>,
    creds: Option<&Credentials>,
) -> Result<(Secret, Duration), AuthError> {
    let printable = printable(&realm);
    let req = match creds {
        Some(Credentials::IdentityToken(token)) => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", "ir-client"),
                ("refresh_token", token.expose()),
            ];
            form.extend(service.map(|s| ("service", s)));
            form.extend(scope.map(|s| ("scope", s)));
            client.post(realm).body(encode_form(&form)).header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
        }
        _ => {
            let mut url = realm;
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                if let Some(s) = scope {
                    q.append_pair("scope", s);
                }
            }
            let req = client.get(url);
            match creds {
                Some(Credentials::Basic { user, password }) => {
                    req.header(AUTHORIZATION, basic_header(user, password))
                }
                _ => req,
            }
        }
    };
    tracing::debug!(realm = %printable, service, scope, credentials = creds.is_some(), "token request");
    let mut resp = req.send().await.map_err(|e| AuthError::TokenTransport {
        realm: printable.clone(),
        reason: crate::error::chain(&e.without_url()),
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(AuthError::TokenRefused {
            realm: printable,
            host: host.to_string(),
            who: if creds.is_some() {
                "the credentials"
            } else {
                "anonymous access"
            },
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| AuthError::TokenTransport {
        realm: printable.clone(),
        reason: crate::error::chain(&e.without_url()),
    })? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(AuthError::TokenResponse {
                realm: printable,
                why: format!("answer larger than {MAX_RESPONSE} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let bad = |why: &str| AuthError::TokenResponse {
        realm: printable.clone(),
        why: why.to_string(),
    };
    let r: Response = ir_oci::json::from_slice(&body)
        .map_err(|_| bad("the answer is not a token response (JSON object)"))?;
    let token = r
        .token
        .or(r.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("the answer has no token"))?;
    if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(bad("the token is not a valid header value"));
    }
    let lifetime = r
        .expires_in
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .min(MAX_LIFETIME);
    Ok((Secret::new(token), lifetime))
}

/// `Basic base64(user:password)`, marked sensitive.
pub fn basic_header(user: &str, password: &Secret) -> HeaderValue {
    let raw =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    sensitive(&format!("Basic {raw}"))
}

/// A header value that HTTP logging never prints.
pub fn sensitive(text: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("static URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or("").to_string()
}

/// Tokens by what they are for, each until it expires.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
}

impl TokenCache {
    /// The `Authorization` value kept for `key`, if still valid.
    pub fn get(&self, key: &str) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().expect("token cache");
        let (value, until) = tokens.get(key)?;
        (Instant::now() < *until).then(|| value.clone())
    }

    /// Keeps `value` for `key` for `lifetime` (less a margin).
    pub fn put(&self, key: String, value: HeaderValue, lifetime: Duration) {
        let mut tokens = self.tokens.lock().expect("token cache");
        let now = Instant::now();
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, (value, now + lifetime.saturating_sub(MARGIN)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realms_are_https_or_loopback_plain_http_from_a_loopback_registry() {
        let ok = |s, h, r| check_realm(s, h, r).is_ok();
        assert!(ok(
            Scheme::Https,
            "reg.example",
            "https://auth.example/token"
        ));
        assert!(ok(
            Scheme::Http,
            "127.0.0.1:5000",
            "https://auth.example/token"
        ));
        assert!(ok(
            Scheme::Http,
            "127.0.0.1:5000",
            "http://127.0.0.1:5001/token"
        ));
        assert!(ok(
            Scheme::Http,
            "localhost:5000",
            "http://[::1]:5001/token"
        ));
        assert!(ok(Scheme::RaTls, "reg:1337", "https://reg:1337/token"));
        for (s, h, r) in [
            (Scheme::Https, "reg.example", "http://auth.example/token"),
            (
                Scheme::Https,
                "127.0.0.1:5000",
                "http://127.0.0.1:5001/token",
            ),
            (
                Scheme::Http,
                "reg.example:5000",
                "http://reg.example:5001/token",
            ),
            (Scheme::Http, "127.0.0.1:5000", "http://auth.example/token"),
            (
                Scheme::Https,
                "reg.example",
                "https://user:pw@auth.example/token",
            ),
            (Scheme::Https, "reg.example", "ftp://auth.example/token"),
            (Scheme::Https, "reg.example", "/token"),
            (Scheme::RaTls, "reg:1337", "https://auth.example/token"),
        ] {
            let e = check_realm(s, h, r).unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "reg.example",
            "10.0.0.1:5000",
            "[::2]:1",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn tokens_expire() {
        let c = TokenCache::default();
        c.put("a".into(), sensitive("Bearer x"), Duration::from_secs(60));
        assert!(c.get("a").is_some());
        c.put("b".into(), sensitive("Bearer y"), Duration::from_secs(5));
        assert!(c.get("b").is_none(), "inside the margin");
        assert!(c.get("c").is_none());
    }
}
