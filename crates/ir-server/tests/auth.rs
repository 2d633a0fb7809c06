//! Registry authentication (`--htpasswd`, tokens, `--access-map` users):
//! what a client sees at the boundary for each way in and each refusal,
//! in the shape distribution's token authentication gives (401
//! `UNAUTHORIZED`, `WWW-Authenticate: Bearer realm,service,scope[,error]`),
//! and that nothing is served without credentials that grant it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use ir_server::api::ApiState;
use ir_server::auth::jws::SigningKey;
use ir_server::auth::token::{self, Issuer, ResourceActions};
use ir_server::auth::{Auth, AuthConfig, TokenSource};
use ir_server::snapshot::catalog::{self, Catalog};
use ir_server::transport::plain::Plain;
use ir_server::transport::server::ConnLimits;
use tempfile::TempDir;

use crate::util::{options, TestServer};

const REALM: &str = "https://registry.test/token";
const SERVICE: &str = "registry.test";
const LAYER: &[u8] = b"layer only for the authenticated";

struct Setup {
    _dir: TempDir,
    _root: ir_testkit::Root,
    server: TestServer,
    key: String,
    manifest: String,
}

/// Serves `app`, `team/one` and `other` behind `--htpasswd` (alice:secret,
/// bob:hunter2) with tokens of `ttl` seconds and the access map `map`.
async fn setup(ttl: u64, map: Option<&str>) -> Setup {
    setup_audited(ttl, map, None).await
}

