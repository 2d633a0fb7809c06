//! The emulated realm produces real tokens that pass every check with the
//! right challenge, and fail with another; tampering is detected.

use ir_attest::cca_platform::{PlatformError, PlatformKeys};
use ir_attest::reference_values::ReferenceSet;
use ir_attest::token::CcaToken;
use ir_attest::verify::{check_platform_binding, verify_local, verify_realm_signature, Session};
use ir_attest::{EmulatedRealm, HashAlg, Measurements, VerifyError};

const SPKI: &[u8] = b"\x30\x2a fake client SubjectPublicKeyInfo DER";

fn setup() -> (EmulatedRealm, ReferenceSet, PlatformKeys) {
    let realm = EmulatedRealm::generate(Measurements::default()).unwrap();
    let refs = ReferenceSet::from_json(
        realm.reference_values_json("demo", None).as_bytes(),
        "emulated",
    )
    .unwrap();
    let keys = PlatformKeys::from_bytes(&realm.cpak_public_sec1()).unwrap();
    (realm, refs, keys)
}

#[test]
fn round_trip_passes_every_check() {
    let (realm, refs, keys) = setup();
    let challenge = [0x5a; 64];
    let bytes = realm.token_for_session(&challenge, SPKI).unwrap();
    let token = CcaToken::parse(&bytes).unwrap();
    assert_eq!(token.realm.claims.rim, realm.measurements().rim);
    assert_eq!(token.realm.claims.rak, realm.rak_public_sec1());
    assert_eq!(token.realm.claims.rak_hash_alg, "sha-256");
    assert_eq!(token.platform.claims.instance_id, realm.instance_id());
    let session = Session {
        challenge: &challenge,
        client_spki_der: SPKI,
    };
    let v = verify_local(&bytes, session, &refs, Some(&keys)).unwrap();
    assert!(v.platform_verified_locally);
    assert_eq!(v.realm.name.as_deref(), Some("demo"));
}

#[test]
fn platform_token_comes_first() {
    let (realm, _, _) = setup();
    let bytes = realm.token(&[1; 64]).unwrap();
    // d9 018f (tag 399), a2 (map of 2), 19 acca (44234) …
    assert_eq!(&bytes[..6], &[0xd9, 0x01, 0x8f, 0xa2, 0x19, 0xac]);
    assert_eq!(bytes[6], 0xca);
}

#[test]
fn another_challenge_fails_with_challenge_mismatch() {
    let (realm, refs, keys) = setup();
    let bytes = realm.token_for_session(&[1; 64], SPKI).unwrap();
    let other = Session {
        challenge: &[2; 64],
        client_spki_der: SPKI,
    };
    let err = verify_local(&bytes, other, &refs, Some(&keys)).unwrap_err();
    assert!(
        matches!(err, VerifyError::ChallengeMismatch { .. }),
        "{err}"
    );
    // Same challenge, another client key: also a mismatch.
    let other_key = Session {
        challenge: &[1; 64],
        client_spki_der: b"another key",
    };
    let err = verify_local(&bytes, other_key, &refs, Some(&keys)).unwrap_err();
    assert!(
        matches!(err, VerifyError::ChallengeMismatch { .. }),
        "{err}"
    );
}

#[test]
fn another_platform_key_is_rejected() {
    let (realm, refs, _) = setup();
    let (_, _, stranger_keys) = setup();
    let challenge = [3; 64];
    let bytes = realm.token_for_session(&challenge, SPKI).unwrap();
    let session = Session {
        challenge: &challenge,
        client_spki_der: SPKI,
    };
    let err = verify_local(&bytes, session, &refs, Some(&stranger_keys)).unwrap_err();
    assert!(
        matches!(err, VerifyError::Platform(PlatformError::BadSignature(_))),
        "{err}"
    );
}

#[test]
fn other_measurements_do_not_match() {
    let (realm, _, keys) = setup();
    let other = EmulatedRealm::generate(Measurements {
        rim: HashAlg::Sha256.digest(b"other"),
        ..Measurements::default()
    })
    .unwrap();
    let refs = ReferenceSet::from_json(other.reference_values_json("other", None).as_bytes(), "o")
        .unwrap();
    let challenge = [4; 64];
    let bytes = realm.token_for_session(&challenge, SPKI).unwrap();
    let session = Session {
        challenge: &challenge,
        client_spki_der: SPKI,
    };
    let err = verify_local(&bytes, session, &refs, Some(&keys)).unwrap_err();
    assert!(err.to_string().contains("RIM mismatch"), "{err}");
}

