//! Pulls over plain HTTP and TLS from ir-server, checked against the
//! layout ir-oci loads back; refusals of content that does not match its
//! digest or size, with nothing written.

use std::collections::HashMap;
use std::sync::Arc;

use crate::util::{files, fixture, lying_registry, pki, serve, tls_transport};
use ir_client::{Client, ClientOptions, Error, Platform, Transport};
use ir_server::transport::plain::Plain;
use serde_json::{json, Value};

fn index_json(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

/// Loads the written layout with ir-oci (which verifies every blob) and
/// returns the digest its tag points to.
fn load_back(out: &tempfile::TempDir, app: &str, tag: &str) -> String {
    let root = tempfile::TempDir::new().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(out.path())
        .arg(root.path().join(app))
        .status()
        .unwrap();
    assert!(status.success());
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
    let index = index_json(out.path());
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag}"));
    entry["digest"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pulls_an_image_over_http() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let out = tempfile::TempDir::new().unwrap();
    let client = Client::new(Transport::Plain).unwrap();
    let url = format!("http://127.0.0.1:{}/app:latest", server.port());
    let report = client.pull(&url, out.path()).await.unwrap();

    assert_eq!(report.digest.to_string(), f.image.manifest.digest_str());
    assert_eq!(report.media_type, ir_client::OCI_MANIFEST);
    assert_eq!(report.index_digest, None);
    assert_eq!((report.manifests, report.blobs, report.reused), (1, 4, 0));
    let expected_bytes: u64 = f.image.manifest.size()
        + f.image.config.size()
        + f.image.layers.iter().map(|l| l.size()).sum::<u64>();
    assert_eq!(report.bytes, expected_bytes);
    assert_eq!(load_back(&out, "app", "latest"), report.digest.to_string());
    // Exactly the image, no temporary files.
    let mut want: Vec<String> = std::iter::once(&f.image.manifest)
        .chain(std::iter::once(&f.image.config))
        .chain(&f.image.layers)
        .map(|d| d.file().display().to_string())
        .chain(["index.json".to_string(), "oci-layout".to_string()])
        .collect();
    want.sort();
    assert_eq!(files(out.path()), want);

    // Again, under another tag: everything is reused, both tags listed.
    let client = Client::with_options(
        Transport::Plain,
        ClientOptions {
            tag: Some("copy".into()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let again = client.pull(&url, out.path()).await.unwrap();
    assert_eq!(again.reused, 3);
    assert_eq!(again.bytes, f.image.manifest.size());
    assert_eq!(
        index_json(out.path())["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(load_back(&out, "app", "copy"), report.digest.to_string());

    // By digest, into another layout: an untagged entry.
    let out2 = tempfile::TempDir::new().unwrap();
    let by_digest = format!(
        "http://127.0.0.1:{}/app@{}",
        server.port(),
        f.image.manifest.digest_str()
    );
    let r = Client::new(Transport::Plain)
        .unwrap()
        .pull(&by_digest, out2.path())
        .await
        .unwrap();
    assert_eq!(r.digest, report.digest);
    let index = index_json(out2.path());
    assert!(index["manifests"][0].get("annotations").is_none());

    // A repository in a namespace.
    let out3 = tempfile::TempDir::new().unwrap();
    Client::new(Transport::Plain)
        .unwrap()
        .pull(
            &format!("http://127.0.0.1:{}/team/tools:1.0", server.port()),
            out3.path(),
        )
        .await
        .unwrap();
    load_back(&out3, "tools", "1.0");
    server.stop().await;
}

#[tokio::test]
async fn picks_a_platform_or_pulls_them_all() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let url = format!("http://127.0.0.1:{}/app:multi", server.port());
    let with = |platform: &str, all: bool| {
        Client::with_options(
            Transport::Plain,
            ClientOptions {
                platform: platform.parse::<Platform>().unwrap(),
                all_platforms: all,
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };

    // Default linux/amd64: the platform's manifest is what gets tagged.
    let out = tempfile::TempDir::new().unwrap();
    let r = with("linux/amd64", false)
        .pull(&url, out.path())
        .await
        .unwrap();
    assert_eq!(r.digest.to_string(), f.amd64.manifest.digest_str());
    assert_eq!(
        r.index_digest.as_ref().map(ToString::to_string).as_deref(),
        Some(f.index.digest_str())
    );
    assert_eq!(load_back(&out, "app", "multi"), r.digest.to_string());
    let entry = &index_json(out.path())["manifests"][0];
    assert_eq!(entry["platform"]["architecture"], "amd64");
    assert!(!out.path().join(f.index.file()).exists());

    let out = tempfile::TempDir::new().unwrap();
    let r = with("linux/arm64/v8", false)
        .pull(&url, out.path())
        .await
        .unwrap();
    assert_eq!(r.digest.to_string(), f.arm64.manifest.digest_str());

    // No --platform: the host's.
    let out = tempfile::TempDir::new().unwrap();
    let r = Client::new(Transport::Plain)
        .unwrap()
        .pull(&url, out.path())
        .await
        .unwrap();
    let host = Platform::host().to_string();
    let want = match host.as_str() {
        "linux/amd64" => f.amd64.manifest.digest_str(),
        "linux/arm64/v8" => f.arm64.manifest.digest_str(),
        other => panic!("no fixture image for host platform {other}"),
    };
    assert_eq!(r.digest.to_string(), want);

    // No such platform: a clear error, no tag written.
    let out = tempfile::TempDir::new().unwrap();
    let e = with("linux/s390x", false)
        .pull(&url, out.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/amd64, linux/arm64/v8"), "{e}");
    assert!(!out.path().join("index.json").exists());

    // Everything: the index is tagged, every manifest and blob is there.
    let out = tempfile::TempDir::new().unwrap();
    let r = with("linux/amd64", true)
        .pull(&url, out.path())
        .await
        .unwrap();
    assert_eq!(r.digest.to_string(), f.index.digest_str());
    assert_eq!(r.manifests, 3);
    // The two images share their config: 6 distinct blobs.
    assert_eq!(r.blobs, 6);
    assert_eq!(load_back(&out, "app", "multi"), f.index.digest_str());
    server.stop().await;
}

#[tokio::test]
async fn registry_errors_are_one_line() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let out = tempfile::TempDir::new().unwrap();
    let client = Client::new(Transport::Plain).unwrap();
    let e = client
        .pull(
            &format!("http://127.0.0.1:{}/nope:latest", server.port()),
            out.path(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 404, .. }), "{e}");
    assert!(e.to_string().contains("NAME_UNKNOWN"), "{e}");
    assert!(!e.to_string().contains('\n'));

    // A reference for another transport.
    let e = client
        .pull("https://localhost/app:latest", out.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Reference(_)), "{e}");

    // Nobody listening.
    server.stop().await;
    let e = client
        .pull(&format!("http://{}/app:latest", "127.0.0.1:1"), out.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
}

#[tokio::test]
async fn pulls_over_tls_with_the_ca() {
    let f = fixture();
    let pki = pki();
    let server = serve(f.root.path(), tls_transport(&pki)).await;
    let url = format!("https://localhost:{}/app:latest", server.port());
    let out = tempfile::TempDir::new().unwrap();
    let client = Client::new(Transport::Tls {
        ca: Some(pki.ca_pem.clone().into_bytes()),
    })
    .unwrap();
    let r = client.pull(&url, out.path()).await.unwrap();
    assert_eq!(load_back(&out, "app", "latest"), r.digest.to_string());

    // Another CA: the handshake fails, nothing is written.
    let other = crate::util::pki();
    let out = tempfile::TempDir::new().unwrap();
    let e = Client::new(Transport::Tls {
        ca: Some(other.ca_pem.into_bytes()),
    })
    .unwrap()
    .pull(&url, out.path())
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(files(out.path()), vec!["oci-layout".to_string()]);

    // https:// against a plain HTTP port says so, instead of rustls's
    // "received corrupt message of type InvalidContentType".
    let plain = serve(f.root.path(), Arc::new(Plain)).await;
    let e = Client::new(Transport::Tls {
        ca: Some(pki.ca_pem.clone().into_bytes()),
    })
    .unwrap()
    .pull(
        &format!("https://localhost:{}/app:latest", plain.port()),
        tempfile::TempDir::new().unwrap().path(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("the server answered plain HTTP, not TLS: use an http:// reference"),
        "{e}"
    );
    plain.stop().await;

    // A CA file without certificates is a configuration error.
    assert!(matches!(
        Client::new(Transport::Tls {
            ca: Some(b"nothing here".to_vec())
        }),
        Err(Error::Tls(_))
    ));
    server.stop().await;
}

/// A registry whose layer is not what the manifest says.
fn lying_routes(
    layer_served: &[u8],
    layer_claimed: &[u8],
) -> (HashMap<String, (String, Vec<u8>)>, String) {
    let sha = |b: &[u8]| ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, b).to_string();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": ir_client::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer_claimed), "size": layer_claimed.len()}],
    }))
    .unwrap();
    let mut routes = HashMap::new();
    routes.insert(
        "/v2/app/manifests/latest".to_string(),
        (ir_client::OCI_MANIFEST.to_string(), manifest.clone()),
    );
    routes.insert(
        format!("/v2/app/blobs/{}", sha(config)),
        ("application/octet-stream".to_string(), config.to_vec()),
    );
    routes.insert(
        format!("/v2/app/blobs/{}", sha(layer_claimed)),
        (
            "application/octet-stream".to_string(),
            layer_served.to_vec(),
        ),
    );
    (routes, sha(layer_claimed))
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused_and_not_written() {
    // Same size, other bytes.
    let (routes, layer) = lying_routes(b"evil layer!", b"good layer!");
    let server = lying_registry(routes).await;
    let out = tempfile::TempDir::new().unwrap();
    let client = Client::new(Transport::Plain).unwrap();
    let url = format!("http://127.0.0.1:{}/app:latest", server.port());
    let e = client.pull(&url, out.path()).await.unwrap_err();
    match &e {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected.to_string(), layer),
        other => panic!("{other}"),
    }
    // The config (which verified) may stay as a blob; the layer, the
    // manifest and index.json are not written, nor any temporary file.
    let written = files(out.path());
    assert!(!written
        .iter()
        .any(|f| f.ends_with(layer.trim_start_matches("sha256:"))));
    assert!(
        !written.iter().any(|f| f.contains(".ir-client")),
        "{written:?}"
    );
    assert!(!written.contains(&"index.json".to_string()), "{written:?}");
    assert_eq!(written.len(), 2, "{written:?}"); // oci-layout and the config
    server.stop().await;

    // Longer than the descriptor says.
    let (routes, _) = lying_routes(b"good layer! and more", b"good layer!");
    let server = lying_registry(routes).await;
    let out = tempfile::TempDir::new().unwrap();
    let url = format!("http://127.0.0.1:{}/app:latest", server.port());
    let e = client.pull(&url, out.path()).await.unwrap_err();
    assert!(matches!(e, Error::Size { .. }), "{e}");
    assert!(!files(out.path()).contains(&"index.json".to_string()));
    server.stop().await;

    // A manifest pulled by digest that is not that digest.
    let (routes, _) = lying_routes(b"x", b"x");
    let manifest = routes["/v2/app/manifests/latest"].clone();
    let wrong = ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, b"something else");
    let mut routes2 = HashMap::new();
    routes2.insert(format!("/v2/app/manifests/{wrong}"), manifest);
    let server = lying_registry(routes2).await;
    let out = tempfile::TempDir::new().unwrap();
    let e = client
        .pull(
            &format!("http://127.0.0.1:{}/app@{wrong}", server.port()),
            out.path(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_eq!(files(out.path()), vec!["oci-layout".to_string()]);
    server.stop().await;
}
