//! Every `ir-client` command against ir-server on 127.0.0.1: browsing
//! (ls, catalog, manifest, discover, blob), flags from the environment,
//! proxies, a pull resumed after a connection cut mid-blob, and a layout
//! that skopeo and umoci read.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::{fixture, run_client, serve, stdout_ok as ok};
use ir_client::{Client, Transport};
use ir_server::transport::plain::Plain;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_client(args, env, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_commands() {
    let f = fixture();
    let app = f.root.layout("app");
    let sig = app.blob("application/vnd.test.sig", b"signature");
    let artifact = app.artifact(
        "application/vnd.test.sig",
        &[sig],
        json!({"subject": f.image.manifest.0}),
    );
    app.set_index(&[
        f.image.tagged("latest"),
        f.index.tagged("multi"),
        f.image.tagged("v2"),
        artifact.clone(),
    ]);
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let base = format!("http://127.0.0.1:{}", server.port());

    // ls: text, one tag a line; JSON.
    let tags = ok(&run(&["ls", &format!("{base}/app")], &[]).await);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["latest", "multi", "v2"]);
    let j: Value = serde_json::from_str(&ok(&run(
        &["ls", &format!("{base}/app"), "--format", "json"],
        &[],
    )
    .await))
    .unwrap();
    assert_eq!(j["name"], "app");
    assert_eq!(j["tags"].as_array().unwrap().len(), 3);

    // catalog.
    let repos = ok(&run(&["catalog", &base], &[]).await);
    assert_eq!(repos.lines().collect::<Vec<_>>(), ["app", "team/tools"]);

    // manifest: the bytes as stored.
    let m = run(&["manifest", &format!("{base}/app:latest")], &[]).await;
    ok(&m);
    let stored = std::fs::read(f.root.path().join("app").join(f.image.manifest.file())).unwrap();
    assert_eq!(m.stdout, stored);
    let by_digest = run(
        &[
            "manifest",
            &format!("{base}/app@{}", f.image.manifest.digest_str()),
        ],
        &[],
    )
    .await;
    assert_eq!(by_digest.stdout, stored);

    // discover, with and without a matching artifact type.
    let d = ok(&run(&["discover", &format!("{base}/app:latest")], &[]).await);
    assert_eq!(
        d.trim(),
        format!(
            "{} application/vnd.test.sig {}",
            artifact.digest_str(),
            artifact.size()
        )
    );
    let none = ok(&run(
        &[
            "discover",
            &format!("{base}/app:latest"),
            "--artifact-type",
            "application/other",
        ],
        &[],
    )
    .await);
    assert_eq!(none, "");

    // blob: the layer's bytes on stdout; a tag is a usage error.
    let layer = &f.image.layers[1];
    let b = run(
        &["blob", &format!("{base}/app@{}", layer.digest_str())],
        &[],
    )
    .await;
    ok(&b);
    assert_eq!(b.stdout, vec![7u8; 300_000]);
    let bad = run(&["blob", &format!("{base}/app:latest")], &[]).await;
    assert_eq!(bad.status.code(), Some(2));
    // Unknown manifest: the registry's status and OCI code, exit 3.
    let missing = run(&["manifest", &format!("{base}/app:nope")], &[]).await;
    assert_eq!(missing.status.code(), Some(3));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("HTTP 404: MANIFEST_UNKNOWN"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_from_the_environment() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let out = tempfile::TempDir::new().unwrap();
    let url = format!("http://127.0.0.1:{}/app:multi", server.port());
    let o = run(
        &["pull", &url],
        &[
            ("IR_CLIENT_OUT", out.path().to_str().unwrap()),
            ("IR_CLIENT_PLATFORM", "linux/arm64/v8"),
            ("IR_CLIENT_FORMAT", "json"),
            ("IR_CLIENT_QUIET", "true"),
        ],
    )
    .await;
    let j: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(j["digest"], f.arm64.manifest.digest_str());
    assert_eq!(j["index"], f.index.digest_str());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Without -q and not on a terminal: one line per finished blob.
    let again = tempfile::TempDir::new().unwrap();
    let o = run(&["pull", &url, "--platform", "linux/amd64", "--out"], &[]).await;
    assert_eq!(o.status.code(), Some(2), "--out needs a value");
    let o = run(
        &[
            "pull",
            &url,
            "--platform",
            "linux/amd64",
            "--out",
            again.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    ok(&o);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("pulled sha256:"))
            .count(),
        2,
        "{err}"
    );

    // A platform the index lacks: the platforms it has, exit 4.
    let o = run(
        &[
            "pull",
            &url,
            "--platform",
            "linux/s390x",
            "--out",
            again.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("available: linux/amd64, linux/arm64/v8"),
        "{err}"
    );
    server.stop().await;
}

/// A proxy that answers every request itself, recording its first line.
async fn fake_proxy() -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = tx.send(head.lines().next().unwrap_or("").to_string()).await;
            let body = r#"{"repositories":["via-proxy"]}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_goes_through_the_environments_proxy() {
    let (addr, mut seen) = fake_proxy().await;
    let proxy = format!("http://{addr}");
    let o = run(
        &["catalog", "http://registry.invalid:5000"],
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "")],
    )
    .await;
    assert_eq!(ok(&o).trim(), "via-proxy");
    assert_eq!(
        seen.recv().await.unwrap(),
        "GET http://registry.invalid:5000/v2/_catalog HTTP/1.1"
    );
    // NO_PROXY wins: the registry is then reached directly (and is not there).
    let o = run(
        &["catalog", "http://registry.invalid:5000", "--retries", "0"],
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "registry.invalid")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
}

