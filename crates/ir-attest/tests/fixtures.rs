//! Every fixture token with exactly the outcome its README states.
//! Fixtures are copied into `tests/fixtures/cca` (with their README and
//! LICENSE) so the tests do not depend on a sibling `shared/` folder.

use ir_attest::cca_platform::{PlatformError, PlatformKeys};
use ir_attest::reference_values::{MatchError, ReferenceSet};
use ir_attest::token::CcaToken;
use ir_attest::verify::{
    check_platform_binding, check_session_binding, verify_local, verify_realm_signature, Session,
};
use ir_attest::{HashAlg, KeyError, VerifyError};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cca")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn token(name: &str) -> CcaToken {
    CcaToken::parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn keys(name: &str) -> Result<PlatformKeys, PlatformError> {
    PlatformKeys::load(&dir().join(name))
}

fn refs(name: &str) -> ReferenceSet {
    ReferenceSet::load(&dir().join(name)).unwrap()
}

const ISLET: [&str; 3] = ["token-a.bin", "token-b.bin", "token-c.bin"];
const VERAISON_GOOD: [&str; 3] = [
    "veraison/cca-token-01.cbor",
    "veraison/cca-token-02.cbor",
    "veraison/cca-token-draft-ffm-00.cbor",
];
const BUG_33: &str = "veraison/bug-33-repro.cbor";

#[test]
fn islet_tokens_parse_with_expected_rims() {
    for (name, rim) in [
        ("token-a.bin", "fdd82b3e"),
        ("token-b.bin", "59587944"),
        ("token-c.bin", "08edc51c"),
    ] {
        let t = token(name);
        assert!(hex::encode(&t.realm.claims.rim).starts_with(rim), "{name}");
        assert_eq!(t.realm.claims.measurement_hash_alg, "sha-256");
        assert_eq!(t.realm.claims.rak.len(), 97);
        assert_eq!(t.realm.claims.profile, None);
        assert_eq!(t.platform.claims.profile, "http://arm.com/CCA-SSD/1.0.0");
    }
}

