//! Only verified bytes are served: a blob whose file changes or vanishes
//! after verification is refused, and a change during a download cuts the
//! response off before its last byte. A blob's verified copy in memory is
//! made only of bytes that passed, and is what later requests get.

use std::io::{Seek, SeekFrom, Write};

use crate::util::{client, error_code, TestServer};
use ir_testkit::Root;

async fn serve_one_blob(content: &[u8]) -> (Root, TestServer, std::path::PathBuf, String) {
    serve_one_blob_cached(content, 0).await
}

/// As `serve_one_blob`, with a blob cache of `budget` bytes (0: none).
async fn serve_one_blob_cached(
    content: &[u8],
    budget: u64,
) -> (Root, TestServer, std::path::PathBuf, String) {
    let root = Root::new();
    let app = root.layout("app");
    let layer = app.blob(ir_testkit::LAYER_GZIP, content);
    let config = app.json(ir_testkit::CONFIG, &serde_json::json!({}));
    let m = app.manifest(&config, std::slice::from_ref(&layer));
    app.set_index(&[m.tagged("latest")]);
    let path = app.blob_path(&layer);
    let server = TestServer::start_cached(root.path(), budget).await;
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
    overwrite_in_place(&path, size as u64 - 10, &[0u8; 10]);
    let (rest, complete) = rest_of(&mut r).await;
    let received = first.len() + rest.len();
    assert!(!complete, "a complete response was delivered");
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

/// Writes `bytes` at `offset` into the file in place, as a rogue writer
/// of the root would.
fn overwrite_in_place(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// The rest of a response body, and whether it ended cleanly.
async fn rest_of(r: &mut reqwest::Response) -> (Vec<u8>, bool) {
    let mut rest = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => rest.extend_from_slice(&c),
            Ok(None) => return (rest, true),
            Err(_) => return (rest, false),
        }
    }
}

