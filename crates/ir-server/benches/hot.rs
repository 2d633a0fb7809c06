//! Micro-benchmarks of the request path's hot pieces (divan):
//!
//! ```sh
//! CARGO_BUILD_JOBS=1 cargo bench -p ir-server --bench hot
//! ```
//!
//! digest and reference parsing, route parsing, `Range` evaluation,
//! hashing throughput (the streaming verification of every blob byte), and
//! whole requests through `api::handle` (routing, reference resolution,
//! headers) without the network, against a registry written by ir-testkit.

use std::net::SocketAddr;
use std::sync::Arc;

use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use http::{Method, Request};
use ir_oci::{Algorithm, Digest, Reference};
use ir_server::api::{self, range, route, ApiState, ConnInfo};
use ir_server::snapshot::catalog::{self, Catalog};

fn main() {
    divan::main();
}

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[divan::bench]
fn digest_parse_sha256() -> Digest {
    Digest::parse(black_box(DIGEST)).unwrap()
}

#[divan::bench]
fn digest_parse_invalid() -> bool {
    Digest::parse(black_box(
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    ))
    .is_err()
}

#[divan::bench(args = ["latest", DIGEST])]
fn reference_parse(s: &str) -> Reference {
    Reference::parse(black_box(s)).unwrap()
}

#[divan::bench(args = [
    "/v2/team/app/manifests/latest",
    "/v2/team/app/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "/v2/a/b/c/d/e/tags/list",
    "/v2/_catalog",
])]
fn route_parse(path: &str) -> bool {
    route::parse(black_box(path)).is_ok()
}

#[divan::bench(args = ["bytes=134217728-135266303", "bytes=-1024", "bytes=0-1,5-6", "items=1-2"])]
fn range_evaluate(header: &str) -> range::RangeOutcome {
    range::evaluate(black_box(header), 256 << 20)
}

/// Hashing throughput per chunk size (the blob stream hashes 256 KiB
/// chunks; compare with `openssl speed -evp sha256` on one core).
#[divan::bench(args = [16 << 10, 256 << 10, 1 << 20])]
fn sha256_chunk(bencher: Bencher, len: usize) {
    let data = vec![0x5au8; len];
    bencher.counter(BytesCount::new(len)).bench(|| {
        let mut h = Algorithm::Sha256.hasher();
        h.update(black_box(&data));
        h.finish()
    });
}

#[divan::bench(args = [256 << 10])]
fn sha512_chunk(bencher: Bencher, len: usize) {
    let data = vec![0x5au8; len];
    bencher.counter(BytesCount::new(len)).bench(|| {
        let mut h = Algorithm::Sha512.hasher();
        h.update(black_box(&data));
        h.finish()
    });
}

/// Checking one sealed chunk (what every GET of a sealed blob does per
/// 256 KiB), against `sha256_chunk` at the same size.
#[divan::bench]
fn seal_verify_chunk(bencher: Bencher) {
    use ir_server::delivery::chunk_seal::{SealBuilder, SealKey, SEAL_CHUNK};
    let data = vec![0x5au8; SEAL_CHUNK];
    let key = std::sync::Arc::new(SealKey::random().expect("OS randomness"));
    let mut b = SealBuilder::new(key, data.len() as u64).expect("one chunk");
    b.update(&data);
    let seal = b.finish().expect("whole chunk fed");
    bencher
        .counter(BytesCount::new(data.len()))
        .bench(|| seal.verify(0, black_box(&data)));
}

/// A served registry: `team/app` with tags `t00`..`t19` on one image, and
/// 50 more applications for the catalog.
struct Fixture {
    _root: ir_testkit::Root,
    state: ApiState,
    conn: ConnInfo,
    manifest: String,
    layer: String,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let root = ir_testkit::Root::new();
    let app = root.layout("team/app");
    let image = app.image(b"a layer");
    let tags: Vec<_> = (0..20).map(|i| image.tagged(&format!("t{i:02}"))).collect();
    app.set_index(&tags);
    for i in 0..50 {
        root.good(&format!("extra/app-{i:02}"));
    }
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    assert!(registry.rejected.is_empty());
    Fixture {
        state: ApiState::new(catalog::shared(Catalog::new(registry)), false),
        conn: ConnInfo::open(SocketAddr::from(([127, 0, 0, 1], 40000))),
        manifest: image.manifest.digest_str().to_string(),
        layer: image.layers[0].digest_str().to_string(),
        _root: root,
        rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    }
}

fn request(method: Method, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .body(())
        .unwrap()
}

