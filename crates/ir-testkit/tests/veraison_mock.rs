//! The mock Veraison driven by ir-attest's Veraison client: the affirming
//! path, and each knob's failure as the client reports it.

use std::time::{Duration, Instant};

use ir_attest::ear::EarError;
use ir_attest::veraison::{Step, VeraisonClient, VeraisonConfig, VeraisonError};
use ir_attest::EarVerifier;
use ir_testkit::veraison_mock::{self, MockVeraison, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &[u8] = b"\xd9\x01\x8fnot really a CCA token";

fn client(mock: &MockVeraison, timeout: Duration) -> VeraisonClient {
    let mut config = VeraisonConfig::new(mock.url());
    config.timeout = timeout;
    VeraisonClient::new(config).unwrap()
}

fn verifier(mock: &MockVeraison) -> EarVerifier {
    EarVerifier::from_jwk_json(mock.public_jwk_json().as_bytes()).unwrap()
}

/// Waits (at most 5 s) until `mock` has deleted `n` sessions: the client
/// deletes them on a task of its own, after the appraisal returned.
async fn deleted(mock: &MockVeraison, n: u64) -> u64 {
    for _ in 0..250 {
        if mock.counters().sessions_deleted >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mock.counters().sessions_deleted
}

async fn verify(mock: &MockVeraison) -> Result<ir_attest::Ear, VeraisonError> {
    let nonce = [0x5a; 64];
    client(mock, Duration::from_secs(5))
        .verify(TOKEN, &nonce, &verifier(mock))
        .await
}

#[tokio::test]
async fn affirming_platform_is_accepted_and_the_session_deleted() {
    let mock = MockVeraison::start().await;
    let ear = verify(&mock).await.unwrap();
    assert_eq!(ear.submods["CCA_SSD_PLATFORM"], "affirming");
    assert_eq!(ear.submods["CCA_REALM"], "warning");
    assert_eq!(deleted(&mock, 1).await, 1);
    let c = mock.counters();
    assert_eq!(
        (
            c.sessions_created,
            c.evidence_posts,
            c.ears_issued,
            c.sessions_deleted
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(mock.open_sessions(), 0);
    assert_eq!(mock.last_evidence().unwrap(), TOKEN);

    // The realm submod is not the platform's: its status does not matter.
    mock.knobs()
        .set_status("CCA_REALM", Status::Contraindicated);
    verify(&mock).await.unwrap();
}

#[tokio::test]
async fn platform_statuses_other_than_affirming_are_refused() {
    let mock = MockVeraison::start().await;
    for status in [Status::Warning, Status::Contraindicated, Status::None] {
        mock.knobs().set_status("CCA_SSD_PLATFORM", status);
        match verify(&mock).await {
            Err(VeraisonError::Ear(EarError::NotAffirming { submod, status: s })) => {
                assert_eq!(submod, "CCA_SSD_PLATFORM");
                assert_eq!(s, status.as_str());
            }
            other => panic!("{status:?}: {other:?}"),
        }
    }
    // An extra failing submod is named.
    mock.reset_knobs();
    mock.knobs().set_status("CCA_SSD_EXTRA", Status::Warning);
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::Ear(EarError::NotAffirming { submod, .. })) if submod == "CCA_SSD_EXTRA"
    ));
    assert_eq!(deleted(&mock, 4).await, 4);
    assert_eq!(mock.open_sessions(), 0);
}

#[tokio::test]
async fn wrong_nonce_bad_signature_stale_and_incomplete() {
    let mock = MockVeraison::start().await;
    mock.knobs().wrong_nonce = true;
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::Ear(EarError::NonceMismatch { .. }))
    ));
    mock.reset_knobs();
    mock.knobs().bad_signature = true;
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::Ear(EarError::BadSignature))
    ));
    mock.reset_knobs();
    mock.knobs().iat_offset = -3600;
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::Ear(EarError::Stale { .. }))
    ));
    mock.reset_knobs();
    mock.knobs().session_status = "failed".into();
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::SessionNotComplete { status }) if status == "failed"
    ));
    assert_eq!(deleted(&mock, 4).await, 4);
}

#[tokio::test]
async fn injected_http_errors_per_step() {
    let mock = MockVeraison::start().await;
    mock.knobs().fail = Some((veraison_mock::Step::NewSession, 500));
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::HttpStatus {
            step: Step::NewSession,
            status: 500,
            expected: 201
        })
    ));
    assert_eq!(mock.counters().sessions_created, 0);

    mock.knobs().fail = Some((veraison_mock::Step::Evidence, 503));
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::HttpStatus {
            step: Step::Evidence,
            status: 503,
            expected: 200
        })
    ));
    // The client deletes the session after a failed upload.
    assert_eq!(mock.counters().sessions_created, 1);
    assert_eq!(deleted(&mock, 1).await, 1);

    // A failing DELETE does not fail the appraisal; the session stays.
    mock.knobs().fail = Some((veraison_mock::Step::Delete, 500));
    verify(&mock).await.unwrap();
    assert_eq!(mock.open_sessions(), 1);
}

