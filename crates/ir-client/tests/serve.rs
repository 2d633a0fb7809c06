//! `ir-client serve`: a local registry endpoint in front of a real
//! `ir-server -t ra-tls` (emulated realm) or a fake upstream, asked as a
//! container runtime asks, with plain HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::util::{fixture, get, pki, serve, Fixture, Pki, Server};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::cca_platform::PlatformKeys;
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
    ratls_server_with(f, realm, None).await
}

/// [`ratls_server`], closing connections `max_age` old when given.
async fn ratls_server_with(
    f: &Fixture,
    realm: &EmulatedRealm,
    max_age: Option<std::time::Duration>,
) -> Upstream {
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
    let certs = Arc::new(
        ir_server::transport::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap(),
    );
    let mut ratls = RaTls::new(certs, Arc::new(attestor), false);
    if let Some(age) = max_age {
        ratls = ratls.with_max_connection_age(age);
    }
    let server = serve(f.root.path(), Arc::new(ratls)).await;
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

    /// A GET of `path` on this endpoint with `c`.
    async fn get(&self, c: &reqwest::Client, path: &str) -> reqwest::Response {
        get(c, self.url(path)).await
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

    let r = local.get(&c, "/v2/").await;
    assert_eq!(r.status(), 200);

    // Many local clients at once share the pool's attested connections.
    let big = &f.image.layers[1];
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            let url = local.url(&format!("/v2/app/blobs/{}", big.digest_str()));
            tokio::spawn(async move { get(&c, url).await.bytes().await.unwrap() })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap(), blob(&f, big));
    }
    let after_burst = local.proxy.attestations();
    assert!((1..=4).contains(&after_burst), "{after_burst} attestations");

    // Manifest by tag and by digest: the server's bytes and digest.
    let manifest = blob(&f, &f.image.manifest);
    for reference in ["latest", f.image.manifest.digest_str()] {
        let r = local
            .get(&c, &format!("/v2/app/manifests/{reference}"))
            .await;
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
        let r = local.get(&c, &path).await;
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
    let r = local.get(&c, "/v2/app/manifests/multi").await;
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
            let r = get(&c, url).await;
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            v["tags"].clone()
        }
    };
    assert_eq!(tags("").await, serde_json::json!(["latest", "multi"]));
    assert_eq!(tags("?n=1").await, serde_json::json!(["latest"]));
    assert_eq!(tags("?n=1&last=latest").await, serde_json::json!(["multi"]));

    let r = local.get(&c, "/v2/_catalog").await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["repositories"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("app")));

    // Referrers: an index (empty here).
    let r = local
        .get(
            &c,
            &format!("/v2/app/referrers/{}", f.image.manifest.digest_str()),
        )
        .await;
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
        let r = local.get(&c, &path).await;
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
        let r = local.get(&c, path).await;
        let (status, code, _) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (400, want), "{path}");
    }

    let r = local.get(&c, "/healthz").await;
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
    let mut options = ratls_options(&up, &stranger);
    options.refusal_memory = std::time::Duration::from_secs(2);
    let local = start(options).await;
    let c = http();
    // Twenty at once, then twenty more.
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            let url = local.url("/v2/app/manifests/latest");
            tokio::spawn(async move { get(&c, url).await.status().as_u16() })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap(), 503);
    }
    for _ in 0..20 {
        let r = local.get(&c, "/v2/app/manifests/latest").await;
        let (status, code, message) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
        assert!(
            message.contains("refused this realm's attestation"),
            "{message}"
        );
    }
    let r = local.get(&c, "/healthz").await;
    let (status, _, message) = oci_error(r).await;
    assert_eq!(status, 503);
    assert!(message.contains("attestation"), "{message}");
    // One refusal, remembered: not one handshake per request.
    let n = local.proxy.attestations();
    assert!((1..=4).contains(&n), "{n} attestations for 41 requests");
    // Once the refusal is forgotten, the next request attests again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = local.get(&c, "/v2/app/manifests/latest").await;
    assert_eq!(r.status(), 503);
    assert_eq!(local.proxy.attestations(), n + 1);
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
        let r = refusing
            .get(&c, &format!("/v2/app/manifests/{reference}"))
            .await;
        let (status, code, message) = oci_error(r).await;
        assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
        assert!(message.contains("signature policy"), "{message}");
    }

    let mut options = ratls_options(&up, &realm);
    options.policy = Some(policy(dir.path(), true));
    let accepting = start(options).await;
    let r = accepting.get(&c, "/v2/app/manifests/multi").await;
    assert_eq!(r.status(), 200);
    // A manifest of an accepted index is accepted by digest.
    let r = accepting
        .get(
            &c,
            &format!("/v2/app/manifests/{}", f.amd64.manifest.digest_str()),
        )
        .await;
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
    fake_cutting(routes, delay, None).await
}