/// Whole requests through `api::handle` (no network, no hyper).
#[divan::bench(args = ["manifest by tag", "manifest by digest", "HEAD blob", "HEAD blob HTTP/1.0 keep-alive", "tags/list", "catalog", "unknown name"])]
fn handle(bencher: Bencher, what: &str) {
    let f = fixture();
    let (method, path) = match what {
        "manifest by tag" => (Method::GET, "/v2/team/app/manifests/t07".to_string()),
        "manifest by digest" => (
            Method::GET,
            format!("/v2/team/app/manifests/{}", f.manifest),
        ),
        "HEAD blob" | "HEAD blob HTTP/1.0 keep-alive" => {
            (Method::HEAD, format!("/v2/team/app/blobs/{}", f.layer))
        }
        "tags/list" => (Method::GET, "/v2/team/app/tags/list".to_string()),
        "catalog" => (Method::GET, "/v2/_catalog".to_string()),
        _ => (Method::GET, "/v2/nobody/manifests/latest".to_string()),
    };
    // What `ab -k` sends: the head is reordered for it (`api::http10_order`).
    let http10 = what.ends_with("HTTP/1.0 keep-alive");
    let state = Arc::new(f.state);
    bencher
        .with_inputs(|| {
            let mut req = request(method.clone(), &path);
            if http10 {
                *req.version_mut() = http::Version::HTTP_10;
                req.headers_mut()
                    .insert("connection", http::HeaderValue::from_static("Keep-Alive"));
            }
            req
        })
        .bench_local_values(|req| f.rt.block_on(api::handle(&state, &f.conn, req)));
}

/// A manifest GET by an identified client (an attested realm) with
/// delivery receipts off and on (`--receipts`): the record is built and
/// queued on the request path; the journal is written by its own thread.
#[divan::bench(args = ["receipts off", "receipts on"])]
fn handle_receipted(bencher: Bencher, what: &str) {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut state = f.state;
    if what == "receipts on" {
        let key = dir.path().join("receipts.key");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        let config = ir_server::audit::AuditConfig {
            receipts: Some(ir_server::audit::ReceiptsConfig {
                dir: dir.path().join("journal"),
                key,
                checkpoint_every: 1000,
                max_file_bytes: 64 << 20,
            }),
            events: None,
        };
        let audit = Arc::new(ir_server::audit::Audit::start(&config).unwrap());
        state = state.with_audit(Some(audit));
    }
    let mut conn = f.conn.clone();
    conn.identity = Some(Arc::new(ir_receipts::Identity::Realm {
        rim: "ab".repeat(32),
        rems: std::array::from_fn(|_| "00".repeat(32)),
        personalization: "00".repeat(64),
        platform_instance_id_sha256: "cd".repeat(32),
    }));
    let state = Arc::new(state);
    bencher
        .with_inputs(|| request(Method::GET, "/v2/team/app/manifests/t07"))
        .bench_local_values(|req| f.rt.block_on(api::handle(&state, &conn, req)));
}

/// A manifest request by tag with authentication on (`--htpasswd`): a
/// bearer token from the token endpoint checked per request (its
/// signature once, then remembered), and Basic credentials (bcrypt once,
/// then the cache); "off" is the same request without authentication.
#[divan::bench(args = ["off", "bearer token", "basic"])]
fn handle_authenticated(bencher: Bencher, what: &str) {
    use base64::Engine;
    use ir_server::auth::{Auth, AuthConfig, TokenSource};
    let f = fixture();
    // Password checks wait for a slot with a timeout: timers on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let auth = Auth::load(&AuthConfig {
        source: TokenSource::Local {
            htpasswd,
            key: None,
            ttl: std::time::Duration::from_secs(3600),
        },
        realm: "https://bench/token".into(),
        service: "bench".into(),
        issuer: "bench".into(),
        access_map: None,
    })
    .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    let token_req = Request::builder()
        .uri("/token?service=bench&scope=repository:team/app:pull")
        .header("authorization", &basic)
        .body(())
        .unwrap();
    let response = rt.block_on(auth.token_endpoint(&token_req)).unwrap();
    let body = match response.into_body() {
        ir_server::delivery::Body::Full(Some(b)) => b,
        _ => unreachable!("the token response is one buffer"),
    };
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let authorization = match what {
        "off" => None,
        "bearer token" => Some(bearer),
        _ => Some(basic),
    };
    let state = Arc::new(if authorization.is_some() {
        f.state.with_auth(Some(Arc::new(auth)))
    } else {
        f.state
    });
    bencher
        .with_inputs(|| {
            let mut req = request(Method::GET, "/v2/team/app/manifests/t07");
            if let Some(a) = &authorization {
                req.headers_mut()
                    .insert("authorization", a.parse().unwrap());
            }
            req
        })
        .bench_local_values(|req| rt.block_on(api::handle(&state, &f.conn, req)));
}
