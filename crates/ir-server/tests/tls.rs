//! The TLS transport: handshakes over HTTP/1.1 and HTTP/2 (ALPN), plain
//! HTTP refused, certificate loading errors, rotation, a broken
//! replacement keeping the old pair, and a client that never completes
//! its handshake not holding up others.

use std::sync::Arc;
use std::time::Duration;

use crate::util::pki::{make_ca, make_leaf, Ca};
use crate::util::{options, TestServer};
use ir_server::transport::cert_store::{self, CertError, CertStore};
use ir_server::transport::server::ConnLimits;
use ir_server::transport::tls::Tls;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

fn https_client(ca: &Ca) -> reqwest::ClientBuilder {
    let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .tls_info(true)
        .pool_max_idle_per_host(0)
}

/// The serial of the certificate a fresh client (no resumable session)
/// is shown.
async fn serial_seen(ca: &Ca, url: &str) -> String {
    let client = https_client(ca).build().unwrap();
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    let der = info.peer_certificate().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

/// Serves one small application over TLS with `store`'s certificate.
async fn tls_server(
    store: Arc<CertStore>,
    handshake_timeout: Duration,
) -> (ir_testkit::Root, TestServer) {
    let root = ir_testkit::Root::new();
    let app = root.layout("app");
    let image = app.image(b"layer over tls");
    app.set_index(&[image.tagged("latest")]);
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let mut opts = options(ConnLimits::default());
    opts.handshake_timeout = handshake_timeout;
    let tls = Arc::new(Tls::new(cert_store::server_config(store)));
    (
        root,
        TestServer::serve_with(registry, tls, opts, "https").await,
    )
}

#[tokio::test]
async fn pulls_over_http1_and_h2_with_the_test_ca() {
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 1, true);
    let store = Arc::new(CertStore::load(&c, &k).unwrap());
    let (_root, server) = tls_server(store, Duration::from_secs(10)).await;
    let url = format!(
        "https://localhost:{}/v2/app/manifests/latest",
        server.addr.port()
    );

    let h2 = https_client(&ca).build().unwrap();
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2");

    let h1 = https_client(&ca).http1_only().build().unwrap();
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // An untrusting client fails the handshake; the server keeps serving.
    let other = make_ca();
    assert!(https_client(&other)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .is_err());
    assert_eq!(h1.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_refused() {
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 1, true);
    let (_root, server) = tls_server(
        Arc::new(CertStore::load(&c, &k).unwrap()),
        Duration::from_secs(10),
    )
    .await;
    let plain = reqwest::Client::new();
    assert!(plain
        .get(format!("http://127.0.0.1:{}/v2/", server.addr.port()))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn rotation_serves_the_new_pair_to_new_handshakes() {
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 0x1111, true);
    let store = Arc::new(CertStore::load(&c, &k).unwrap());
    let (_root, server) = tls_server(store.clone(), Duration::from_secs(10)).await;
    let url = format!("https://localhost:{}/v2/", server.addr.port());
    assert_eq!(serial_seen(&ca, &url).await, "1111");

    make_leaf(&ca, certs.path(), 0x2222, true);
    store.reload().unwrap();
    assert_eq!(serial_seen(&ca, &url).await, "2222");

    // A broken replacement (key of another certificate) is refused and the
    // pair in service stays.
    let good_key = std::fs::read(&k).unwrap();
    make_leaf(&ca, certs.path(), 0x3333, true);
    std::fs::write(&k, &good_key).unwrap();
    assert!(matches!(store.reload(), Err(CertError::Mismatch { .. })));
    assert_eq!(serial_seen(&ca, &url).await, "2222");

    // The file-change poll picks up a fixed pair.
    make_leaf(&ca, certs.path(), 0x4444, true);
    store.reload_if_changed();
    assert_eq!(serial_seen(&ca, &url).await, "4444");
}

#[tokio::test]
async fn unusable_pairs_are_clear_errors() {
    let dir = TempDir::new().unwrap();
    let ca = make_ca();
    let missing = dir.path().join("missing.crt");
    let (c, k) = make_leaf(&ca, dir.path(), 1, true);
    let e = CertStore::load(&missing, &k).unwrap_err();
    assert!(matches!(e, CertError::Read { .. }));
    assert!(e.to_string().contains("missing.crt"), "{e}");

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert!(matches!(
        CertStore::load(&empty, &k).unwrap_err(),
        CertError::NoCertificate(_)
    ));

    let nokey = dir.path().join("nokey.pem");
    std::fs::write(&nokey, std::fs::read(&c).unwrap()).unwrap();
    assert!(matches!(
        CertStore::load(&c, &nokey).unwrap_err(),
        CertError::BadKey { .. }
    ));

    let other = TempDir::new().unwrap();
    let (_, other_key) = make_leaf(&ca, other.path(), 2, true);
    let e = CertStore::load(&c, &other_key).unwrap_err();
    assert!(matches!(e, CertError::Mismatch { .. }), "{e}");

    let expired = TempDir::new().unwrap();
    let (ec, ek) = make_leaf(&ca, expired.path(), 3, false);
    let e = CertStore::load(&ec, &ek).unwrap_err();
    assert!(matches!(e, CertError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn silent_client_is_dropped_and_does_not_block_others() {
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 1, true);
    let store = Arc::new(CertStore::load(&c, &k).unwrap());
    let (_root, server) = tls_server(store, Duration::from_millis(500)).await;
    // Connects and never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Meanwhile, a real client is served at once, many times over.
    let client = https_client(&ca).build().unwrap();
    let url = format!("https://localhost:{}/v2/", server.addr.port());
    for _ in 0..5 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    // And the silent one is dropped once the handshake timeout passes.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed without data");
}

#[tokio::test]
async fn oci_client_pulls_over_tls_with_the_test_ca() {
    use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 7, true);
    let (_root, server) = tls_server(
        Arc::new(CertStore::load(&c, &k).unwrap()),
        Duration::from_secs(10),
    )
    .await;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: ca.pem.clone().into_bytes(),
        }],
        ..Default::default()
    });
    let reference: oci_client::Reference = format!("localhost:{}/app:latest", server.addr.port())
        .parse()
        .unwrap();
    let image = client
        .pull(
            &reference,
            &oci_client::secrets::RegistryAuth::Anonymous,
            vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].data.as_ref(), b"layer over tls");
}

