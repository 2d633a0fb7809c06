//! Registry authentication at the boundary: `ir-client` against an
//! in-test gate on 127.0.0.1 that asks for a token (from an in-test
//! token endpoint) or for Basic credentials before it passes requests on
//! to ir-server. Credentials come from `--authfile`, the default auth
//! files and credential helpers; they never show in errors or logs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use ir_client::{AuthOptions, Client, ClientOptions, HttpOptions, ImageLocation, Transport};
use ir_server::transport::plain::Plain;
use tokio::net::TcpListener;

use crate::util::{fixture, run_client, serve, stdout_ok, Fixture, Server};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55word";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A token from the token endpoint, for the request's scope.
    Bearer,
    /// `Authorization: Basic` with USER and PASSWORD.
    Basic,
}

/// What the token endpoint accepts and what it has seen.
#[derive(Default)]
struct Tokens {
    /// Anonymous requests get a token too.
    anonymous: bool,
    /// `expires_in` of the tokens issued (none: the field is left out).
    expires_in: Option<u64>,
    /// The identity token accepted in the refresh-token grant.
    identity_token: Option<String>,
    /// Requests received.
    requests: AtomicUsize,
    /// Whether a request carried credentials.
    with_credentials: AtomicUsize,
    /// Tokens issued, with their scope.
    issued: Mutex<HashSet<(String, String)>>,
}

/// A registry that asks for authentication, in front of ir-server.
struct Gate {
    addr: SocketAddr,
    tokens: Arc<Tokens>,
    /// When set, blob requests that pass the gate are redirected there
    /// (as registries redirect to their storage).
    blob_store: Arc<Mutex<Option<String>>>,
    upstream: Server,
    _fixture: Fixture,
    _token_server: Server,
    _gate: Server,
}

impl Gate {
    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
    fn host(&self) -> String {
        self.addr.to_string()
    }
    fn token_requests(&self) -> usize {
        self.tokens.requests.load(Ordering::SeqCst)
    }
}

type Resp = hyper::Response<Full<Bytes>>;

fn respond(status: u16, body: impl Into<Bytes>) -> Resp {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

/// Serves `handle` on 127.0.0.1.
async fn http_server<F, Fut>(handle: F) -> Server
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => break,
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let fut = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Server::from_parts(addr, stop, task)
}

