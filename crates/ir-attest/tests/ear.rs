//! EAR verification: good, wrong nonce, stale, future, bad signature,
//! submods not affirming, header attacks.

use ir_attest::ear::test_util::{EarSigner, EarSpec};
use ir_attest::ear::{EarError, EarVerifier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NONCE: [u8; 64] = [0x42; 64];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn verify(signer: &EarSigner, spec: &EarSpec) -> Result<ir_attest::Ear, EarError> {
    signer
        .verifier()
        .verify(&signer.sign(spec), &NONCE, SystemTime::now())
}

#[test]
fn good_ear_is_accepted() {
    let s = EarSigner::generate();
    let ear = verify(&s, &EarSpec::affirming(&NONCE)).unwrap();
    assert_eq!(
        ear.submods.get("CCA_SSD_PLATFORM").map(String::as_str),
        Some("affirming")
    );
    // CCA_REALM is skipped whatever its status.
    let spec = EarSpec::affirming(&NONCE).with_status("CCA_REALM", "contraindicated");
    verify(&s, &spec).unwrap();
}

#[test]
fn verifier_from_jwk_text() {
    let s = EarSigner::generate();
    let v = EarVerifier::from_jwk_json(s.public_jwk().as_bytes()).unwrap();
    v.verify(
        &s.sign(&EarSpec::affirming(&NONCE)),
        &NONCE,
        SystemTime::now(),
    )
    .unwrap();
    // The fixture's key is a valid P-256 JWK.
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cca/veraison-ear-pubkey.jwk"
    ))
    .unwrap();
    let v = EarVerifier::from_jwk_json(&fixture).unwrap();
    assert!(matches!(
        v.verify(
            &s.sign(&EarSpec::affirming(&NONCE)),
            &NONCE,
            SystemTime::now()
        ),
        Err(EarError::BadSignature)
    ));
    // A P-384 key is refused for ES256.
    let p384 = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cca/veraison/cpak.json"
    ))
    .unwrap();
    assert!(matches!(
        EarVerifier::from_jwk_json(&p384),
        Err(EarError::Key(_))
    ));
}

#[test]
fn wrong_nonce_is_rejected() {
    let s = EarSigner::generate();
    let err = verify(&s, &EarSpec::affirming(&[0x43; 64])).unwrap_err();
    assert!(matches!(err, EarError::NonceMismatch { .. }), "{err}");
    let mut spec = EarSpec::affirming(&NONCE);
    spec.nonce_text = Some("not base64!".into());
    assert!(matches!(
        verify(&s, &spec),
        Err(EarError::NonceMismatch { .. })
    ));
}

#[test]
fn unpadded_nonce_is_the_same_nonce() {
    use base64::Engine as _;
    let s = EarSigner::generate();
    let mut spec = EarSpec::affirming(&NONCE);
    spec.nonce_text = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(NONCE));
    verify(&s, &spec).unwrap();
}

#[test]
fn stale_and_future_iat_are_rejected() {
    let s = EarSigner::generate();
    let mut spec = EarSpec::affirming(&NONCE);
    spec.iat = now() - 3600;
    assert!(matches!(verify(&s, &spec), Err(EarError::Stale { .. })));
    spec.iat = now() + 3600;
    assert!(matches!(
        verify(&s, &spec),
        Err(EarError::FromFuture { .. })
    ));
    // Within the skew allowance.
    spec.iat = now() + 2;
    verify(&s, &spec).unwrap();
    // A configurable max age.
    spec.iat = now() - 30;
    let strict = s
        .verifier()
        .with_max_age(Duration::from_secs(5))
        .with_clock_skew(Duration::from_secs(1));
    assert!(matches!(
        strict.verify(&s.sign(&spec), &NONCE, SystemTime::now()),
        Err(EarError::Stale { .. })
    ));
}

#[test]
fn bad_signature_is_rejected() {
    let s = EarSigner::generate();
    let other = EarSigner::generate();
    let jwt = other.sign(&EarSpec::affirming(&NONCE));
    assert!(matches!(
        s.verifier().verify(&jwt, &NONCE, SystemTime::now()),
        Err(EarError::BadSignature)
    ));
    // A tampered payload with the original signature.
    let jwt = s.sign(&EarSpec::affirming(&NONCE));
    let parts: Vec<&str> = jwt.split('.').collect();
    let evil = s.sign(&EarSpec::affirming(&NONCE).with_status("CCA_SSD_PLATFORM", "affirming"));
    let evil_payload = evil.split('.').nth(1).unwrap();
    let forged = format!("{}.{}x.{}", parts[0], evil_payload, parts[2]);
    assert!(s
        .verifier()
        .verify(&forged, &NONCE, SystemTime::now())
        .is_err());
}

