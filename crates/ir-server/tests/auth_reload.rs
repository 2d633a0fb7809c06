//! SIGHUP rereads `--htpasswd`, `--access-map`, `--token-key` and
//! `--token-jwks`, through the server binary over TLS: what a client sees
//! after each change, and that a file that cannot be used (or is gone)
//! leaves the previous one in force, says so in the log, `/status` and the
//! metrics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use ir_server::auth::jws::SigningKey;
use ir_server::auth::token::{self, Issuer, ResourceActions};
use ir_testkit::Root;
use serde_json::Value;
use tempfile::TempDir;

use crate::util::pki::{make_ca, make_client, make_leaf, Ca};

const SERVICE: &str = "registry.test";
const MANIFEST: &str = "/v2/app/manifests/latest";
const OTHER: &str = "/v2/other/manifests/latest";

/// A running `ir-server -t tls`, its output in a file; killed on drop.
struct Server {
    child: Child,
    log: PathBuf,
    port: u16,
    metrics: u16,
    ca: Ca,
    _root: Root,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Serves `app` and `other` over TLS with `args`, once ready.
    fn start(dir: &Path, args: &[&str]) -> Server {
        let auth = args.contains(&"--htpasswd") || args.contains(&"--token-jwks");
        let service = ["--token-service", SERVICE];
        let root = Root::new();
        root.good("app");
        root.good("other");
        let ca = make_ca();
        let (cert, key) = make_leaf(&ca, dir, 1, true);
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ir-server"))
            .args(["-t", "tls", "-p", "0", "--bind", "127.0.0.1"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("-r")
            .arg(root.path())
            .arg("-c")
            .arg(&cert)
            .arg("-k")
            .arg(&key)
            .args(args)
            .args(if auth { &service[..] } else { &[] })
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            log,
            port: 0,
            metrics: 0,
            ca,
            _root: root,
        };
        let text = server.wait_for(": ready\n", 1);
        server.port = port_after(&text, "over TLS on 127.0.0.1:");
        server.metrics = port_after(&text, "/readyz on http://127.0.0.1:");
        server
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` appears `count` times in the output.
    fn wait_for(&mut self, needle: &str, count: usize) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.output();
            if text.matches(needle).count() >= count {
                return text;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited ({status}) waiting for {needle:?}:\n{text}");
            }
            assert!(Instant::now() < until, "no {needle:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGHUP and waits until the `n`th reread of `input` is logged;
    /// that line.
    fn hangup(&mut self, input: &str, n: usize) -> String {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a valid signal on our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        let (ok, failed) = (
            format!("reloaded {input} "),
            format!("the previous {input} stays in force"),
        );
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.output();
            let reread: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(&ok) || l.contains(&failed))
                .collect();
            if let Some(line) = reread.get(n - 1) {
                return line.to_string();
            }
            assert!(
                Instant::now() < until,
                "no reread {n} of {input} in:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> reqwest::Client {
        self.client_with(None)
    }

    /// A client trusting the server's CA, presenting `identity` if given.
    fn client_with(&self, identity: Option<&str>) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.ca.pem.as_bytes()).unwrap();
        let mut b = reqwest::Client::builder().tls_certs_only([root]);
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Status and error code of `GET path` with `authorization`.
    async fn get(&self, path: &str, authorization: Option<&str>) -> (u16, String) {
        get_with(&self.client(), &self.url(path), authorization).await
    }

    /// The body of `GET path` with `authorization`, as JSON.
    async fn json(&self, path: &str, authorization: &str) -> Value {
        let r = self
            .client()
            .get(self.url(path))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// A token from this server's `/token` for `repository:app:pull`.
    async fn token(&self, authorization: &str) -> String {
        let r = self
            .client()
            .get(self.url("/token"))
            .query(&[("service", SERVICE), ("scope", "repository:app:pull")])
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        format!("Bearer {}", v["token"].as_str().unwrap())
    }

    /// The metrics listener's `/status` and `/metrics`.
    async fn observed(&self) -> (Value, String) {
        let base = format!("http://127.0.0.1:{}", self.metrics);
        let status = reqwest::get(format!("{base}/status")).await.unwrap();
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
        (status.json().await.unwrap(), metrics.text().await.unwrap())
    }
}

async fn get_with(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut req = client.get(url);
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
    let body: Value = r.json().await.unwrap_or_default();
    let code = body["errors"][0]["code"].as_str().unwrap_or_default();
    let error = challenge
        .split(",error=")
        .nth(1)
        .map(|e| format!(" {e}"))
        .unwrap_or_default();
    (status, format!("{code}{error}"))
}

fn port_after(text: &str, marker: &str) -> u16 {
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}")) + marker.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

fn entry(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

fn write(path: &Path, text: impl AsRef<[u8]>) -> &Path {
    // Written aside and renamed, as an operator's tools do: never half a file.
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
    path
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `/status` record of `input` and the metric of its `outcome`.
async fn recorded(server: &Server, input: &str, outcome: &str) -> (Value, String) {
    let (status, metrics) = server.observed().await;
    let record = status["input_reloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["input"] == input)
        .cloned()
        .unwrap_or_else(|| panic!("no {input} in {status}"));
    assert_eq!(record["outcome"], outcome, "{record}");
    let series =
        format!("ir_server_input_reloads_total{{input=\"{input}\",outcome=\"{outcome}\"}}");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
        .to_owned();
    (record, line)
}

/// Adding a user, removing one (whose password was just accepted and is
/// remembered), then a broken file and a missing one, each with SIGHUP.
#[tokio::test]
async fn sighup_rereads_the_users() {
    let dir = TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write(&htpasswd, entry("alice", "secret"));
    let mut s = Server::start(dir.path(), &["--htpasswd", arg(&htpasswd)]);
    let (alice, bob) = (basic("alice", "secret"), basic("bob", "hunter2"));
    assert_eq!(s.get(MANIFEST, Some(&alice)).await.0, 200);
    let alice_token = s.token(&alice).await;
    assert_eq!(s.get(MANIFEST, Some(&alice_token)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&bob)).await.0, 401);

    // bob added, alice removed.
    write(&htpasswd, entry("bob", "hunter2"));
    let line = s.hangup("--htpasswd", 1);
    assert!(line.contains("1 user(s): +1 added, -1 removed"), "{line}");
    assert_eq!(s.get(MANIFEST, Some(&bob)).await.0, 200, "the new user");
    assert_eq!(
        s.get(MANIFEST, Some(&alice)).await,
        (401, "UNAUTHORIZED".into()),
        "a removed user's remembered password stops working at once"
    );
    assert_eq!(
        s.get(MANIFEST, Some(&alice_token)).await,
        (401, "UNAUTHORIZED \"invalid_token\"".into()),
        "a removed user's token too"
    );
    let (status, _) = s
        .client()
        .get(s.url("/token"))
        .header("authorization", &alice)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401, "no token for a removed user");
    let (record, line) = recorded(&s, "--htpasswd", "ok").await;
    assert_eq!(record["error"], Value::Null);
    assert!(line.ends_with(" 1"), "{line}");

    // A non-bcrypt line: the whole file is refused, bob's stays in force
    // (alice, back in the broken file, is not let in).
    write(
        &htpasswd,
        format!(
            "{}{}carol:$apr1$abc$def\n",
            entry("alice", "secret"),
            entry("bob", "hunter2")
        ),
    );
    let line = s.hangup("--htpasswd", 2);
    let rule = format!(
        "--htpasswd {}:3: user \"carol\": only bcrypt",
        htpasswd.display()
    );
    assert!(line.contains(&rule), "{line}");
    assert!(
        line.contains("the previous --htpasswd stays in force"),
        "{line}"
    );
    assert!(line.contains("ERROR"), "{line}");
    assert_eq!(s.get(MANIFEST, Some(&bob)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&alice)).await.0, 401);
    let (record, line) = recorded(&s, "--htpasswd", "failed").await;
    assert!(
        record["error"].as_str().unwrap().contains(&rule),
        "{record}"
    );
    assert!(line.ends_with(" 1"), "{line}");

    // The file gone: the same.
    std::fs::remove_file(&htpasswd).unwrap();
    let line = s.hangup("--htpasswd", 3);
    assert!(
        line.contains(&format!("--htpasswd {}:", htpasswd.display())),
        "{line}"
    );
    assert!(line.contains("stays in force"), "{line}");
    assert_eq!(s.get(MANIFEST, Some(&bob)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&alice)).await.0, 401);
}

/// An application taken out of a user's `--access-map` entry answers 404
/// and leaves the catalog; a broken map changes nothing.
#[tokio::test]
async fn sighup_rereads_the_access_map_for_users() {
    let dir = TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write(&htpasswd, entry("alice", "secret"));
    let map = dir.path().join("access.json");
    let user_map =
        |apps: &str| format!(r#"{{"clients": [{{"user": "alice", "applications": [{apps}]}}]}}"#);
    write(&map, user_map(r#""app", "other""#));
    let mut s = Server::start(
        dir.path(),
        &["--htpasswd", arg(&htpasswd), "--access-map", arg(&map)],
    );
    let alice = basic("alice", "secret");
    let token = s.token(&alice).await;
    assert_eq!(s.get(OTHER, Some(&alice)).await.0, 200);
    let catalog = s.json("/v2/_catalog", &alice).await;
    assert_eq!(catalog["repositories"], serde_json::json!(["app", "other"]));

    write(&map, user_map(r#""app""#));
    let line = s.hangup("--access-map", 1);
    assert!(line.contains("1 entry"), "{line}");
    assert_eq!(
        s.get(OTHER, Some(&alice)).await,
        (404, "NAME_UNKNOWN".into())
    );
    assert_eq!(s.get(MANIFEST, Some(&alice)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&token)).await.0, 200);
    let catalog = s.json("/v2/_catalog", &alice).await;
    assert_eq!(catalog["repositories"], serde_json::json!(["app"]));
    recorded(&s, "--access-map", "ok").await;

    // A key twice (strict JSON): refused whole.
    write(
        &map,
        r#"{"clients": [{"user": "alice", "applications": ["app"], "applications": ["*"]}]}"#,
    );
    let line = s.hangup("--access-map", 2);
    assert!(
        line.contains(&format!("--access-map {}", map.display())),
        "{line}"
    );
    assert!(line.contains("applications"), "{line}");
    assert_eq!(s.get(OTHER, Some(&alice)).await.0, 404);
    recorded(&s, "--access-map", "failed").await;
}

/// With `--client-ca`, the map applies to certificates from the next
/// request on, on a connection opened before the reload too.
#[tokio::test]
async fn sighup_rereads_the_access_map_for_certificates() {
    let dir = TempDir::new().unwrap();
    let client_ca = make_ca();
    let ca_file = dir.path().join("clients.pem");
    write(&ca_file, &client_ca.pem);
    let map = dir.path().join("access.json");
    let node_map = |apps: &str| {
        format!(r#"{{"clients": [{{"common_name": "node", "applications": [{apps}]}}]}}"#)
    };
    write(&map, node_map(r#""app", "other""#));
    let mut s = Server::start(
        dir.path(),
        &["--client-ca", arg(&ca_file), "--access-map", arg(&map)],
    );
    let node = s.client_with(Some(&make_client(&client_ca, "node")));
    assert_eq!(get_with(&node, &s.url(OTHER), None).await.0, 200);
    write(&map, node_map(r#""app""#));
    s.hangup("--access-map", 1);
    assert_eq!(
        get_with(&node, &s.url(OTHER), None).await,
        (404, "NAME_UNKNOWN".into())
    );
    assert_eq!(get_with(&node, &s.url(MANIFEST), None).await.0, 200);
    let fresh = s.client_with(Some(&make_client(&client_ca, "node")));
    assert_eq!(get_with(&fresh, &s.url(OTHER), None).await.0, 404);
}

/// A new `--token-key`: the previous key's tokens are refused, `/token`
/// signs with the new one; a SIGHUP that changes no key keeps tokens.
#[tokio::test]
async fn sighup_rotates_the_token_key() {
    let dir = TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write(&htpasswd, entry("alice", "secret"));
    let key = dir.path().join("token.key");
    write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem());
    let mut s = Server::start(
        dir.path(),
        &["--htpasswd", arg(&htpasswd), "--token-key", arg(&key)],
    );
    let alice = basic("alice", "secret");
    let old = s.token(&alice).await;
    assert_eq!(s.get(MANIFEST, Some(&old)).await.0, 200);
    let new_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    write(&key, &new_pem);
    let line = s.hangup("--token-key", 1);
    assert!(line.contains("a new key"), "{line}");
    assert_eq!(
        s.get(MANIFEST, Some(&old)).await,
        (401, "UNAUTHORIZED \"invalid_token\"".into())
    );
    let new = s.token(&alice).await;
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 200);
    let kid_of = |t: &str| {
        let header = t.trim_start_matches("Bearer ").split('.').next().unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"].clone()
    };
    let new_kid = SigningKey::from_pem(new_pem.as_bytes())
        .unwrap()
        .kid()
        .to_owned();
    assert_eq!(kid_of(&new), new_kid);
    let line = s.hangup("--token-key", 2);
    assert!(line.contains("unchanged"), "{line}");
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 200);
    // A broken key keeps the one in force.
    write(&key, "not a key");
    let line = s.hangup("--token-key", 3);
    assert!(
        line.contains(&format!("--token-key {}", key.display())),
        "{line}"
    );
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 200);
    recorded(&s, "--token-key", "failed").await;
}

fn jwks(key: &SigningKey) -> String {
    serde_json::json!({ "keys": [key.public().jwk()] }).to_string()
}

fn external_token(pem: &str) -> String {
    let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
    let issuer = Issuer::new(key, "kbs".into(), SERVICE.into(), Duration::from_secs(300));
    let access = vec![ResourceActions {
        kind: "repository".into(),
        name: "app".into(),
        actions: vec!["pull".into()],
    }];
    let t = issuer.issue_at("guest", access, token::now()).unwrap();
    format!("Bearer {t}")
}

/// The external issuer rotates its keys: a token of the new key is
/// accepted, one of the old key refused; a broken set keeps the new one.
#[tokio::test]
async fn sighup_rereads_the_external_key_set() {
    let dir = TempDir::new().unwrap();
    let old_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let new_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let key = |pem: &str| SigningKey::from_pem(pem.as_bytes()).unwrap();
    let set = dir.path().join("jwks.json");
    write(&set, jwks(&key(&old_pem)));
    let mut s = Server::start(
        dir.path(),
        &[
            "--token-jwks",
            arg(&set),
            "--token-issuer",
            "kbs",
            "--token-realm",
            "https://kbs.test/token",
        ],
    );
    let (old, new) = (external_token(&old_pem), external_token(&new_pem));
    assert_eq!(s.get(MANIFEST, Some(&old)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 401);
    write(&set, jwks(&key(&new_pem)));
    let line = s.hangup("--token-jwks", 1);
    assert!(line.contains("1 key(s) in force"), "{line}");
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 200);
    assert_eq!(
        s.get(MANIFEST, Some(&old)).await,
        (401, "UNAUTHORIZED \"invalid_token\"".into()),
        "the old key's token, remembered as verified, is refused at once"
    );
    // A private key in the set: refused whole.
    let mut private = key(&old_pem).public().jwk();
    private["d"] = "AAAA".into();
    write(
        &set,
        serde_json::json!({ "keys": [key(&new_pem).public().jwk(), private] }).to_string(),
    );
    let line = s.hangup("--token-jwks", 2);
    assert!(
        line.contains(&format!("--token-jwks {}: key 1", set.display())),
        "{line}"
    );
    assert_eq!(s.get(MANIFEST, Some(&new)).await.0, 200);
    assert_eq!(s.get(MANIFEST, Some(&old)).await.0, 401);
    recorded(&s, "--token-jwks", "failed").await;
}
