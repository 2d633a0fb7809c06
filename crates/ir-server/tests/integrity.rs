//! Only verified bytes are served: a blob whose file changes or vanishes
//! after verification is refused, and a change during a download cuts the
//! response off before its last byte.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::{client, error_code, TestServer};
use ir_testkit::Root;

async fn serve_one_blob(content: &[u8]) -> (Root, TestServer, std::path::PathBuf, String) {
    let root = Root::new();
    let app = root.layout("app");
    let layer = app.blob(ir_testkit::LAYER_GZIP, content);
    let config = app.json(ir_testkit::CONFIG, &serde_json::json!({}));
    let m = app.manifest(&config, std::slice::from_ref(&layer));
    app.set_index(&[m.tagged("latest")]);
    let path = app.blob_path(&layer);
    let server = TestServer::start(root.path()).await;
    let url = server.url(&format!(
        "/v2/app/blobs/{}",
        layer["digest"].as_str().unwrap()
    ));
    (root, server, path, url)
}

#[tokio::test]
async fn blob_rewritten_after_verification_is_withdrawn() {
    for size in [100usize, 1 << 20] {
        let content = vec![7u8; size];
        let (_dir, _server, path, url) = serve_one_blob(&content).await;
        // Same size, different bytes.
        std::fs::write(&path, vec![8u8; size]).unwrap();
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
        // Withdrawn for good, HEAD included, even once the bytes are back.
        std::fs::write(&path, &content).unwrap();
        assert_eq!(client().head(&url).send().await.unwrap().status(), 404);
        assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
    }
}

#[tokio::test]
async fn vanished_blob_is_withdrawn() {
    let (_dir, _server, path, url) = serve_one_blob(b"here today").await;
    std::fs::remove_file(&path).unwrap();
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn blob_replaced_by_a_symlink_is_refused() {
    let (root, _server, path, url) = serve_one_blob(b"original").await;
    let other = root.path().join("other");
    std::fs::write(&other, b"original").unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&other, &path).unwrap();
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
}

/// The file is altered in place while the response streams: the client
/// must not receive a complete body.
#[tokio::test]
async fn change_during_download_cuts_the_response_off() {
    let size = 32 << 20;
    let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let (_dir, _server, path, url) = serve_one_blob(&content).await;
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Take the first chunk, then corrupt the tail that has not been read yet.
    let first = r.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(size as u64 - 10)).unwrap();
    f.write_all(&[0u8; 10]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut received = first.len();
    let outcome = loop {
        match r.chunk().await {
            Ok(Some(c)) => received += c.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(outcome.is_err(), "a complete response was delivered");
    assert!(received < size, "received {received} of {size} bytes");
    // And the blob is gone from then on.
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
}

/// A range response re-checks the file's identity after its last byte.
#[tokio::test]
async fn range_of_changed_blob_is_refused() {
    let content = vec![1u8; 4096];
    let (_dir, _server, path, url) = serve_one_blob(&content).await;
    std::fs::write(&path, vec![2u8; 4096]).unwrap();
    let r = client()
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