/// Finds `needle` in `hay` (the last occurrence).
fn rfind(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .rposition(|w| w == needle)
        .expect("needle present")
}

#[test]
fn tampered_signatures_fail() {
    let (realm, _, keys) = setup();
    let bytes = realm.token(&[9; 64]).unwrap();
    let token = CcaToken::parse(&bytes).unwrap();
    // Flip one bit of the realm signature.
    let mut t = bytes.clone();
    let at = rfind(&t, &token.realm.sign1.signature) + 10;
    t[at] ^= 1;
    let err = verify_realm_signature(&CcaToken::parse(&t).unwrap()).unwrap_err();
    assert!(matches!(err, VerifyError::BadRealmSignature(_)), "{err}");
    // Flip one bit of the platform signature.
    let mut t = bytes.clone();
    let at = rfind(&t, &token.platform.sign1.signature) + 10;
    t[at] ^= 1;
    let err = keys.verify(&CcaToken::parse(&t).unwrap()).unwrap_err();
    assert!(matches!(err, PlatformError::BadSignature(_)), "{err}");
    // Change the RIM (payload) but keep the signature.
    let mut t = bytes.clone();
    let at = rfind(&t, &token.realm.claims.rim);
    t[at] ^= 1;
    let err = verify_realm_signature(&CcaToken::parse(&t).unwrap()).unwrap_err();
    assert!(matches!(err, VerifyError::BadRealmSignature(_)), "{err}");
    // Changing the platform challenge breaks its signature and the binding.
    let mut t = bytes;
    let at = rfind(&t, &token.platform.claims.challenge);
    t[at] ^= 1;
    let parsed = CcaToken::parse(&t).unwrap();
    assert!(matches!(
        check_platform_binding(&parsed),
        Err(VerifyError::PlatformBindingMismatch { .. })
    ));
    assert!(keys.verify(&parsed).is_err());
}

#[test]
fn keys_save_and_reload() {
    let (realm, _, _) = setup();
    let dir = tempfile::tempdir().unwrap();
    let (rak, cpak) = (dir.path().join("rak.pem"), dir.path().join("cpak.pem"));
    std::fs::write(&rak, realm.rak_pem().unwrap()).unwrap();
    std::fs::write(&cpak, realm.cpak_pem().unwrap()).unwrap();
    let again = EmulatedRealm::load(&rak, &cpak, Measurements::default()).unwrap();
    assert_eq!(again.cpak_public_sec1(), realm.cpak_public_sec1());
    assert_eq!(again.rak_public_sec1(), realm.rak_public_sec1());
    assert!(EmulatedRealm::from_pem("nope", "nope", Measurements::default()).is_err());
}

#[test]
fn inconsistent_measurements_are_refused() {
    let m = Measurements {
        hash_algo: HashAlg::Sha512,
        ..Measurements::default()
    };
    assert!(EmulatedRealm::generate(m).is_err());
    let m = Measurements {
        rim: vec![1; 64],
        rems: [vec![0; 64], vec![0; 64], vec![0; 64], vec![0; 64]],
        hash_algo: HashAlg::Sha512,
    };
    let realm = EmulatedRealm::generate(m).unwrap();
    let refs = ReferenceSet::from_json(
        realm.reference_values_json("x", Some(&["app"])).as_bytes(),
        "x",
    )
    .unwrap();
    let t = CcaToken::parse(&realm.token(&[0; 64]).unwrap()).unwrap();
    let hit = refs.match_claims(&t.realm.claims).unwrap();
    assert!(hit.allows("app") && !hit.allows("other"));
}

/// The insecure skip of the session binding is a run-time switch: off by
/// default in every build, and builds without the feature refuse it.
#[test]
fn insecure_skip_challenge_is_off_unless_asked_and_only_in_feature_builds() {
    use ir_attest::attestor::{Attestor, PlatformCheck};
    let (realm, _, keys) = setup();
    let dir = tempfile::TempDir::new().unwrap();
    let refs = dir.path().join("realm.json");
    std::fs::write(&refs, realm.reference_values_json("demo", None)).unwrap();
    let mut attestor = Attestor::new(&refs, PlatformCheck::Local(keys), 1).unwrap();
    assert!(!attestor.skips_challenge());
    attestor.set_insecure_skip_challenge(false).unwrap();
    let on = attestor.set_insecure_skip_challenge(true);
    assert_eq!(
        on.is_ok(),
        ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE,
        "the switch follows the exported constant"
    );
    assert_eq!(
        attestor.skips_challenge(),
        ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE
    );
    assert_eq!(
        ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE,
        cfg!(feature = "insecure-skip-challenge")
    );
}

