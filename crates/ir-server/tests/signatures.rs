//! The signature policy in the server: what a refused image looks like to a
//! client, reload and key rotation, per-realm scopes, and `--check`.

use std::path::Path;
use std::sync::Arc;

use ir_oci::{LoadOptions, RepoName};
use ir_server::snapshot::catalog::Catalog;
use ir_server::snapshot::policy_gate::{Gate, TrustConfig};
use ir_testkit::cosign::{cosign_sign, Key};
use ir_testkit::{Desc, Root};
use serde_json::{json, Value};

use crate::util::policy::{fixture, reloader, serve, write_policy, write_scoped_policy, HOST};
use crate::util::{self, client, error_code, status, TestServer};

fn gate(policy: &Path) -> Arc<Gate> {
    Arc::new(Gate::new(TrustConfig::new(Some(policy.to_path_buf()), None, HOST)).unwrap())
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
    let reloader = reloader(&server, &f.root, &gate);
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
    write_scoped_policy(&f.policy, &f.key_path);
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

/// `ir-server --check` for HOST.
fn check(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--registry-host", HOST];
    all.extend_from_slice(args);
    util::check(root, &all)
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

// ---- attack layouts: what a writer of the root cannot get served -------

/// What a client sees of one manifest.
struct Seen {
    by_digest: u16,
    tags: Vec<String>,
}

async fn tags_of(server: &TestServer, app: &str) -> Vec<String> {
    let v: Value = get(server, &format!("/v2/{app}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn referrers_of(server: &TestServer, app: &str, subject: &Desc) -> Vec<String> {
    let r = get(
        server,
        &format!("/v2/{app}/referrers/{}", subject.digest_str()),
    )
    .await;
    if r.status() != 200 {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that `manifest` of `app` is not served at all: not by digest,
/// not under any of `tags` (which are not listed either), not as a
/// referrer of `subject`, and none of `blobs` is served.
async fn assert_withheld(
    server: &TestServer,
    app: &str,
    manifest: &Desc,
    tags: &[&str],
    subject: Option<&Desc>,
    blobs: &[&Desc],
) {
    let what = format!("{app}@{}", manifest.digest_str());
    assert_eq!(
        status(
            server,
            &format!("/v2/{app}/manifests/{}", manifest.digest_str())
        )
        .await,
        404,
        "{what} by digest"
    );
    let listed = tags_of(server, app).await;
    for tag in tags {
        assert!(
            !listed.iter().any(|t| t == tag),
            "{app}:{tag} listed: {listed:?}"
        );
        assert_eq!(
            status(server, &format!("/v2/{app}/manifests/{tag}")).await,
            404,
            "{app}:{tag}"
        );
    }
    if let Some(subject) = subject {
        let list = referrers_of(server, app, subject).await;
        assert!(
            !list.iter().any(|d| d == manifest.digest_str()),
            "{what} is a listed referrer: {list:?}"
        );
    }
    for blob in blobs {
        assert_eq!(
            status(server, &format!("/v2/{app}/blobs/{}", blob.digest_str())).await,
            404,
            "{what}: blob {}",
            blob.digest_str()
        );
    }
}

// The images of a root share one config blob: a refused image's config
// stays served when a served image has it too, so tests of withheld
// content name only blobs of their own.

/// Asserts that `image` of `app` is served under `tag` (listed), by
/// digest, with its blobs.
async fn assert_served(server: &TestServer, app: &str, image: &ir_testkit::Image, tag: &str) {
    let seen = Seen {
        by_digest: status(
            server,
            &format!("/v2/{app}/manifests/{}", image.manifest.digest_str()),
        )
        .await,
        tags: tags_of(server, app).await,
    };
    assert_eq!(seen.by_digest, 200, "{app}@digest");
    assert!(seen.tags.iter().any(|t| t == tag), "{app}: {:?}", seen.tags);
    assert_eq!(
        status(server, &format!("/v2/{app}/manifests/{tag}")).await,
        200,
        "{app}:{tag}"
    );
    for blob in image.layers.iter().chain([&image.config]) {
        assert_eq!(
            status(server, &format!("/v2/{app}/blobs/{}", blob.digest_str())).await,
            200,
            "{app}: blob {}",
            blob.digest_str()
        );
    }
}

/// A manifest written verbatim (any fields), as a descriptor.
fn raw_manifest(layout: &ir_testkit::Layout, media_type: &str, doc: Value) -> Desc {
    layout.json(media_type, &doc)
}

fn subject_of(d: &Desc) -> Value {
    json!({"mediaType": d.media_type(), "digest": d.digest_str(), "size": d.size()})
}

/// A runnable image's config: a platform and an entry point.
fn runnable_config(layout: &ir_testkit::Layout, marker: &str) -> Desc {
    layout.json(
        ir_testkit::CONFIG,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [marker]},
            "rootfs": {"type": "layers", "diff_ids": []},
        }),
    )
}

#[tokio::test]
async fn a_retagged_or_tag_rejected_image_is_not_served_under_that_tag() {
    let key = Key::p256();
    let root = Root::new();
    // `evil` and `latest` name the digest signed for `retag:1` (rollback).
    let app = root.layout("retag");
    let image = app.image(b"version 1");
    let sig = cosign_sign(&app, &image.manifest, &format!("{HOST}/retag:1"), &key);
    app.set_index(&[
        image.tagged("1"),
        image.tagged("evil"),
        image.tagged("latest"),
        sig,
    ]);
    // Signed for both `:1` and `:debug`; the policy rejects `:debug`.
    let scoped = root.layout("scoped");
    let s = scoped.image(b"scoped");
    let layers: Vec<Desc> = ["1", "debug"]
        .iter()
        .map(|t| {
            let p =
                ir_testkit::cosign::payload(s.manifest.digest_str(), &format!("{HOST}/scoped:{t}"));
            ir_testkit::cosign::signature_layer(&scoped, &p, &key.sign(&p))
        })
        .collect();
    let ssig = ir_testkit::cosign::sig_tag(&scoped, &s.manifest, &layers);
    scoped.set_index(&[s.tagged("1"), s.tagged("debug"), ssig]);

    let dir = root.outside("trust");
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = key.write_public(&dir, "cosign.pub");
    let policy = dir.join("policy.json");
    let doc = json!({"default": [{"type": "reject"}], "transports": {"docker": {
        HOST: [{"type": "sigstoreSigned", "keyPath": key_path}],
        format!("{HOST}/scoped:debug"): [{"type": "reject"}],
    }}});
    std::fs::write(&policy, serde_json::to_vec(&doc).unwrap()).unwrap();
    let server = serve(&root, &gate(&policy)).await;

    assert_served(&server, "retag", &image, "1").await;
    let sig_tag = format!("{}.sig", image.manifest.digest_str().replace(':', "-"));
    let mut expected = vec!["1".to_owned(), sig_tag];
    expected.sort();
    assert_eq!(tags_of(&server, "retag").await, expected);
    for tag in ["evil", "latest"] {
        let r = get(&server, &format!("/v2/retag/manifests/{tag}")).await;
        assert_eq!(r.status(), 404, "{tag}");
        assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    }

    assert_served(&server, "scoped", &s, "1").await;
    assert!(!tags_of(&server, "scoped")
        .await
        .contains(&"debug".to_owned()));
    assert_eq!(status(&server, "/v2/scoped/manifests/debug").await, 404);
    server.stop().await;
}

#[tokio::test]
async fn smuggled_signature_artifacts_are_not_served() {
    use ir_testkit::cosign::{
        bundle, bundle_referrer, cosign_referrer, payload, sig_tag, signature_layer, statement,
        SIGN_PREDICATE,
    };
    use ir_testkit::{LAYER_GZIP, OCI_INDEX, OCI_MANIFEST};
    const NOTATION: &str = "application/vnd.cncf.notary.signature";
    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let key = Key::p256();
    let root = Root::new();
    let reference = |app: &str, tag: &str| format!("{HOST}/{app}:{tag}");

    // A cosign signature tag whose hex names the signed image `good`, on a
    // cosign-shaped manifest that signs the refused image `r`.
    let a1 = root.layout("sigtag");
    let good1 = a1.image(b"sigtag good");
    let good1_sig = cosign_referrer(&a1, &good1.manifest, &reference("sigtag", "1"), &key);
    let r1 = a1.image(b"sigtag refused");
    let p = payload(r1.manifest.digest_str(), &reference("sigtag", "1"));
    let s1_payload = signature_layer(&a1, &p, &key.sign(&p));
    let s1 = sig_tag(&a1, &good1.manifest, std::slice::from_ref(&s1_payload));
    a1.set_index(&[
        good1.tagged("1"),
        good1_sig.clone(),
        r1.tagged("r"),
        s1.clone(),
    ]);

    // The same tag on a "signature" whose simple-signing layer is the
    // refused image's layer.
    let a2 = root.layout("sigtagblob");
    let good2 = a2.image(b"sigtagblob good");
    let good2_sig = cosign_referrer(&a2, &good2.manifest, &reference("sigtagblob", "1"), &key);
    let r2 = a2.image(b"sigtagblob refused layer");
    let smuggled = r2.layers[0]
        .with("mediaType", json!(ir_testkit::cosign::SIMPLE_SIGNING))
        .with(
            "annotations",
            json!({"dev.cosignproject.cosign/signature": "MEUCIQ=="}),
        );
    let s2 = sig_tag(&a2, &good2.manifest, &[smuggled]);
    a2.set_index(&[good2.tagged("1"), good2_sig, r2.tagged("r"), s2.clone()]);

    // Notation-typed runnable images attached to a signed image.
    let a3 = root.layout("notary");
    let good3 = a3.image(b"notary good");
    let good3_sig = cosign_sign(&a3, &good3.manifest, &reference("notary", "1"), &key);
    let n_config = runnable_config(&a3, "/notation-typed");
    let n_layer = a3.blob(LAYER_GZIP, b"notation-typed tar layer");
    let n1 = raw_manifest(
        &a3,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTATION,
            "config": n_config.0, "layers": [n_layer.0], "subject": subject_of(&good3.manifest),
        }),
    );
    let jose_config = runnable_config(&a3, "/jose-typed");
    let jose_layer = a3.blob("application/jose+json", b"jose-typed tar layer");
    let n2 = raw_manifest(
        &a3,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTATION,
            "config": jose_config.0, "layers": [jose_layer.0], "subject": subject_of(&good3.manifest),
        }),
    );
    a3.set_index(&[good3.tagged("1"), good3_sig, n1.clone(), n2.clone()]);

    // Sigstore-bundle-typed manifests carrying more than a bundle.
    let a4 = root.layout("bundles");
    let good4 = a4.image(b"bundles good");
    let good4_sig = cosign_sign(&a4, &good4.manifest, &reference("bundles", "1"), &key);
    let r4 = a4.image(b"bundles refused");
    let st = statement(
        good4.manifest.digest_str(),
        Some(&reference("bundles", "1")),
        SIGN_PREDICATE,
    );
    let real_bundle = a4.json(BUNDLE, &bundle(&st, &key));
    let empty = a4.blob(ir_testkit::OCI_EMPTY, b"{}");
    let with_blobs = raw_manifest(
        &a4,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": empty.0, "layers": [real_bundle.0], "subject": subject_of(&good4.manifest),
            "blobs": [r4.layers[0].0, r4.config.0],
        }),
    );
    let tar_layer = a4.blob(LAYER_GZIP, b"bundle-typed tar layer");
    let with_tar = raw_manifest(
        &a4,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": empty.0, "layers": [tar_layer.0], "subject": subject_of(&good4.manifest),
        }),
    );
    let bundle_runnable_config = runnable_config(&a4, "/bundle-typed");
    let bundle_tar = a4.blob(BUNDLE, b"bundle-typed tar behind a bundle type");
    let with_runnable = raw_manifest(
        &a4,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": bundle_runnable_config.0, "layers": [bundle_tar.0],
            "subject": subject_of(&good4.manifest),
        }),
    );
    let as_index = raw_manifest(
        &a4,
        OCI_INDEX,
        json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": BUNDLE,
            "manifests": [r4.manifest.0], "subject": subject_of(&good4.manifest),
        }),
    );
    let with_manifests = raw_manifest(
        &a4,
        OCI_MANIFEST,
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": empty.0, "layers": [real_bundle.0], "subject": subject_of(&good4.manifest),
            "manifests": [r4.manifest.0],
        }),
    );
    a4.set_index(&[
        good4.tagged("1"),
        good4_sig,
        r4.tagged("r"),
        with_blobs.clone(),
        with_tar.clone(),
        with_runnable.clone(),
        as_index.clone(),
        with_manifests.clone(),
    ]);

    // Well-formed signatures of a refused image (by another key).
    let a5 = root.layout("orphan");
    let good5 = a5.image(b"orphan good");
    let good5_sig = cosign_sign(&a5, &good5.manifest, &reference("orphan", "1"), &key);
    let r5 = a5.image(b"orphan refused");
    let other = Key::p256();
    let r5_cosign = cosign_referrer(&a5, &r5.manifest, &reference("orphan", "r"), &other);
    let r5_bundle = bundle_referrer(
        &a5,
        &r5.manifest,
        r5.manifest.digest_str(),
        &reference("orphan", "r"),
        &other,
    );
    a5.set_index(&[
        good5.tagged("1"),
        good5_sig,
        r5.tagged("r"),
        r5_cosign.clone(),
        r5_bundle.clone(),
    ]);

    let dir = root.outside("trust");
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = key.write_public(&dir, "cosign.pub");
    let policy = dir.join("policy.json");
    write_policy(&policy, &[&key_path]);
    let server = serve(&root, &gate(&policy)).await;

    // sigtag: the refused image, the tag and its smuggling manifest.
    assert_served(&server, "sigtag", &good1, "1").await;
    assert!(referrers_of(&server, "sigtag", &good1.manifest)
        .await
        .contains(&good1_sig.digest_str().to_owned()));
    let s1_tag = format!("{}.sig", good1.manifest.digest_str().replace(':', "-"));
    assert_withheld(&server, "sigtag", &s1, &[&s1_tag], None, &[&s1_payload]).await;
    assert_withheld(
        &server,
        "sigtag",
        &r1.manifest,
        &["r"],
        None,
        &[&r1.layers[0]],
    )
    .await;

    assert_served(&server, "sigtagblob", &good2, "1").await;
    let s2_tag = format!("{}.sig", good2.manifest.digest_str().replace(':', "-"));
    assert_withheld(
        &server,
        "sigtagblob",
        &s2,
        &[&s2_tag],
        None,
        &[&r2.layers[0]],
    )
    .await;
    assert_withheld(&server, "sigtagblob", &r2.manifest, &["r"], None, &[]).await;

    assert_served(&server, "notary", &good3, "1").await;
    assert_withheld(
        &server,
        "notary",
        &n1,
        &[],
        Some(&good3.manifest),
        &[&n_config, &n_layer],
    )
    .await;
    assert_withheld(
        &server,
        "notary",
        &n2,
        &[],
        Some(&good3.manifest),
        &[&jose_config, &jose_layer],
    )
    .await;

    assert_served(&server, "bundles", &good4, "1").await;
    let g4 = Some(&good4.manifest);
    assert_withheld(&server, "bundles", &with_blobs, &[], g4, &[&r4.layers[0]]).await;
    assert_withheld(&server, "bundles", &with_tar, &[], g4, &[&tar_layer]).await;
    assert_withheld(
        &server,
        "bundles",
        &with_runnable,
        &[],
        g4,
        &[&bundle_runnable_config, &bundle_tar],
    )
    .await;
    assert_withheld(&server, "bundles", &as_index, &[], g4, &[]).await;
    assert_withheld(
        &server,
        "bundles",
        &with_manifests,
        &[],
        g4,
        &[&real_bundle],
    )
    .await;
    assert_withheld(
        &server,
        "bundles",
        &r4.manifest,
        &["r"],
        None,
        &[&r4.layers[0]],
    )
    .await;

    assert_served(&server, "orphan", &good5, "1").await;
    assert_withheld(
        &server,
        "orphan",
        &r5.manifest,
        &["r"],
        None,
        &[&r5.layers[0]],
    )
    .await;
    assert_withheld(&server, "orphan", &r5_cosign, &[], Some(&r5.manifest), &[]).await;
    assert_withheld(&server, "orphan", &r5_bundle, &[], Some(&r5.manifest), &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn attestations_are_not_signatures_and_cosign_v3_bundles_name_no_image() {
    use ir_testkit::cosign::{
        attach_bundle, bundle, bundle_referrer, cosign_bundle_referrer, statement,
    };
    let key = Key::p256();
    let root = Root::new();
    let app = root.layout("attest");
    // `1`: only an SBOM attestation, signed by the trusted key and naming it.
    let sbom = app.image(b"attested only");
    let spdx = "https://spdx.dev/Document";
    let st = statement(
        sbom.manifest.digest_str(),
        Some(&format!("{HOST}/attest:1")),
        spdx,
    );
    let attestation = attach_bundle(&app, &sbom.manifest, &bundle(&st, &key), spdx);
    // `2`: a cosign signature bundle naming it.
    let signed = app.image(b"bundle signed");
    let sig = bundle_referrer(
        &app,
        &signed.manifest,
        signed.manifest.digest_str(),
        &format!("{HOST}/attest:2"),
        &key,
    );
    // `3`: exactly what cosign v3 `cosign sign --key` writes: no name.
    let nameless = app.image(b"cosign v3 signed");
    let v3 = cosign_bundle_referrer(&app, &nameless.manifest, &key);
    app.set_index(&[
        sbom.tagged("1"),
        attestation.clone(),
        signed.tagged("2"),
        sig.clone(),
        nameless.tagged("3"),
        v3.clone(),
    ]);
    let dir = root.outside("trust");
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = key.write_public(&dir, "cosign.pub");
    let policy = dir.join("policy.json");
    let doc = json!({"default": [{"type": "reject"}], "transports": {"docker": {
        HOST: [{"type": "sigstoreSigned", "keyPath": key_path,
                "signedIdentity": {"type": "matchRepository"}}],
    }}});
    std::fs::write(&policy, serde_json::to_vec(&doc).unwrap()).unwrap();
    let server = serve(&root, &gate(&policy)).await;

    assert_served(&server, "attest", &signed, "2").await;
    assert!(referrers_of(&server, "attest", &signed.manifest)
        .await
        .contains(&sig.digest_str().to_owned()));
    assert_eq!(
        status(
            &server,
            &format!("/v2/attest/manifests/{}", sig.digest_str())
        )
        .await,
        200
    );
    assert_withheld(
        &server,
        "attest",
        &sbom.manifest,
        &["1"],
        None,
        &[&sbom.layers[0]],
    )
    .await;
    assert_withheld(
        &server,
        "attest",
        &attestation,
        &[],
        Some(&sbom.manifest),
        &[],
    )
    .await;
    assert_withheld(
        &server,
        "attest",
        &nameless.manifest,
        &["3"],
        None,
        &[&nameless.layers[0]],
    )
    .await;
    assert_withheld(&server, "attest", &v3, &[], Some(&nameless.manifest), &[]).await;
    server.stop().await;

    // What --check says of each.
    let (code, text, _) = check(root.path(), &["--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("accepted  attest:2 signed by sha256:"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("refused   attest:1:")
            && l.contains("bad_signature")
            && l.contains("attestation")
            && l.contains(spdx)),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("refused   attest:3:")
            && l.contains("wrong_identity")
            && l.contains("names no docker reference")),
        "{text}"
    );
}

