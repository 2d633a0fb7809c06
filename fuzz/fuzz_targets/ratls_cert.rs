//! The RA-TLS client-certificate path: DER parsing, extracting the token
//! extension and SPKI, then the token's local checks bound to that SPKI.
#![no_main]

use std::sync::OnceLock;

use ir_attest::certificate::read_certificate;
use ir_attest::reference_values::ReferenceSet;
use ir_attest::verify::{self, Session};
use libfuzzer_sys::fuzz_target;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/ir-attest/tests/fixtures/cca"
);

fn refs() -> &'static ReferenceSet {
    static R: OnceLock<ReferenceSet> = OnceLock::new();
    R.get_or_init(|| {
        let bytes = std::fs::read(format!("{FIXTURES}/reference-a.json")).unwrap();
        ReferenceSet::from_json(&bytes, "reference-a.json").unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = read_certificate(data) else {
        return;
    };
    assert!(!cert.spki_der.is_empty());
    assert!(cert.token.len() <= data.len());
    let session = Session {
        challenge: &[9u8; 64],
        client_spki_der: &cert.spki_der,
    };
    assert!(verify::verify_local(&cert.token, session, refs(), None).is_err());
});