#[test]
fn platform_lifecycle_must_be_secured() {
    let (mut realm, refs, keys) = setup();
    let challenge = [0x5a; 64];
    for (lifecycle, ok) in [
        (0x3000, true),
        (0x30ff, true),
        (0x4000, false),
        (0x5000, false),
        (0x6000, false),
        (0x1000, false),
        (0x2000, false),
        (0x0000, false),
    ] {
        realm.lifecycle = lifecycle;
        let bytes = realm.token_for_session(&challenge, SPKI).unwrap();
        let session = Session {
            challenge: &challenge,
            client_spki_der: SPKI,
        };
        // Locally, and without platform keys (Veraison mode) alike.
        for k in [Some(&keys), None] {
            let r = verify_local(&bytes, session, &refs, k);
            if ok {
                r.unwrap();
            } else {
                assert!(
                    matches!(
                        r,
                        Err(VerifyError::Platform(PlatformError::Lifecycle { .. }))
                    ),
                    "{lifecycle:#x}"
                );
            }
        }
    }
}

#[test]
fn trust_anchor_entries_are_strict() {
    let anchor = r#"{"instance-id": "01", "pkey": {"kty": "EC", "crv": "P-384",
        "x": "IShnxS4rlQiwpCCpBWDzlNLfqiG911FP8akBr-fh94uxHU5m-Kijivp2r2oxxN6M",
        "y": "hM4tr8mWQli1P61xh3T0ViDREbF26DGOEYfbAjWjGNN7pZf-6A4OTHYqEryz6m7U"}"#;
    let ok = format!(
        r#"[{anchor}, "reference-values": {{"profile": "p", "sw-components": [{{"measurement-value": "aa", "signer-id": "bb"}}]}}}}]"#
    );
    PlatformKeys::from_trust_anchor_json(ok.as_bytes()).unwrap();
    for bad in [
        // A misspelled key must not mean "no reference values".
        format!(r#"[{anchor}, "refrence-values": {{}}}}]"#),
        format!(r#"[{anchor}, "reference-values": {{"sw-component": []}}}}]"#),
        format!(
            r#"[{anchor}, "reference-values": {{"sw-components": [{{"measurement-value": "zz", "signer-id": "bb"}}]}}}}]"#
        ),
        format!(
            r#"[{anchor}, "reference-values": {{"sw-components": [{{"measurement-value": "aa"}}]}}}}]"#
        ),
    ] {
        assert!(
            PlatformKeys::from_trust_anchor_json(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
}

/// The cheap checks come before any signature: a token both replayed and
/// tampered is refused for the binding, and `precheck` (what runs inside
/// the TLS handshake) checks no signature at all.
#[test]
fn binding_and_reference_values_are_checked_before_signatures() {
    let (realm, refs, keys) = setup();
    let challenge = [3; 64];
    let mut bytes = realm.token_for_session(&challenge, SPKI).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // the realm token's signature
    let session = Session {
        challenge: &challenge,
        client_spki_der: SPKI,
    };
    ir_attest::verify::precheck(&bytes, Some(session), &refs)
        .expect("precheck verifies no signature");
    let err = verify_local(&bytes, session, &refs, Some(&keys)).unwrap_err();
    assert!(matches!(err, VerifyError::BadRealmSignature(_)), "{err}");
    let replayed = Session {
        challenge: &[4; 64],
        client_spki_der: SPKI,
    };
    let err = verify_local(&bytes, replayed, &refs, Some(&keys)).unwrap_err();
    assert!(
        matches!(err, VerifyError::ChallengeMismatch { .. }),
        "{err}"
    );
    // Wrong measurements and a broken signature: the measurements speak.
    let stranger = EmulatedRealm::generate(Measurements {
        rim: vec![0xab; 32],
        ..Measurements::default()
    })
    .unwrap();
    let mut bytes = stranger.token_for_session(&challenge, SPKI).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = verify_local(&bytes, session, &refs, Some(&keys)).unwrap_err();
    assert!(
        !matches!(err, VerifyError::BadRealmSignature(_)),
        "signature checked before the reference values: {err}"
    );
}