/// `setup` with receipts and events (`audit`).
async fn setup_audited(
    ttl: u64,
    map: Option<&str>,
    audit: Option<Arc<ir_server::audit::Audit>>,
) -> Setup {
    let dir = TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let h = |p: &str| bcrypt::hash(p, 4).unwrap();
    std::fs::write(
        &htpasswd,
        format!(
            "alice:{}\nbob:{}\n",
            h("secret"),
            h("hunter2").replacen("$2b$", "$2y$", 1)
        ),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let key_path = dir.path().join("token.key");
    std::fs::write(&key_path, &key).unwrap();
    let access_map = map.map(|m| {
        let p = dir.path().join("access.json");
        std::fs::write(&p, m).unwrap();
        p
    });
    let auth = Auth::load(&AuthConfig {
        source: TokenSource::Local {
            htpasswd,
            key: Some(key_path),
            ttl: Duration::from_secs(ttl),
        },
        realm: REALM.into(),
        service: SERVICE.into(),
        issuer: SERVICE.into(),
        access_map,
    })
    .unwrap();
    let root = ir_testkit::Root::new();
    let mut manifest = String::new();
    for name in ["app", "team/one", "other"] {
        let l = root.layout(name);
        let image = l.image(LAYER);
        l.set_index(&[image.tagged("latest")]);
        manifest = image.manifest.digest_str().to_owned();
    }
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    assert!(registry.rejected.is_empty());
    let state = ApiState::new(catalog::shared(Catalog::new(registry)), false)
        .with_auth(Some(Arc::new(auth)))
        .with_audit(audit);
    let server = TestServer::serve_state(
        state,
        Arc::new(Plain),
        options(ConnLimits::default()),
        "http",
    )
    .await;
    Setup {
        _dir: dir,
        _root: root,
        server,
        key,
        manifest,
    }
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

/// A response as the client sees it.
struct Seen {
    status: u16,
    challenge: String,
    code: String,
    body: Vec<u8>,
}

async fn get(s: &Setup, path: &str, authorization: Option<&str>) -> Seen {
    let mut req = reqwest::Client::new().get(s.server.url(path));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.bytes().await.unwrap().to_vec();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Seen {
        status,
        challenge,
        code,
        body,
    }
}

/// Asserts a 401 with the bearer challenge for `scope` and `error`, and
/// that no image byte came with it.
fn refused(seen: &Seen, scope: Option<&str>, error: Option<&str>) {
    assert_eq!(seen.status, 401, "{}", String::from_utf8_lossy(&seen.body));
    assert_eq!(seen.code, "UNAUTHORIZED");
    let mut want = format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        want.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        want.push_str(&format!(",error=\"{error}\""));
    }
    assert_eq!(seen.challenge, want);
    assert!(
        !seen.body.windows(LAYER.len()).any(|w| w == LAYER)
            && !String::from_utf8_lossy(&seen.body).contains("schemaVersion"),
        "nothing is served with a refusal"
    );
}

async fn token(s: &Setup, authorization: Option<&str>, scope: &str) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .get(s.server.url("/token"))
        .query(&[("service", SERVICE), ("scope", scope)]);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn bearer(t: &serde_json::Value) -> String {
    format!("Bearer {}", t["token"].as_str().unwrap())
}

const MANIFEST: &str = "/v2/app/manifests/latest";

#[tokio::test]
async fn without_credentials_nothing_is_served() {
    let s = setup(300, None).await;
    refused(&get(&s, "/v2/", None).await, None, None);
    refused(
        &get(&s, MANIFEST, None).await,
        Some("repository:app:pull"),
        None,
    );
    let blob = format!("/v2/app/blobs/{}", s.manifest);
    refused(
        &get(&s, &blob, None).await,
        Some("repository:app:pull"),
        None,
    );
    refused(
        &get(&s, "/v2/_catalog", None).await,
        Some("registry:catalog:*"),
        None,
    );
    refused(
        &get(&s, "/v2/team/one/tags/list", None).await,
        Some("repository:team/one:pull"),
        None,
    );
    // Not even whether a path or name is wrong is told before credentials.
    refused(&get(&s, "/v2/NOT_VALID/tags/list", None).await, None, None);
    refused(&get(&s, "/elsewhere", None).await, None, None);
    // Other schemes and garbage are no credentials.
    for a in ["Digest x", "Basic", "Bearer", "Basic !!!", "Negotiate abc"] {
        refused(
            &get(&s, MANIFEST, Some(a)).await,
            Some("repository:app:pull"),
            None,
        );
    }
    // Probes stay open.
    assert_eq!(get(&s, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn basic_credentials_and_tokens_pull() {
    let s = setup(300, None).await;
    // Basic on API requests, as distribution accepts.
    let seen = get(&s, MANIFEST, Some(&basic("alice", "secret"))).await;
    assert_eq!(seen.status, 200);
    let seen = get(&s, MANIFEST, Some(&basic("bob", "hunter2"))).await;
    assert_eq!(seen.status, 200, "$2y$ hashes");
    // The token flow.
    let (status, t) = token(&s, Some(&basic("alice", "secret")), "repository:app:pull").await;
    assert_eq!(status, 200);
    assert_eq!(t["token"], t["access_token"]);
    assert_eq!(t["expires_in"], 300);
    assert!(t["issued_at"].as_str().unwrap().ends_with('Z'));
    let seen = get(&s, MANIFEST, Some(&bearer(&t))).await;
    assert_eq!(seen.status, 200);
    assert!(String::from_utf8_lossy(&seen.body).contains("schemaVersion"));
    assert_eq!(get(&s, "/v2/", Some(&bearer(&t))).await.status, 200);
    // The token names only what was asked for, and only pull.
    let claims = claims_of(&t);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "app", "actions": ["pull"]}])
    );
    let (_, t) = token(
        &s,
        Some(&basic("alice", "secret")),
        "repository:app:pull,push,delete",
    )
    .await;
    assert_eq!(
        claims_of(&t)["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
}

fn claims_of(t: &serde_json::Value) -> serde_json::Value {
    let payload = t["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn wrong_passwords_are_refused() {
    let s = setup(300, None).await;
    for (user, password) in [("alice", "wrong"), ("mallory", "secret"), ("alice", "")] {
        let seen = get(&s, MANIFEST, Some(&basic(user, password))).await;
        refused(&seen, Some("repository:app:pull"), None);
        let (status, body) = token(&s, Some(&basic(user, password)), "repository:app:pull").await;
        assert_eq!(status, 401, "{user}");
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
        assert!(body.get("token").is_none());
    }
    // The token endpoint's own challenge is Basic.
    let r = reqwest::Client::new()
        .get(s.server.url("/token"))
        .header("authorization", basic("alice", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Basic realm=\"{SERVICE}\"").as_str()
    );
    // A token for another service is not issued.
    let r = reqwest::Client::new()
        .get(
            s.server
                .url("/token?service=elsewhere&scope=repository:app:pull"),
        )
        .header("authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn anonymous_tokens_grant_nothing() {
    let s = setup(300, None).await;
    let (status, t) = token(&s, None, "repository:app:pull").await;
    assert_eq!(status, 200);
    assert_eq!(claims_of(&t)["access"], serde_json::json!([]));
    refused(
        &get(&s, MANIFEST, Some(&bearer(&t))).await,
        Some("repository:app:pull"),
        Some("insufficient_scope"),
    );
}

#[tokio::test]
async fn a_token_for_another_repository_is_insufficient() {
    let s = setup(300, None).await;
    let (_, t) = token(&s, Some(&basic("alice", "secret")), "repository:other:pull").await;
    assert_eq!(
        get(&s, "/v2/other/manifests/latest", Some(&bearer(&t)))
            .await
            .status,
        200
    );
    refused(
        &get(&s, MANIFEST, Some(&bearer(&t))).await,
        Some("repository:app:pull"),
        Some("insufficient_scope"),
    );
    refused(
        &get(
            &s,
            &format!("/v2/app/blobs/{}", s.manifest),
            Some(&bearer(&t)),
        )
        .await,
        Some("repository:app:pull"),
        Some("insufficient_scope"),
    );
    refused(
        &get(&s, "/v2/_catalog", Some(&bearer(&t))).await,
        Some("registry:catalog:*"),
        Some("insufficient_scope"),
    );
}

/// Tokens this server's key signs, made here to test the clock checks.
fn forged(s: &Setup, key_pem: &str, iss: &str, aud: &str, at: i64, ttl: u64) -> String {
    forged_for(s, key_pem, iss, aud, at, ttl, "alice")
}

fn forged_for(
    _s: &Setup,
    key_pem: &str,
    iss: &str,
    aud: &str,
    at: i64,
    ttl: u64,
    sub: &str,
) -> String {
    let key = SigningKey::from_pem(key_pem.as_bytes()).unwrap();
    let issuer = Issuer::new(key, iss.into(), aud.into(), Duration::from_secs(ttl));
    let t = issuer
        .issue_at(
            sub,
            vec![ResourceActions {
                kind: "repository".into(),
                name: "app".into(),
                actions: vec!["pull".into()],
            }],
            at,
        )
        .unwrap();
    format!("Bearer {t}")
}

#[tokio::test]
async fn expired_foreign_and_forged_tokens_are_invalid() {
    let s = setup(300, None).await;
    let now = token::now();
    let invalid = |seen: &Seen| refused(seen, Some("repository:app:pull"), Some("invalid_token"));
    // Signed with the server's key, valid: served (the control).
    let good = forged(&s, &s.key, SERVICE, SERVICE, now, 300);
    assert_eq!(get(&s, MANIFEST, Some(&good)).await.status, 200);
    // Expired.
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged(&s, &s.key, SERVICE, SERVICE, now - 1000, 300)),
        )
        .await,
    );
    // Not valid yet.
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged(&s, &s.key, SERVICE, SERVICE, now + 1000, 300)),
        )
        .await,
    );
    // Another issuer, another audience.
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged(&s, &s.key, "evil", SERVICE, now, 300)),
        )
        .await,
    );
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged(&s, &s.key, SERVICE, "other.registry", now, 300)),
        )
        .await,
    );
    // Signed by another key.
    let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged(&s, &other, SERVICE, SERVICE, now, 300)),
        )
        .await,
    );
    // Another key under the server's kid.
    let good_t = good.strip_prefix("Bearer ").unwrap();
    let other_t = forged(&s, &other, SERVICE, SERVICE, now, 300);
    let other_sig = other_t.rsplit('.').next().unwrap();
    let (signed, _) = good_t.rsplit_once('.').unwrap();
    invalid(&get(&s, MANIFEST, Some(&format!("Bearer {signed}.{other_sig}"))).await);
    // alg none and HS256 with the same claims.
    let claims = good_t.split('.').nth(1).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS256","typ":"JWT"}"#] {
        invalid(
            &get(
                &s,
                MANIFEST,
                Some(&format!("Bearer {}.{claims}.", b64(header))),
            )
            .await,
        );
        invalid(
            &get(
                &s,
                MANIFEST,
                Some(&format!("Bearer {}.{claims}.AAAA", b64(header))),
            )
            .await,
        );
    }
    // Garbage and an oversized token.
    invalid(&get(&s, MANIFEST, Some("Bearer not.a.token")).await);
    let huge = format!("Bearer {}", "a".repeat(9000));
    invalid(&get(&s, MANIFEST, Some(&huge)).await);
}

