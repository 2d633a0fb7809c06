//! `ir-client sync`: a root filled from a real ir-server (and a fake
//! upstream that cuts a blob), then loaded and served as ir-server does,
//! signatures included.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ir_client::progress::Silent;
use ir_client::signatures::SignaturePolicy;
use ir_client::sync::{config, RepoReport, RootLock, Source, SyncOptions, Syncer};
use ir_client::{Client, ClientOptions, Error, HttpOptions, Transport};
use ir_server::transport::plain::Plain;
use ir_testkit::cosign::{cosign_referrer, cosign_sign, Key};
use ir_testkit::Root;
use serde_json::json;

use crate::util::{files, fixture, lying_registry, pki, scratch_root, serve, signature_policy};

const HOST: &str = "registry.test";

fn policy(key: &Path) -> SignaturePolicy {
    signature_policy(key, HOST)
}

fn client() -> Client {
    Client::with_options(
        Transport::Plain,
        ClientOptions {
            all_platforms: true,
            http: HttpOptions {
                retries: 0,
                ..HttpOptions::default()
            },
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

async fn sync(
    root: &Path,
    refs: &[String],
    policy: Option<SignaturePolicy>,
    prune: bool,
) -> Vec<RepoReport> {
    sync_with(&client(), root, refs, policy, prune, false).await
}

async fn sync_with(
    c: &Client,
    root: &Path,
    refs: &[String],
    policy: Option<SignaturePolicy>,
    prune: bool,
    hard_links: bool,
) -> Vec<RepoReport> {
    let sources = Source::merge(
        refs.iter()
            .map(|r| config::from_reference(r).unwrap())
            .collect(),
    )
    .unwrap();
    let _lock = RootLock::take(root).unwrap();
    let mut syncer = Syncer::new(
        SyncOptions {
            root: root.to_path_buf(),
            prune,
            signature_policy: policy,
            concurrency: 4,
            hard_links,
        },
        Arc::new(Silent),
    )
    .unwrap();
    let mut out = Vec::new();
    for s in &sources {
        out.push(syncer.sync(c, s).await);
    }
    out
}

fn load(root: &Path) -> ir_oci::Registry {
    ir_oci::load(root, &ir_oci::LoadOptions::default()).unwrap()
}

fn tags(reg: &ir_oci::Registry, name: &str) -> Vec<String> {
    let app = &reg.applications[&ir_oci::RepoName::parse(name).unwrap()];
    app.tags.keys().map(|t| t.to_string()).collect()
}

/// An upstream with `app` (a cosign-tag-signed image, a referrer-signed
/// one, an unsigned one, an index) and `team/tools`.
struct Upstream {
    root: Root,
    key: std::path::PathBuf,
}

fn upstream() -> Upstream {
    let key = Key::p256();
    let root = Root::new();
    let app = root.layout("app");
    let tagged = app.image(b"signed with a .sig tag");
    let referred = app.image(b"signed with a referrer");
    let unsigned = app.image(b"unsigned");
    let amd64 = app.image(b"amd64 layer");
    let arm64 = app.image(b"arm64 layer");
    let index = app.index(&[
        amd64.manifest.platform("linux", "amd64"),
        arm64.manifest.platform("linux", "arm64"),
    ]);
    let sig = cosign_sign(&app, &tagged.manifest, &format!("{HOST}/app:tagged"), &key);
    let referrer = cosign_referrer(
        &app,
        &referred.manifest,
        &format!("{HOST}/app:referred"),
        &key,
    );
    app.set_index(&[
        tagged.tagged("tagged"),
        referred.tagged("referred"),
        unsigned.tagged("unsigned"),
        index.tagged("multi"),
        sig,
        referrer,
    ]);
    let tools = root.layout("team/tools");
    let t = tools.image(b"tools");
    tools.set_index(&[t.tagged("1.0")]);
    let key = key.write_public(root.path().parent().unwrap(), "cosign.pub");
    Upstream { root, key }
}

#[tokio::test]
async fn a_synced_root_is_served_with_its_signatures_and_judged_as_the_source() {
    let up = upstream();
    let server = serve(up.root.path(), Arc::new(Plain)).await;
    let (_dir, root) = scratch_root();
    let refs = [server.http("app"), server.http("team/tools:1.0")];
    let reports = sync(&root, &refs, None, false).await;
    for r in &reports {
        assert_eq!(r.error, None, "{r:?}");
        assert_eq!(r.status, "added");
    }
    assert_eq!(
        reports[0].tags_added,
        ["multi", "referred", "tagged", "unsigned"]
    );
    assert!(reports[0].bytes_downloaded > 0);

    // What the server loads from the synced root: both repositories,
    // namespaces as directories, the cosign tag and the referrer included,
    // every platform of the index; no staging directory left.
    let reg = load(&root);
    assert!(reg.rejected.is_empty(), "{:?}", reg.rejected);
    let names: Vec<_> = reg.applications.keys().map(|n| n.to_string()).collect();
    assert_eq!(names, ["app", "team/tools"]);
    assert!(root.join("team/tools/oci-layout").is_file());
    let app_tags = tags(&reg, "app");
    assert!(app_tags.iter().any(|t| t.ends_with(".sig")), "{app_tags:?}");
    let app = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert_eq!(app.referrers.len(), 1, "the referrer came along");
    assert!(!std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".sync-staging")));

    // Served from the copy and judged by the policy as the source would
    // be: the signed images pass, the unsigned one is refused.
    let copy = serve(&root, Arc::new(Plain)).await;
    let judged = Client::with_options(
        Transport::Plain,
        ClientOptions {
            signature_policy: Some(policy(&up.key)),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    for tag in ["tagged", "referred"] {
        let r = judged
            .pull(&format!("http://{}/app:{tag}", copy.addr), out.path())
            .await
            .unwrap();
        assert_eq!(r.signers.len(), 1, "{tag}");
    }
    let e = judged
        .pull(&copy.http("app:unsigned"), out.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    // Every platform of the index is served.
    let r = client()
        .pull(&copy.http("app:multi"), out.path())
        .await
        .unwrap();
    assert_eq!(r.manifests, 3);
    copy.stop().await;

    // Nothing changed upstream: nothing downloaded, nothing rewritten.
    let before = files(&root);
    let again = sync(&root, &refs, None, false).await;
    for r in &again {
        assert_eq!(r.status, "unchanged", "{r:?}");
        assert_eq!(r.bytes_downloaded, 0);
        assert_eq!(r.blobs_downloaded, 0);
    }
    assert_eq!(files(&root), before);
    server.stop().await;
}

#[tokio::test]
async fn with_a_policy_refused_images_are_not_written() {
    let up = upstream();
    let server = serve(up.root.path(), Arc::new(Plain)).await;
    let (_dir, root) = scratch_root();
    let refs = [server.http("app"), server.http("team/tools")];
    let reports = sync(&root, &refs, Some(policy(&up.key)), false).await;
    // Every tag of team/tools refused: no layout at all.
    assert_eq!(reports[1].refused.len(), 1, "{:?}", reports[1]);
    assert!(!root.join("team").join("tools").exists());
    let r = &reports[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.tags_added, ["referred", "tagged"]);
    assert_eq!(r.refused.len(), 2, "{:?}", r.refused);
    assert!(r.refused.iter().any(|x| x.starts_with("unsigned: ")));
    let reg = load(&root);
    let t = tags(&reg, "app");
    assert!(!t.contains(&"unsigned".to_string()), "{t:?}");
    assert!(!t.contains(&"multi".to_string()), "{t:?}");
    // No byte of the unsigned image is in the root.
    let unsigned_layer = ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, b"unsigned");
    assert!(!root.join("app").join(unsigned_layer.blob_path()).exists());
    server.stop().await;
}

#[tokio::test]
async fn prune_removes_tags_gone_upstream_and_reuses_blobs() {
    let (_dir, root) = scratch_root();
    let first = Root::new();
    let app = first.layout("app");
    let big = vec![9u8; 200_000];
    let v1 = app.image_with_layers(&[&big, b"v1"]);
    let old = app.image(b"old");
    app.set_index(&[v1.tagged("v1"), old.tagged("old")]);
    let server = serve(first.path(), Arc::new(Plain)).await;
    let refs = [server.http("app")];
    assert_eq!(sync(&root, &refs, None, false).await[0].status, "added");
    server.stop().await;

    // Upstream: `old` gone, `v2` shares the big layer.
    let second = Root::new();
    let app = second.layout("app");
    let v1 = app.image_with_layers(&[&big, b"v1"]);
    let v2 = app.image_with_layers(&[&big, b"v2"]);
    app.set_index(&[v1.tagged("v1"), v2.tagged("v2")]);
    let server = serve(second.path(), Arc::new(Plain)).await;
    let refs = [server.http("app")];

    // Without --prune, `old` stays.
    let r = &sync(&root, &refs, None, false).await[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.status, "updated");
    assert_eq!(r.tags_added, ["v2"]);
    assert!(r.tags_removed.is_empty());
    assert!(
        r.bytes_downloaded < 100_000,
        "the big layer is reused: {r:?}"
    );
    assert!(r.blobs_reused >= 2, "{r:?}");
    assert_eq!(tags(&load(&root), "app"), ["old", "v1", "v2"]);

    // With it, `old` goes.
    let r = &sync(&root, &refs, None, true).await[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.tags_removed, ["old"]);
    assert_eq!(r.blobs_downloaded, 0);
    let reg = load(&root);
    assert_eq!(tags(&reg, "app"), ["v1", "v2"]);
    assert!(reg.orphans.is_empty(), "{:?}", reg.orphans);

    // A layout missing a file it lists is written again, not "unchanged".
    let layer = ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, b"v2");
    std::fs::remove_file(root.join("app").join(layer.blob_path())).unwrap();
    let r = &sync(&root, &refs, None, true).await[0];
    assert_eq!(r.status, "updated", "{r:?}");
    let reg = load(&root);
    assert!(reg.rejected.is_empty(), "{:?}", reg.rejected);
    assert_eq!(tags(&reg, "app"), ["v1", "v2"]);
    server.stop().await;
}

/// The routes of a fake registry serving `app:latest` from `layout`,
/// its last layer cut to `cut` bytes.
fn cutting_routes(
    layout: &ir_testkit::Layout,
    image: &ir_testkit::Image,
    cut: usize,
) -> HashMap<String, (String, Vec<u8>)> {
    let read = |d: &ir_testkit::Desc| {
        let (alg, hex) = d.digest_str().split_once(':').unwrap();
        std::fs::read(layout.path(format!("blobs/{alg}/{hex}"))).unwrap()
    };
    let mut routes = HashMap::new();
    routes.insert(
        "/v2/app/tags/list".to_string(),
        (
            "application/json".to_string(),
            br#"{"name":"app","tags":["latest"]}"#.to_vec(),
        ),
    );
    routes.insert(
        "/v2/app/manifests/latest".into(),
        (
            "application/vnd.oci.image.manifest.v1+json".into(),
            read(&image.manifest),
        ),
    );
    routes.insert(
        format!("/v2/app/blobs/{}", image.config.digest_str()),
        ("application/octet-stream".into(), read(&image.config)),
    );
    for (i, l) in image.layers.iter().enumerate() {
        let mut bytes = read(l);
        if i + 1 == image.layers.len() {
            bytes.truncate(cut);
        }
        routes.insert(
            format!("/v2/app/blobs/{}", l.digest_str()),
            ("application/octet-stream".into(), bytes),
        );
    }
    routes
}

#[tokio::test]
async fn a_cut_blob_leaves_the_old_layout_served_and_the_next_run_finishes() {
    let (_dir, root) = scratch_root();
    let first = Root::new();
    let app = first.layout("app");
    let v1 = app.image(b"version one");
    app.set_index(&[v1.tagged("latest")]);
    let server = serve(first.path(), Arc::new(Plain)).await;
    sync(&root, &[server.http("app")], None, false).await;
    server.stop().await;
    let served_before = files(&root.join("app"));

    let second = Root::new();
    let app = second.layout("app");
    let v2 = app.image_with_layers(&[b"config-sized layer", &vec![5u8; 100_000]]);
    app.set_index(&[v2.tagged("latest")]);
    let liar = lying_registry(cutting_routes(&app, &v2, 50_000)).await;
    let r = &sync(&root, &[liar.http("app")], None, false).await[0];
    assert_eq!(r.status, "failed");
    assert!(r.error.is_some());
    liar.stop().await;

    // The old layout is untouched and is what the server loads; the
    // staging directory beside it is not served.
    assert_eq!(files(&root.join("app")), served_before);
    let staging: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".sync-staging-app-")
        })
        .collect();
    assert_eq!(staging.len(), 1);
    // Until a copy is complete it holds no layout marker: the server
    // sees no application there at all, not even a rejected one.
    assert!(!staging[0].path().join("oci-layout").exists());
    let reg = load(&root);
    assert!(reg.rejected.is_empty(), "{:?}", reg.rejected);
    let names: Vec<_> = reg.applications.keys().map(|n| n.to_string()).collect();
    assert_eq!(names, ["app"]);
    let served = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert_eq!(
        served.tags.values().next().unwrap().to_string(),
        v1.manifest.digest_str()
    );
    // Also while the staging copy holds its markers, a reload serves only
    // the old layout.
    std::fs::write(
        staging[0].path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let reg = load(&root);
    let names: Vec<_> = reg.applications.keys().map(|n| n.to_string()).collect();
    assert_eq!(names, ["app"]);

    // A temporary file a killed run left behind does not survive.
    let sha = staging[0].path().join("blobs/sha256");
    std::fs::create_dir_all(&sha).unwrap();
    std::fs::write(sha.join(".ir-client-leftover"), b"partial").unwrap();

    // The next run against a good upstream finishes, reusing what the
    // cut run completed.
    let server = serve(second.path(), Arc::new(Plain)).await;
    let r = &sync(&root, &[server.http("app")], None, false).await[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.status, "updated");
    assert_eq!(r.tags_updated, ["latest"]);
    assert!(
        r.blobs_downloaded < 2,
        "the completed blob is reused: {r:?}"
    );
    let reg = load(&root);
    assert!(reg.orphans.is_empty(), "{:?}", reg.orphans);
    assert!(!files(&root.join("app"))
        .iter()
        .any(|f| f.contains(".ir-client")));
    let served = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert_eq!(
        served.tags.values().next().unwrap().to_string(),
        v2.manifest.digest_str()
    );
    assert!(!std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".sync-staging")));
    server.stop().await;
}

