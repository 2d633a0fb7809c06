//! `ir-client serve`: a local registry endpoint in front of a real
//! `ir-server -t ra-tls` (emulated realm) or a fake upstream, asked as a
//! container runtime asks, with plain HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::util::{fixture, pki, serve, Fixture, Pki, Server};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::platform::PlatformKeys;
use ir_attest::{EmulatedRealm, Measurements};
use ir_client::emulated::{export, Export};
use ir_client::serve::{Proxy, ServeOptions};
use ir_client::signatures::SignaturePolicy;
use ir_client::{RegistryUrl, TokenSource, Transport};
use ir_server::transport::ratls::RaTls;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// An RA-TLS ir-server trusting `realm` for `app` and `team/tools`.
struct Upstream {
    server: Server,
    pki: Pki,
    _dir: tempfile::TempDir,
}

async fn ratls_server(f: &Fixture, realm: &EmulatedRealm) -> Upstream {
    let dir = tempfile::TempDir::new().unwrap();
    export(
        realm,
        &Export {
            cpak: Some(dir.path().join("cpak.pub")),
            reference_values: Some(dir.path().join("realm.json")),
            name: "demo".into(),
            applications: vec!["app".into(), "team/tools".into()],
            ..Export::default()
        },
    )
    .unwrap();
    let pki = pki();
    let keys = PlatformKeys::load(&dir.path().join("cpak.pub")).unwrap();
    let attestor = Attestor::new(
        &dir.path().join("realm.json"),
        PlatformCheck::Local(keys),
        8,
    )
    .unwrap();
    let certs =
        Arc::new(ir_server::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap());
    let server = serve(
        f.root.path(),
        Arc::new(RaTls::new(certs, Arc::new(attestor), false)),
    )
    .await;
    Upstream {
        server,
        pki,
        _dir: dir,
    }
}

/// A running endpoint.
struct Local {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    _stop: oneshot::Sender<()>,
}