/// A pull the signature policy refuses is answered as missing, and posted
/// to `--events-url` as a refusal naming the policy (through the binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_is_posted_as_an_event() {
    let key = Key::p256();
    let f = fixture(&key);
    let (events_url, events) = crate::receipts::events_endpoint().await;
    let log = f.root.outside("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args([
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
            "--registry-host",
            HOST,
            "-r",
        ])
        .arg(f.root.path())
        .arg("--policy")
        .arg(&f.policy)
        .args(["--events-url", &events_url])
        .env_remove("RUST_LOG")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready") {
            break text;
        }
        assert!(std::time::Instant::now() < until, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let marker = "over plain HTTP on 127.0.0.1:";
    let at = text.find(marker).unwrap() + marker.len();
    let port: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let refused = client()
        .get(url("/v2/unsigned/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let served = client()
        .get(url("/v2/signed/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let missing = client()
        .get(url("/v2/unsigned/manifests/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = events.lock().unwrap().clone();
        let refusals: Vec<_> = seen
            .iter()
            .filter(|e| e["type"] == "dev.ir-server.refusal")
            .collect();
        let delivered = seen
            .iter()
            .any(|e| e["type"] == "dev.ir-server.delivery" && e["subject"] == "signed");
        if delivered && !refusals.is_empty() {
            // One refusal: the policy's; a tag that never existed is not one.
            assert_eq!(refusals.len(), 1, "{seen:#?}");
            assert_eq!(refusals[0]["data"]["stage"], "policy");
            assert_eq!(refusals[0]["subject"], "unsigned");
            break;
        }
        assert!(std::time::Instant::now() < until, "events: {seen:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
