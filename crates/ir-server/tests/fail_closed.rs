//! The signature policy fails closed (issue 30): trusted JSON that names a
//! key twice stops the server, a key whose file goes away stops accepting
//! at the next reload, a signature cache is used only when no one else
//! could have written it and never decides what is a signature, and an
//! application kept at its last good version is judged from its unfiltered
//! copy in every policy scope.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ir_oci::RepoName;
use ir_server::snapshot::policy_gate::{Gate, TrustConfig};
use ir_testkit::cosign::{cosign_sign, Key};
use ir_testkit::Desc;
use ir_trust::memo::{ArtifactRecord, LayerRecord, SignedRecord};
use ir_trust::payload::Claim;
use ir_trust::signatures::ArtifactKind;
use ir_trust::Memo;
use serde_json::{json, Value};

use crate::util::policy::{fixture, reloader, serve, write_policy, write_scoped_policy, HOST};
use crate::util::{client, status, TestServer};

fn config(policy: &Path, cache: Option<&Path>) -> TrustConfig {
    let mut c = TrustConfig::new(Some(policy.to_path_buf()), None, HOST);
    c.memo = cache.map(Path::to_path_buf);
    c
}

async fn tags(server: &TestServer, app: &str) -> Value {
    let r = client()
        .get(server.url(&format!("/v2/{app}/tags/list")))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["tags"].clone()
}

/// Runs the server with `args` (plain HTTP on a free port) and expects it
/// to stop by itself: its exit code and standard error.
fn start_fails(root: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args(["--bind", "127.0.0.1", "-p", "0", "-r"])
        .arg(root)
        .args(["--registry-host", HOST])
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (code, err)
}