#[tokio::test]
async fn latency_times_out_and_does_not_serialise_clients() {
    let mock = MockVeraison::start().await;
    mock.knobs().latency = Duration::from_millis(600);
    let nonce = [1u8; 64];
    let c = client(&mock, Duration::from_millis(150));
    assert!(matches!(
        c.verify(TOKEN, &nonce, &verifier(&mock)).await,
        Err(VeraisonError::Timeout(_))
    ));
    // The session was still deleted.
    assert_eq!(deleted(&mock, 1).await, 1);

    // Eight appraisals at once take about one latency, not eight.
    let c = client(&mock, Duration::from_secs(10));
    let v = verifier(&mock);
    let start = Instant::now();
    let all = (0..8u8).map(|i| {
        let (c, v) = (c.clone(), v.clone());
        async move { c.verify(TOKEN, &[i; 64], &v).await }
    });
    for r in futures_join_all(all).await {
        r.unwrap();
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(took >= Duration::from_millis(600), "took {took:?}");
}

/// Runs futures concurrently on the current task set.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn unreachable_then_back() {
    let mock = MockVeraison::start().await;
    verify(&mock).await.unwrap();
    mock.stop_listening();
    assert!(!mock.is_listening());
    assert!(matches!(
        verify(&mock).await,
        Err(VeraisonError::Unreachable {
            step: Step::NewSession,
            ..
        })
    ));
    mock.resume_listening().await.unwrap();
    verify(&mock).await.unwrap();
}