/// A TCP relay to `upstream` that, on the first connection asking for
/// `needle`, forwards only `cut_after` bytes of the answer and drops the
/// connection. Counts the requests that carried a `Range` header.
struct CuttingRelay {
    addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
    ranges: Arc<AtomicUsize>,
}

async fn cutting_relay(upstream: SocketAddr, needle: String, cut_after: usize) -> CuttingRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(AtomicUsize::new(0));
    let (c, r) = (cuts.clone(), ranges.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (cuts, ranges, needle) = (c.clone(), r.clone(), needle.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let armed2 = armed.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        if text.contains(&needle) {
                            if text.contains("\r\nrange: bytes=") {
                                ranges.fetch_add(1, Ordering::SeqCst);
                            } else if cuts.fetch_add(1, Ordering::SeqCst) == 0 {
                                armed2.store(true, Ordering::SeqCst);
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 16 * 1024];
                let mut sent_armed = 0usize;
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if armed.load(Ordering::SeqCst) {
                        let room = cut_after - sent_armed;
                        let take = n.min(room);
                        let _ = cw.write_all(&buf[..take]).await;
                        sent_armed += take;
                        if sent_armed >= cut_after {
                            break; // drop both halves: the cut
                        }
                        continue;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    CuttingRelay { addr, cuts, ranges }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_blob_is_resumed_with_a_range_request() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let big = &f.image.layers[1]; // 300,000 bytes
    let hex = big.digest_str().split_once(':').unwrap().1.to_string();
    let relay = cutting_relay(server.addr, hex, 100_000).await;
    let out = tempfile::TempDir::new().unwrap();
    let client = Client::new(Transport::Plain).unwrap();
    let report = client
        .pull(
            &format!("http://127.0.0.1:{}/app:latest", relay.addr.port()),
            out.path(),
        )
        .await
        .unwrap();
    assert_eq!(relay.cuts.load(Ordering::SeqCst), 1, "cut once");
    assert_eq!(relay.ranges.load(Ordering::SeqCst), 1, "resumed once");
    assert_eq!(report.digest.to_string(), f.image.manifest.digest_str());
    let blob = out.path().join(big.file());
    assert_eq!(std::fs::read(blob).unwrap(), vec![7u8; 300_000]);
    // Bytes downloaded: the whole image once, plus what the cut wasted
    // of the response's headers, at most.
    let whole: u64 = f.image.manifest.size()
        + f.image.config.size()
        + f.image.layers.iter().map(|l| l.size()).sum::<u64>();
    assert!(
        report.bytes >= whole && report.bytes < whole + 1000,
        "{}",
        report.bytes
    );
    server.stop().await;
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_and_umoci_read_the_layout() {
    for tool in ["skopeo", "umoci"] {
        assert!(have(tool), "{tool} is not installed (.ci/run installs it)");
    }
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let out = tempfile::TempDir::new().unwrap();
    let dir = out.path().to_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{}", server.port());
    ok(&run(
        &["pull", &format!("{base}/app:latest"), "--out", &dir, "-q"],
        &[],
    )
    .await);
    // Into the same layout: a second tag, blobs reused.
    let o = run(
        &[
            "pull",
            &format!("{base}/app:multi"),
            "--all-platforms",
            "--out",
            &dir,
            "-q",
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    let j: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(j["digest"], f.index.digest_str());

    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{dir}:latest")])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let stored = std::fs::read(f.root.path().join("app").join(f.image.manifest.file())).unwrap();
    assert_eq!(inspect.stdout, stored);
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{dir}:multi")])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );

    let ls = Command::new("umoci")
        .args(["ls", "--layout", &dir])
        .output()
        .unwrap();
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let mut tags: Vec<String> = String::from_utf8(ls.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "multi"]);
    server.stop().await;
}

/// A registry that answers 503 (then 429) before answering the catalog.
async fn flaky_registry() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let (status, body) = match c.fetch_add(1, Ordering::SeqCst) % 3 {
                0 => (
                    "503 Service Unavailable",
                    r#"{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}"#,
                ),
                1 => (
                    "429 Too Many Requests",
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                ),
                _ => ("200 OK", r#"{"repositories":["app"]}"#),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_answers_are_retried() {
    let (addr, count) = flaky_registry().await;
    let base = format!("http://{addr}");
    assert_eq!(ok(&run(&["catalog", &base], &[]).await).trim(), "app");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // Without retries: the status and OCI code in one line, exit 3.
    let o = run(&["catalog", &base, "--retries", "0"], &[]).await;
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("HTTP 503: UNAVAILABLE: busy"), "{err}");
}