#[test]
fn sync_files_in_skopeo_shape() {
    let f = Path::new("sync.yaml");
    let sources = config::parse(
        f,
        "registry.example:5000:\n  images:\n    app: []\n    team/tools: ['1.0', '2.0']\n  images-by-tag-regex:\n    web: ^v1\\.\n  tls-verify: true\nhttp://127.0.0.1:8080:\n  images:\n    local: [latest]\n",
    )
    .unwrap();
    let names: Vec<_> = sources
        .iter()
        .map(|s| format!("{}/{}", s.location.base_url(), s.location.name))
        .collect();
    assert_eq!(
        names,
        [
            "http://127.0.0.1:8080/local",
            "https://registry.example:5000/app",
            "https://registry.example:5000/team/tools",
            "https://registry.example:5000/web",
        ]
    );
    // The Kubernetes component's example.
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/components/sync/sync.yaml");
    assert_eq!(config::read_file(&shipped).unwrap().len(), 3);
    for (text, says) in [
        ("r.example:\n  images:\n    app: []\n  credentials:\n    username: u\n    password: p\n", "auth file"),
        ("r.example:\n  images:\n    app: []\n  tls-verify: false\n", "tls-verify"),
        ("r.example:\n  images:\n    app: []\n    app: [v1]\n", "uplicate"),
        ("r.example:\n  images-by-semver:\n    app: '>= 1'\n", "images-by-semver"),
        ("r.example:\n  images:\n    app: ['sha256:abc']\n", "not digests"),
    ] {
        let e = config::parse(f, text).unwrap_err().to_string();
        assert!(e.starts_with("sync.yaml: "), "{e}");
        assert!(e.contains(says), "{says}: {e}");
    }
}

