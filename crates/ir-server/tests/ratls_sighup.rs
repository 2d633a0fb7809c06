//! RA-TLS trust inputs through the server binary: what start-up refuses
//! (a trusted JSON file that names a key twice), and what SIGHUP reloads
//! (reference values, Veraison's key) or keeps when the new file is bad.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::pki::{make_ca, make_leaf, Ca};
use ir_attest::{EmulatedRealm, Measurements};
use ir_client::{Client, ClientOptions, TokenSource, Transport};
use ir_testkit::veraison_mock::MockVeraison;
use ir_testkit::Root;
use serde_json::Value;
use tempfile::TempDir;

/// A running `ir-server -t ra-tls`, its output in a file; killed on drop.
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
    pub(crate) port: u16,
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
    /// Starts the server on `app` and `other` with `args`, and waits until
    /// it is ready.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Server {
        let root = Root::new();
        root.good("app");
        root.good("other");
        let ca = make_ca();
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_ir-server"));
        let child = ra_tls_server(server, &ca, dir, &root, args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            log,
            port: 0,
            ca,
            _root: root,
        };
        server.wait_for("ready", 1);
        let text = server.output();
        let marker = "over RA-TLS on 127.0.0.1:";
        let at = text.find(marker).expect("no listening line") + marker.len();
        let digits: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        server.port = digits.parse().unwrap();
        server
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` appears `count` times in the output.
    pub(crate) fn wait_for(&mut self, needle: &str, count: usize) -> String {
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

    fn hangup(&self) {
        self.signal(libc::SIGHUP);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a valid signal on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "no exit after SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client on a new connection, attesting as `realm`.
    pub(crate) fn client(&self, realm: &EmulatedRealm) -> Client {
        Client::with_options(
            Transport::RaTls {
                ca: Some(self.ca.pem.clone().into_bytes()),
                token_source: TokenSource::emulated(realm.clone()),
            },
            ClientOptions {
                http: ir_client::HttpOptions {
                    retries: 0,
                    ..Default::default()
                },
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    /// The HTTP status of `GET path` on `client`, or `None` if the
    /// connection was refused (attestation failed).
    pub(crate) async fn status(&self, client: &Client, path: &str) -> Option<u16> {
        let url = format!("https://localhost:{}{path}", self.port);
        client
            .http()
            .get(url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }
}

/// The realm's reference values, limited to `applications`.
pub(crate) fn refs(realm: &EmulatedRealm, applications: &[&str]) -> String {
    realm.reference_values_json("demo", Some(applications))
}

/// `refs` with `"applications"` written twice under `realm`: first
/// `["app"]`, then `["*"]` (what a last-wins reader would load).
fn refs_with_duplicate_applications(realm: &EmulatedRealm) -> String {
    let mut v: Value = serde_json::from_str(&refs(realm, &["app"])).unwrap();
    v["realm"].as_object_mut().unwrap().remove("applications");
    let text = v.to_string();
    let open = "\"realm\":{";
    let at = text.find(open).unwrap() + open.len();
    format!(
        "{}\"applications\":[\"app\"],\"applications\":[\"*\"],{}",
        &text[..at],
        &text[at..]
    )
}

pub(crate) fn write(path: &Path, text: impl AsRef<[u8]>) -> &Path {
    std::fs::write(path, text).unwrap();
    path
}

/// `cmd` (the server, or what runs it) set to serve `root` over RA-TLS
/// with a fresh certificate, `args` added.
fn ra_tls_server(mut cmd: Command, ca: &Ca, dir: &Path, root: &Root, args: &[&str]) -> Command {
    let (cert, key) = make_leaf(ca, dir, 1, true);
    cmd.args(["-t", "ra-tls", "-p", "0", "--bind", "127.0.0.1", "-r"])
        .arg(root.path())
        .arg("-c")
        .arg(&cert)
        .arg("-k")
        .arg(&key)
        .args(args)
        // These tests are about reloads, not firmware pinning.
        .args(args.contains(&"--cpak").then_some("--cpak-any-firmware"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary until it exits (at most 20 s) and returns whether it
/// failed and its output.
fn start_fails(dir: &Path, args: &[&str]) -> (bool, String) {
    let root = Root::new();
    root.good("app");
    let mut timeout = Command::new("timeout");
    timeout.arg("20").arg(env!("CARGO_BIN_EXE_ir-server"));
    let out = ra_tls_server(timeout, &make_ca(), dir, &root, args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `timeout` exits 124 when it had to stop a server that started.
    (
        !out.status.success() && out.status.code() != Some(124),
        text,
    )
}

#[test]
fn duplicate_keys_in_trusted_json_are_startup_errors_naming_file_and_key() {
    let dir = TempDir::new().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let cpak = dir.path().join("cpak.pub");
    write(&cpak, realm.cpak_public_sec1());
    let good_refs = dir.path().join("good.json");
    write(&good_refs, refs(&realm, &["app"]));
    let cpak_arg = cpak.to_str().unwrap();

    // Reference values.
    let dup = dir.path().join("dup-refs.json");
    write(&dup, refs_with_duplicate_applications(&realm));
    let (failed, text) = start_fails(
        dir.path(),
        &["--cpak", cpak_arg, "-j", dup.to_str().unwrap()],
    );
    assert!(failed, "{text}");
    assert!(text.contains(dup.to_str().unwrap()), "{text}");
    assert!(text.contains("duplicate key \"applications\""), "{text}");

    // A trust-anchor list (--cpak).
    let point = realm.cpak_public_sec1();
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let anchors = format!(
        r#"[{{"instance-id": "{}", "instance-id": "{}", "pkey": {{"kty": "EC", "crv": "P-384", "x": "{}", "y": "{}"}}}}]"#,
        hex::encode(realm.instance_id()),
        "ab".repeat(33),
        b64(&point[1..49]),
        b64(&point[49..97])
    );
    let list = dir.path().join("anchors.json");
    write(&list, anchors);
    let (failed, text) = start_fails(
        dir.path(),
        &[
            "--cpak",
            list.to_str().unwrap(),
            "-j",
            good_refs.to_str().unwrap(),
        ],
    );
    assert!(failed, "{text}");
    assert!(text.contains(list.to_str().unwrap()), "{text}");
    assert!(text.contains("duplicate key \"instance-id\""), "{text}");

    // Veraison's key (-v).
    let signer = ir_attest::ear::test_util::EarSigner::generate();
    let jwk = signer
        .public_jwk()
        .replacen("\"crv\":", "\"crv\":\"P-384\",\"crv\":", 1);
    let key = dir.path().join("veraison.jwk");
    write(&key, jwk);
    let (failed, text) = start_fails(
        dir.path(),
        &[
            "-u",
            "http://127.0.0.1:9",
            "-v",
            key.to_str().unwrap(),
            "-j",
            good_refs.to_str().unwrap(),
        ],
    );
    assert!(failed, "{text}");
    assert!(text.contains(key.to_str().unwrap()), "{text}");
    assert!(text.contains("duplicate key \"crv\""), "{text}");
}

/// A reload (SIGHUP) of reference values that name a key twice is refused
/// with an error naming the file and the key; the realm is served exactly
/// as before, on its open connection and on new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_duplicate_keys_keeps_the_reference_values() {
    let dir = TempDir::new().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let cpak = dir.path().join("cpak.pub");
    write(&cpak, realm.cpak_public_sec1());
    let refs_path = dir.path().join("realm.json");
    write(&refs_path, refs(&realm, &["app"]));
    let mut server = Server::start(
        dir.path(),
        &[
            "--cpak",
            cpak.to_str().unwrap(),
            "-j",
            refs_path.to_str().unwrap(),
        ],
    );
    let open = server.client(&realm);
    assert_eq!(
        server.status(&open, "/v2/app/manifests/latest").await,
        Some(200)
    );
    assert_eq!(
        server.status(&open, "/v2/other/manifests/latest").await,
        Some(404)
    );

    write(&refs_path, refs_with_duplicate_applications(&realm));
    server.hangup();
    let text = server.wait_for("reference values not reloaded", 1);
    let line = text
        .lines()
        .find(|l| l.contains("reference values not reloaded"))
        .unwrap();
    assert!(line.contains(refs_path.to_str().unwrap()), "{line}");
    assert!(line.contains("duplicate key \"applications\""), "{line}");

    let fresh = server.client(&realm);
    for client in [&open, &fresh] {
        assert_eq!(
            server.status(client, "/v2/app/manifests/latest").await,
            Some(200)
        );
        assert_eq!(
            server.status(client, "/v2/other/manifests/latest").await,
            Some(404)
        );
    }
}

/// Veraison's key rotates without a restart: `-v` is a JWK set, the EAR's
/// `kid` picks the key, and SIGHUP reads the set again. A broken set keeps
/// the keys in force, with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_rotated_veraison_key_set() {
    let dir = TempDir::new().unwrap();
    let mock = MockVeraison::start().await;
    mock.knobs().kid = Some("2025".into());
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let refs_path = dir.path().join("realm.json");
    write(&refs_path, refs(&realm, &["app"]));
    let old = mock.signer().public_jwk_with_kid("2025");
    let new = mock.other_signer().public_jwk_with_kid("2026");
    let jwks = dir.path().join("veraison.jwks");
    write(&jwks, serde_json::json!({ "keys": [old] }).to_string());
    let mut server = Server::start(
        dir.path(),
        &[
            "-u",
            &mock.url(),
            "-v",
            jwks.to_str().unwrap(),
            "-j",
            refs_path.to_str().unwrap(),
        ],
    );
    let path = "/v2/app/manifests/latest";
    assert_eq!(server.status(&server.client(&realm), path).await, Some(200));

    // Veraison signs with its new key: not trusted yet.
    {
        let mut k = mock.knobs();
        k.bad_signature = true;
        k.kid = Some("2026".into());
    }
    assert_eq!(server.status(&server.client(&realm), path).await, None);
    // The refusal is logged once the handshake's verification ends.
    server.wait_for("\"2026\", which is not in the -v key set", 1);

    // Both keys listed, then SIGHUP: accepted without a restart.
    write(&jwks, serde_json::json!({ "keys": [old, new] }).to_string());
    server.hangup();
    server.wait_for("platform keys reloaded", 1);
    assert_eq!(server.status(&server.client(&realm), path).await, Some(200));

    // A broken set: the keys in force stay, and the error names the file.
    write(&jwks, b"{\"keys\": [");
    server.hangup();
    let text = server.wait_for("platform keys not reloaded", 1);
    assert!(text.contains(jwks.to_str().unwrap()), "{text}");
    assert_eq!(server.status(&server.client(&realm), path).await, Some(200));
}
