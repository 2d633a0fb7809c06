//! CCA attestation tokens: parsing, then every local check (realm
//! signature, platform binding, session binding, reference values,
//! platform signature with the fixtures' CPAK). No panic, and nothing
//! but a genuine fixture token can pass.
#![no_main]

use std::sync::OnceLock;

use ir_attest::cca_platform::PlatformKeys;
use ir_attest::reference_values::ReferenceSet;
use ir_attest::token::CcaToken;
use ir_attest::verify::{self, Session};
use libfuzzer_sys::fuzz_target;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/ir-attest/tests/fixtures/cca"
);

struct Refs {
    a: ReferenceSet,
    b: ReferenceSet,
    keys: PlatformKeys,
    genuine: Vec<Vec<u8>>,
}

fn refs() -> &'static Refs {
    static R: OnceLock<Refs> = OnceLock::new();
    R.get_or_init(|| {
        let read = |n: &str| std::fs::read(format!("{FIXTURES}/{n}")).unwrap();
        Refs {
            a: ReferenceSet::from_json(&read("reference-a.json"), "reference-a.json").unwrap(),
            b: ReferenceSet::from_json(&read("reference-b.json"), "reference-b.json").unwrap(),
            keys: PlatformKeys::from_bytes(&read("cpak-ab.pub")).unwrap(),
            genuine: vec![read("token-a.bin"), read("token-b.bin")],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let r = refs();
    if let Ok(token) = CcaToken::parse(data) {
        let _ = token.summary();
        let _ = verify::verify_realm_signature(&token);
        let _ = verify::check_platform_binding(&token);
        let _ = verify::check_session_binding(&token, &[7u8; 64], b"spki");
        let _ = r.a.match_claims(&token.realm.claims);
        let _ = r.keys.verify(&token);
    }
    // A fixed challenge no fixture token is bound to: must never pass.
    let session = Session {
        challenge: &[7u8; 64],
        client_spki_der: b"spki",
    };
    assert!(verify::verify_local(data, session, &r.a, Some(&r.keys)).is_err());
    // Without session binding, only tokens signed by the fixture platform
    // can pass all checks. A passing input must decode to claims equal to a
    // genuine token's (a re-encoding of it, at most).
    for refs in [&r.a, &r.b] {
        if let Ok(v) = verify::verify_local_insecure_skip_challenge(data, refs, Some(&r.keys)) {
            let matches_genuine = r.genuine.iter().any(|g| {
                let g = CcaToken::parse(g).unwrap();
                g.realm.claims.rim == v.token.realm.claims.rim
                    && g.realm.claims.rak == v.token.realm.claims.rak
            });
            assert!(matches_genuine, "forged token passed");
        }
    }
});
