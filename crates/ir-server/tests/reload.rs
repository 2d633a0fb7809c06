//! Live reload, readiness and graceful shutdown, against the real server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{client, options, status, TestServer};
use ir_oci::LoadOptions;
use ir_server::snapshot::reload::Reloader;
use ir_server::transport::server::ConnLimits;
use ir_testkit::Root;

fn reloader(server: &TestServer, root: &Root) -> Reloader {
    Reloader::new(
        server.state.catalog.clone(),
        root.path().to_path_buf(),
        LoadOptions::default(),
    )
}

#[tokio::test]
async fn reload_adds_changes_keeps_and_removes() {
    let root = Root::new();
    root.good("stable");
    let app = root.good("app");
    let server = TestServer::start(root.path()).await;
    let reloader = reloader(&server, &root);

    // A new application appears; unchanged blobs are not hashed again.
    root.good("newcomer");
    let s = reloader.reload().await.unwrap();
    assert_eq!((s.served, s.added, s.removed, s.kept), (3, 1, 0, 0));
    assert!(s.blobs_reused >= 4, "{s:?}");
    assert_eq!(status(&server, "/v2/newcomer/manifests/latest").await, 200);

    // An application changes: a new tag.
    let image = app.image(b"version 2");
    app.set_index(&[image.tagged("latest"), image.tagged("v2")]);
    let s = reloader.reload().await.unwrap();
    assert_eq!(s.changed, 1, "{s:?}");
    assert_eq!(status(&server, "/v2/app/manifests/v2").await, 200);

    // A broken new version keeps the last good one in service.
    let broken = app.image(b"version 3");
    app.corrupt_flip(&broken.layers[0]);
    app.set_index(&[broken.tagged("latest"), broken.tagged("v3")]);
    let s = reloader.reload().await.unwrap();
    assert_eq!((s.kept, s.rejected), (1, 1), "{s:?}");
    assert_eq!(status(&server, "/v2/app/manifests/v2").await, 200);
    assert_eq!(status(&server, "/v2/app/manifests/v3").await, 404);

    // A removed application stops being served.
    std::fs::remove_dir_all(root.path().join("newcomer")).unwrap();
    let s = reloader.reload().await.unwrap();
    assert_eq!(s.removed, 1, "{s:?}");
    assert_eq!(status(&server, "/v2/newcomer/manifests/latest").await, 404);
    assert_eq!(status(&server, "/v2/stable/manifests/latest").await, 200);
}

#[tokio::test]
async fn unchanged_content_is_not_hashed_again() {
    let root = Root::new();
    let app = root.layout("big");
    let image = app.image(&vec![9u8; 4 << 20]);
    app.set_index(&[image.tagged("latest")]);
    let server = TestServer::start(root.path()).await;
    let s = reloader(&server, &root).reload().await.unwrap();
    assert_eq!(s.blobs_reused, 2, "config and layer reused: {s:?}");
    assert!(s.bytes_hashed < 4096, "only manifests re-hashed: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(&vec![3u8; 300_000]);
    app.set_index(&[image.tagged("latest")]);
    let server = Arc::new(TestServer::start(root.path()).await);
    let reloader = Arc::new(reloader(&server, &root));
    let layer = image.layers[0].digest_str().to_string();

    let ok = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut pullers = Vec::new();
    for _ in 0..8 {
        let (server, ok, layer) = (server.clone(), ok.clone(), layer.clone());
        pullers.push(tokio::spawn(async move {
            let c = client();
            while Instant::now() < deadline {
                let m = c
                    .get(server.url("/v2/app/manifests/latest"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(m.status(), 200);
                let b = c
                    .get(server.url(&format!("/v2/app/blobs/{layer}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(b.status(), 200);
                assert_eq!(b.bytes().await.unwrap().len(), 300_000);
                ok.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    let mut reloads = 0;
    while Instant::now() < deadline {
        // Add and remove an application each time, so the snapshot changes.
        if reloads % 2 == 0 {
            root.good("churn");
        } else {
            std::fs::remove_dir_all(root.path().join("churn")).unwrap();
        }
        reloader.reload().await.unwrap();
        reloads += 1;
    }
    for p in pullers {
        p.await.expect("a request failed during reloads");
    }
    assert!(reloads >= 3, "{reloads} reloads");
    assert!(ok.load(Ordering::Relaxed) > 20);
}

#[tokio::test]
async fn not_ready_until_the_first_load() {
    let root = Root::new();
    root.good("app");
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let server = TestServer::serve(ir_oci::Registry::default(), ConnLimits::default()).await;
    server.state.readiness.ready.store(false, Ordering::Release);
    assert_eq!(status(&server, "/healthz").await, 200);
    assert_eq!(status(&server, "/readyz").await, 503);
    let r = client()
        .get(server.url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(crate::util::header(&r, "retry-after"), "1");
    assert_eq!(crate::util::error_code(r).await, "UNAVAILABLE");

    server
        .state
        .catalog
        .store(Arc::new(ir_server::snapshot::catalog::Catalog::new(
            registry,
        )));
    server.state.set_ready();
    assert_eq!(status(&server, "/readyz").await, 200);
    assert_eq!(status(&server, "/v2/app/manifests/latest").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_long_download_finish() {
    let root = Root::new();
    let app = root.layout("app");
    let size = 24 << 20;
    let image = app.image(&vec![5u8; size]);
    app.set_index(&[image.tagged("latest")]);
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let server = TestServer::serve_with(
        registry,
        Arc::new(ir_server::transport::plain::Plain),
        options(ConnLimits::default()),
        "http",
    )
    .await;
    let url = server.url(&format!("/v2/app/blobs/{}", image.layers[0].digest_str()));
    let addr = server.addr;
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    // Shutdown begins while the body is still streaming.
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No new connections are accepted.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    let mut received = first.len();
    while let Some(c) = r.chunk().await.unwrap() {
        tokio::time::sleep(Duration::from_millis(1)).await;
        received += c.len();
    }
    assert_eq!(received, size, "the download in flight completed");
    stopping.await.unwrap();
}