#[test]
fn trusted_json_naming_a_key_twice_stops_the_server() {
    let key = Key::p256();
    let f = fixture(&key);
    let dir = f.root.outside("trust");

    // policy.json: the permissive value last would accept everything.
    let policy = dir.join("dup-policy.json");
    std::fs::write(
        &policy,
        br#"{"default":[{"type":"reject"}],"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let (code, err) = start_fails(f.root.path(), &["--policy", policy.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains(policy.to_str().unwrap()) && err.contains(r#"duplicate key "default""#),
        "{err}"
    );

    // Notation's trust policy: an override named twice.
    let trust_policy = dir.join("trustpolicy.json");
    std::fs::write(
        &trust_policy,
        serde_json::to_string(&json!({"version": "1.0", "trustPolicies": [{
            "name": "all", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict", "override": {"AUTHENTICITY": "x"}},
            "trustStores": ["ca:x"], "trustedIdentities": ["*"]}]}))
        .unwrap()
        .replace(
            r#"{"AUTHENTICITY":"x"}"#,
            r#"{"authenticity":"enforce","authenticity":"log"}"#,
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&trust_policy).unwrap();
    assert!(text.contains(r#""authenticity":"log""#), "{text}");
    let store = dir.join("store");
    std::fs::create_dir_all(store.join("x509/ca/x")).unwrap();
    let (code, err) = start_fails(
        f.root.path(),
        &[
            "--notation-trust-policy",
            trust_policy.to_str().unwrap(),
            "--notation-trust-store",
            store.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(trust_policy.to_str().unwrap())
            && err.contains(r#"duplicate key "authenticity""#),
        "{err}"
    );

    // The client map.
    let ca = crate::util::pki::make_ca();
    let (cert, key_file) = crate::util::pki::make_leaf(&ca, &dir, 1, true);
    let ca_file = dir.join("clients.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let map = dir.join("clients.json");
    std::fs::write(
        &map,
        br#"{"clients":[{"common_name":"a","common_name":"b","applications":["signed"]}]}"#,
    )
    .unwrap();
    let (code, err) = start_fails(
        f.root.path(),
        &[
            "-t",
            "tls",
            "-c",
            cert.to_str().unwrap(),
            "-k",
            key_file.to_str().unwrap(),
            "--client-ca",
            ca_file.to_str().unwrap(),
            "--client-map",
            map.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(map.to_str().unwrap()) && err.contains(r#"duplicate key "common_name""#),
        "{err}"
    );
}

/// A DER SubjectPublicKeyInfo of an RSA key with a `bits`-bit modulus.
fn rsa_spki(bits: usize) -> Vec<u8> {
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 128 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    let mut modulus = vec![0u8, 0xc5];
    modulus.extend(std::iter::repeat_n(0x3b, bits / 8 - 2));
    modulus.push(0x01);
    let key = der(0x30, &[der(0x02, &modulus), der(0x02, &[1, 0, 1])].concat());
    let alg = der(
        0x30,
        &[
            vec![
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            ],
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    der(
        0x30,
        &[alg, der(0x03, &[&[0u8][..], &key].concat())].concat(),
    )
}

#[test]
fn an_rsa_key_that_can_never_verify_stops_the_server_naming_its_size() {
    use base64::Engine;
    let key = Key::p256();
    let f = fixture(&key);
    let dir = f.root.outside("trust");
    for bits in [1024usize, 16384] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(rsa_spki(bits));
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let key_path = dir.join(format!("rsa{bits}.pub"));
        std::fs::write(&key_path, pem).unwrap();
        let policy = dir.join(format!("rsa{bits}.json"));
        write_policy(&policy, &[&key_path]);
        let (code, err) = start_fails(f.root.path(), &["--policy", policy.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(
            err.contains(key_path.to_str().unwrap())
                && err.contains(&format!("RSA key of {bits} bits")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_key_file_that_no_longer_loads_stops_accepting_at_the_next_reload() {
    let key = Key::p256();
    let f = fixture(&key);
    let gate = Arc::new(Gate::new(config(&f.policy, None)).unwrap());
    let server = serve(&f.root, &gate).await;
    let reloader = reloader(&server, &f.root, &gate);
    assert_eq!(status(&server, "/v2/signed/manifests/1").await, 200);

    // The key is revoked by taking its file away: the policy cannot be
    // read again, and the key is trusted no more.
    let saved = std::fs::read(&f.key_path).unwrap();
    std::fs::remove_file(&f.key_path).unwrap();
    reloader.reload().await.unwrap();
    assert_eq!(status(&server, "/v2/signed/manifests/1").await, 404);
    // Its signature goes too: an artifact is served only with its subject.
    assert_eq!(
        tags(&server, "signed").await,
        json!([]),
        "nothing of the refused image"
    );
    let layer = format!("/v2/signed/blobs/{}", f.signed.layers[0].digest_str());
    assert_eq!(status(&server, &layer).await, 404, "nor its layer");

    // Or by putting another key in its file.
    std::fs::write(&f.key_path, Key::p256().public_pem()).unwrap();
    std::fs::write(&f.policy, b"{ not json").unwrap();
    reloader.reload().await.unwrap();
    assert_eq!(status(&server, "/v2/signed/manifests/1").await, 404);

    // Back: the key accepts again.
    std::fs::write(&f.key_path, saved).unwrap();
    write_policy(&f.policy, &[&f.key_path]);
    reloader.reload().await.unwrap();
    assert_eq!(status(&server, "/v2/signed/manifests/1").await, 200);
    server.stop().await;
}

/// A cache claiming that layer 0 of `artifact` is a signature of `signed`
/// verified with `key`.
fn forged_cache(path: &Path, artifact: &Desc, signed: &Desc, key: &Key) {
    let fingerprint = ir_trust::PublicKey::from_pem(key.public_pem().as_bytes())
        .unwrap()
        .fingerprint()
        .to_owned();
    let memo = Memo::new();
    memo.put(
        ir_oci::Digest::parse(artifact.digest_str()).unwrap(),
        ArtifactRecord {
            kind: ArtifactKind::Cosign,
            layers: Arc::new(vec![LayerRecord::Signed(Arc::new(SignedRecord {
                unusable: None,
                claims: Ok(vec![Claim {
                    digest: signed.digest_str().to_owned(),
                    reference: Some(format!("{HOST}/unsigned:1")),
                }]),
                plausible: true,
                keys: vec![(Arc::from(fingerprint.as_str()), true)],
            }))]),
        },
    );
    assert!(memo.save(path).unwrap());
}

#[tokio::test]
async fn a_signature_cache_owned_by_another_user_is_not_used() {
    let key = Key::p256();
    let f = fixture(&key);
    // The root's writer signs the unsigned image with a key of their own
    // and forges a well-formed cache saying the trusted key verified it.
    let theirs = Key::p256();
    let sig = cosign_sign(
        &f.unsigned_app,
        &f.unsigned.manifest,
        &format!("{HOST}/unsigned:1"),
        &theirs,
    );
    f.unsigned_app
        .set_index(&[f.unsigned.tagged("1"), sig.clone()]);
    let state = f.root.outside("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = state.join("signatures.cache");
    forged_cache(&cache, &sig, &f.unsigned.manifest, &key);
    // Mode 0600, but another user's file.
    if std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).is_err() {
        eprintln!("skipped: not root, cannot give the cache away");
        return;
    }
    let gate = Gate::new(config(&f.policy, Some(&cache))).unwrap();
    let server = serve(&f.root, &gate).await;
    assert_eq!(status(&server, "/v2/unsigned/manifests/1").await, 404);
    let by_digest = format!(
        "/v2/unsigned/manifests/{}",
        f.unsigned.manifest.digest_str()
    );
    assert_eq!(status(&server, &by_digest).await, 404);
    let layer = format!("/v2/unsigned/blobs/{}", f.unsigned.layers[0].digest_str());
    assert_eq!(status(&server, &layer).await, 404);
    // Nor its signature tag: an artifact is served only with its subject.
    assert_eq!(tags(&server, "unsigned").await, json!([]));
    // Everything was verified afresh: the signed image still is served.
    assert_eq!(status(&server, "/v2/signed/manifests/1").await, 200);
    server.stop().await;
}

fn sig_tag(signed: &Desc) -> String {
    format!("{}.sig", signed.digest_str().replace(':', "-"))
}

#[tokio::test]
async fn a_cache_never_makes_an_image_pass_for_a_signature() {
    let key = Key::p256();
    let f = fixture(&key);
    // An image tagged as the cosign signature of the unsigned one, and a
    // (well-formed, properly owned) cache calling it a signature by the
    // trusted key.
    let other = f.unsigned_app.image(b"not a signature");
    let tag = sig_tag(&f.unsigned.manifest);
    f.unsigned_app
        .set_index(&[f.unsigned.tagged("1"), other.tagged(&tag)]);
    let state = f.root.outside("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = state.join("signatures.cache");
    forged_cache(&cache, &other.manifest, &f.unsigned.manifest, &key);
    let gate = Gate::new(config(&f.policy, Some(&cache))).unwrap();
    let server = serve(&f.root, &gate).await;
    assert_eq!(status(&server, "/v2/unsigned/manifests/1").await, 404);
    assert_eq!(
        status(&server, &format!("/v2/unsigned/manifests/{tag}")).await,
        404
    );
    let by_digest = format!("/v2/unsigned/manifests/{}", other.manifest.digest_str());
    assert_eq!(status(&server, &by_digest).await, 404);
    let layer = format!("/v2/unsigned/blobs/{}", other.layers[0].digest_str());
    assert_eq!(status(&server, &layer).await, 404);
    assert_eq!(tags(&server, "unsigned").await, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_cache_inside_the_root_stops_the_server() {
    let key = Key::p256();
    let f = fixture(&key);
    let cache = f.root.path().join("signed").join("cache");
    let (code, err) = start_fails(
        f.root.path(),
        &[
            "--policy",
            f.policy.to_str().unwrap(),
            "--signature-cache",
            cache.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--signature-cache") && err.contains("inside the root"),
        "{err}"
    );
    assert!(!cache.exists());
}

#[tokio::test]
async fn a_kept_application_is_judged_from_its_unfiltered_copy_in_every_scope() {
    let key = Key::p256();
    let f = fixture(&key);
    // The server's own scope requires the key; the test realms' accepts
    // anything.
    write_scoped_policy(&f.policy, &f.key_path);
    let gate = Arc::new(Gate::new(config(&f.policy, None)).unwrap());
    gate.set_scopes(["test.registry".to_owned()]);
    let server = serve(&f.root, &gate).await;
    let unsigned = RepoName::parse("unsigned").unwrap();
    let in_scope = |scope: Option<&str>| {
        server
            .state
            .catalog
            .load()
            .application_in(scope, &unsigned)
            .map(|a| a.tags.len())
    };
    assert_eq!(in_scope(None), Some(0));
    assert_eq!(in_scope(Some("test.registry")), Some(1));

    // A broken update: the application is kept at its last good version,
    // and judged again under each scope from that version as loaded.
    f.unsigned_app.corrupt_grow(&f.unsigned.layers[0]);
    let reloader = reloader(&server, &f.root, &gate);
    let summary = reloader.reload().await.unwrap();
    assert_eq!(summary.kept, 1);
    assert_eq!(in_scope(None), Some(0));
    assert_eq!(
        in_scope(Some("test.registry")),
        Some(1),
        "the realm's view of the kept application"
    );
    assert_eq!(status(&server, "/v2/unsigned/manifests/1").await, 404);
    server.stop().await;
}