/// [`fake`] whose first answer for `cut` stops halfway (the connection
/// dropped); `Range: bytes=N-` is honoured.
async fn fake_cutting(routes: Routes, delay: std::time::Duration, cut: Option<String>) -> Fake {
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Bytes, Frame};
    let routes = Arc::new(routes);
    let cut = Arc::new(Mutex::new(cut));
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
            let cut = cut.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let routes = routes.clone();
                    let seen = seen.clone();
                    let cut = cut.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let range = req
                            .headers()
                            .get("range")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("bytes="))
                            .and_then(|v| v.strip_suffix('-'))
                            .and_then(|v| v.parse::<usize>().ok());
                        seen.lock().unwrap().push(match range {
                            Some(r) => format!("{} {path} from {r}", req.method()),
                            None => format!("{} {path}", req.method()),
                        });
                        if path.contains("/blobs/") {
                            tokio::time::sleep(delay).await;
                        }
                        let empty = || Full::new(Bytes::new()).map_err(|n| match n {}).boxed();
                        let mut resp = hyper::Response::new(empty());
                        match routes.get(&path) {
                            Some((_, body, _))
                                if cut.lock().unwrap().take_if(|c| *c == path).is_some() =>
                            {
                                let half = Bytes::from(body[..body.len() / 2].to_vec());
                                let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
                                    vec![Ok(Frame::data(half)), Err(std::io::Error::other("cut"))];
                                use futures_util::StreamExt as _;
                                // Headers first, then half, then the cut.
                                let slow = futures_util::stream::iter(frames).then(|f| async {
                                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                    f
                                });
                                *resp.body_mut() = BodyExt::boxed(StreamBody::new(slow));
                                resp.headers_mut()
                                    .insert("content-length", body.len().into());
                            }
                            Some((_, body, _)) if range.is_some() => {
                                let from = range.unwrap_or(0).min(body.len());
                                *resp.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
                                resp.headers_mut().insert(
                                    "content-range",
                                    format!("bytes {from}-{}/{}", body.len() - 1, body.len())
                                        .parse()
                                        .unwrap(),
                                );
                                *resp.body_mut() = Full::new(Bytes::from(body[from..].to_vec()))
                                    .map_err(|n| match n {})
                                    .boxed();
                            }
                            Some((ct, body, digest)) => {
                                *resp.body_mut() = Full::new(Bytes::from(body.clone()))
                                    .map_err(|n| match n {})
                                    .boxed();
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

/// The route of one blob of app: its path and the routes answering it.
fn blob_route(blob: &[u8]) -> (String, Routes) {
    let path = format!("/v2/app/blobs/{}", sha256(blob));
    let answer = ("application/octet-stream".into(), blob.to_vec(), None);
    (path.clone(), [(path, answer)].into_iter().collect())
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image manifest with the config `{}` and one layer `digest` of
/// `size` bytes: its bytes and digest.
fn one_layer_manifest(digest: &str, size: usize) -> (Vec<u8>, String) {
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}],
    }))
    .unwrap();
    let md = sha256(&manifest);
    (manifest, md)
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

    let r = local.get(&c, &format!("/v2/app/blobs/{d}")).await;
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
        let r = local.get(&c, &path).await;
        let (status, _, message) = oci_error(r).await;
        assert_eq!(status, 502, "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_serves_repeated_and_concurrent_pulls_with_one_download() {
    use std::os::unix::fs::PermissionsExt;
    let layer = vec![5u8; 300_000];
    let ld = sha256(&layer);
    let (manifest, md) = one_layer_manifest(&ld, layer.len());
    let ct = MANIFEST_TYPE.to_string();
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
            let r = get(&c, m).await;
            assert_eq!(r.status(), 200);
            let r = get(&c, b).await;
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
async fn a_cached_file_changed_while_it_is_served_is_cut_before_its_end() {
    use std::os::unix::fs::FileExt;
    // Larger than what the endpoint and the sockets buffer ahead of a
    // client that pauses.
    let layer: Vec<u8> = (0..24usize << 20).map(|i| (i % 251) as u8).collect();
    let ld = sha256(&layer);
    let path = format!("/v2/app/blobs/{ld}");
    let routes: Routes = [(
        path.clone(),
        ("application/octet-stream".into(), layer.clone(), None),
    )]
    .into_iter()
    .collect();
    let up = fake(routes, std::time::Duration::ZERO).await;
    let dir = tempfile::TempDir::new().unwrap();
    let cache = dir.path().join("cache");
    let mut options = plain_options(&up);
    options.cache = Some(cache.clone());
    let local = start(options).await;
    let c = http();
    // The first pull fills the cache; the second is served from the file
    // the endpoint verified and holds open.
    let r = c.get(local.url(&path)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), layer.len());
    let mut r = c.get(local.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = r.chunk().await.unwrap().unwrap().len();
    // Changed in place (same inode) while the client pauses.
    let file = cache.join(format!("sha256-{}", &ld["sha256:".len()..]));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(b"x", layer.len() as u64 - 1)
        .unwrap();
    let cut = loop {
        match r.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the response ended normally after {got} bytes");
    assert!(got < layer.len(), "{got} bytes");
    assert_eq!(
        up.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .count(),
        1
    );
    // The next pull hashes the file again, finds it changed and fetches
    // the blob again.
    let r = c.get(local.url(&path)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), layer);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_closes_is_replaced_without_failing_a_request() {
    let f = fixture();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let age = std::time::Duration::from_millis(300);
    let up = ratls_server_with(&f, &realm, Some(age)).await;
    let mut options = ratls_options(&up, &realm);
    options.connections = 1;
    let local = start(options).await;
    let c = http();
    let layer = &f.image.layers[1];
    // Requests across several connection ages: the server closes the
    // attested connection under them, none fails.
    for round in 0..12 {
        let r = local
            .get(&c, &format!("/v2/app/blobs/{}", layer.digest_str()))
            .await;
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(r.bytes().await.unwrap(), blob(&f, layer), "round {round}");
        let r = local.get(&c, "/v2/app/manifests/latest").await;
        assert_eq!(r.status(), 200, "round {round}");
        tokio::time::sleep(age / 3).await;
    }
    // Replaced by fresh attestations on the one pooled slot.
    assert!(
        local.proxy.attestations() >= 2,
        "{}",
        local.proxy.attestations()
    );
    up.server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_whose_length_differs_from_its_manifest_is_refused() {
    let layer = vec![9u8; 1000];
    let ld = sha256(&layer);
    let (manifest, md) = one_layer_manifest(&ld, 999);
    let ct = MANIFEST_TYPE.to_string();
    let routes: Routes = [
        (
            format!("/v2/app/blobs/{ld}"),
            ("application/octet-stream".into(), layer.clone(), None),
        ),
        ("/v2/app/manifests/1.0".into(), (ct, manifest, Some(md))),
    ]
    .into_iter()
    .collect();
    let up = fake(routes, std::time::Duration::ZERO).await;
    let local = start(plain_options(&up)).await;
    let c = http();
    let r = local.get(&c, "/v2/app/manifests/1.0").await;
    assert_eq!(r.status(), 200);
    let r = local.get(&c, &format!("/v2/app/blobs/{ld}")).await;
    let (status, code, _) = oci_error(r).await;
    assert_eq!((status, code.as_str()), (502, "SIZE_INVALID"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_serves_and_logs_one_line_per_request() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let md = sha256(&manifest);
    let ct = "application/vnd.oci.image.manifest.v1+json".to_string();
    let routes: Routes = [(
        "/v2/team/app/manifests/1.0".to_string(),
        (ct, manifest.clone(), Some(md.clone())),
    )]
    .into_iter()
    .collect();
    let up = fake(routes, std::time::Duration::ZERO).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-client"))
        .args([
            "serve",
            &format!("http://127.0.0.1:{}", up.addr.port()),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let c = http();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if c.get(format!("{base}/v2/")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "ir-client serve did not start");
    let r = get(&c, format!("{base}/v2/team/app/manifests/1.0")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), manifest);
    let r = get(&c, format!("{base}/healthz")).await;
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("/v2/team/app/manifests/1.0"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    for want in [
        "client=127.0.0.1:",
        &format!("digest={md}"),
        &format!("bytes={}", manifest.len()),
        "upstream=c",
        "status=200",
        "ms=",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(log.lines().any(|l| l.contains("/healthz")), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_tls_with_a_certificate_on_any_address() {
    let f = fixture();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let up = ratls_server(&f, &realm).await;
    let mut options = ratls_options(&up, &realm);
    options.listen = "0.0.0.0:0".parse().unwrap();
    options.tls = Some((up.pki.cert_file.clone(), up.pki.key_file.clone()));
    let local = start(options).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(
            ir_client::ratls::tls_config(Some(up.pki.ca_pem.as_bytes()), None).unwrap(),
        )
        .build()
        .unwrap();
    let r = get(
        &c,
        format!(
            "https://localhost:{}/v2/app/manifests/latest",
            local.addr.port()
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), blob(&f, &f.image.manifest));
    // Plain HTTP on the TLS port gets nothing.
    assert!(http().get(local.url("/v2/")).send().await.is_err());
    up.server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_transfer_cut_upstream_resumes_and_completes_verified() {
    let layer: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    let (path, routes) = blob_route(&layer);
    let up = fake_cutting(routes, std::time::Duration::ZERO, Some(path.clone())).await;
    let local = start(plain_options(&up)).await;
    let r = http().get(local.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), layer);
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].contains(" from "), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_follows_no_symlink() {
    let dir = tempfile::TempDir::new().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = dir.path().join("cache");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let mut options = ServeOptions::new(
        RegistryUrl::parse("http://127.0.0.1:1").unwrap(),
        Transport::Plain,
    );
    options.cache = Some(link);
    let e = Proxy::new(options)
        .err()
        .expect("a symlinked cache is refused");
    assert!(e.to_string().contains("symlink"), "{e}");

    // A cached blob replaced by a symlink to a file with the same bytes
    // is not served from there: it is fetched again.
    let layer = vec![3u8; 1000];
    let ld = sha256(&layer);
    let (path, routes) = blob_route(&layer);
    let up = fake(routes, std::time::Duration::ZERO).await;
    let cache = dir.path().join("real");
    let mut options = plain_options(&up);
    options.cache = Some(cache.clone());
    let local = start(options).await;
    let get = || async {
        let r = http().get(local.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    };
    assert_eq!(get().await, layer);
    let file = cache.join(format!("sha256-{}", &ld["sha256:".len()..]));
    let outside = dir.path().join("outside");
    std::fs::write(&outside, &layer).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&outside, &file).unwrap();
    assert_eq!(get().await, layer);
    assert_eq!(up.requests.lock().unwrap().len(), 2);
    // The symlink was dropped, not followed.
    assert!(outside.exists());
    assert!(std::fs::symlink_metadata(&file)
        .map(|m| !m.file_type().is_symlink())
        .unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_judges_tags_and_accepts_the_manifests_of_a_signed_index() {
    use ir_testkit::cosign::{cosign_sign, Key};
    const HOST: &str = "registry.test";
    let key = Key::p256();
    let root = ir_testkit::Root::new();
    let app = root.layout("app");
    let amd64 = app.image(b"amd64");
    let arm64 = app.image(b"arm64");
    let index = app.index(&[
        amd64.manifest.platform("linux", "amd64"),
        arm64.manifest.platform("linux", "arm64"),
    ]);
    let unsigned = app.image(b"unsigned");
    let sig = cosign_sign(&app, &index, &format!("{HOST}/app:multi"), &key);
    app.set_index(&[index.tagged("multi"), unsigned.tagged("unsigned"), sig]);
    let key_path = key.write_public(root.path().parent().unwrap(), "cosign.pub");
    let server = serve(root.path(), Arc::new(ir_server::transport::plain::Plain)).await;
    let file = key_path.with_file_name("policy.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {HOST: [{"type": "sigstoreSigned", "keyPath": key_path}]}},
        }))
        .unwrap(),
    )
    .unwrap();
    let mut options = ServeOptions::new(
        RegistryUrl::parse(&format!("http://{}", server.addr)).unwrap(),
        Transport::Plain,
    );
    options.policy = Some(SignaturePolicy {
        trust: Arc::new(ir_trust::Trust {
            policy: Some(ir_trust::Policy::load(&file).unwrap()),
            notation: None,
        }),
        registry_host: Some(HOST.into()),
    });
    let local = start(options).await;
    let c = http();
    let get = |path: String| {
        let c = c.clone();
        let url = local.url(&path);
        async move { get(&c, url).await }
    };

    // Before the index is accepted, its manifests by digest are judged
    // alone: unsigned, refused.
    let child = format!("/v2/app/manifests/{}", amd64.manifest.digest_str());
    let (status, code, _) = oci_error(get(child.clone()).await).await;
    assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));

    let r = get("/v2/app/manifests/multi".into()).await;
    assert_eq!(r.status(), 200);
    for d in [&amd64.manifest, &arm64.manifest] {
        let r = get(format!("/v2/app/manifests/{}", d.digest_str())).await;
        assert_eq!(r.status(), 200, "{}", d.digest_str());
    }

    let (status, code, message) = oci_error(get("/v2/app/manifests/unsigned".into()).await).await;
    assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
    assert!(message.contains("registry.test/app:unsigned"), "{message}");
    let (status, _, _) = oci_error(
        get(format!(
            "/v2/app/manifests/{}",
            unsigned.manifest.digest_str()
        ))
        .await,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}