#[test]
fn realm_signatures_and_platform_bindings_hold() {
    for name in ISLET.iter().chain(VERAISON_GOOD.iter()) {
        let t = token(name);
        verify_realm_signature(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_platform_binding(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn cose_key_rak_under_2023_profiles() {
    let t = token("veraison/cca-token-draft-ffm-00.cbor");
    assert_eq!(
        t.realm.claims.profile.as_deref(),
        Some("tag:arm.com,2023:realm#1.0.0")
    );
    // The RAK claim is a COSE_Key map, not a SEC1 point.
    assert_ne!(t.realm.claims.rak.first(), Some(&0x04));
    let rak = verify_realm_signature(&t).unwrap();
    assert_eq!(rak.curve_name(), "P-384");
}

#[test]
fn sha512_binding_of_token_02() {
    let t = token("veraison/cca-token-02.cbor");
    assert_eq!(check_platform_binding(&t).unwrap(), HashAlg::Sha512);
}

#[test]
fn bug_33_is_rejected_for_its_binding() {
    let t = token(BUG_33);
    verify_realm_signature(&t).unwrap();
    match check_platform_binding(&t) {
        Err(VerifyError::PlatformBindingMismatch {
            alg,
            expected,
            found,
        }) => {
            assert_eq!(alg, HashAlg::Sha256);
            assert_ne!(expected, found);
        }
        other => panic!("expected PlatformBindingMismatch, got {other:?}"),
    }
    // Its platform signature itself is fine: binding is the only fault.
    keys("veraison/cpak.json").unwrap().verify(&t).unwrap();
}

/// The whole local verification stops bug-33 at its binding.
#[cfg(feature = "insecure-skip-challenge")]
#[test]
fn bug_33_fails_full_verification_at_the_binding() {
    let err = ir_attest::verify::verify_local_insecure_skip_challenge(
        &read(BUG_33),
        &refs("reference-a.json"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::PlatformBindingMismatch { .. }),
        "{err}"
    );
}

#[test]
fn platform_signatures_with_cpak_ab() {
    let cpak = keys("cpak-ab.pub").unwrap();
    assert!(matches!(cpak, PlatformKeys::Single(ref k) if k.curve_name() == "P-384"));
    cpak.verify(&token("token-a.bin")).unwrap();
    cpak.verify(&token("token-b.bin")).unwrap();
    let err = cpak.verify(&token("token-c.bin")).unwrap_err();
    assert!(matches!(err, PlatformError::BadSignature(_)), "{err}");
}

#[test]
fn cpak_ab_hash_is_the_instance_id() {
    let t = token("token-a.bin");
    let id = &t.platform.claims.instance_id;
    assert_eq!(id[0], 0x01);
    assert_eq!(id[1..], HashAlg::Sha256.digest(&read("cpak-ab.pub"))[..]);
}

#[test]
fn veraison_platform_keys() {
    let cpak = keys("veraison/cpak.json").unwrap();
    let tfa = keys("veraison/ta-tfa.json").unwrap();
    let ta02 = keys("veraison/ta-02-ok.json").unwrap();
    for name in [
        "veraison/cca-token-01.cbor",
        "veraison/cca-token-draft-ffm-00.cbor",
        BUG_33,
    ] {
        let t = token(name);
        cpak.verify(&t)
            .unwrap_or_else(|e| panic!("{name} cpak: {e}"));
        tfa.verify(&t)
            .unwrap_or_else(|e| panic!("{name} ta-tfa: {e}"));
        // ta-02 has another instance ID.
        assert!(matches!(
            ta02.verify(&t),
            Err(PlatformError::UnknownInstanceId { .. })
        ));
    }
    let t02 = token("veraison/cca-token-02.cbor");
    ta02.verify(&t02).unwrap();
    assert!(matches!(
        tfa.verify(&t02),
        Err(PlatformError::UnknownInstanceId { .. })
    ));
    // A wrong single key rejects all four.
    for name in VERAISON_GOOD.iter().chain([BUG_33].iter()) {
        let wrong = if *name == "veraison/cca-token-02.cbor" {
            &cpak
        } else {
            &ta02
        };
        let cpak_ab = keys("cpak-ab.pub").unwrap();
        assert!(cpak_ab.verify(&token(name)).is_err(), "{name}");
        assert!(wrong.verify(&token(name)).is_err(), "{name}");
    }
}

#[test]
fn ta_02_bad_is_rejected_as_invalid_point() {
    match keys("veraison/ta-02-bad.json") {
        Err(PlatformError::InvalidKey {
            which,
            source: KeyError::InvalidPoint { .. },
        }) => {
            assert!(which.contains("entry 0"), "{which}");
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
}

#[test]
fn ta_json_has_no_key_for_the_fixture_tokens() {
    // ta.json's single anchor has a P-256 key for an instance ID none of
    // the tokens carries.
    match keys("veraison/ta.json") {
        Ok(ta) => {
            for name in VERAISON_GOOD {
                assert!(ta.verify(&token(name)).is_err(), "{name}");
            }
        }
        Err(PlatformError::InvalidKey { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn reference_values_match_as_documented() {
    let a = refs("reference-a.json");
    let b = refs("reference-b.json");
    let mismatch = refs("reference-mismatch.json");
    let ta = token("token-a.bin");
    let tb = token("token-b.bin");
    let tc = token("token-c.bin");
    assert!(a.match_claims(&ta.realm.claims).is_ok());
    assert!(b.match_claims(&tb.realm.claims).is_ok());
    assert_eq!(
        a.realms()[0].name.as_deref(),
        Some("Data Processing Service")
    );
    assert_eq!(a.realms()[0].version.as_deref(), Some("1.0.0"));
    for (set, t) in [(&a, &tb), (&b, &ta), (&a, &tc), (&b, &tc)] {
        assert!(set.match_claims(&t.realm.claims).is_err());
    }
    for t in [&ta, &tb, &tc] {
        match mismatch.match_claims(&t.realm.claims) {
            Err(MatchError::NoMatch { reason, .. }) => {
                assert!(
                    matches!(*reason, VerifyError::RimMismatch { .. }),
                    "{reason}"
                );
            }
            other => panic!("expected NoMatch, got {other:?}"),
        }
    }
}

#[test]
fn rim_mismatch_names_both_values() {
    let a = refs("reference-a.json");
    let err = a.realms()[0]
        .values
        .check(&token("token-b.bin").realm.claims)
        .unwrap_err();
    match err {
        VerifyError::RimMismatch { expected, found } => {
            assert!(expected.starts_with("fdd82b3e"));
            assert!(found.starts_with("59587944"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn reference_directory_and_array() {
    // A directory of reference files; non-JSON files are ignored.
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "reference-a.json",
        "reference-b.json",
        "reference-mismatch.json",
    ] {
        std::fs::copy(dir().join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::write(tmp.path().join("README.md"), "ignored").unwrap();
    let set = ReferenceSet::load(tmp.path()).unwrap();
    assert_eq!(set.len(), 3);
    let hit = set
        .match_claims(&token("token-b.bin").realm.claims)
        .unwrap();
    assert!(hit.source.ends_with("reference-b.json"));
    assert!(set
        .match_claims(&token("token-c.bin").realm.claims)
        .is_err());

    let array = format!(
        "[{}, {}]",
        String::from_utf8(read("reference-mismatch.json")).unwrap(),
        String::from_utf8(read("reference-a.json")).unwrap()
    );
    let set = ReferenceSet::from_json(array.as_bytes(), "array.json").unwrap();
    assert_eq!(
        set.match_claims(&token("token-a.bin").realm.claims)
            .unwrap()
            .source,
        "array.json[1]"
    );
}

#[test]
fn no_rem_set_matched_is_reported() {
    let t = token("token-a.bin");
    let mut realm = refs("reference-a.json").realms()[0].clone();
    // Same RIM, but REM sets that differ from the token's in one REM.
    let mut other = t.realm.claims.rems.clone();
    other[3] = vec![0x11; 32];
    realm.values.rems = vec![other];
    let set = ReferenceSet::new(vec![realm.clone()]);
    match set.match_claims(&t.realm.claims) {
        Err(MatchError::NoMatch { reason, .. }) => {
            assert!(
                matches!(*reason, VerifyError::NoRemSetMatched { .. }),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // And a hash algorithm mismatch is reported as such.
    realm.values.rems = vec![t.realm.claims.rems.clone()];
    realm.values.hash_algo = HashAlg::Sha512;
    let err = realm.values.check(&t.realm.claims).unwrap_err();
    assert!(matches!(err, VerifyError::HashAlgMismatch { .. }), "{err}");
}

#[test]
fn session_binding_fails_for_every_fixture() {
    let challenge = [7u8; 64];
    for name in ISLET
        .iter()
        .chain(VERAISON_GOOD.iter())
        .chain([BUG_33].iter())
    {
        let t = token(name);
        let err = check_session_binding(&t, &challenge, b"some spki").unwrap_err();
        assert!(
            matches!(err, VerifyError::ChallengeMismatch { .. }),
            "{name}: {err}"
        );
    }
    let session = Session {
        challenge: &challenge,
        client_spki_der: b"spki",
    };
    let err = verify_local(
        &read("token-a.bin"),
        session,
        &refs("reference-a.json"),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::ChallengeMismatch { .. }),
        "{err}"
    );
}

#[cfg(feature = "insecure-skip-challenge")]
#[test]
fn verify_local_without_session_for_recorded_tokens() {
    use ir_attest::verify::verify_local_insecure_skip_challenge;
    let cpak = keys("cpak-ab.pub").unwrap();
    let v = verify_local_insecure_skip_challenge(
        &read("token-a.bin"),
        &refs("reference-a.json"),
        Some(&cpak),
    )
    .unwrap();
    assert!(v.platform_verified_locally);
    assert_eq!(v.realm.name.as_deref(), Some("Data Processing Service"));
    // token-c: realm fine, but no reference values and not this platform.
    let err = verify_local_insecure_skip_challenge(
        &read("token-c.bin"),
        &refs("reference-a.json"),
        Some(&cpak),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Reference(_)), "{err}");
}
