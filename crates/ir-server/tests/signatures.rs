//! The signature policy in the server: what a refused image looks like to a
//! client, reload and key rotation, per-realm scopes, and `--check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ir_oci::{LoadOptions, RepoName};
use ir_server::catalog::Catalog;
use ir_server::reload::Reloader;
use ir_server::trust::{Gate, TrustConfig};
use ir_testkit::cosign::{cosign_sign, Key};
use ir_testkit::{Desc, Root};
use serde_json::{json, Value};

use crate::util::{client, error_code, TestServer};

const HOST: &str = "registry.test";

fn write_policy(path: &Path, keys: &[&Path]) {
    let req = json!({"type": "sigstoreSigned", "keyPaths": keys});
    let policy = json!({"default": [{"type": "reject"}], "transports": {"docker": {HOST: [req]}}});
    std::fs::write(path, serde_json::to_vec(&policy).unwrap()).unwrap();
}

/// A root with `signed:1` (signed by `key`) and `unsigned:1`, each with a
/// layer of its own.
struct Fixture {
    root: Root,
    signed: ir_testkit::Image,
    sig: Desc,
    unsigned: ir_testkit::Image,
    policy: PathBuf,
    key_path: PathBuf,
}

fn fixture(key: &Key) -> Fixture {
    let root = Root::new();
    let signed_app = root.layout("signed");
    let signed = signed_app.image(b"signed layer");
    let sig = cosign_sign(
        &signed_app,
        &signed.manifest,
        &format!("{HOST}/signed:1"),
        key,
    );
    signed_app.set_index(&[signed.tagged("1"), sig.clone()]);
    let unsigned_app = root.layout("unsigned");
    let unsigned = unsigned_app.image(b"unsigned layer");
    unsigned_app.set_index(&[unsigned.tagged("1")]);
    let dir = root.outside("trust");
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = key.write_public(&dir, "cosign.pub");
    let policy = dir.join("policy.json");
    write_policy(&policy, &[&key_path]);
    Fixture {
        root,
        signed,
        sig,
        unsigned,
        policy,
        key_path,
    }
}

fn gate(policy: &Path) -> Arc<Gate> {
    Arc::new(Gate::new(TrustConfig::new(Some(policy.to_path_buf()), None, HOST)).unwrap())
}

async fn serve(root: &Root, gate: &Gate) -> TestServer {
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let judged = gate.apply(registry);
    let catalog =
        Catalog::new(judged.registry).with_views(Some((gate.host().to_owned(), judged.views)));
    TestServer::serve_catalog(
        catalog,
        Arc::new(ir_server::transport::plain::Plain),
        crate::util::options(Default::default()),
        "http",
    )
    .await
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    client().get(server.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn refused_images_are_not_served_and_signatures_are() {
    let key = Key::p256();
    let f = fixture(&key);
    let server = serve(&f.root, &gate(&f.policy)).await;
    assert_eq!(get(&server, "/v2/signed/manifests/1").await.status(), 200);
    let r = get(&server, "/v2/unsigned/manifests/1").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let by_digest = format!(
        "/v2/unsigned/manifests/{}",
        f.unsigned.manifest.digest_str()
    );
    assert_eq!(get(&server, &by_digest).await.status(), 404);
    let blob = format!("/v2/unsigned/blobs/{}", f.unsigned.layers[0].digest_str());
    let r = get(&server, &blob).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let tags: Value = get(&server, "/v2/unsigned/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!([]));
    // The signature itself is served, so clients can verify again.
    let sig_tag = format!("{}.sig", f.signed.manifest.digest_str().replace(':', "-"));
    let r = get(&server, &format!("/v2/signed/manifests/{sig_tag}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        f.sig.digest_str()
    );
    server.stop().await;
}

#[tokio::test]
async fn reload_reads_the_policy_again_and_a_broken_one_keeps_the_last() {
    let key = Key::p256();
    let f = fixture(&key);
    let gate = gate(&f.policy);
    let server = serve(&f.root, &gate).await;
    let reloader = Reloader::new(
        server.state.catalog.clone(),
        f.root.path().to_path_buf(),
        LoadOptions::default(),
    )
    .with_trust(Some(gate.clone()));
    assert_eq!(get(&server, "/v2/signed/manifests/1").await.status(), 200);

    // A policy that does not parse: the previous one stays in force.
    std::fs::write(&f.policy, b"{ not json").unwrap();
    reloader.reload().await.unwrap();
    assert_eq!(get(&server, "/v2/signed/manifests/1").await.status(), 200);
    assert_eq!(get(&server, "/v2/unsigned/manifests/1").await.status(), 404);

    // The key is replaced: the images only it signed are withdrawn.
    let other = Key::p256().write_public(f.key_path.parent().unwrap(), "other.pub");
    write_policy(&f.policy, &[&other]);
    reloader.reload().await.unwrap();
    assert_eq!(get(&server, "/v2/signed/manifests/1").await.status(), 404);
    let layer = format!("/v2/signed/blobs/{}", f.signed.layers[0].digest_str());
    assert_eq!(get(&server, &layer).await.status(), 404);

    // And back.
    write_policy(&f.policy, &[&other, &f.key_path]);
    reloader.reload().await.unwrap();
    assert_eq!(get(&server, "/v2/signed/manifests/1").await.status(), 200);
    assert_eq!(get(&server, &layer).await.status(), 200);
    server.stop().await;
}

#[test]
fn each_policy_scope_has_its_own_view() {
    let key = Key::p256();
    let f = fixture(&key);
    // Production realms: signed only (HOST); test realms: anything.
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            HOST: [{"type": "sigstoreSigned", "keyPath": f.key_path}],
            "test.registry": [{"type": "insecureAcceptAnything"}],
        }},
    });
    std::fs::write(&f.policy, serde_json::to_vec(&policy).unwrap()).unwrap();
    let gate = gate(&f.policy);
    assert!(gate.set_scopes(["test.registry".to_owned(), HOST.to_owned()]));
    assert!(!gate.set_scopes(["test.registry".to_owned()]));
    let registry = ir_oci::load(f.root.path(), &LoadOptions::default()).unwrap();
    let judged = gate.apply(registry);
    let catalog = Catalog::new(judged.registry).with_views(Some((HOST.to_owned(), judged.views)));
    let unsigned = RepoName::parse("unsigned").unwrap();
    let tags = |scope: Option<&str>| {
        catalog
            .application_in(scope, &unsigned)
            .map(|a| a.tags.len())
    };
    assert_eq!(tags(None), Some(0), "the server's own scope");
    assert_eq!(tags(Some(HOST)), Some(0));
    assert_eq!(
        tags(Some("test.registry")),
        Some(1),
        "the test realms' scope"
    );
    assert_eq!(tags(Some("unknown.registry")), None, "no view yet: nothing");
}