#[test]
fn submods_must_be_affirming() {
    let s = EarSigner::generate();
    for status in ["warning", "contraindicated", "none"] {
        let spec = EarSpec::affirming(&NONCE).with_status("CCA_SSD_PLATFORM", status);
        match verify(&s, &spec) {
            Err(EarError::NotAffirming {
                submod,
                status: got,
            }) => {
                assert_eq!(submod, "CCA_SSD_PLATFORM");
                assert_eq!(got, status);
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    let spec = EarSpec::affirming(&NONCE).with_status("OTHER_PLUGIN", "warning");
    assert!(
        matches!(verify(&s, &spec), Err(EarError::NotAffirming { submod, .. }) if submod == "OTHER_PLUGIN")
    );
    // Only the realm submod: nothing appraised the platform.
    let mut spec = EarSpec::affirming(&NONCE);
    spec.submods.retain(|(n, _)| n == "CCA_REALM");
    assert!(matches!(
        verify(&s, &spec),
        Err(EarError::NoPlatformAppraisal)
    ));
}

#[test]
fn integer_trust_tiers_are_understood() {
    let s = EarSigner::generate();
    let mut claims = EarSpec::affirming(&NONCE).claims();
    claims["submods"]["CCA_SSD_PLATFORM"]["ear.status"] = serde_json::json!(2);
    s.verifier()
        .verify(&s.sign_claims(&claims), &NONCE, SystemTime::now())
        .unwrap();
    claims["submods"]["CCA_SSD_PLATFORM"]["ear.status"] = serde_json::json!(32);
    let err = s
        .verifier()
        .verify(&s.sign_claims(&claims), &NONCE, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, EarError::NotAffirming { ref status, .. } if status == "warning"),
        "{err}"
    );
}

#[test]
fn header_attacks_are_rejected() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = EarSigner::generate();
    let jwt = s.sign(&EarSpec::affirming(&NONCE));
    let rest = jwt.split_once('.').unwrap().1;
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"ES256","crit":["x"]}"#,
        r#"{}"#,
    ] {
        let forged = format!("{}.{rest}", b64.encode(header));
        assert!(matches!(
            s.verifier().verify(&forged, &NONCE, SystemTime::now()),
            Err(EarError::BadHeader(_))
        ));
    }
    for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert!(s
            .verifier()
            .verify(junk, &NONCE, SystemTime::now())
            .is_err());
    }
    let huge = "a".repeat(70_000);
    assert!(matches!(
        s.verifier().verify(&huge, &NONCE, SystemTime::now()),
        Err(EarError::TooLarge { .. })
    ));
}

fn emulated_token(challenge: u8) -> ir_attest::CcaToken {
    let realm = ir_attest::EmulatedRealm::generate(ir_attest::Measurements::default()).unwrap();
    ir_attest::CcaToken::parse(&realm.token(&[challenge; 64]).unwrap()).unwrap()
}

fn verify_for(
    signer: &EarSigner,
    spec: &EarSpec,
    token: &ir_attest::CcaToken,
) -> Result<(), EarError> {
    signer
        .verifier()
        .verify(
            &signer.sign(spec),
            &token.realm.claims.challenge,
            SystemTime::now(),
        )?
        .check_evidence(token)
}

#[test]
fn annotated_evidence_binds_the_ear_to_the_token() {
    let s = EarSigner::generate();
    let token = emulated_token(7);
    verify_for(&s, &EarSpec::affirming_for(&token), &token).unwrap();

    // Another realm's token with the same nonce: a genuine EAR, not ours.
    let other = emulated_token(7);
    let err = verify_for(&s, &EarSpec::affirming_for(&other), &token).unwrap_err();
    assert!(matches!(err, EarError::EvidenceMismatch(_)), "{err}");

    // No annotated evidence at all.
    let err = verify_for(
        &s,
        &EarSpec::affirming(&token.realm.claims.challenge),
        &token,
    )
    .unwrap_err();
    assert!(matches!(err, EarError::EvidenceMismatch(_)), "{err}");

    // Each compared field, changed alone, is refused.
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let cases: [(&str, &str, serde_json::Value); 7] = [
        (
            "CCA_SSD_PLATFORM",
            "cca-platform-challenge",
            b64(&[1; 32]).into(),
        ),
        (
            "CCA_SSD_PLATFORM",
            "cca-platform-instance-id",
            b64(&[1; 33]).into(),
        ),
        (
            "CCA_SSD_PLATFORM",
            "cca-platform-implementation-id",
            b64(&[1; 32]).into(),
        ),
        ("CCA_REALM", "cca-realm-challenge", b64(&[1; 64]).into()),
        (
            "CCA_REALM",
            "cca-realm-initial-measurement",
            b64(&[1; 32]).into(),
        ),
        (
            "CCA_REALM",
            "cca-realm-extensible-measurements",
            serde_json::json!([b64(&[0; 32]), b64(&[0; 32]), b64(&[0; 32]), b64(&[1; 32])]),
        ),
        (
            "CCA_REALM",
            "cca-realm-extensible-measurements",
            serde_json::Value::Null,
        ),
    ];
    for (submod, field, value) in cases {
        let mut spec = EarSpec::affirming_for(&token);
        spec.annotated.get_mut(submod).unwrap()[field] = value;
        let err = verify_for(&s, &spec, &token).unwrap_err();
        assert!(
            matches!(&err, EarError::EvidenceMismatch(m) if m.contains(field)),
            "{field}: {err}"
        );
    }
}

#[test]
fn platform_appraisal_must_be_cca_ssd_platform() {
    let s = EarSigner::generate();
    let mut spec = EarSpec::affirming(&NONCE);
    spec.submods = vec![
        ("SOME_OTHER_PLATFORM".into(), "affirming".into()),
        ("CCA_REALM".into(), "warning".into()),
    ];
    assert!(matches!(
        verify(&s, &spec),
        Err(EarError::NoPlatformAppraisal)
    ));
    spec.submods = vec![("CCA_SSD_PLATFORM".into(), "affirming".into())];
    assert!(matches!(verify(&s, &spec), Err(EarError::NoRealmAppraisal)));
}