/// `--client-ca` and `--client-map`: a client without a certificate from
/// the client CA is refused in the handshake; a mapped client sees only
/// its applications (404 NAME_UNKNOWN for the others, as for missing ones,
/// and a filtered catalog); an unmapped one sees none.
#[tokio::test]
async fn client_certificates_limit_what_each_client_sees() {
    use crate::util::pki::make_client;
    use ir_server::transport::client_access::{self, ClientMap};
    let certs = TempDir::new().unwrap();
    let ca = make_ca();
    let (c, k) = make_leaf(&ca, certs.path(), 1, true);
    let store = Arc::new(CertStore::load(&c, &k).unwrap());
    let client_ca = make_ca();
    let ca_file = certs.path().join("clients.pem");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let map = ClientMap::from_json(
        br#"{"clients": [{"name": "ci", "common_name": "ci-runner", "applications": ["team/*"]},
                         {"common_name": "ops"}]}"#,
    )
    .unwrap();
    let config = cert_store::server_config_with_client_auth(
        store,
        client_access::verifier(&ca_file).unwrap(),
    );
    let root = ir_testkit::Root::new();
    for name in ["app", "team/one"] {
        let app = root.layout(name);
        let image = app.image(name.as_bytes());
        app.set_index(&[image.tagged("latest")]);
    }
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    let tls = Arc::new(Tls::with_client_map(config, Arc::new(map)));
    let server =
        TestServer::serve_with(registry, tls, options(ConnLimits::default()), "https").await;
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr.port());
    let as_client = |cn: Option<&str>| {
        let mut b = https_client(&ca);
        if let Some(cn) = cn {
            let identity = reqwest::Identity::from_pem(make_client(&client_ca, cn).as_bytes());
            b = b.identity(identity.unwrap());
        }
        b.build().unwrap()
    };

    // No certificate, or one from another CA: no TLS session.
    assert!(as_client(None).get(url("/v2/")).send().await.is_err());
    let stranger_ca = make_ca();
    let foreign = reqwest::Identity::from_pem(make_client(&stranger_ca, "ops").as_bytes()).unwrap();
    let foreign = https_client(&ca).identity(foreign).build().unwrap();
    assert!(foreign.get(url("/v2/")).send().await.is_err());

    let ci = as_client(Some("ci-runner"));
    let r = ci
        .get(url("/v2/team/one/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = ci
        .get(url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(crate::util::error_code(r).await, "NAME_UNKNOWN");
    let r = ci
        .get(url("/v2/missing/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::util::error_code(r).await, "NAME_UNKNOWN");
    let catalog: serde_json::Value = ci
        .get(url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/one"]));

    let ops = as_client(Some("ops"));
    let catalog: serde_json::Value = ops
        .get(url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["app", "team/one"])
    );

    let unmapped = as_client(Some("someone-else"));
    let r = unmapped
        .get(url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::util::error_code(r).await, "NAME_UNKNOWN");
    let catalog: serde_json::Value = unmapped
        .get(url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]));
    server.stop().await;
}
