//! Micro-benchmarks of attestation verification (divan):
//!
//! ```sh
//! CARGO_BUILD_JOBS=1 cargo bench -p ir-attest --bench verify
//! ```
//!
//! One real CCA token (islet's `token-a.bin`, ES384 realm and platform
//! signatures) verified end to end as the RA-TLS verifier does in local
//! CPAK mode, minus the session binding (a recorded token cannot be bound
//! to a live session; that check is one SHA-512): parse, platform binding,
//! reference values, lifecycle, RAK import and realm signature, platform
//! signature. And one Veraison EAR (an ES256 JWT) verified: signature,
//! nonce, freshness, submods, then its annotated evidence against the token.

use divan::black_box;
use ir_attest::cca_platform::PlatformKeys;
use ir_attest::ear::test_util::{EarSigner, EarSpec};
use ir_attest::reference_values::ReferenceSet;
use ir_attest::token::CcaToken;
use ir_attest::verify::{precheck, verify_realm_signature};
use std::path::PathBuf;
use std::time::SystemTime;

fn main() {
    divan::main();
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cca")
        .join(name)
}

#[divan::bench]
fn cca_token_end_to_end(bencher: divan::Bencher) {
    let token = std::fs::read(fixture("token-a.bin")).unwrap();
    let references = ReferenceSet::load(&fixture("reference-a.json")).unwrap();
    let keys = PlatformKeys::load(&fixture("cpak-ab.pub")).unwrap();
    bencher.bench(|| {
        let (token, _realm) = precheck(black_box(&token), None, &references).unwrap();
        verify_realm_signature(&token).unwrap();
        keys.verify(&token).unwrap();
        token
    });
}

#[divan::bench]
fn ear_verify(bencher: divan::Bencher) {
    let token = CcaToken::parse(&std::fs::read(fixture("token-a.bin")).unwrap()).unwrap();
    let signer = EarSigner::generate();
    let jwt = signer.sign(&EarSpec::affirming_for(&token));
    let verifier = signer.verifier();
    let nonce = token.realm.claims.challenge;
    bencher.bench(|| {
        let ear = verifier
            .verify(black_box(&jwt), &nonce, SystemTime::now())
            .unwrap();
        ear.check_evidence(&token).unwrap();
        ear
    });
}