#[tokio::test]
async fn a_token_replayed_past_its_lifetime_is_refused() {
    let s = setup(1, None).await;
    let (_, t) = token(&s, Some(&basic("alice", "secret")), "repository:app:pull").await;
    assert_eq!(t["expires_in"], 1);
    let auth = bearer(&t);
    // Used at once: served (unless the second turned meanwhile, which
    // the refusal below covers as well).
    let first = get(&s, MANIFEST, Some(&auth)).await;
    assert!(first.status == 200 || first.status == 401);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        &get(&s, MANIFEST, Some(&auth)).await,
        Some("repository:app:pull"),
        Some("invalid_token"),
    );
}

const MAP: &str = r#"{"clients": [
    {"user": "alice", "applications": ["team/*"]},
    {"user": "bob"}
]}"#;

#[tokio::test]
async fn the_access_map_limits_users_as_if_the_rest_did_not_exist() {
    let s = setup(300, Some(MAP)).await;
    let alice = basic("alice", "secret");
    // Basic: a forbidden application answers exactly as a missing one.
    let forbidden = get(&s, MANIFEST, Some(&alice)).await;
    let missing = get(&s, "/v2/nothing/manifests/latest", Some(&alice)).await;
    assert_eq!(forbidden.status, 404);
    assert_eq!(forbidden.code, "NAME_UNKNOWN");
    assert_eq!(
        String::from_utf8_lossy(&forbidden.body).replace("app", "X"),
        String::from_utf8_lossy(&missing.body).replace("nothing", "X")
    );
    assert_eq!(get(&s, "/v2/app/tags/list", Some(&alice)).await.status, 404);
    assert_eq!(
        get(&s, "/v2/team/one/manifests/latest", Some(&alice))
            .await
            .status,
        200
    );
    let catalog = get(&s, "/v2/_catalog", Some(&alice)).await;
    assert_eq!(catalog.status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&catalog.body).unwrap();
    assert_eq!(listed["repositories"], serde_json::json!(["team/one"]));
    // Tokens: a forbidden application is not granted, like a missing one.
    let (_, t) = token(
        &s,
        Some(&alice),
        "repository:app:pull repository:team/one:pull repository:nothing:pull registry:catalog:*",
    )
    .await;
    let granted: Vec<String> = claims_of(&t)["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["type"].as_str().unwrap(),
                a["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(granted, ["repository:team/one", "registry:catalog"]);
    refused(
        &get(&s, MANIFEST, Some(&bearer(&t))).await,
        Some("repository:app:pull"),
        Some("insufficient_scope"),
    );
    let catalog = get(&s, "/v2/_catalog", Some(&bearer(&t))).await;
    let listed: serde_json::Value = serde_json::from_slice(&catalog.body).unwrap();
    assert_eq!(listed["repositories"], serde_json::json!(["team/one"]));
    // bob's entry has no list: everything.
    let bob = basic("bob", "hunter2");
    assert_eq!(get(&s, MANIFEST, Some(&bob)).await.status, 200);
    // A token sees only what its subject's entry allows, whatever it
    // grants; the map applies to a token's subject as to a user.
    let now = token::now();
    let t = forged_for(&s, &s.key, SERVICE, SERVICE, now, 300, "alice");
    let seen = get(&s, MANIFEST, Some(&t)).await;
    assert_eq!(seen.status, 404);
    assert_eq!(seen.code, "NAME_UNKNOWN");
    // This server's token for someone not in --htpasswd (a user since
    // removed) is refused.
    let t = forged_for(&s, &s.key, SERVICE, SERVICE, now, 300, "carol");
    refused(
        &get(&s, MANIFEST, Some(&t)).await,
        Some("repository:app:pull"),
        Some("invalid_token"),
    );
}

/// Runs `ir-server` with `args` until it exits (start-up errors only).
fn start_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn unusable_authentication_settings_stop_the_start() {
    let dir = TempDir::new().unwrap();
    let root = ir_testkit::Root::new();
    let l = root.layout("app");
    let image = l.image(b"x");
    l.set_index(&[image.tagged("latest")]);
    let certs = dir.path();
    let ca = crate::util::pki::make_ca();
    let (cert, key) = crate::util::pki::make_leaf(&ca, certs, 1, true);
    let htpasswd = dir.path().join("htpasswd");
    let good = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(
        &htpasswd,
        format!("alice:{good}\nbob:$apr1$Vb3jZ1dO$V2WgAqZ3Pn3yb8m1M9zVm.\n"),
    )
    .unwrap();
    let base = |h: &std::path::Path| {
        vec![
            "-r".to_string(),
            root.path().display().to_string(),
            "-t".into(),
            "tls".into(),
            "-c".into(),
            cert.display().to_string(),
            "-k".into(),
            key.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "0".into(),
            "--htpasswd".into(),
            h.display().to_string(),
        ]
    };
    let args = base(&htpasswd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = start_error(&args);
    assert!(
        e.contains(&format!(
            "--htpasswd {}:2: user \"bob\": only bcrypt",
            htpasswd.display()
        )),
        "{e}"
    );
    // A bcrypt cost no check should take (2^18 rounds, seconds each).
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", good.replacen("$04$", "$18$", 1)),
    )
    .unwrap();
    let e = start_error(&args);
    assert!(
        e.contains(&format!(
            "--htpasswd {}:1: user \"alice\": bcrypt cost 18 is above 17",
            htpasswd.display()
        )),
        "{e}"
    );
    // Passwords over plain HTTP are refused.
    let e = start_error(&["--htpasswd", "/h", "-p", "0"]);
    assert!(e.contains("--htpasswd with -t no-tls"), "{e}");
    // A token key that is not P-256.
    std::fs::write(&htpasswd, format!("alice:{good}\n")).unwrap();
    let rsa = dir.path().join("rsa.pem");
    std::fs::write(
        &rsa,
        "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut args = base(&htpasswd);
    args.extend(["--token-key".into(), rsa.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = start_error(&args);
    assert!(e.contains(&format!("--token-key {}", rsa.display())), "{e}");
}

/// `--token-issuer`/`--token-jwks`: tokens of an external issuer, signed
/// by a key of the set, are accepted; others, and Basic credentials, are
/// not; this server issues no token.
#[tokio::test]
async fn an_external_issuers_tokens_are_accepted() {
    let dir = TempDir::new().unwrap();
    let kbs_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let kbs = SigningKey::from_pem(kbs_pem.as_bytes()).unwrap();
    let mut jwk = kbs.public().jwk();
    jwk["alg"] = "ES256".into();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    let auth = Auth::load(&AuthConfig {
        source: TokenSource::External { jwks },
        realm: REALM.into(),
        service: SERVICE.into(),
        issuer: "kbs".into(),
        access_map: None,
    })
    .unwrap();
    let root = ir_testkit::Root::new();
    let l = root.layout("app");
    let image = l.image(LAYER);
    l.set_index(&[image.tagged("latest")]);
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let state = ApiState::new(catalog::shared(Catalog::new(registry)), false)
        .with_auth(Some(Arc::new(auth)));
    let server = TestServer::serve_state(
        state,
        Arc::new(Plain),
        options(ConnLimits::default()),
        "http",
    )
    .await;
    let s = Setup {
        _dir: dir,
        _root: root,
        server,
        key: kbs_pem.clone(),
        manifest: String::new(),
    };
    let now = token::now();
    // The issuer's token, 30 s expired: within its 60 s of clock skew.
    let good = forged_for(&s, &kbs_pem, "kbs", SERVICE, now - 330, 300, "guest");
    let seen = get(&s, MANIFEST, Some(&good)).await;
    assert_eq!(seen.status, 200);
    let invalid = |seen: &Seen| refused(seen, Some("repository:app:pull"), Some("invalid_token"));
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged_for(
                &s,
                &kbs_pem,
                "kbs",
                SERVICE,
                now - 400,
                300,
                "guest",
            )),
        )
        .await,
    );
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged_for(
                &s, &kbs_pem, "other", SERVICE, now, 300, "guest",
            )),
        )
        .await,
    );
    let stranger = rcgen::KeyPair::generate().unwrap().serialize_pem();
    invalid(
        &get(
            &s,
            MANIFEST,
            Some(&forged_for(
                &s, &stranger, "kbs", SERVICE, now, 300, "guest",
            )),
        )
        .await,
    );
    // No passwords here, and no token endpoint.
    refused(
        &get(&s, MANIFEST, Some(&basic("alice", "secret"))).await,
        Some("repository:app:pull"),
        None,
    );
    refused(
        &get(
            &s,
            "/token?service=registry.test",
            Some(&basic("alice", "secret")),
        )
        .await,
        None,
        None,
    );
}

