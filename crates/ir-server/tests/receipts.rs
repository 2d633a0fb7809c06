//! Delivery receipts and events through the server binary, as an auditor
//! sees them: a realm pulls, the server stops, `ir-server receipts verify`
//! says who received which digest; an edited journal is named by line; the
//! events endpoint got the delivery, the refused attestation and the
//! journal's closing head.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::ratls_sighup::{refs, write, Server};
use http_body_util::BodyExt as _;
use ir_attest::{EmulatedRealm, Measurements};
use tempfile::TempDir;

/// An HTTP endpoint on 127.0.0.1 keeping every body POSTed to it.
pub(crate) async fn events_endpoint() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        if let Ok(serde_json::Value::Array(batch)) = serde_json::from_slice(&body) {
                            seen.lock().unwrap().extend(batch);
                        }
                        Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<
                            bytes::Bytes,
                        >::new(
                        )))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    (url, events)
}

fn verify(journal: &Path, public: &Path) -> (i32, String) {
    verify_with(journal, public, &[])
}

fn verify_with(journal: &Path, public: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args(["receipts", "verify"])
        .arg(journal)
        .arg("--key")
        .arg(public)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_pull_is_receipted_signed_and_verifiable_and_an_edit_is_named() {
    let dir = TempDir::new().unwrap();
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let cpak = dir.path().join("cpak.pub");
    write(&cpak, realm.cpak_public_sec1());
    let refs_path = dir.path().join("realm.json");
    write(&refs_path, refs(&realm, &["app"]));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private = write(&dir.path().join("receipts.key"), key.serialize_pem()).to_owned();
    let public = write(&dir.path().join("receipts.pub"), key.public_key_pem()).to_owned();
    let journal = dir.path().join("receipts");
    let (events_url, events) = events_endpoint().await;

    let mut server = Server::start(
        dir.path(),
        &[
            "--cpak",
            cpak.to_str().unwrap(),
            "-j",
            refs_path.to_str().unwrap(),
            "--receipts",
            journal.to_str().unwrap(),
            "--receipts-key",
            private.to_str().unwrap(),
            "--events-url",
            &events_url,
        ],
    );
    let client = server.client(&realm);
    let url = format!("https://localhost:{}/v2/app/manifests/latest", server.port);
    let served = client.http().get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let digest = served.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    // A HEAD delivers nothing, a refused name delivers nothing.
    let head = client.http().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        server.status(&client, "/v2/other/manifests/latest").await,
        Some(404)
    );
    // Another platform's realm is refused at the handshake.
    let stranger = EmulatedRealm::generate(Measurements::default()).unwrap();
    assert_eq!(
        server
            .status(&server.client(&stranger), "/v2/app/manifests/latest")
            .await,
        None
    );
    assert!(server.terminate().success(), "{}", server.output());

    let (code, report) = verify(&journal, &public);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("intact"), "{report}");
    assert!(report.contains("1 deliveries"), "{report}");
    let rim = hex::encode(&realm.measurements().rim);
    assert!(report.contains(&format!("realm rim={rim}")), "{report}");
    assert!(report.contains(&format!("app:latest {digest}")), "{report}");
    // Closed by the server as it stopped; the head to keep elsewhere.
    let head = report
        .lines()
        .find_map(|l| l.strip_prefix("head "))
        .and_then(|l| l.strip_suffix(")"))
        .and_then(|l| l.split_once(" (closed: "))
        .map(|(head, _)| head.to_string())
        .unwrap_or_else(|| panic!("a closed journal and its head: {report}"));
    let (code, json) = verify_with(
        &journal,
        &public,
        &["--format", "json", "--expect-head", &head],
    );
    assert_eq!(code, 0, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["closed"], true, "{json}");
    assert_eq!(json["head"], head.as_str(), "{json}");

    // Someone with write access to the disk changes the digest received.
    let file = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains(&digest))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().position(|l| l.contains(&digest)).unwrap() + 1;
    let forged = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&file, text.replace(&digest, &forged)).unwrap();
    let (code, report) = verify(&journal, &public);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("CHANGED"), "{report}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        report.contains(&format!("{name}:{line} (seq")),
        "the edited line is named: {report}"
    );

    // The events endpoint saw the delivery and the refusal (batched
    // within a second; the sender stops with the server, so wait here).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = events.lock().unwrap().clone();
        let delivered = seen.iter().any(|e| {
            e["type"] == "dev.ir-server.delivery"
                && e["subject"] == "app"
                && e["data"]["digest"] == digest.as_str()
        });
        let refused = seen
            .iter()
            .any(|e| e["type"] == "dev.ir-server.refusal" && e["data"]["stage"] == "attestation");
        // The closing head went off the machine too.
        let closing_head = seen.iter().any(|e| {
            e["type"] == "dev.ir-server.receipts.checkpoint"
                && e["data"]["head"] == head.as_str()
                && e["data"]["closing"] == true
        });
        if delivered && refused && closing_head {
            break;
        }
        assert!(std::time::Instant::now() < until, "events: {seen:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn a_journal_directory_others_may_write_stops_the_start() {
    let dir = TempDir::new().unwrap();
    let journal = dir.path().join("open");
    std::fs::create_dir(&journal).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o777)).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private = write(&dir.path().join("k.pem"), key.serialize_pem()).to_owned();
    let root = ir_testkit::Root::new();
    root.good("app");
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_ir-server"))
        .args(["-p", "0", "--bind", "127.0.0.1", "-r"])
        .arg(root.path())
        .arg("--receipts")
        .arg(&journal)
        .arg("--receipts-key")
        .arg(&private)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--receipts"), "{text}");
    assert!(text.contains("chmod 700"), "{text}");
}

#[test]
fn receipts_need_their_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args(["--receipts", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--receipts-key"), "{text}");
}