impl Local {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn start(options: ServeOptions) -> Local {
    let proxy = Proxy::new(options).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Local {
        addr,
        proxy,
        _stop: stop,
    }
}

fn ratls_options(up: &Upstream, realm: &EmulatedRealm) -> ServeOptions {
    ServeOptions::new(
        RegistryUrl::parse(&format!("ra-tls://localhost:{}", up.server.port())).unwrap(),
        Transport::RaTls {
            ca: Some(up.pki.ca_pem.clone().into_bytes()),
            token_source: TokenSource::emulated(realm.clone()),
        },
    )
}

fn blob(f: &Fixture, d: &ir_testkit::Desc) -> Vec<u8> {
    std::fs::read(f.root.path().join("app").join(d.file())).unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn oci_error(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    (
        status,
        v["errors"][0]["code"].as_str().unwrap().to_string(),
        v["errors"][0]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_the_pull_api_over_ra_tls_verified() {
    let f = fixture();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let up = ratls_server(&f, &realm).await;
    let local = start(ratls_options(&up, &realm)).await;
    let c = http();

    let r = c.get(local.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Manifest by tag and by digest: the server's bytes and digest.
    let manifest = blob(&f, &f.image.manifest);
    for reference in ["latest", f.image.manifest.digest_str()] {
        let r = c
            .get(local.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{reference}");
        assert_eq!(
            r.headers()["docker-content-digest"],
            f.image.manifest.digest_str()
        );
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(r.bytes().await.unwrap(), manifest);
    }
    let r = c
        .head(local.url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        manifest.len().to_string().as_str()
    );

    // Blobs, GET and HEAD.
    for d in f.image.layers.iter().chain([&f.image.config]) {
        let path = format!("/v2/app/blobs/{}", d.digest_str());
        let r = c.get(local.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["docker-content-digest"], d.digest_str());
        assert_eq!(r.bytes().await.unwrap(), blob(&f, d));
        let r = c.head(local.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], d.size().to_string().as_str());
    }

    // A range, from the whole blob verified first.
    let big = &f.image.layers[1];
    let r = c
        .get(local.url(&format!("/v2/app/blobs/{}", big.digest_str())))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{}", big.size()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), blob(&f, big)[100..200]);
    let r = c
        .get(local.url(&format!("/v2/app/blobs/{}", big.digest_str())))
        .header("range", format!("bytes={}-", big.size() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    // The index of app:multi.
    let r = c
        .get(local.url("/v2/app/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );

    // Tags with n and last.
    let tags = |q: &'static str| {
        let c = c.clone();
        let url = local.url(&format!("/v2/app/tags/list{q}"));
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            v["tags"].clone()
        }
    };
    assert_eq!(tags("").await, serde_json::json!(["latest", "multi"]));
    assert_eq!(tags("?n=1").await, serde_json::json!(["latest"]));
    assert_eq!(tags("?n=1&last=latest").await, serde_json::json!(["multi"]));

    let r = c.get(local.url("/v2/_catalog")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["repositories"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("app")));

    // Referrers: an index (empty here).
    let r = c
        .get(local.url(&format!(
            "/v2/app/referrers/{}",
            f.image.manifest.digest_str()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // Writes are refused as a registry refuses them.
    for (m, path) in [
        (reqwest::Method::PUT, "/v2/app/manifests/latest"),
        (reqwest::Method::POST, "/v2/app/blobs/uploads/"),
        (reqwest::Method::DELETE, "/v2/app/manifests/latest"),
        (reqwest::Method::PATCH, "/v2/app/blobs/uploads/x"),
    ] {
        let r = c.request(m, local.url(path)).send().await.unwrap();
        let (status, code, _) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (405, "UNSUPPORTED"), "{path}");
    }

    // Not found, as upstream says; invalid names never leave.
    let zero = format!("sha256:{}", "0".repeat(64));
    for (path, want) in [
        ("/v2/app/manifests/nope".to_string(), "MANIFEST_UNKNOWN"),
        (format!("/v2/app/manifests/{zero}"), "MANIFEST_UNKNOWN"),
        (format!("/v2/app/blobs/{zero}"), "BLOB_UNKNOWN"),
        ("/v2/nothere/manifests/latest".to_string(), "NAME_UNKNOWN"),
    ] {
        let r = c.get(local.url(&path)).send().await.unwrap();
        let (status, code, _) = oci_error(r).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            code == want || (want == "NAME_UNKNOWN" && code == "MANIFEST_UNKNOWN"),
            "{path}: {code}"
        );
    }
    for (path, want) in [
        ("/v2/App/manifests/latest", "NAME_INVALID"),
        ("/v2/a//b/manifests/latest", "NAME_INVALID"),
        ("/v2/app/blobs/sha256:abc", "DIGEST_INVALID"),
        ("/v2/app/manifests/bad%20tag", "MANIFEST_INVALID"),
    ] {
        let r = c.get(local.url(path)).send().await.unwrap();
        let (status, code, _) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (400, want), "{path}");
    }

    let r = c.get(local.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Attested once, used by many: a handful of handshakes for all of it.
    let n = local.proxy.attestations();
    assert!((1..=4).contains(&n), "{n} attestations");
    up.server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_attestation_is_503_with_the_reason_and_no_retry_storm() {
    let f = fixture();
    let trusted = EmulatedRealm::generate(Measurements::default()).unwrap();
    let stranger = EmulatedRealm::generate(Measurements::default()).unwrap();
    let up = ratls_server(&f, &trusted).await;
    let local = start(ratls_options(&up, &stranger)).await;
    let c = http();
    for _ in 0..20 {
        let r = c
            .get(local.url("/v2/app/manifests/latest"))
            .send()
            .await
            .unwrap();
        let (status, code, message) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
        assert!(
            message.contains("refused this realm's attestation"),
            "{message}"
        );
    }
    let r = c.get(local.url("/healthz")).send().await.unwrap();
    let (status, _, message) = oci_error(r).await;
    assert_eq!(status, 503);
    assert!(message.contains("attestation"), "{message}");
    // One refusal, remembered: not one handshake per request.
    let n = local.proxy.attestations();
    assert!((1..=2).contains(&n), "{n} attestations for 21 requests");
    up.server.stop().await;
}

/// A policy file refusing everything, or accepting anything.
fn policy(dir: &std::path::Path, accept: bool) -> SignaturePolicy {
    let p = dir.join(if accept { "accept.json" } else { "reject.json" });
    let kind = if accept {
        "insecureAcceptAnything"
    } else {
        "reject"
    };
    std::fs::write(
        &p,
        serde_json::json!({"default": [{"type": kind}]}).to_string(),
    )
    .unwrap();
    SignaturePolicy {
        trust: Arc::new(ir_trust::Trust {
            policy: Some(ir_trust::Policy::load(&p).unwrap()),
            notation: None,
        }),
        registry_host: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_the_realms_policy_refuses_are_not_found() {
    let f = fixture();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let up = ratls_server(&f, &realm).await;
    let dir = tempfile::TempDir::new().unwrap();
    let c = http();

    let mut options = ratls_options(&up, &realm);
    options.policy = Some(policy(dir.path(), false));
    let refusing = start(options).await;
    for reference in ["latest", f.image.manifest.digest_str()] {
        let r = c
            .get(refusing.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        let (status, code, message) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
        assert!(message.contains("signature policy"), "{message}");
    }

    let mut options = ratls_options(&up, &realm);
    options.policy = Some(policy(dir.path(), true));
    let accepting = start(options).await;
    let r = c
        .get(accepting.url("/v2/app/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A manifest of an accepted index is accepted by digest.
    let r = c
        .get(accepting.url(&format!(
            "/v2/app/manifests/{}",
            f.amd64.manifest.digest_str()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    up.server.stop().await;
}

/// A fake upstream over http: fixed answers per path (with a
/// `Docker-Content-Digest` when given), every request counted, blobs
/// answered after `delay`.
struct Fake {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

type Routes = HashMap<String, (String, Vec<u8>, Option<String>)>;

async fn fake(routes: Routes, delay: std::time::Duration) -> Fake {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let routes = Arc::new(routes);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => break,
            };
            let routes = routes.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let routes = routes.clone();
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        seen.lock()
                            .unwrap()
                            .push(format!("{} {path}", req.method()));
                        if path.contains("/blobs/") {
                            tokio::time::sleep(delay).await;
                        }
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        match routes.get(&path) {
                            Some((ct, body, digest)) => {
                                *resp.body_mut() = Full::new(Bytes::from(body.clone()));
                                resp.headers_mut()
                                    .insert("content-type", ct.parse().unwrap());
                                if let Some(d) = digest {
                                    resp.headers_mut()
                                        .insert("docker-content-digest", d.parse().unwrap());
                                }
                            }
                            None => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Fake {
        addr,
        requests,
        _stop: stop,
    }
}

fn sha256(b: &[u8]) -> String {
    ir_oci::Digest::of_bytes(ir_oci::Algorithm::Sha256, b).to_string()
}

fn plain_options(fake: &Fake) -> ServeOptions {
    let mut o = ServeOptions::new(
        RegistryUrl::parse(&format!("http://127.0.0.1:{}", fake.addr.port())).unwrap(),
        Transport::Plain,
    );
    o.http.retries = 0;
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_upstream_never_completes_a_wrong_blob_or_manifest() {
    let good = vec![1u8; 200_000];
    let mut wrong = good.clone();
    wrong[199_999] = 2;
    let d = sha256(&good);
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let md = sha256(&manifest);
    let ct = "application/vnd.oci.image.manifest.v1+json".to_string();
    let mut tampered = manifest.clone();
    tampered.push(b' ');
    let routes: Routes = [
        (
            format!("/v2/app/blobs/{d}"),
            ("application/octet-stream".into(), wrong.clone(), None),
        ),
        // A tag without Docker-Content-Digest: nothing to check it by.
        (
            "/v2/app/manifests/bare".into(),
            (ct.clone(), manifest.clone(), None),
        ),
        // A header that does not match the bytes.
        (
            "/v2/app/manifests/lying".into(),
            (ct.clone(), tampered.clone(), Some(md.clone())),
        ),
        (
            format!("/v2/app/manifests/{md}"),
            (ct.clone(), tampered.clone(), None),
        ),
    ]
    .into_iter()
    .collect();
    let up = fake(routes, std::time::Duration::ZERO).await;
    let local = start(plain_options(&up)).await;
    let c = http();

    let r = c
        .get(local.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await;
    assert!(got.is_err(), "the wrong blob was completed");
    // A range of it is refused outright.
    let r = c
        .get(local.url(&format!("/v2/app/blobs/{d}")))
        .header("range", "bytes=199990-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    for path in [
        "/v2/app/manifests/bare".to_string(),
        "/v2/app/manifests/lying".to_string(),
        format!("/v2/app/manifests/{md}"),
    ] {
        let r = c.get(local.url(&path)).send().await.unwrap();
        let (status, _, message) = oci_error(r).await;
        assert_eq!(status, 502, "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_serves_repeated_and_concurrent_pulls_with_one_download() {
    use std::os::unix::fs::PermissionsExt;
    let layer = vec![5u8; 300_000];
    let ld = sha256(&layer);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let md = sha256(&manifest);
    let ct = "application/vnd.oci.image.manifest.v1+json".to_string();
    let routes: Routes = [
        (
            format!("/v2/app/blobs/{ld}"),
            ("application/octet-stream".into(), layer.clone(), None),
        ),
        (
            "/v2/app/manifests/1.0".into(),
            (ct.clone(), manifest.clone(), Some(md.clone())),
        ),
    ]
    .into_iter()
    .collect();
    let up = fake(routes, std::time::Duration::from_millis(300)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let cache = dir.path().join("cache");
    let mut options = plain_options(&up);
    options.cache = Some(cache.clone());
    let local = start(options).await;
    let c = http();

    let pull = || {
        let c = c.clone();
        let m = local.url("/v2/app/manifests/1.0");
        let b = local.url(&format!("/v2/app/blobs/{ld}"));
        async move {
            let r = c.get(m).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let r = c.get(b).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().to_vec()
        }
    };
    // Two at once, then a third.
    let (a, b) = tokio::join!(pull(), pull());
    assert_eq!(a, layer);
    assert_eq!(b, layer);
    assert_eq!(pull().await, layer);
    let seen = up.requests.lock().unwrap().clone();
    let blob_gets = seen.iter().filter(|r| r.contains("/blobs/")).count();
    assert_eq!(blob_gets, 1, "{seen:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");

    // A range comes from the cached copy too.
    let r = c
        .get(local.url(&format!("/v2/app/blobs/{ld}")))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), layer[layer.len() - 10..]);
    assert_eq!(
        up.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .count(),
        1
    );

    // Private files; a cached file changed on disk is not served.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    let file = cache.join(format!("sha256-{}", &ld["sha256:".len()..]));
    assert_eq!(mode(&file), 0o600);
    std::fs::write(&file, vec![6u8; layer.len()]).unwrap();
    assert_eq!(pull().await, layer);
    assert_eq!(
        up.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_listen_address_without_tls_is_refused() {
    let o = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ir-client"))
            .args(["serve", "http://127.0.0.1:1", "--listen", "0.0.0.0:0"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