fn query_param(query: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The token endpoint: `GET /token?service=&scope=` with Basic
/// credentials or none, or `POST /token` with a refresh token.
async fn token_server(tokens: Arc<Tokens>) -> Server {
    http_server(move |req| {
        let tokens = tokens.clone();
        async move {
            tokens.requests.fetch_add(1, Ordering::SeqCst);
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            let is_post = req.method() == hyper::Method::POST;
            let query = req.uri().query().unwrap_or("").to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form = String::from_utf8_lossy(&body).to_string();
            let (allowed, scope) = if is_post {
                let refresh = query_param(&form, "refresh_token");
                tokens.with_credentials.fetch_add(1, Ordering::SeqCst);
                (
                    refresh.is_some()
                        && refresh == tokens.identity_token
                        && query_param(&form, "grant_type").as_deref() == Some("refresh_token"),
                    query_param(&form, "scope"),
                )
            } else {
                let scope = query_param(&query, "scope");
                match auth {
                    Some(a) => {
                        tokens.with_credentials.fetch_add(1, Ordering::SeqCst);
                        (
                            a == format!("Basic {}", b64(&format!("{USER}:{PASSWORD}"))),
                            scope,
                        )
                    }
                    None => (tokens.anonymous, scope),
                }
            };
            if !allowed {
                return respond(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
            }
            let n = tokens.issued.lock().unwrap().len();
            let token = format!("token-{n}");
            let scope = scope.unwrap_or_default();
            tokens.issued.lock().unwrap().insert((token.clone(), scope));
            let mut body = serde_json::json!({ "token": token });
            if let Some(e) = tokens.expires_in {
                body["expires_in"] = e.into();
            }
            respond(200, body.to_string())
        }
    })
    .await
}

/// The scope a request path needs (`repository:NAME:pull`).
fn scope_of(path: &str) -> String {
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    if rest == "_catalog" {
        return "registry:catalog:*".into();
    }
    let name = rest
        .rsplit_once('/')
        .and_then(|(h, _)| h.rsplit_once('/'))
        .map(|(n, _)| n)
        .unwrap_or("");
    format!("repository:{name}:pull")
}

/// A gate in front of a fresh ir-server; Bearer challenges name `realm`
/// (default: the in-test token endpoint).
async fn gate(mode: Mode, tokens: Tokens, realm: Option<String>) -> Gate {
    let f = fixture();
    let upstream = serve(f.root.path(), Arc::new(Plain)).await;
    let tokens = Arc::new(tokens);
    let token_server = token_server(tokens.clone()).await;
    let realm = realm.unwrap_or(format!("http://{}/token", token_server.addr));
    let upstream_base = format!("http://{}", upstream.addr);
    let issued = tokens.clone();
    let http = reqwest::Client::new();
    let blob_store: Arc<Mutex<Option<String>>> = Arc::default();
    let stores = blob_store.clone();
    let gate = http_server(move |req| {
        let (realm, upstream_base, issued, http) = (
            realm.clone(),
            upstream_base.clone(),
            issued.clone(),
            http.clone(),
        );
        let store = stores.lock().unwrap().clone();
        async move {
            let path = req.uri().path().to_string();
            let scope = scope_of(&path);
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            let allowed = match (mode, auth) {
                (Mode::Basic, Some(a)) => {
                    a == format!("Basic {}", b64(&format!("{USER}:{PASSWORD}")))
                }
                (Mode::Bearer, Some(a)) => a.strip_prefix("Bearer ").is_some_and(|t| {
                    issued
                        .issued
                        .lock()
                        .unwrap()
                        .contains(&(t.to_string(), scope.clone()))
                }),
                (_, None) => false,
            };
            if !allowed {
                let mut r = respond(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
                let challenge = match mode {
                    Mode::Basic => r#"Basic realm="gate""#.to_string(),
                    Mode::Bearer => {
                        format!(r#"Bearer realm="{realm}",service="gate",scope="{scope}""#)
                    }
                };
                r.headers_mut()
                    .insert("www-authenticate", challenge.parse().unwrap());
                return r;
            }
            if let Some(store) = store.filter(|_| path.contains("/blobs/")) {
                let mut r = respond(307, "");
                r.headers_mut()
                    .insert("location", format!("{store}{path}").parse().unwrap());
                return r;
            }
            let mut up = http.get(format!(
                "{upstream_base}{}",
                req.uri().path_and_query().unwrap()
            ));
            for h in ["accept", "range"] {
                if let Some(v) = req.headers().get(h) {
                    up = up.header(h, v.to_str().unwrap());
                }
            }
            let resp = up.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap();
            let mut r = respond(status, body);
            for h in [
                "content-type",
                "docker-content-digest",
                "content-range",
                "link",
            ] {
                if let Some(v) = headers.get(h) {
                    r.headers_mut()
                        .insert(h, v.to_str().unwrap().parse().unwrap());
                }
            }
            r
        }
    })
    .await;
    Gate {
        addr: gate.addr,
        tokens,
        blob_store,
        upstream,
        _fixture: f,
        _token_server: token_server,
        _gate: gate,
    }
}

/// An auth file with `auths` for `host`.
fn authfile(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let path = dir.join("auth.json");
    let json = serde_json::json!({"auths": {host: {"auth": b64(&format!("{user}:{password}"))}}});
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

/// Runs ir-client with no auth file but those given: HOME is an empty
/// directory, the XDG and REGISTRY_AUTH_FILE variables are unset.
async fn run(args: &[&str], home: &Path, env: &[(&str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_client(args, &env, Some(home)).await
}

/// `ir-client pull URL --out OUT` with `extra` arguments, as [`run`].
async fn pull(url: &str, out: &Path, extra: &[&str], home: &Path) -> Output {
    let mut args = vec!["pull", url, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args, home, &[]).await
}

fn assert_no_secret(text: &str) {
    for secret in [
        PASSWORD.to_string(),
        b64(&format!("{USER}:{PASSWORD}")),
        "token-".to_string(),
    ] {
        assert!(!text.contains(&secret), "{secret:?} shows in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_manifest_and_pull_with_a_token_from_authfile_credentials() {
    let g = gate(Mode::Bearer, Tokens::default(), None).await;
    let home = tempfile::tempdir().unwrap();
    let file = authfile(home.path(), &g.host(), USER, PASSWORD);
    let file = file.to_str().unwrap();

    let tags = stdout_ok(&run(&["ls", &g.url("app"), "--authfile", file], home.path(), &[]).await);
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["latest", "multi"]);
    let manifest = stdout_ok(
        &run(
            &["manifest", &g.url("app:latest"), "--authfile", file],
            home.path(),
            &[],
        )
        .await,
    );
    assert!(manifest.contains("\"layers\""), "{manifest}");

    // One token for the whole pull: a manifest and three blobs.
    let before = g.token_requests();
    let out = tempfile::tempdir().unwrap();
    let o = pull(
        &g.url("app:latest"),
        out.path(),
        &["--authfile", file, "-vv"],
        home.path(),
    )
    .await;
    stdout_ok(&o);
    assert_eq!(g.token_requests() - before, 1);
    assert!(out.path().join("index.json").exists());
    assert!(g.tokens.with_credentials.load(Ordering::SeqCst) >= 3);
    // -vv logs the HTTP exchange, never the credentials or the token.
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("token request") && log.contains("401"),
        "{log}"
    );
    assert_no_secret(&log);

    // REGISTRY_AUTH_FILE is the default --authfile.
    let out = tempfile::tempdir().unwrap();
    stdout_ok(
        &run(
            &[
                "pull",
                &g.url("app:latest"),
                "--out",
                out.path().to_str().unwrap(),
            ],
            home.path(),
            &[("REGISTRY_AUTH_FILE", file.to_string())],
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_without_showing_it() {
    let g = gate(Mode::Bearer, Tokens::default(), None).await;
    let home = tempfile::tempdir().unwrap();
    let wrong = "Wr0ng-pa55word";
    let file = authfile(home.path(), &g.host(), USER, wrong);
    let out = tempfile::tempdir().unwrap();
    let o = pull(
        &g.url("app:latest"),
        out.path(),
        &["--authfile", file.to_str().unwrap(), "-v"],
        home.path(),
    )
    .await;
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the credentials for"), "{err}");
    for secret in [wrong.to_string(), b64(&format!("{USER}:{wrong}"))] {
        assert!(!err.contains(&secret), "{err}");
    }
    assert!(!out.path().join("index.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_tokens_from_default_places_and_refusals() {
    let anonymous = Tokens {
        anonymous: true,
        ..Tokens::default()
    };
    let g = gate(Mode::Bearer, anonymous, None).await;
    let home = tempfile::tempdir().unwrap();
    let tags = stdout_ok(&run(&["ls", &g.url("app")], home.path(), &[]).await);
    assert_eq!(tags.lines().count(), 2);
    assert_eq!(g.tokens.with_credentials.load(Ordering::SeqCst), 0);

    // Without anonymous access and no credentials anywhere: refused.
    let g = gate(Mode::Bearer, Tokens::default(), None).await;
    let o = run(&["ls", &g.url("app")], home.path(), &[]).await;
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused anonymous access"), "{err}");

    // ~/.docker/config.json is read when nothing else is there; an auth
    // file under $XDG_RUNTIME_DIR comes first.
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    let docker = authfile(&home.path().join(".docker"), &g.host(), USER, PASSWORD);
    std::fs::rename(&docker, home.path().join(".docker/config.json")).unwrap();
    stdout_ok(&run(&["ls", &g.url("app")], home.path(), &[]).await);
    let runtime = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runtime.path().join("containers")).unwrap();
    authfile(&runtime.path().join("containers"), &g.host(), USER, "wrong");
    let o = run(
        &["ls", &g.url("app")],
        home.path(),
        &[("XDG_RUNTIME_DIR", runtime.path().to_str().unwrap().into())],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(3),
        "the runtime file's wrong password wins"
    );

    // A missing --authfile is an error, before any request.
    let o = run(
        &["ls", &g.url("app"), "--authfile", "/nonexistent/auth.json"],
        home.path(),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/auth.json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_where_the_registry_asks_for_it() {
    let g = gate(Mode::Basic, Tokens::default(), None).await;
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = pull(&g.url("app:latest"), out.path(), &[], home.path()).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("HTTP 401"));

    let file = authfile(home.path(), &g.host(), USER, PASSWORD);
    let o = pull(
        &g.url("app:latest"),
        out.path(),
        &["--authfile", file.to_str().unwrap(), "-vv"],
        home.path(),
    )
    .await;
    stdout_ok(&o);
    assert_no_secret(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(g.token_requests(), 0);

    let wrong = authfile(home.path(), &g.host(), USER, "not-the-password");
    let o = run(
        &["ls", &g.url("app"), "--authfile", wrong.to_str().unwrap()],
        home.path(),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        !err.contains("not-the-password")
            && !err.contains(&b64(&format!("{USER}:not-the-password")))
    );
}

fn helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_helpers_and_identity_tokens() {
    let tokens = Tokens {
        identity_token: Some("refresh-me".into()),
        ..Tokens::default()
    };
    let g = gate(Mode::Bearer, tokens, None).await;
    let home = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let host = g.host();
    // The host comes on standard input; answers only for it.
    helper(
        bin.path(),
        "irtest",
        &format!(
            r#"[ "$1" = get ] || exit 2
read -r host || [ -n "$host" ]
[ "$host" = "{host}" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
echo '{{"ServerURL":"{host}","Username":"{USER}","Secret":"{PASSWORD}"}}'"#
        ),
    );
    helper(
        bin.path(),
        "irtoken",
        &format!(r#"echo '{{"ServerURL":"{host}","Username":"<token>","Secret":"refresh-me"}}'"#),
    );
    helper(bin.path(), "irbroken", "echo 's3cret-in-output'; exit 3");
    helper(bin.path(), "irflood", "head -c 200000 /dev/zero");
    helper(bin.path(), "irslow", "exec sleep 60");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let file = home.path().join("auth.json");
    let use_helper = |json: serde_json::Value| {
        std::fs::write(&file, json.to_string()).unwrap();
    };
    let url = g.url("app");
    let file_arg = file.to_str().unwrap().to_string();
    macro_rules! ls {
        () => {
            run(
                &["ls", &url, "--authfile", &file_arg],
                home.path(),
                &[("PATH", path.clone())],
            )
        };
    }

    use_helper(serde_json::json!({"credHelpers": {host.clone(): "irtest"}}));
    stdout_ok(&ls!().await);
    use_helper(serde_json::json!({"credsStore": "irtest"}));
    stdout_ok(&ls!().await);
    // An identity token goes to the realm as a refresh token.
    use_helper(serde_json::json!({"credHelpers": {host.clone(): "irtoken"}}));
    stdout_ok(&ls!().await);
    use_helper(serde_json::json!({"auths": {host.clone(): {"identitytoken": "refresh-me"}}}));
    stdout_ok(&ls!().await);

    for (name, want) in [
        ("irbroken", "docker-credential-irbroken"),
        ("irflood", "answered more than"),
        ("irmissing", "cannot run docker-credential-irmissing"),
        ("irslow", "no answer within 10 s"),
    ] {
        use_helper(serde_json::json!({"credHelpers": {host.clone(): name}}));
        let o = ls!().await;
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("s3cret-in-output"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_go_to_a_plain_http_realm_elsewhere() {
    // A loopback registry whose realm is plain http on another host.
    let g = gate(
        Mode::Bearer,
        Tokens::default(),
        Some("http://token.example:80/token".into()),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let file = authfile(home.path(), &g.host(), USER, PASSWORD);
    let o = run(
        &["ls", &g.url("app"), "--authfile", file.to_str().unwrap()],
        home.path(),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plain http is refused"), "{err}");
    assert_eq!(g.token_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_reused_until_they_expire() {
    let client_for = |file: PathBuf| {
        Client::with_options(
            Transport::Plain,
            ClientOptions {
                http: HttpOptions {
                    auth: AuthOptions {
                        authfile: Some(file),
                        default_files: Vec::new(),
                    },
                    ..HttpOptions::default()
                },
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };
    // expires_in left out: 60 s, so one token for every request.
    let g = gate(Mode::Bearer, Tokens::default(), None).await;
    let home = tempfile::tempdir().unwrap();
    let client = client_for(authfile(home.path(), &g.host(), USER, PASSWORD));
    let app = ImageLocation::parse(&g.url("app:latest")).unwrap();
    for _ in 0..3 {
        client.tags(&app).await.unwrap();
        client.manifest(&app).await.unwrap();
    }
    assert_eq!(g.token_requests(), 1);
    // Another repository needs its own token.
    let tools = ImageLocation::parse(&g.url("team/tools:1.0")).unwrap();
    client.manifest(&tools).await.unwrap();
    assert_eq!(g.token_requests(), 2);

    // A token that lasts 6 s is not used in its last 5.
    let short = Tokens {
        expires_in: Some(6),
        ..Tokens::default()
    };
    let g = gate(Mode::Bearer, short, None).await;
    let client = client_for(authfile(home.path(), &g.host(), USER, PASSWORD));
    let app = ImageLocation::parse(&g.url("app:latest")).unwrap();
    client.tags(&app).await.unwrap();
    client.tags(&app).await.unwrap();
    assert_eq!(g.token_requests(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    client.tags(&app).await.unwrap();
    assert_eq!(g.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    for mode in [Mode::Basic, Mode::Bearer] {
        let g = gate(mode, Tokens::default(), None).await;
        // The registry's storage: another origin (another port), which
        // records the Authorization headers it receives.
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let (record, upstream) = (seen.clone(), format!("http://{}", g.upstream.addr));
        let store = http_server(move |req| {
            let (record, upstream) = (record.clone(), upstream.clone());
            async move {
                record.lock().unwrap().push(
                    req.headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                let resp = reqwest::get(format!("{upstream}{}", req.uri().path()))
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                respond(status, resp.bytes().await.unwrap())
            }
        })
        .await;
        *g.blob_store.lock().unwrap() = Some(format!("http://{}", store.addr));
        let home = tempfile::tempdir().unwrap();
        let file = authfile(home.path(), &g.host(), USER, PASSWORD);
        let out = tempfile::tempdir().unwrap();
        stdout_ok(
            &pull(
                &g.url("app:latest"),
                out.path(),
                &["--authfile", file.to_str().unwrap()],
                home.path(),
            )
            .await,
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "config and two layers from the store");
        assert!(seen.iter().all(Option::is_none), "{seen:?}");
    }
}
