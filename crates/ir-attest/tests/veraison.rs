//! The async Veraison client against a minimal in-test HTTP/1.1 server that
//! speaks the three calls of the protocol, with knobs.

use base64::Engine as _;
use ir_attest::ear::test_util::{EarSigner, EarSpec};
use ir_attest::ear::EarError;
use ir_attest::veraison::{Step, EVIDENCE_MEDIA_TYPE, SESSION_MEDIA_TYPE};
use ir_attest::{VeraisonClient, VeraisonConfig, VeraisonError};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NONCE: [u8; 64] = [0x42; 64];
const TOKEN: &[u8] = b"\xd9\x01\x8f not really a token";

#[derive(Clone)]
struct Knobs {
    new_session_status: u16,
    evidence_status: u16,
    evidence_delay: Duration,
    session_status: &'static str,
    location: String,
    ear_nonce: Option<Vec<u8>>,
    platform_status: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            new_session_status: 201,
            evidence_status: 200,
            evidence_delay: Duration::ZERO,
            session_status: "complete",
            location: "session/1".into(),
            ear_nonce: None,
            platform_status: "affirming",
        }
    }
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    signer: EarSigner,
}

impl Server {
    async fn start(knobs: Knobs) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let signer = EarSigner::generate();
        let (l, s) = (log.clone(), signer.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(handle(stream, knobs.clone(), l.clone(), s.clone()));
            }
        });
        Self { addr, log, signer }
    }

    fn client(&self, timeout: Duration) -> VeraisonClient {
        let mut config = VeraisonConfig::new(format!("http://{}/", self.addr));
        config.timeout = timeout;
        VeraisonClient::new(config).unwrap()
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    fn deleted(&self) -> bool {
        self.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.target == "/challenge-response/v1/session/1")
    }

    /// Whether the session is deleted within 5 s (the DELETE runs on a
    /// task of its own, after the appraisal returned).
    async fn deleted_soon(&self) -> bool {
        for _ in 0..250 {
            if self.deleted() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 65536 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn handle(
    mut stream: TcpStream,
    knobs: Knobs,
    log: Arc<Mutex<Vec<Request>>>,
    signer: EarSigner,
) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let b64 = base64::engine::general_purpose::URL_SAFE;
    let (status, location, body) = if req.method == "POST"
        && req
            .target
            .starts_with("/challenge-response/v1/newSession?nonce=")
    {
        let nonce = req
            .target
            .split_once("nonce=")
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        let body = serde_json::json!({
            "nonce": nonce, "status": "waiting", "expiry": "2030-01-01T00:00:00Z",
            "accept": [EVIDENCE_MEDIA_TYPE],
        });
        (
            knobs.new_session_status,
            Some(knobs.location.clone()),
            body.to_string(),
        )
    } else if req.method == "POST" {
        tokio::time::sleep(knobs.evidence_delay).await;
        let nonce = knobs.ear_nonce.clone().unwrap_or(NONCE.to_vec());
        let ear = signer.sign(
            &EarSpec::affirming(&nonce).with_status("CCA_SSD_PLATFORM", knobs.platform_status),
        );
        let body = serde_json::json!({
            "nonce": b64.encode(NONCE), "status": knobs.session_status, "result": ear,
        });
        (knobs.evidence_status, None, body.to_string())
    } else if req.method == "DELETE" {
        (204, None, String::new())
    } else {
        (404, None, String::new())
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {SESSION_MEDIA_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(l) = location {
        head.push_str(&format!("Location: {l}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test]
async fn happy_path_follows_the_protocol() {
    let server = Server::start(Knobs::default()).await;
    let client = server.client(Duration::from_secs(5));
    let ear = client
        .verify(TOKEN, &NONCE, &server.signer.verifier())
        .await
        .unwrap();
    assert_eq!(
        ear.submods.get("CCA_SSD_PLATFORM").map(String::as_str),
        Some("affirming")
    );
    assert!(server.deleted_soon().await);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let padded = base64::engine::general_purpose::URL_SAFE.encode(NONCE);
    assert!(padded.ends_with("=="));
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(
        reqs[0].target,
        format!("/challenge-response/v1/newSession?nonce={padded}")
    );
    assert_eq!(reqs[0].header("accept"), Some(SESSION_MEDIA_TYPE));
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].target, "/challenge-response/v1/session/1");
    assert_eq!(reqs[1].header("content-type"), Some(EVIDENCE_MEDIA_TYPE));
    assert_eq!(reqs[1].header("accept"), Some(SESSION_MEDIA_TYPE));
    assert_eq!(reqs[1].body, TOKEN);
    assert_eq!(reqs[2].method, "DELETE");
    assert_eq!(reqs[2].target, "/challenge-response/v1/session/1");
}

#[tokio::test]
async fn new_session_must_be_201() {
    let server = Server::start(Knobs {
        new_session_status: 200,
        ..Knobs::default()
    })
    .await;
    let err = server
        .client(Duration::from_secs(5))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VeraisonError::HttpStatus {
                step: Step::NewSession,
                status: 200,
                expected: 201
            }
        ),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn evidence_failure_still_deletes_the_session() {
    let server = Server::start(Knobs {
        evidence_status: 400,
        ..Knobs::default()
    })
    .await;
    let err = server
        .client(Duration::from_secs(5))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VeraisonError::HttpStatus {
                step: Step::Evidence,
                status: 400,
                ..
            }
        ),
        "{err}"
    );
    assert!(server.deleted_soon().await);
}

#[tokio::test]
async fn session_must_be_complete() {
    let server = Server::start(Knobs {
        session_status: "failed",
        ..Knobs::default()
    })
    .await;
    let err = server
        .client(Duration::from_secs(5))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VeraisonError::SessionNotComplete { ref status } if status == "failed"),
        "{err}"
    );
    assert!(server.deleted_soon().await);
}

#[tokio::test]
async fn slow_verifier_times_out_and_session_is_deleted() {
    let server = Server::start(Knobs {
        evidence_delay: Duration::from_secs(5),
        ..Knobs::default()
    })
    .await;
    let start = Instant::now();
    let err = server
        .client(Duration::from_millis(400))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap_err();
    assert!(matches!(err, VeraisonError::Timeout(_)), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(server.deleted_soon().await);
}

/// An appraisal dropped mid-way (its handshake timed out) still deletes its
/// session, on a detached task.
#[tokio::test]
async fn cancelled_appraisal_deletes_veraison_session() {
    let server = Server::start(Knobs {
        evidence_delay: Duration::from_secs(5),
        ..Knobs::default()
    })
    .await;
    let client = server.client(Duration::from_secs(10));
    let cancelled =
        tokio::time::timeout(Duration::from_millis(300), client.appraise(TOKEN, &NONCE)).await;
    assert!(cancelled.is_err(), "the appraisal was not cancelled");
    for _ in 0..250 {
        if server.deleted() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the cancelled appraisal's session was not deleted");
}

#[tokio::test]
async fn unreachable_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = VeraisonClient::new(VeraisonConfig::new(format!("http://{addr}"))).unwrap();
    let err = client.appraise(TOKEN, &NONCE).await.unwrap_err();
    assert!(
        matches!(
            err,
            VeraisonError::Unreachable {
                step: Step::NewSession,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_ear_nonce_is_rejected() {
    let server = Server::start(Knobs {
        ear_nonce: Some(vec![0x43; 64]),
        ..Knobs::default()
    })
    .await;
    let err = server
        .client(Duration::from_secs(5))
        .verify(TOKEN, &NONCE, &server.signer.verifier())
        .await
        .unwrap_err();
    assert!(
        matches!(err, VeraisonError::Ear(EarError::NonceMismatch { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn bad_ear_signature_and_not_affirming_are_rejected() {
    let server = Server::start(Knobs {
        platform_status: "contraindicated",
        ..Knobs::default()
    })
    .await;
    let client = server.client(Duration::from_secs(5));
    let err = client
        .verify(TOKEN, &NONCE, &server.signer.verifier())
        .await
        .unwrap_err();
    assert!(
        matches!(err, VeraisonError::Ear(EarError::NotAffirming { ref submod, ref status })
            if submod == "CCA_SSD_PLATFORM" && status == "contraindicated"),
        "{err}"
    );
    let stranger = EarSigner::generate().verifier();
    let err = client.verify(TOKEN, &NONCE, &stranger).await.unwrap_err();
    assert!(
        matches!(err, VeraisonError::Ear(EarError::BadSignature)),
        "{err}"
    );
}

#[tokio::test]
async fn location_must_stay_on_the_origin() {
    let server = Server::start(Knobs {
        location: "http://evil.example/session/1".into(),
        ..Knobs::default()
    })
    .await;
    let err = server
        .client(Duration::from_secs(5))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VeraisonError::Protocol {
                step: Step::NewSession,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
    // An absolute path on the same origin is fine.
    let server = Server::start(Knobs {
        location: "/challenge-response/v1/session/1".into(),
        ..Knobs::default()
    })
    .await;
    server
        .client(Duration::from_secs(5))
        .appraise(TOKEN, &NONCE)
        .await
        .unwrap();
    assert!(server.deleted_soon().await);
}

#[test]
fn bad_base_urls_are_config_errors() {
    assert!(matches!(
        VeraisonClient::new(VeraisonConfig::new("not a url")),
        Err(VeraisonError::Config(_))
    ));
    assert!(matches!(
        VeraisonClient::new(VeraisonConfig::new("ftp://x")),
        Err(VeraisonError::Config(_))
    ));
    let c = VeraisonClient::new(VeraisonConfig::new("https://veraison:8443/")).unwrap();
    assert_eq!(
        c.api_url().as_str(),
        "https://veraison:8443/challenge-response/v1/"
    );
}

#[tokio::test]
async fn location_outside_api_prefix_is_refused() {
    for location in [
        "/session/1",
        "/challenge-response/v2/session/1",
        "../../admin/session/1",
        "/challenge-response/v1/",
        "/challenge-response/v1/../v2/session/1",
    ] {
        let server = Server::start(Knobs {
            location: location.into(),
            ..Knobs::default()
        })
        .await;
        let err = server
            .client(Duration::from_secs(5))
            .appraise(TOKEN, &NONCE)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, VeraisonError::Protocol { step: Step::NewSession, reason } if reason.contains("outside")),
            "{location}: {err}"
        );
        // Nothing is sent to (or deleted at) a path outside the API.
        assert_eq!(server.requests().len(), 1, "{location}");
    }
}

#[test]
fn plain_http_is_only_for_loopback() {
    for url in [
        "http://veraison.example:8080",
        "http://192.0.2.1:8080",
        "http://[2001:db8::1]:8080",
        "http://localhost.example:8080",
    ] {
        let err = VeraisonClient::new(VeraisonConfig::new(url)).unwrap_err();
        assert!(
            matches!(&err, VeraisonError::Config(m) if m.contains("loopback")),
            "{url}: {err}"
        );
    }
    for url in [
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://127.1.2.3:8080",
        "http://[::1]:8080",
        "https://veraison.example:8443",
    ] {
        VeraisonClient::new(VeraisonConfig::new(url)).unwrap();
    }
}