/// Sends one raw HTTP/1.1 request; returns the status code and body.
async fn raw(mock: &MockVeraison, request: String) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_wire_format_is_exact() {
    let mock = MockVeraison::start().await;
    let accept = format!("Accept: {}\r\n", veraison_mock::SESSION_MEDIA_TYPE);
    let nonce =
        "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWg==";

    // Session creation: 201, Location, waiting, nonce echoed, expiry, accept.
    let (status, body) = raw(
        &mock,
        post(
            &format!("/challenge-response/v1/newSession?nonce={nonce}"),
            &accept,
            "",
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "waiting");
    assert_eq!(v["nonce"], nonce);
    assert!(v["expiry"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["accept"][0], veraison_mock::EVIDENCE_MEDIA_TYPE);

    // Unpadded or missing nonce, wrong Accept: refused.
    let unpadded = nonce.trim_end_matches('=');
    for (path, headers, want) in [
        (
            format!("/challenge-response/v1/newSession?nonce={unpadded}"),
            accept.clone(),
            400,
        ),
        (
            "/challenge-response/v1/newSession".to_string(),
            accept.clone(),
            400,
        ),
        (
            format!("/challenge-response/v1/newSession?nonce={nonce}"),
            "Accept: text/html\r\n".to_string(),
            406,
        ),
    ] {
        assert_eq!(
            raw(&mock, post(&path, &headers, "")).await.0,
            want,
            "{path}"
        );
    }

    // Evidence with any other Content-Type: 415; to an unknown session: 404.
    let wrong_type = format!("{accept}Content-Type: application/eat-collection\r\n");
    assert_eq!(
        raw(
            &mock,
            post("/challenge-response/v1/session/1", &wrong_type, "x")
        )
        .await
        .0,
        415
    );
    let right_type = format!(
        "{accept}Content-Type: {}\r\n",
        veraison_mock::EVIDENCE_MEDIA_TYPE
    );
    assert_eq!(
        raw(
            &mock,
            post("/challenge-response/v1/session/999", &right_type, "x")
        )
        .await
        .0,
        404
    );
    let (status, body) = raw(
        &mock,
        post("/challenge-response/v1/session/1", &right_type, "token"),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "complete");
    let ear = v["result"].as_str().unwrap();
    let nonce_bytes = [0x5a; 64];
    verifier(&mock)
        .verify(ear, &nonce_bytes, std::time::SystemTime::now())
        .unwrap();

    // DELETE: 204 once, then 404; other methods 405.
    let delete =
        "DELETE /challenge-response/v1/session/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&mock, delete.to_string()).await.0, 204);
    assert_eq!(raw(&mock, delete.to_string()).await.0, 404);
    let get =
        "GET /challenge-response/v1/newSession HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&mock, get.to_string()).await.0, 405);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ir-attest/tests/fixtures/cca")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The mock's EAR has Veraison's layout for CCA: `CCA_SSD_PLATFORM` and
/// `CCA_REALM` submods whose `ear.veraison.annotated-evidence` holds the
/// token's claims under `ccatoken`'s JSON names.
#[tokio::test]
async fn ear_has_veraisons_cca_layout() {
    let mock = MockVeraison::start().await;
    let bytes = fixture("token-a.bin");
    let token = ir_attest::CcaToken::parse(&bytes).unwrap();
    let ear = client(&mock, Duration::from_secs(5))
        .appraise_token(&bytes, &token, &verifier(&mock))
        .await
        .unwrap();
    let submods = &ear.claims["submods"];
    let platform = &submods["CCA_SSD_PLATFORM"]["ear.veraison.annotated-evidence"];
    let realm = &submods["CCA_REALM"]["ear.veraison.annotated-evidence"];
    for key in [
        "cca-platform-profile",
        "cca-platform-challenge",
        "cca-platform-implementation-id",
        "cca-platform-instance-id",
        "cca-platform-config",
        "cca-platform-lifecycle",
        "cca-platform-sw-components",
        "cca-platform-hash-algo-id",
    ] {
        assert!(platform.get(key).is_some(), "{key}");
    }
    for key in [
        "cca-realm-challenge",
        "cca-realm-personalization-value",
        "cca-realm-initial-measurement",
        "cca-realm-extensible-measurements",
        "cca-realm-hash-algo-id",
        "cca-realm-public-key",
        "cca-realm-public-key-hash-algo-id",
    ] {
        assert!(realm.get(key).is_some(), "{key}");
    }
    assert_eq!(
        platform["cca-platform-lifecycle"],
        token.platform.claims.lifecycle
    );
}

/// The `draft-ffm-00` vector (2023 profiles, COSE_Key RAK) through every
/// check a relying party makes except the session binding (its realm
/// challenge belongs to no live session): realm signature, platform
/// binding over the COSE_Key bytes, reference values with its
/// personalization value, the platform appraised locally (trust anchor,
/// lifecycle, platform reference values, signature), then Veraison with
/// the EAR bound to this token.
#[tokio::test]
async fn cose_key_rak_profile_end_to_end() {
    use ir_attest::cca_platform::PlatformKeys;
    use ir_attest::reference_values::ReferenceSet;
    use ir_attest::verify;

    let bytes = fixture("veraison/cca-token-draft-ffm-00.cbor");
    let token = ir_attest::CcaToken::parse(&bytes).unwrap();
    assert_eq!(
        token.realm.claims.profile.as_deref(),
        Some("tag:arm.com,2023:realm#1.0.0")
    );
    assert_eq!(
        token.realm.claims.rak.first().map(|b| b >> 5),
        Some(5),
        "a CBOR map"
    );
    verify::verify_realm_signature(&token).unwrap();
    verify::check_platform_binding(&token).unwrap();

    let r = &token.realm.claims;
    let refs = serde_json::json!({"realm": {"name": "draft-ffm", "reference-values": {
        "rim": hex::encode(&r.rim),
        "rems": [r.rems.iter().map(hex::encode).collect::<Vec<_>>()],
        "hash-algo": r.measurement_hash_alg,
        "personalization-value": hex::encode(r.personalization),
    }}});
    let refs = ReferenceSet::from_json(refs.to_string().as_bytes(), "draft-ffm").unwrap();
    assert_eq!(
        refs.match_claims(r).unwrap().name.as_deref(),
        Some("draft-ffm")
    );

    let p = &token.platform.claims;
    let mut anchors: serde_json::Value =
        serde_json::from_slice(&fixture("veraison/ta-tfa.json")).unwrap();
    anchors[0]["reference-values"] = serde_json::json!({
        "profile": p.profile,
        "sw-components": p.sw_components.iter().map(|c| serde_json::json!({
            "measurement-value": hex::encode(&c.measurement),
            "signer-id": hex::encode(&c.signer_id),
            "measurement-type": c.measurement_type,
        })).collect::<Vec<_>>(),
    });
    let keys = PlatformKeys::from_trust_anchor_json(anchors.to_string().as_bytes()).unwrap();
    keys.verify(&token).unwrap();

    let mock = MockVeraison::start().await;
    let veraison = client(&mock, Duration::from_secs(5));
    veraison
        .appraise_token(&bytes, &token, &verifier(&mock))
        .await
        .unwrap();
    assert_eq!(mock.last_evidence().unwrap(), bytes);
    // An EAR about another token (same Veraison, same nonce) is refused.
    mock.knobs().annotate_as = Some(fixture("veraison/cca-token-01.cbor"));
    let err = veraison
        .appraise_token(&bytes, &token, &verifier(&mock))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VeraisonError::Ear(EarError::EvidenceMismatch(_))),
        "{err}"
    );
}

/// The mock serves HTTPS; the client trusts it only through the extra CA
/// (`--veraison-ca`).
#[tokio::test]
async fn https_mock_is_trusted_through_the_extra_ca() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mock = MockVeraison::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .await
    .unwrap();
    assert!(mock.url().starts_with("https://localhost:"));
    let bytes = fixture("token-a.bin");
    let token = ir_attest::CcaToken::parse(&bytes).unwrap();

    let mut config = VeraisonConfig::new(mock.url());
    config.extra_root_pem = Some(cert.pem().into_bytes());
    VeraisonClient::new(config)
        .unwrap()
        .appraise_token(&bytes, &token, &verifier(&mock))
        .await
        .unwrap();

    // Without the CA the TLS handshake fails and nothing is appraised.
    let before = mock.counters().evidence_posts;
    let err = VeraisonClient::new(VeraisonConfig::new(mock.url()))
        .unwrap()
        .appraise_token(&bytes, &token, &verifier(&mock))
        .await
        .unwrap_err();
    assert!(!matches!(err, VeraisonError::Ear(_)), "{err}");
    assert_eq!(mock.counters().evidence_posts, before);
}