/// An authenticated user's pull is receipted under the user's name, and
/// refused credentials are posted as a refused pull (the first anonymous
/// challenge is not: every client meets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_receipted_and_refused_credentials_are_events() {
    let dir = TempDir::new().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private = dir.path().join("receipts.key");
    std::fs::write(&private, key.serialize_pem()).unwrap();
    let public = dir.path().join("receipts.pub");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let journal = dir.path().join("journal");
    let (events_url, events) = crate::receipts::events_endpoint().await;
    let audit = Arc::new(
        ir_server::audit::Audit::start(&ir_server::audit::AuditConfig {
            receipts: Some(ir_server::audit::ReceiptsConfig {
                dir: journal.clone(),
                key: private,
                checkpoint_every: 100,
                max_file_bytes: 1 << 20,
            }),
            events: Some(events_url.parse().unwrap()),
        })
        .unwrap(),
    );
    let s = setup_audited(300, None, Some(audit.clone())).await;
    let anonymous = get(&s, "/v2/app/manifests/latest", None).await;
    assert_eq!(anonymous.status, 401);
    let wrong = get(
        &s,
        "/v2/app/manifests/latest",
        Some(&basic("alice", "nope")),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = get(
        &s,
        "/v2/app/manifests/latest",
        Some(&basic("alice", "secret")),
    )
    .await;
    assert_eq!(ok.status, 200);
    audit.clone().close().await;

    let key = ir_receipts::CheckpointVerifier::from_pem_file(&public).unwrap();
    let v = ir_receipts::verify(&journal, &key).unwrap();
    assert!(v.is_intact() && v.unsigned == 0, "{:?}", v.findings);
    let alice = ir_receipts::Identity::User {
        name: "alice".into(),
    };
    let got = &v.received[&alice];
    assert_eq!(got.len(), 1, "{:?}", v.received);
    assert_eq!(got[0].digest, s.manifest);
    assert_eq!(got[0].application, "app");
    assert_eq!(v.deliveries, 1, "refused requests receive nothing");

    let seen = events.lock().unwrap().clone();
    let refusals: Vec<_> = seen
        .iter()
        .filter(|e| e["type"] == "dev.ir-server.refusal")
        .collect();
    assert_eq!(refusals.len(), 1, "{seen:#?}");
    assert_eq!(refusals[0]["data"]["stage"], "authentication");
    assert_eq!(refusals[0]["subject"], "app");
    assert!(
        seen.iter()
            .any(|e| e["type"] == "dev.ir-server.delivery"
                && e["data"]["identity"]["name"] == "alice")
    );
}