#[tokio::test]
async fn over_ra_tls_from_an_ir_server_only_what_the_realm_may_pull() {
    use ir_attest::attestor::{Attestor, PlatformCheck};
    use ir_attest::cca_platform::PlatformKeys;
    use ir_attest::{EmulatedRealm, Measurements};
    use ir_client::emulated::{export, Export};
    use ir_server::transport::ratls::RaTls;

    let f = fixture();
    let pki = pki();
    let trust = tempfile::tempdir().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    export(
        &realm,
        &Export {
            cpak: Some(trust.path().join("cpak.pub")),
            reference_values: Some(trust.path().join("realm.json")),
            name: "replica".into(),
            applications: vec!["app".into()],
            ..Export::default()
        },
    )
    .unwrap();
    let keys = PlatformKeys::load(&trust.path().join("cpak.pub")).unwrap();
    let attestor = Attestor::new(
        &trust.path().join("realm.json"),
        PlatformCheck::Local(keys),
        8,
    )
    .unwrap();
    let certs = Arc::new(
        ir_server::transport::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap(),
    );
    let server = serve(
        f.root.path(),
        Arc::new(RaTls::new(certs, Arc::new(attestor), false)),
    )
    .await;
    let c = Client::with_options(
        Transport::RaTls {
            ca: Some(pki.ca_pem.clone().into_bytes()),
            token_source: ir_client::TokenSource::emulated(realm),
        },
        ClientOptions {
            all_platforms: true,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let (_dir, root) = scratch_root();
    let refs = [
        format!("ra-tls://localhost:{}/app", server.port()),
        format!("ra-tls://localhost:{}/team/tools", server.port()),
    ];
    let reports = sync_with(&c, &root, &refs, None, false, false).await;
    assert_eq!(reports[0].error, None, "{:?}", reports[0]);
    assert_eq!(reports[0].tags_added, ["latest", "multi"]);
    // The realm may not pull team/tools: that repository fails, nothing
    // of it is written, the other is served.
    assert_eq!(reports[1].status, "failed");
    assert!(
        reports[1].error.as_deref().unwrap().contains("404"),
        "{:?}",
        reports[1]
    );
    assert!(!root.join("team").join("tools").exists());
    let reg = load(&root);
    let names: Vec<_> = reg.applications.keys().map(|n| n.to_string()).collect();
    assert_eq!(names, ["app"]);
    let app = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    // The index and both platforms' manifests, the image's too.
    assert_eq!(app.manifests.len(), 4);
    assert!(app
        .manifests
        .contains_key(&ir_oci::Digest::parse(f.arm64.manifest.digest_str()).unwrap()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_prints_json_and_signals_the_server() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let (_dir, root) = scratch_root();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = sleeper.id().to_string();
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = vec![
            "sync".into(),
            "--root".into(),
            root.display().to_string(),
            "--format".into(),
            "json".into(),
            "--platform".into(),
            "linux/arm64".into(),
            "--reload-pid".into(),
            pid.clone(),
            format!("http://127.0.0.1:{}/app:multi", server.port()),
        ];
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ir-client"))
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let o = run(vec![]).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["repositories"][0];
    assert_eq!(r["repository"], "app");
    assert_eq!(r["status"], "added");
    assert_eq!(r["tagsAdded"], json!(["multi"]));
    assert!(r["bytesDownloaded"].as_u64().unwrap() > 0);
    // The tag points to the arm64 manifest only.
    let reg = load(&root);
    let app = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert_eq!(
        app.tags.values().next().unwrap().to_string(),
        f.arm64.manifest.digest_str()
    );
    // The change was signalled: SIGHUP ends `sleep`.
    let status = tokio::task::spawn_blocking(move || sleeper.wait().unwrap())
        .await
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(1), "SIGHUP");

    // A reference naming a digest is a usage error (status 2), one line.
    let o = run(vec![format!(
        "http://127.0.0.1:{}/app@{}",
        server.port(),
        f.image.manifest.digest_str()
    )])
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sync copies tags"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn blobs_of_other_applications_are_reused_without_touching_them() {
    let up = Root::new();
    let big = vec![3u8; 200_000];
    let a = up.layout("app");
    let ia = a.image_with_layers(&[&big, b"a"]);
    a.set_index(&[ia.tagged("1")]);
    let b = up.layout("other");
    let ib = b.image_with_layers(&[&big, b"b"]);
    b.set_index(&[ib.tagged("1")]);
    let server = serve(up.path(), Arc::new(Plain)).await;
    let big_digest = ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, &big);
    let identity = |p: &Path| ir_oci::FileIdentity::of(&std::fs::metadata(p).unwrap());

    for hard_links in [false, true] {
        let (_dir, root) = scratch_root();
        let c = client();
        let app_ref = [server.http("app")];
        sync_with(&c, &root, &app_ref, None, false, hard_links).await;
        let served = root.join("app").join(big_digest.blob_path());
        let before = identity(&served);
        let other_ref = [server.http("other")];
        let r = &sync_with(&c, &root, &other_ref, None, false, hard_links).await[0];
        assert_eq!(r.error, None, "{r:?}");
        assert!(r.blobs_reused >= 1, "{r:?}");
        assert!(
            r.bytes_downloaded < 100_000,
            "the shared layer is not downloaded: {r:?}"
        );
        let copy = identity(&root.join("other").join(big_digest.blob_path()));
        if hard_links {
            // One file for both applications (its ctime changed by the link).
            assert_eq!(copy.ino, before.ino);
        } else {
            // The served file is exactly as the server verified it.
            assert_eq!(identity(&served), before);
            assert_ne!(copy.ino, before.ino);
        }
        let reg = load(&root);
        assert!(reg.rejected.is_empty(), "{:?}", reg.rejected);
        assert_eq!(reg.applications.len(), 2);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_listed_tag_that_is_gone_is_skipped_and_no_layout_goes_inside_another() {
    let up = Root::new();
    let app = up.layout("app");
    let image = app.image(b"here");
    app.set_index(&[image.tagged("latest")]);
    let mut routes = cutting_routes(&app, &image, usize::MAX);
    routes.insert(
        "/v2/app/tags/list".into(),
        (
            "application/json".into(),
            br#"{"name":"app","tags":["latest","gone"]}"#.to_vec(),
        ),
    );
    let registry = lying_registry(routes).await;
    let (_dir, root) = scratch_root();
    let r = &sync(&root, &[registry.http("app")], None, false).await[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.tags_added, ["latest"]);
    // Named explicitly, a missing tag is an error (exit status 3).
    let r = &sync(&root, &[registry.http("app:gone")], None, false).await[0];
    assert_eq!(r.status, "failed");
    assert_eq!(r.exit_code, 3);
    registry.stop().await;

    // `app/inner` would sit inside the layout `app`, where the server
    // never looks: refused, nothing written.
    let up = Root::new();
    let inner = up.layout("app/inner");
    let i = inner.image(b"inner");
    inner.set_index(&[i.tagged("1")]);
    let server = serve(up.path(), Arc::new(Plain)).await;
    let r = &sync(&root, &[server.http("app/inner")], None, false).await[0];
    assert_eq!(r.status, "failed");
    assert!(
        r.error.as_deref().unwrap().contains("is an OCI layout"),
        "{r:?}"
    );
    assert!(!root.join("app/inner").exists());
    assert!(!root.join("app/.sync-staging-inner").exists());
    server.stop().await;
}

#[tokio::test]
async fn signatures_listed_by_the_referrers_tag_schema_are_judged_and_copied() {
    // A registry without the referrers API (distribution 2.8): the
    // signature referrer is listed by the index tagged `sha256-<hex>`.
    let key = Key::p256();
    let up = Root::new();
    let app = up.layout("app");
    let image = app.image(b"signed, referrer listed by tag");
    let sig = cosign_referrer(&app, &image.manifest, &format!("{HOST}/app:latest"), &key);
    app.set_index(&[image.tagged("latest"), sig.clone()]);
    let key_path = key.write_public(up.path().parent().unwrap(), "cosign.pub");
    let read = |d: &str| {
        let (alg, hex) = d.split_once(':').unwrap();
        std::fs::read(app.path(format!("blobs/{alg}/{hex}"))).unwrap()
    };
    let mut routes = cutting_routes(&app, &image, usize::MAX);
    let sig_bytes = read(sig.digest_str());
    let sig_manifest: serde_json::Value = serde_json::from_slice(&sig_bytes).unwrap();
    for l in sig_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&sig_manifest["config"]])
    {
        let d = l["digest"].as_str().unwrap();
        routes.insert(
            format!("/v2/app/blobs/{d}"),
            ("application/octet-stream".into(), read(d)),
        );
    }
    routes.insert(
        format!("/v2/app/manifests/{}", sig.digest_str()),
        (
            "application/vnd.oci.image.manifest.v1+json".into(),
            sig_bytes.clone(),
        ),
    );
    let (_, hex) = image.manifest.digest_str().split_once(':').unwrap();
    let fallback = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sig.digest_str(),
            "size": sig_bytes.len(),
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        }],
    });
    routes.insert(
        format!("/v2/app/manifests/sha256-{hex}"),
        (
            "application/vnd.oci.image.index.v1+json".into(),
            serde_json::to_vec(&fallback).unwrap(),
        ),
    );
    let registry = lying_registry(routes).await;
    let url = registry.http("app");

    // `pull --policy` accepts it.
    let judged = Client::with_options(
        Transport::Plain,
        ClientOptions {
            signature_policy: Some(policy(&key_path)),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = judged
        .pull(&format!("{url}:latest"), out.path())
        .await
        .unwrap();
    assert_eq!(r.signers.len(), 1);

    // `sync --policy` accepts and copies it: the served copy lists the
    // referrer, and passes the same policy.
    let (_dir, root) = scratch_root();
    let r = &sync(&root, &[url], Some(policy(&key_path)), false).await[0];
    assert_eq!(r.error, None, "{r:?}");
    assert!(r.refused.is_empty(), "{r:?}");
    assert_eq!(r.tags_added, ["latest"]);
    let reg = load(&root);
    let copied = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    let subject = ir_oci::Digest::parse(image.manifest.digest_str()).unwrap();
    assert_eq!(copied.referrers[&subject].len(), 1);
    registry.stop().await;
    let copy = serve(&root, Arc::new(Plain)).await;
    let r = judged
        .pull(&copy.http("app:latest"), out.path())
        .await
        .unwrap();
    assert_eq!(r.signers.len(), 1);
    copy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn from_a_primary_over_tls_with_a_client_certificate() {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let f = fixture();
    let pki = pki();
    // The replica's client certificate, from a CA the primary trusts.
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "replicas CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "replica-1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let client_ca = dir.path().join("clients-ca.pem");
    let cert_file = dir.path().join("replica.crt");
    let key_file = dir.path().join("replica.key");
    std::fs::write(&client_ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let store = Arc::new(
        ir_server::transport::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap(),
    );
    let verifier = ir_server::transport::client_access::verifier(&client_ca).unwrap();
    let config = ir_server::transport::cert_store::server_config_with_client_auth(store, verifier);
    let server = serve(
        f.root.path(),
        Arc::new(ir_server::transport::tls::Tls::new(config)),
    )
    .await;
    let root = dir.path().join("root");
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "sync".into(),
            "--root".into(),
            root.display().to_string(),
            "--ca".into(),
            pki.ca_file.display().to_string(),
            "--retries".into(),
            "0".into(),
            "-q".into(),
            format!("https://localhost:{}/app:latest", server.port()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ir-client"))
                .args(&args)
                .output()
                .unwrap()
        })
    };
    // Without the certificate the primary ends the handshake.
    let o = run(&[]).await.unwrap();
    assert!(!o.status.success());
    assert!(!root.join("app").exists());
    let o = run(&[
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reg = load(&root);
    assert_eq!(tags(&reg, "app"), ["latest"]);
    // A key that is not the certificate's is refused at start.
    let other = dir.path().join("other.key");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let o = run(&[
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        other.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("other.key: does not match"), "{err}");
    server.stop().await;
}
