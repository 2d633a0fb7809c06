//! Prometheus metrics and the metrics listener, against the real server.
//!
//! Each server has its own metrics; the tests of this file still run one
//! at a time, each on its own runtime that is shut down (closing its
//! connections) before the next starts, and compare values before and
//! after their own traffic.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{client, TestServer};
use ir_oci::LoadOptions;
use ir_server::api::ApiState;
use ir_server::metrics::status::Observed;
use ir_server::metrics::Metrics;
use ir_server::snapshot::catalog::{self, Catalog};
use ir_server::snapshot::reload::Reloader;
use ir_testkit::Root;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` alone, on a runtime of its own that is gone when it returns.
fn serial<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _alone = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test());
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// Starts a metrics listener for `metrics` and `observed` on an ephemeral
/// port.
async fn metrics_listener(metrics: Arc<Metrics>, observed: Observed) -> String {
    let addr =
        ir_server::metrics::listener::start("127.0.0.1:0".parse().unwrap(), metrics, observed)
            .await
            .unwrap();
    format!("http://{addr}")
}

/// The metrics listener of a test server.
async fn listener_of(server: &TestServer) -> String {
    metrics_listener(server.metrics.clone(), server.state.observed()).await
}

async fn scrape(base: &str) -> String {
    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    r.text().await.unwrap()
}

/// The value of one series (`name{labels}`), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.split(' ').next().unwrap().parse().unwrap())
        .unwrap_or(0.0)
}

fn requests(endpoint: &str, method: &str, status: u16) -> String {
    format!(
        "ir_server_http_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}}"
    )
}

async fn status_of(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

#[test]
fn values_after_known_traffic() {
    serial(|| async {
        let root = Root::new();
        let app = root.layout("app");
        let image = app.image(&vec![7u8; 123_456]);
        app.set_index(&[image.tagged("latest")]);
        let server = TestServer::start(root.path()).await;
        let base = listener_of(&server).await;
        let before = scrape(&base).await;

        let c = client();
        let mut manifest_bytes = 0;
        for _ in 0..3 {
            let r = c
                .get(server.url("/v2/app/manifests/latest"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            manifest_bytes += r.bytes().await.unwrap().len();
        }
        let r = c
            .get(server.url("/v2/app/manifests/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        manifest_bytes += r.bytes().await.unwrap().len();
        let layer = format!("/v2/app/blobs/{}", image.layers[0].digest_str());
        let r = c.get(server.url(&layer)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let blob_bytes = r.bytes().await.unwrap().len();
        assert_eq!(blob_bytes, 123_456);
        let r = c.head(server.url(&layer)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c.get(server.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c.delete(server.url(&layer)).send().await.unwrap();
        assert_eq!(r.status(), 405);

        let after = scrape(&base).await;
        let delta = |series: &str| value(&after, series) - value(&before, series);
        assert_eq!(delta(&requests("manifest", "GET", 200)), 3.0, "{after}");
        assert_eq!(delta(&requests("manifest", "GET", 404)), 1.0, "{after}");
        assert_eq!(delta(&requests("blob", "GET", 200)), 1.0, "{after}");
        assert_eq!(delta(&requests("blob", "HEAD", 200)), 1.0, "{after}");
        assert_eq!(delta(&requests("blob", "DELETE", 405)), 1.0, "{after}");
        assert_eq!(delta(&requests("base", "GET", 200)), 1.0, "{after}");
        assert_eq!(
            delta("ir_server_http_response_body_bytes_total{endpoint=\"manifest\"}"),
            manifest_bytes as f64,
            "bytes served are the sum of the bodies: {after}"
        );
        // The HEAD sent no body; the DELETE's error body counts.
        let delete_body = value(
            &after,
            "ir_server_http_response_body_bytes_total{endpoint=\"blob\"}",
        ) - value(
            &before,
            "ir_server_http_response_body_bytes_total{endpoint=\"blob\"}",
        ) - blob_bytes as f64;
        assert!(
            delete_body > 0.0 && delete_body < 1000.0,
            "{delete_body}: {after}"
        );
        assert_eq!(
            delta("ir_server_http_request_duration_seconds_count{endpoint=\"manifest\"}"),
            4.0
        );
        assert_eq!(
            delta("ir_server_http_request_duration_seconds_count{endpoint=\"blob\"}"),
            3.0
        );
        assert!(delta("ir_server_http_request_duration_seconds_sum{endpoint=\"manifest\"}") > 0.0);
        assert_eq!(
            value(&after, "ir_server_applications{state=\"served\"}"),
            1.0
        );
        assert_eq!(
            value(&after, "ir_server_applications{state=\"rejected\"}"),
            0.0
        );
        assert_eq!(value(&after, "ir_server_ready"), 1.0);
        assert!(after.contains("ir_server_build_info{version=\""));
        server.stop().await;
    });
}

/// The first whole download of a large blob seals it: 16 bytes per
/// 256 KiB chunk plus the entry's overhead, shown by the seal memory
/// gauge; a second download and a range add nothing.
#[test]
fn seal_memory_after_a_whole_download() {
    serial(|| async {
        let root = Root::new();
        let app = root.layout("app");
        let image = app.image(&vec![9u8; 3 * (256 << 10) + 1]);
        app.set_index(&[image.tagged("latest")]);
        let server = TestServer::start(root.path()).await;
        let base = listener_of(&server).await;
        let gauge = "ir_server_blob_seal_memory_bytes";
        let sealed = (4 * 16 + ir_server::delivery::seal_cache::ENTRY_OVERHEAD) as f64;
        assert_eq!(value(&scrape(&base).await, gauge), 0.0);
        let layer = server.url(&format!("/v2/app/blobs/{}", image.layers[0].digest_str()));
        for _ in 0..2 {
            let r = client().get(&layer).send().await.unwrap();
            assert_eq!(r.bytes().await.unwrap().len(), 3 * (256 << 10) + 1);
            assert_eq!(value(&scrape(&base).await, gauge), sealed);
        }
        let r = client()
            .get(&layer)
            .header("range", "bytes=100-300000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().len(), 299_901);
        assert_eq!(value(&scrape(&base).await, gauge), sealed);
        server.stop().await;
    });
}

/// The first whole download of a large blob keeps its verified copy in
/// memory: its page-rounded size, shown by the blob cache gauge; later
/// downloads and ranges are sent from it and add nothing.
#[test]
fn blob_cache_memory_after_a_whole_download() {
    serial(|| async {
        let root = Root::new();
        let app = root.layout("app");
        let size = 3 * (256 << 10) + 1;
        let image = app.image(&vec![7u8; size]);
        app.set_index(&[image.tagged("latest")]);
        let server = TestServer::start_cached(root.path(), 8 << 20).await;
        let base = listener_of(&server).await;
        let gauge = "ir_server_blob_cache_bytes";
        assert_eq!(value(&scrape(&base).await, gauge), 0.0);
        let layer = server.url(&format!("/v2/app/blobs/{}", image.layers[0].digest_str()));
        let mut held = None;
        for range in [None, None, Some("bytes=5-9")] {
            let mut req = client().get(&layer);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let body = req.send().await.unwrap().bytes().await.unwrap();
            assert_eq!(body.len(), if range.is_some() { 5 } else { size });
            let now = value(&scrape(&base).await, gauge);
            // The size rounded up to whole pages (4-64 KiB).
            assert!(
                now >= size as f64 && now < (size + (64 << 10)) as f64,
                "{now}"
            );
            assert_eq!(*held.get_or_insert(now), now);
        }
        server.stop().await;
    });
}

#[test]
fn readiness_before_and_after_the_first_load() {
    serial(|| async {
        let root = Root::new();
        root.good("one");
        root.good("two");
        let shared = catalog::shared(Catalog::default());
        let state = Arc::new(ApiState::loading(shared.clone(), false));
        let base = metrics_listener(Arc::new(Metrics::new()), state.observed()).await;

        assert_eq!(status_of(&format!("{base}/healthz")).await, 200);
        assert_eq!(status_of(&format!("{base}/readyz")).await, 503);
        let text = scrape(&base).await;
        assert_eq!(value(&text, "ir_server_ready"), 0.0, "{text}");
        assert_eq!(
            value(&text, "ir_server_applications{state=\"served\"}"),
            0.0
        );

        let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
        shared.store(Arc::new(Catalog::new(registry)));
        state.set_ready();

        assert_eq!(status_of(&format!("{base}/healthz")).await, 200);
        assert_eq!(status_of(&format!("{base}/readyz")).await, 200);
        let text = scrape(&base).await;
        assert_eq!(value(&text, "ir_server_ready"), 1.0, "{text}");
        assert_eq!(
            value(&text, "ir_server_applications{state=\"served\"}"),
            2.0
        );

        // Only GET and HEAD, only the three paths.
        assert_eq!(status_of(&format!("{base}/v2/")).await, 404);
        let r = client()
            .post(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    });
}

#[test]
fn open_connections_gauge() {
    serial(|| async {
        let root = Root::new();
        root.good("app");
        let server = TestServer::start(root.path()).await;
        let base = listener_of(&server).await;
        let gauge = || async { value(&scrape(&base).await, "ir_server_open_connections") };
        let accepted = || async { value(&scrape(&base).await, "ir_server_connections_total") };
        let wait_for = |want: f64| {
            let gauge = &gauge;
            async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let now = gauge().await;
                    if now == want {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "open connections {now}, want {want}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let start = gauge().await;
        let accepted_before = accepted().await;

        // Three idle connections, one of them after a request.
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
        }
        wait_for(start + 3.0).await;
        let keep_alive = client();
        let r = keep_alive
            .get(server.url("/v2/app/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        wait_for(start + 4.0).await;
        assert_eq!(accepted().await - accepted_before, 4.0);

        drop(conns);
        wait_for(start + 1.0).await;
        drop(keep_alive);
        wait_for(start).await;
        server.stop().await;
    });
}

#[test]
fn reloads_and_verification_are_counted() {
    serial(|| async {
        let root = Root::new();
        let app = root.layout("app");
        let image = app.image(&vec![1u8; 50_000]);
        app.set_index(&[image.tagged("latest")]);
        let server = TestServer::start(root.path()).await;
        let base = listener_of(&server).await;
        let before = scrape(&base).await;

        // A new application: its blobs are hashed, the old ones reused.
        let other = root.layout("other");
        let image2 = other.image(&vec![2u8; 70_000]);
        other.set_index(&[image2.tagged("latest")]);
        let reloader = Reloader::new(
            server.state.catalog.clone(),
            root.path().to_path_buf(),
            LoadOptions::default(),
        )
        .with_metrics(Some(server.metrics.clone()));
        let summary = reloader.reload().await.unwrap();
        let after = scrape(&base).await;
        let delta = |series: &str| value(&after, series) - value(&before, series);
        assert_eq!(
            delta("ir_server_reloads_total{outcome=\"ok\"}"),
            1.0,
            "{after}"
        );
        assert_eq!(delta("ir_server_reload_duration_seconds_count"), 1.0);
        assert_eq!(delta("ir_server_verification_duration_seconds_count"), 1.0);
        assert_eq!(
            delta("ir_server_verified_bytes_total"),
            summary.bytes_hashed as f64
        );
        assert!(delta("ir_server_verified_bytes_total") >= 70_000.0);
        // The first application's config and layer were not hashed again.
        assert_eq!(delta("ir_server_reused_blobs_total"), 2.0, "{after}");
        // New: manifest, config, layer; and the first one's manifest again.
        assert_eq!(delta("ir_server_verified_blobs_total"), 4.0, "{after}");
        assert_eq!(
            value(&after, "ir_server_applications{state=\"served\"}"),
            2.0
        );

        // A root that cannot be read: the reload fails, content stays.
        let gone = Reloader::new(
            server.state.catalog.clone(),
            root.path().join("does-not-exist"),
            LoadOptions::default(),
        )
        .with_metrics(Some(server.metrics.clone()));
        assert!(gone.reload().await.is_err());
        let last = scrape(&base).await;
        assert_eq!(
            value(&last, "ir_server_reloads_total{outcome=\"failed\"}")
                - value(&before, "ir_server_reloads_total{outcome=\"failed\"}"),
            1.0,
            "{last}"
        );
        assert_eq!(
            value(&last, "ir_server_reload_duration_seconds_count")
                - value(&before, "ir_server_reload_duration_seconds_count"),
            2.0
        );
        assert_eq!(
            value(&last, "ir_server_applications{state=\"served\"}"),
            2.0
        );
        server.stop().await;
    });
}

#[test]
fn refused_images_are_counted_by_reason() {
    serial(|| async {
        use ir_testkit::cosign::{cosign_sign, Key};
        let root = Root::new();
        let key = Key::p256();
        let signed = root.layout("signed");
        let image = signed.image(b"signed");
        let sig = cosign_sign(&signed, &image.manifest, "registry.test/signed:1", &key);
        signed.set_index(&[image.tagged("1"), sig]);
        let unsigned = root.layout("unsigned");
        let a = unsigned.image(b"a");
        let b = unsigned.image(b"b");
        unsigned.set_index(&[a.tagged("1"), b.tagged("2")]);
        let dir = root.outside("trust");
        std::fs::create_dir_all(&dir).unwrap();
        let key_path = key.write_public(&dir, "cosign.pub");
        let policy = dir.join("policy.json");
        std::fs::write(
            &policy,
            serde_json::to_vec(&serde_json::json!({
                "default": [{"type": "reject"}],
                "transports": {"docker": {"registry.test": [
                    {"type": "sigstoreSigned", "keyPath": key_path}
                ]}},
            }))
            .unwrap(),
        )
        .unwrap();
        let gate = Arc::new(
            ir_server::snapshot::policy_gate::Gate::new(
                ir_server::snapshot::policy_gate::TrustConfig::new(
                    Some(policy),
                    None,
                    "registry.test",
                ),
            )
            .unwrap(),
        );
        let server = TestServer::start(root.path()).await;
        let base = listener_of(&server).await;
        Reloader::new(
            server.state.catalog.clone(),
            root.path().to_path_buf(),
            LoadOptions::default(),
        )
        .with_trust(Some(gate))
        .with_metrics(Some(server.metrics.clone()))
        .reload()
        .await
        .unwrap();
        let text = scrape(&base).await;
        let refused = |reason: &str| {
            value(
                &text,
                &format!("ir_server_images_refused{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(refused("no_signature"), 2.0, "{text}");
        assert_eq!(refused("untrusted_key"), 0.0);
        assert!(
            text.contains("ir_server_images_refused{reason=\"wrong_identity\"} 0"),
            "{text}"
        );
        server.stop().await;
    });
}

/// A free port on 127.0.0.1 (bound and released; the server binds it next).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_binary_serves_metrics_from_the_environment() {
    serial(|| async {
        let root = Root::new();
        root.good("app");
        let (api, metrics) = (free_addr(), free_addr());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
            .args(["-r", root.path().to_str().unwrap(), "--bind", "127.0.0.1"])
            .args(["-p", &api.port().to_string()])
            .env("IR_SERVER_METRICS_ADDR", metrics.to_string())
            .env("IR_SERVER_NO_ACCESS_LOG", "true")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://{metrics}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client().get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status() == 200 => break,
                _ => {
                    assert!(Instant::now() < deadline, "metrics listener never ready");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let r = client()
            .get(format!("http://{api}/v2/app/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = scrape(&base).await;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            value(&text, &requests("manifest", "GET", 200)),
            1.0,
            "{text}"
        );
        assert_eq!(value(&text, "ir_server_ready"), 1.0);
        assert_eq!(
            value(&text, "ir_server_applications{state=\"served\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "ir_server_verification_duration_seconds_count"),
            1.0
        );
        assert!(value(&text, "ir_server_verified_bytes_total") > 0.0);
        assert_eq!(
            value(&text, "ir_server_verified_blobs_total"),
            3.0,
            "{text}"
        );
    });
}

#[test]
fn the_binary_notifies_systemd_once_ready() {
    serial(|| async {
        use std::os::unix::net::UnixDatagram;
        let root = Root::new();
        root.good("app");
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&socket).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let api = free_addr();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
            .args(["-r", root.path().to_str().unwrap(), "--bind", "127.0.0.1"])
            .args(["-p", &api.port().to_string()])
            .env("NOTIFY_SOCKET", &socket)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 256];
        let received = receiver.recv(&mut buf);
        // READY=1 comes only once the registry is served.
        let served = client()
            .get(format!("http://{api}/v2/app/manifests/latest"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        let _ = child.kill();
        let _ = child.wait();
        let n = received.expect("no notification within 20 s");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving 1 application(s)");
        assert_eq!(served.unwrap(), 200);
    });
}

/// `ir-server probe URL` (the image's HEALTHCHECK): exit 0 while /readyz
/// is 200, 1 while it is 503 or nothing listens.
#[test]
fn the_probe_subcommand_follows_readyz() {
    serial(|| async {
        let state = Arc::new(ApiState::loading(
            catalog::shared(Catalog::default()),
            false,
        ));
        let base = metrics_listener(Arc::new(Metrics::new()), state.observed()).await;
        let probe = |path: &str| {
            let url = format!("{base}{path}");
            async move {
                tokio::task::spawn_blocking(move || {
                    std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
                        .args(["probe", &url, "--timeout", "5"])
                        .output()
                        .unwrap()
                })
                .await
                .unwrap()
            }
        };
        assert_eq!(probe("/healthz").await.status.code(), Some(0));
        let not_ready = probe("/readyz").await;
        assert_eq!(not_ready.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&not_ready.stderr).contains("status 503"));
        state.set_ready();
        let ready = probe("/readyz").await;
        assert_eq!(ready.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&ready.stdout).contains("200"));
        // Nothing listening: a failure, not a hang.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
                .args(["probe", &format!("http://127.0.0.1:{port}/readyz")])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(1));
    });
}

/// `/status` lists each application served or rejected (rule and file),
/// the last load and readiness; per-application download counters follow
/// GETs; the process metrics are there.
#[test]
fn status_downloads_and_process_metrics() {
    serial(|| async {
        let root = Root::new();
        let app = root.layout("counted");
        let image = app.image(&vec![3u8; 4096]);
        app.set_index(&[image.tagged("latest")]);
        let bad = root.layout("bad");
        let broken = bad.image(b"broken layer");
        bad.set_index(&[broken.tagged("v1")]);
        bad.corrupt_flip(&broken.layers[0]);
        let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
        assert_eq!(registry.rejected.len(), 1);
        let server = TestServer::serve(registry, Default::default()).await;
        server
            .state
            .status
            .record_load(ir_server::metrics::status::LoadRecord {
                kind: ir_server::metrics::status::LoadKind::Start,
                finished: std::time::SystemTime::now(),
                elapsed: Duration::from_millis(12),
                error: None,
            });
        let base = listener_of(&server).await;

        let c = client();
        for _ in 0..2 {
            let r = c
                .get(server.url("/v2/counted/manifests/latest"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let layer = format!("/v2/counted/blobs/{}", image.layers[0].digest_str());
        let r = c.get(server.url(&layer)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        // HEAD and misses do not count.
        c.head(server.url(&layer)).send().await.unwrap();
        c.get(server.url("/v2/counted/manifests/nope"))
            .send()
            .await
            .unwrap();

        let text = scrape(&base).await;
        let series = |kind: &str| {
            format!(
                "ir_server_application_downloads_total{{application=\"counted\",kind=\"{kind}\"}}"
            )
        };
        assert_eq!(value(&text, &series("manifest")), 2.0, "{text}");
        assert_eq!(value(&text, &series("blob")), 1.0, "{text}");
        assert!(
            !text.contains("application=\"bad\""),
            "only served applications: {text}"
        );
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(name), "{name}: {text}");
        }
        assert!(text.ends_with("# EOF\n"));

        let r = c.get(format!("{base}/status")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let doc: serde_json::Value = r.json().await.unwrap();
        assert_eq!(doc["ready"], true);
        assert_eq!(doc["draining"], false);
        assert_eq!(doc["served"], 1);
        assert_eq!(doc["rejected"], 1);
        assert_eq!(doc["last_load"]["outcome"], "ok");
        assert_eq!(doc["last_load"]["kind"], "start");
        assert!(doc["ratls_platform_check"].is_null());
        let apps = doc["applications"].as_array().unwrap();
        let served = apps.iter().find(|a| a["name"] == "counted").unwrap();
        assert_eq!(served["state"], "served");
        assert_eq!(served["tags"], 1);
        let rejected = apps.iter().find(|a| a["name"] == "bad").unwrap();
        assert_eq!(rejected["state"], "rejected");
        assert!(
            rejected["file"]
                .as_str()
                .unwrap()
                .starts_with("blobs/sha256/"),
            "{rejected}"
        );
        assert!(!rejected["reason"].as_str().unwrap().is_empty());

        server.state.set_draining();
        let doc: serde_json::Value = c
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["draining"], true);
        assert_eq!(status_of(&format!("{base}/readyz")).await, 503);
        assert_eq!(status_of(&server.url("/readyz")).await, 503);
        server.stop().await;
    });
}

/// The access log line is written when the response ends: bytes actually
/// sent, time to the last byte, whether it completed, the user agent.
#[test]
fn the_access_log_line_is_written_at_the_end_of_the_response() {
    serial(|| async {
        use std::io::{Read, Write};
        let root = Root::new();
        let app = root.layout("app");
        let image = app.image(&vec![9u8; 16 << 20]);
        app.set_index(&[image.tagged("latest")]);
        let (api, metrics) = (free_addr(), free_addr());
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ir-server"))
            .args(["-r", root.path().to_str().unwrap(), "--bind", "127.0.0.1"])
            .args(["-p", &api.port().to_string(), "--log-format", "json"])
            .args(["--metrics-addr", &metrics.to_string()])
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(
            client().get(format!("http://{metrics}/readyz")).send().await,
            Ok(r) if r.status() == 200
        ) {
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let layer = format!("/v2/app/blobs/{}", image.layers[0].digest_str());
        let r = client()
            .get(format!("http://{api}{layer}"))
            .header("user-agent", "whole-reader/1.0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 16 << 20);
        // A client that reads the head and a little, then hangs up.
        tokio::task::spawn_blocking(move || {
            let mut tcp = std::net::TcpStream::connect(api).unwrap();
            write!(
                tcp,
                "GET {layer} HTTP/1.1\r\nHost: x\r\nUser-Agent: quitter/2.0\r\n\r\n"
            )
            .unwrap();
            let mut buf = [0u8; 4096];
            tcp.read_exact(&mut buf).unwrap();
        })
        .await
        .unwrap();
        let lines = |agent: &str| -> Option<serde_json::Value> {
            std::fs::read_to_string(&log_path)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["target"] == "access" && v["user_agent"] == agent)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let (whole, quit) = loop {
            if let (Some(w), Some(q)) = (lines("whole-reader/1.0"), lines("quitter/2.0")) {
                break (w, q);
            }
            assert!(Instant::now() < deadline, "access lines missing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(whole["status"], 200);
        assert_eq!(whole["bytes"], 16 << 20);
        assert_eq!(whole["completed"], true);
        assert_eq!(whole["realm"], "-");
        assert!(whole["micros"].as_u64().is_some());
        assert_eq!(quit["status"], 200);
        assert_eq!(quit["completed"], false, "{quit}");
        assert!(quit["bytes"].as_u64().unwrap() < 16 << 20, "{quit}");
    });
}