fn patterned(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

async fn get_whole(url: &str) -> Vec<u8> {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

async fn get_range(url: &str, range: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(url)
        .header("range", range)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Ranges of large blobs return exactly the requested bytes, before the
/// blob is sealed (identity-checked) and after (checked per chunk), for
/// spans that start and end inside chunks and cross chunk boundaries.
#[tokio::test]
async fn ranges_are_exact_before_and_after_sealing() {
    let size = 3 * (256 << 10) + 1234;
    let content = patterned(size);
    let (_dir, _server, _path, url) = serve_one_blob(&content).await;
    let spans = [
        (0usize, 9usize),
        (300_000, 700_000),
        ((256 << 10) - 1, 256 << 10),
        (size - 100, size - 1),
    ];
    for sealed in [false, true] {
        for (a, b) in spans {
            let (status, body) = get_range(&url, &format!("bytes={a}-{b}")).await;
            assert_eq!(status, 206, "sealed {sealed}, {a}-{b}");
            assert_eq!(body, &content[a..=b], "sealed {sealed}, {a}-{b}");
        }
        // A whole GET: the first one seals the blob.
        assert_eq!(&get_whole(&url).await[..], &content[..]);
    }
}

/// Blobs of one chunk or less are read and hashed whole for a range too
/// (the server then sends the requested slice of the checked bytes).
#[tokio::test]
async fn range_of_small_blob_is_exact() {
    let content = patterned(5000);
    let (_dir, _server, _path, url) = serve_one_blob(&content).await;
    let (status, body) = get_range(&url, "bytes=4000-").await;
    assert_eq!(status, 206);
    assert_eq!(body, &content[4000..]);
}

/// Once a blob is sealed, every chunk is checked before any of it is sent:
/// a chunk changed in the middle of a download is never delivered, not
/// even in part, and the response ends before it.
#[tokio::test]
async fn sealed_blob_never_sends_a_changed_chunk() {
    let size = 32 << 20;
    let corrupt_at = 24 << 20;
    let content = patterned(size);
    let (_dir, _server, path, url) = serve_one_blob(&content).await;
    // The first whole download seals the blob.
    assert_eq!(get_whole(&url).await.len(), size);

    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut received = r.chunk().await.unwrap().unwrap().to_vec();
    overwrite_in_place(&path, corrupt_at as u64 + 5, &[0xEE; 10]);
    let (rest, complete) = rest_of(&mut r).await;
    received.extend_from_slice(&rest);
    assert!(!complete, "a complete response was delivered");
    assert!(
        received.len() <= corrupt_at,
        "bytes of the changed chunk were sent: {} > {corrupt_at}",
        received.len()
    );
    assert!(
        received[..] == content[..received.len()],
        "a changed byte was sent"
    );
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
}

fn cache_used(server: &TestServer) -> u64 {
    server.state.catalog.load().blob_cache().used()
}

/// After a whole download, a blob is sent from its verified copy in
/// memory: what changes on disk afterwards is never sent, whole or ranges.
#[tokio::test]
async fn verified_copy_is_sent_whatever_the_file_becomes() {
    let size = 3 << 20;
    let content = patterned(size);
    let (_dir, server, path, url) = serve_one_blob_cached(&content, 64 << 20).await;
    // Before any whole download: ranges come from the file, no copy yet.
    assert_eq!(get_range(&url, "bytes=5-9").await.1, &content[5..=9]);
    assert_eq!(cache_used(&server), 0);
    assert_eq!(&get_whole(&url).await[..], &content[..]);
    assert!(cache_used(&server) >= size as u64, "the copy was kept");

    std::fs::write(
        &path,
        patterned(size).iter().map(|b| !b).collect::<Vec<_>>(),
    )
    .unwrap();
    for _ in 0..2 {
        assert_eq!(&get_whole(&url).await[..], &content[..]);
    }
    let spans = [
        (0usize, 0usize),
        (262_143, 262_145),
        (1 << 20, (2 << 20) + 7),
        (size - 3, size - 1),
    ];
    for (a, b) in spans {
        let (status, body) = get_range(&url, &format!("bytes={a}-{b}")).await;
        assert_eq!(status, 206, "{a}-{b}");
        assert_eq!(body, &content[a..=b], "{a}-{b}");
    }
    let r = client()
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {}-{}/{size}", size - 5, size - 1)
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &content[size - 5..]);
}

/// A change during the first download: the response is cut off, no copy
/// is kept, and the blob is withdrawn.
#[tokio::test]
async fn no_copy_is_kept_of_a_blob_that_changed_while_it_was_copied() {
    let size = 32 << 20;
    let content = patterned(size);
    let (_dir, server, path, url) = serve_one_blob_cached(&content, 64 << 20).await;
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let received = r.chunk().await.unwrap().unwrap().len();
    assert!(
        cache_used(&server) >= size as u64,
        "reserved while it fills"
    );
    overwrite_in_place(&path, size as u64 - 10, &[0u8; 10]);
    let (rest, complete) = rest_of(&mut r).await;
    assert!(!complete, "a complete response was delivered");
    assert!(received + rest.len() < size);
    assert_eq!(cache_used(&server), 0, "the partial copy was given back");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
}

/// A blob larger than the cache is served from its file every time.
#[tokio::test]
async fn blob_larger_than_the_cache_streams_from_its_file() {
    let size = 2 << 20;
    let content = patterned(size);
    let (_dir, server, _path, url) = serve_one_blob_cached(&content, 1 << 20).await;
    for _ in 0..2 {
        assert_eq!(&get_whole(&url).await[..], &content[..]);
        assert_eq!(cache_used(&server), 0);
    }
}

/// Serves `content` as the one layer of `app`, whose file also has a
/// second name beside the root (linked before the server verifies it).
async fn serve_linked_blob(content: &[u8]) -> (Root, TestServer, std::path::PathBuf, String) {
    let root = Root::new();
    let app = root.layout("app");
    let layer = app.blob(ir_testkit::LAYER_GZIP, content);
    let config = app.json(ir_testkit::CONFIG, &serde_json::json!({}));
    let m = app.manifest(&config, std::slice::from_ref(&layer));
    app.set_index(&[m.tagged("latest")]);
    let other = root.outside("second-name");
    std::fs::hard_link(app.blob_path(&layer), &other).unwrap();
    let server = TestServer::start_cached(root.path(), 0).await;
    let url = server.url(&format!(
        "/v2/app/blobs/{}",
        layer["digest"].as_str().unwrap()
    ));
    (root, server, other, url)
}

/// A blob with a second name (a hard link, as `cp -al` or a deduplicating
/// store leaves it) is served; bytes written through the other name after
/// verification never are: the write changes the file's identity (ctime),
/// so the next request withdraws the blob, and a download in flight is cut
/// off before any changed byte.
#[tokio::test]
async fn blob_changed_through_a_hard_link_after_verification_is_not_served() {
    // Between downloads: the identity check refuses it, for good.
    for size in [100usize, 1 << 20] {
        let content = patterned(size);
        let (_root, _server, other, url) = serve_linked_blob(&content).await;
        assert_eq!(get_whole(&url).await, content, "a linked blob is served");
        overwrite_in_place(&other, 10, b"through the other name");
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    }

    // During the first download (hashed as it streams): cut off before
    // its end, so no client gets a whole blob of changed bytes.
    let size = 32 << 20;
    let content = patterned(size);
    let (_root, _server, other, url) = serve_linked_blob(&content).await;
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().unwrap();
    overwrite_in_place(&other, (24 << 20) + 5, &[0xEE; 10]);
    let (_, complete) = rest_of(&mut r).await;
    assert!(!complete, "a complete response was delivered");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);

    // Once sealed by a whole download: no changed byte is ever sent.
    let (_root, _server, other, url) = serve_linked_blob(&content).await;
    assert_eq!(get_whole(&url).await.len(), size);
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut received = r.chunk().await.unwrap().unwrap().to_vec();
    overwrite_in_place(&other, (24 << 20) + 5, &[0xEE; 10]);
    let (rest, complete) = rest_of(&mut r).await;
    received.extend_from_slice(&rest);
    assert!(!complete, "a complete response was delivered");
    assert!(
        received[..] == content[..received.len()],
        "a changed byte was sent"
    );
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
}