fn check(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .arg("--check")
        .arg("-r")
        .arg(root)
        .args(["--registry-host", HOST])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_reports_each_verdict_and_signer() {
    let key = Key::p256();
    let f = fixture(&key);
    let policy = f.policy.to_str().unwrap();
    let (code, text, _) = check(f.root.path(), &["--policy", policy]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("accepted  signed:1 signed by sha256:"),
        "{text}"
    );
    assert!(
        text.contains("refused   unsigned:1: transports.docker[\"registry.test\"][0] sigstoreSigned: no_signature"),
        "{text}"
    );
    let (code, json_text, _) = check(f.root.path(), &["--policy", policy, "--format", "json"]);
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(doc["ok"], false);
    let tag = |app: &str, tag: &str| -> Value {
        doc["applications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == app)
            .and_then(|a| {
                a["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["tag"] == tag)
                    .cloned()
            })
            .unwrap()
    };
    assert_eq!(tag("signed", "1")["signature"]["verdict"], "accepted");
    assert!(tag("signed", "1")["signature"]["signers"][0]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(tag("unsigned", "1")["signature"]["verdict"], "refused");
    assert_eq!(tag("unsigned", "1")["signature"]["reason"], "no_signature");
    assert_eq!(
        tag("unsigned", "1")["digest"],
        f.unsigned.manifest.digest_str()
    );

    // Everything signed: exit 0.
    std::fs::remove_dir_all(f.root.path().join("unsigned")).unwrap();
    let (code, text, _) = check(f.root.path(), &["--policy", policy]);
    assert_eq!(code, 0, "{text}");

    // An unsupported requirement is an error naming it (exit 2).
    std::fs::write(
        &f.policy,
        br#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}"#,
    )
    .unwrap();
    let (code, _, err) = check(f.root.path(), &["--policy", policy]);
    assert_eq!(code, 2);
    assert!(
        err.contains("signedBy") && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn a_signature_cache_is_remembered_across_runs_and_never_trusted_blindly() {
    use std::os::unix::fs::PermissionsExt;
    let key = Key::p256();
    let f = fixture(&key);
    let policy = f.policy.to_str().unwrap();
    let dir = f.root.outside("state");
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("signatures.json");
    let args = [
        "--policy",
        policy,
        "--signature-cache",
        cache.to_str().unwrap(),
    ];

    // The verdict lines (the summary line says how long the load took).
    let verdicts = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("accepted") || l.starts_with("refused"))
            .map(str::to_owned)
            .collect()
    };
    let (code, first, err) = check(f.root.path(), &args);
    assert_eq!(code, 1, "{first}");
    let first = verdicts(&first);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(err.contains("1 signature artifact(s) written"), "{err}");
    assert!(cache.is_file());
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The next run recalls it, writes nothing, and judges the same.
    let (code, again, err) = check(f.root.path(), &args);
    assert_eq!((code, verdicts(&again)), (1, first.clone()));
    assert!(err.contains("1 signature artifact(s) remembered"), "{err}");
    assert!(!err.contains("written"), "{err}");

    // Another key: the remembered signature does not verify with it.
    let other = Key::p256();
    let other_path = other.write_public(&f.root.outside("trust"), "other.pub");
    write_policy(&f.policy, &[&other_path]);
    let (code, text, err) = check(f.root.path(), &args);
    assert_eq!(code, 1);
    assert!(
        text.contains("refused   signed:1: transports.docker[\"registry.test\"][0] sigstoreSigned: untrusted_key"),
        "{text}"
    );
    assert!(
        err.contains("written"),
        "the other key's result is new: {err}"
    );

    // A cache others may write is not used at all: everything is verified.
    write_policy(&f.policy, &[&f.key_path]);
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, text, err) = check(f.root.path(), &args);
    assert_eq!((code, verdicts(&text)), (1, first.clone()));
    assert!(
        err.contains("signature cache not used, every signature is verified")
            && err.contains("writable by group or others"),
        "{err}"
    );
    // Nor is one that does not parse.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&cache, b"{ not json").unwrap();
    let (code, text, err) = check(f.root.path(), &args);
    assert_eq!((code, verdicts(&text)), (1, first));
    assert!(err.contains("signature cache not used"), "{err}");
}
