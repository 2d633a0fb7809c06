//! Cross-checks against the verifier's own data and code: EARs issued by
//! Veraison's services (`tests/fixtures/veraison`, see its README) read
//! with ir-attest and with Veraison's `ear` crate, and CCA tokens (the
//! fixtures, Veraison's CCA scheme test token and tokens from the
//! emulator) decoded and verified with ir-attest and with Veraison's
//! `ccatoken` crate. Both crates are dev-dependencies only: they are
//! independent oracles, never part of a shipped binary.
//!
//! Where the oracles disagree with ir-attest the test pins the
//! disagreement (and docs/ratls.md lists it): `ccatoken` 0.1 trusts a
//! token whose platform binding fails, does not decode the 2023 profiles
//! (COSE_Key RAK, `tag:arm.com,2023:cca_platform#1.0.0`), and refuses
//! TF-M's software-component hash names.

use base64::Engine as _;
use ir_attest::cca_platform::PlatformKeys;
use ir_attest::cose::verify_sign1;
use ir_attest::ear::test_util::EarSigner;
use ir_attest::ear::{EarError, EarVerifier};
use ir_attest::emulate::{EmulatedRealm, Measurements};
use ir_attest::reference_values::ReferenceSet;
use ir_attest::token::CcaToken;
use ir_attest::verify::{
    check_platform_binding, verify_local, verify_realm_signature, Session, VerifyError,
};
use ir_attest::{HashAlg, PublicKey};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn read_text(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap().trim_end().to_string()
}

/// Base64url with or without padding (EAR nonces come both ways).
fn b64url(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64, as Veraison's Go code writes byte strings in JSON.
fn b64std(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

// ---------------------------------------------------------------------
// EARs
// ---------------------------------------------------------------------

const VERAISON_KEY: &str = "veraison/ear-verifier.jwk";
/// EARs issued by Veraison's services and recorded by the Veraison
/// project (see the fixture README): a PARSEC_TPM and a PSA_IOT appraisal.
const RECORDED_EARS: [&str; 2] = [
    "veraison/ear-parsec-tpm.recorded.jwt",
    "veraison/ear-psa-iot.recorded.jwt",
];
/// The EAR of Veraison's CCA scheme for `cca-good.cbor`.
const CCA_EAR: &str = "veraison/ear-cca-good.jwt";
const CCA_TOKEN: &str = "veraison/cca-good.cbor";

fn ir_verifier() -> EarVerifier {
    EarVerifier::from_jwk_json(&read(VERAISON_KEY)).expect("Veraison's EAR key loads")
}

/// The `ear` crate's reading of a JWT with Veraison's key.
fn oracle_ear(jwt: &str) -> Result<ear::Ear, ear::Error> {
    ear::Ear::from_jwt_jwk(jwt, ear::Algorithm::ES256, &read(VERAISON_KEY))
}

fn payload(jwt: &str) -> Value {
    let p64 = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url(p64)).unwrap()
}

/// A moment just after the EAR was issued (the recorded ones are old).
fn just_after(claims: &Value) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(claims["iat"].as_u64().unwrap() + 1)
}

/// What ir-attest and the `ear` crate read from an EAR must agree: the
/// profile, `iat`, the nonce, and per submod the status, the trust vector
/// and the annotated evidence.
fn assert_same_reading(name: &str, ir: &Value, oracle: &ear::Ear) {
    assert_eq!(
        ir["eat_profile"].as_str(),
        Some(oracle.profile.as_str()),
        "{name}"
    );
    assert_eq!(ir["iat"].as_i64(), Some(oracle.iat), "{name}");
    assert_eq!(
        ir["eat_nonce"],
        serde_json::to_value(&oracle.nonce).unwrap(),
        "{name}: nonce"
    );
    let ir_submods = ir["submods"].as_object().unwrap();
    assert_eq!(
        ir_submods.keys().collect::<Vec<_>>(),
        oracle.submods.keys().collect::<Vec<_>>(),
        "{name}: submods"
    );
    for (sub, appraisal) in &oracle.submods {
        let mine = &ir_submods[sub];
        assert_eq!(
            mine["ear.status"].as_str(),
            Some(appraisal.status.as_str()),
            "{name} {sub}: status"
        );
        assert_eq!(
            mine["ear.trustworthiness-vector"],
            serde_json::to_value(appraisal.trust_vector).unwrap(),
            "{name} {sub}: trust vector"
        );
        assert_eq!(
            mine["ear.veraison.annotated-evidence"],
            serde_json::to_value(&appraisal.annotated_evidence).unwrap(),
            "{name} {sub}: annotated evidence"
        );
    }
}

#[test]
fn recorded_veraison_ears_verify_with_veraisons_key_in_both() {
    let verifier = ir_verifier();
    for name in RECORDED_EARS {
        let jwt = read_text(name);
        let ir = verifier
            .verify_signature(&jwt)
            .unwrap_or_else(|e| panic!("{name}: ir-attest: {e}"));
        let oracle = oracle_ear(&jwt).unwrap_or_else(|e| panic!("{name}: ear crate: {e}"));
        assert_eq!(ir["eat_profile"], "tag:github.com,2023:veraison/ear");
        assert_same_reading(name, &ir, &oracle);
        // A genuine Veraison EAR about another attestation scheme is no
        // CCA platform appraisal: the full check refuses it.
        let nonce = b64url(ir["eat_nonce"].as_str().unwrap());
        match verifier.verify(&jwt, &nonce, just_after(&ir)) {
            Err(EarError::NoPlatformAppraisal) => {}
            other => panic!("{name}: expected NoPlatformAppraisal, got {other:?}"),
        }
    }
}

#[test]
fn veraison_cca_ear_is_read_exactly_as_veraisons_cca_scheme_writes_it() {
    let jwt = read_text(CCA_EAR);
    let token_bytes = read(CCA_TOKEN);
    let token = CcaToken::parse(&token_bytes).expect("Veraison's CCA test token parses");
    let claims = payload(&jwt);

    // The EAR carries, verbatim, the appraisal Veraison's integration
    // tests record for this token.
    let recorded: Value =
        serde_json::from_slice(&read("veraison/cca-good.appraisal.json")).unwrap();
    assert_eq!(claims["submods"], recorded);

    // ir-attest: the full check, bound to the token's realm challenge.
    let ir = ir_verifier()
        .verify(&jwt, &token.realm.claims.challenge, just_after(&claims))
        .expect("ir-attest accepts Veraison's CCA EAR");
    assert_eq!(
        ir.profile.as_deref(),
        Some("tag:github.com,2023:veraison/ear")
    );
    assert_eq!(ir.submods["CCA_SSD_PLATFORM"], "affirming");
    assert_eq!(ir.submods["CCA_REALM"], "affirming");
    ir.check_evidence(&token)
        .expect("the annotated evidence is this token");

    // The `ear` crate reads the same.
    let oracle = oracle_ear(&jwt).expect("the ear crate accepts it");
    assert_same_reading(CCA_EAR, &ir.claims, &oracle);
    assert_eq!(
        serde_json::to_value(&oracle.nonce).unwrap(),
        json!(base64::engine::general_purpose::URL_SAFE.encode(token.realm.claims.challenge))
    );

    // The realm measurements the oracle read are the token's.
    let realm = serde_json::to_value(&oracle.submods["CCA_REALM"].annotated_evidence).unwrap();
    let r = &token.realm.claims;
    assert_eq!(
        b64std(realm["cca-realm-initial-measurement"].as_str().unwrap()),
        r.rim
    );
    let rems: Vec<Vec<u8>> = realm["cca-realm-extensible-measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| b64std(v.as_str().unwrap()))
        .collect();
    assert_eq!(rems, r.rems.to_vec());
    assert_eq!(
        b64std(realm["cca-realm-challenge"].as_str().unwrap()),
        r.challenge
    );
    assert_eq!(
        b64std(realm["cca-realm-personalization-value"].as_str().unwrap()),
        r.personalization
    );
    assert_eq!(
        b64std(realm["cca-realm-public-key"].as_str().unwrap()),
        r.rak
    );
    let platform =
        serde_json::to_value(&oracle.submods["CCA_SSD_PLATFORM"].annotated_evidence).unwrap();
    let p = &token.platform.claims;
    assert_eq!(
        b64std(platform["cca-platform-instance-id"].as_str().unwrap()),
        p.instance_id
    );
    assert_eq!(
        b64std(platform["cca-platform-challenge"].as_str().unwrap()),
        p.challenge
    );
    assert_eq!(platform["cca-platform-lifecycle"], json!(p.lifecycle));
    // The one claim that differs: Veraison's integration test appraised
    // this token's claims under the 2023 platform profile (see the
    // fixture README); ir-attest does not compare profiles with the EAR.
    assert_eq!(p.profile, "http://arm.com/CCA-SSD/1.0.0");
    assert_eq!(
        platform["cca-platform-profile"],
        json!("tag:arm.com,2023:cca_platform#1.0.0")
    );

    // The same EAR does not vouch for another token.
    let other = EmulatedRealm::generate(Measurements::default()).unwrap();
    let other = CcaToken::parse(&other.token(&r.challenge).unwrap()).unwrap();
    assert!(matches!(
        ir.check_evidence(&other),
        Err(EarError::EvidenceMismatch(_))
    ));
}

/// Re-encodes a JWT's payload, keeping its header and signature.
fn with_payload(jwt: &str, claims: &Value) -> String {
    let mut parts = jwt.split('.');
    let header = parts.next().unwrap();
    parts.next();
    let sig = parts.next().unwrap();
    format!(
        "{header}.{}.{sig}",
        b64url_encode(claims.to_string().as_bytes())
    )
}

#[test]
fn tampered_veraison_ears_are_refused_by_both() {
    let jwt = read_text(CCA_EAR);
    let claims = payload(&jwt);
    let token = CcaToken::parse(&read(CCA_TOKEN)).unwrap();
    let nonce = token.realm.claims.challenge;
    let now = just_after(&claims);

    // The EAR moved to another session (another nonce).
    let mut replayed = claims.clone();
    replayed["eat_nonce"] = json!(base64::engine::general_purpose::URL_SAFE.encode([9u8; 64]));
    // The platform appraisal's trust vector upgraded.
    let mut upgraded = claims.clone();
    upgraded["submods"]["CCA_SSD_PLATFORM"]["ear.trustworthiness-vector"]["sourced-data"] =
        json!(2);
    // Another RIM in the annotated evidence.
    let mut other_rim = claims.clone();
    other_rim["submods"]["CCA_REALM"]["ear.veraison.annotated-evidence"]
        ["cca-realm-initial-measurement"] =
        json!(base64::engine::general_purpose::STANDARD.encode([0x42u8; 32]));
    // One bit of the signature flipped.
    let mut sig = b64url(jwt.rsplit('.').next().unwrap());
    sig[7] ^= 1;
    let flipped = format!(
        "{}.{}",
        &jwt[..jwt.rfind('.').unwrap()],
        b64url_encode(&sig)
    );
    // The same claims signed by someone else's key.
    let forged = EarSigner::generate().sign_claims(&claims);

    for (what, bad) in [
        ("another nonce", with_payload(&jwt, &replayed)),
        ("upgraded trust vector", with_payload(&jwt, &upgraded)),
        ("other RIM", with_payload(&jwt, &other_rim)),
        ("flipped signature bit", flipped),
        ("another key", forged),
    ] {
        match ir_verifier().verify(&bad, &nonce, now) {
            Err(EarError::BadSignature) => {}
            other => panic!("{what}: ir-attest: expected BadSignature, got {other:?}"),
        }
        assert!(
            oracle_ear(&bad).is_err(),
            "{what}: the ear crate accepted it"
        );
    }
    // The untampered EAR passes both (the refusals above are the tampering).
    ir_verifier().verify(&jwt, &nonce, now).unwrap();
    oracle_ear(&jwt).unwrap();
}

// ---------------------------------------------------------------------
// CCA tokens
// ---------------------------------------------------------------------

fn oracle_decode(bytes: &[u8]) -> Result<ccatoken::token::Evidence, ccatoken::token::Error> {
    ccatoken::token::Evidence::decode(&bytes.to_vec())
}

/// Every claim `ccatoken` decodes must equal ir-attest's.
fn assert_same_claims(name: &str, ir: &CcaToken, oracle: &ccatoken::token::Evidence) {
    let (r, vr) = (&ir.realm.claims, &oracle.realm_claims);
    assert_eq!(r.challenge, vr.challenge, "{name}: realm challenge");
    assert_eq!(r.personalization, vr.perso, "{name}: personalization value");
    assert_eq!(r.rim, vr.rim, "{name}: RIM");
    assert_eq!(r.rems, vr.rem, "{name}: REMs");
    assert_eq!(
        r.measurement_hash_alg, vr.hash_alg,
        "{name}: realm hash alg"
    );
    assert_eq!(r.rak, vr.rak.to_vec(), "{name}: RAK");
    assert_eq!(r.rak_hash_alg, vr.rak_hash_alg, "{name}: RAK hash alg");
    let (p, vp) = (&ir.platform.claims, &oracle.platform_claims);
    assert_eq!(p.profile, vp.profile, "{name}: platform profile");
    assert_eq!(p.challenge, vp.challenge, "{name}: platform challenge");
    assert_eq!(
        p.implementation_id,
        vp.impl_id.to_vec(),
        "{name}: implementation ID"
    );
    assert_eq!(p.instance_id, vp.inst_id.to_vec(), "{name}: instance ID");
    assert_eq!(p.config, vp.config, "{name}: config");
    assert_eq!(p.lifecycle, u64::from(vp.lifecycle), "{name}: lifecycle");
    assert_eq!(
        p.verification_service, vp.verification_service,
        "{name}: verification service"
    );
    assert_eq!(p.hash_alg, vp.hash_alg, "{name}: platform hash alg");
    assert_eq!(
        p.sw_components.len(),
        vp.sw_components.len(),
        "{name}: sw components"
    );
    for (i, (c, vc)) in p.sw_components.iter().zip(&vp.sw_components).enumerate() {
        assert_eq!(c.measurement_type, vc.mtyp, "{name}: sw {i} type");
        assert_eq!(c.measurement, vc.mval, "{name}: sw {i} measurement");
        assert_eq!(c.version, vc.version, "{name}: sw {i} version");
        assert_eq!(c.signer_id, vc.signer_id, "{name}: sw {i} signer ID");
        assert_eq!(c.hash_alg, vc.hash_alg, "{name}: sw {i} hash alg");
    }
}

/// A JWK for an EC public key (the form `ccatoken`'s trust anchors take).
fn jwk_of(key: &PublicKey) -> Value {
    let sec1 = key.to_sec1();
    let n = (sec1.len() - 1) / 2;
    json!({
        "kty": "EC",
        "crv": key.curve_name(),
        "x": b64url_encode(&sec1[1..1 + n]),
        "y": b64url_encode(&sec1[1 + n..]),
    })
}

/// `ccatoken`'s full verification with one platform key (platform
/// signature, realm signature, binding); `Ok` means it trusts the token.
fn oracle_verify(bytes: &[u8], jwk: &Value) -> Result<(i8, i8), String> {
    let mut evidence = oracle_decode(bytes).map_err(|e| e.to_string())?;
    let anchor = json!({
        "pkey": jwk,
        "implementation-id": hex::encode(evidence.platform_claims.impl_id),
        "instance-id": hex::encode(evidence.platform_claims.inst_id),
    });
    let mut cpak: ccatoken::store::Cpak =
        serde_json::from_str(&anchor.to_string()).map_err(|e| e.to_string())?;
    cpak.parse_pkey().map_err(|e| e.to_string())?;
    evidence.verify_with_cpak(cpak).map_err(|e| e.to_string())?;
    let (platform, realm) = evidence.get_trust_vectors();
    Ok((
        platform.instance_identity.get(),
        realm.instance_identity.get(),
    ))
}

/// ir-attest's cryptographic checks, the same set `ccatoken` runs.
fn ir_verify(bytes: &[u8], key: &PublicKey) -> Result<(), VerifyError> {
    let token = CcaToken::parse(bytes)?;
    verify_sign1(&token.platform.sign1, key)
        .map_err(|e| VerifyError::Platform(ir_attest::PlatformError::BadSignature(e)))?;
    verify_realm_signature(&token)?;
    check_platform_binding(&token)?;
    Ok(())
}

fn key_from_jwk_file(rel: &str) -> PublicKey {
    PublicKey::from_jwk_json(&read(rel)).unwrap()
}

/// The key a trust-anchor list gives the token's instance ID.
fn key_from_anchors(rel: &str, token: &[u8]) -> PublicKey {
    let keys = PlatformKeys::from_bytes(&read(rel)).unwrap();
    keys.key_for(&CcaToken::parse(token).unwrap())
        .unwrap()
        .clone()
}

const TRUSTWORTHY_INSTANCE: i8 = 2;

#[test]
fn fixture_tokens_decode_to_the_same_claims_and_verdicts_in_both() {
    let cpak_ab = PublicKey::from_sec1(&read("cca/cpak-ab.pub")).unwrap();
    let cpak_0x = key_from_jwk_file("cca/veraison/cpak.json");
    let token_02 = read("cca/veraison/cca-token-02.cbor");
    let cpak_02 = key_from_anchors("cca/veraison/ta-02-ok.json", &token_02);
    // (token, platform key, whether it verifies)
    let cases: [(&str, &PublicKey, bool); 5] = [
        ("cca/token-a.bin", &cpak_ab, true),
        ("cca/token-b.bin", &cpak_ab, true),
        ("cca/veraison/cca-token-01.cbor", &cpak_0x, true),
        ("cca/veraison/cca-token-02.cbor", &cpak_02, true),
        // A key of another platform: both refuse.
        ("cca/veraison/cca-token-01.cbor", &cpak_ab, false),
    ];
    for (name, key, verifies) in cases {
        let bytes = read(name);
        let ir = CcaToken::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let oracle = oracle_decode(&bytes).unwrap_or_else(|e| panic!("{name}: ccatoken: {e}"));
        assert_same_claims(name, &ir, &oracle);
        let mine = ir_verify(&bytes, key);
        let theirs = oracle_verify(&bytes, &jwk_of(key));
        assert_eq!(mine.is_ok(), verifies, "{name}: ir-attest: {mine:?}");
        assert_eq!(theirs.is_ok(), verifies, "{name}: ccatoken: {theirs:?}");
        if verifies {
            assert_eq!(
                theirs.unwrap(),
                (TRUSTWORTHY_INSTANCE, TRUSTWORTHY_INSTANCE),
                "{name}"
            );
        }
    }
    // token-c (a real FVP token of another platform) names the hash
    // algorithm of a software component `TF-M_SHA256MemPreXIP`, as TF-M
    // does; ccatoken 0.1 accepts only IANA hash names there and refuses
    // the token. ir-attest decodes it and, like the README says, refuses its
    // platform signature with `cpak-ab.pub`.
    let token_c = read("cca/token-c.bin");
    let ir = CcaToken::parse(&token_c).unwrap();
    assert!(ir
        .platform
        .claims
        .sw_components
        .iter()
        .any(|c| c.hash_alg.as_deref() == Some("TF-M_SHA256MemPreXIP")));
    let err = oracle_decode(&token_c)
        .err()
        .expect("ccatoken 0.1 refuses token-c");
    assert!(err.to_string().contains("TF-M_SHA256MemPreXIP"), "{err}");
    assert!(matches!(
        ir_verify(&token_c, &cpak_ab),
        Err(VerifyError::Platform(_))
    ));
    // `ta-02-bad.json`'s key is not a point on its curve: ir-attest
    // refuses the file, ccatoken cannot verify with the key.
    assert!(PlatformKeys::from_bytes(&read("cca/veraison/ta-02-bad.json")).is_err());
    let bad: Value = serde_json::from_slice(&read("cca/veraison/ta-02-bad.json")).unwrap();
    assert!(oracle_verify(&token_02, &bad[0]["pkey"]).is_err());
}

#[test]
fn ccatoken_trusts_a_token_whose_platform_binding_fails_ir_attest_refuses_it() {
    // Veraison's own repro token (their bug 33): valid signatures, the
    // platform challenge is not the hash of the RAK.
    let bytes = read("cca/veraison/bug-33-repro.cbor");
    let ir = CcaToken::parse(&bytes).unwrap();
    assert_same_claims("bug-33", &ir, &oracle_decode(&bytes).unwrap());
    let key = key_from_jwk_file("cca/veraison/cpak.json");
    assert_eq!(
        oracle_verify(&bytes, &jwk_of(&key)),
        Ok((TRUSTWORTHY_INSTANCE, TRUSTWORTHY_INSTANCE)),
        "ccatoken 0.1 trusts it (if this fails, ccatoken was fixed: update docs/ratls.md)"
    );
    assert!(matches!(
        ir_verify(&bytes, &key),
        Err(VerifyError::PlatformBindingMismatch { .. })
    ));
}

/// Splices a genuine platform token of one realm onto the realm token of
/// another (both signatures valid, the binding broken).
fn splice(platform_of: &[u8], realm_of: &[u8]) -> Vec<u8> {
    use ciborium::value::Value as Cbor;
    let parts = |bytes: &[u8]| -> Vec<(Cbor, Cbor)> {
        match ciborium::de::from_reader::<Cbor, _>(bytes).unwrap() {
            Cbor::Tag(399, inner) => match *inner {
                Cbor::Map(entries) => entries,
                _ => unreachable!(),
            },
            _ => unreachable!(),
        }
    };
    let find = |entries: &[(Cbor, Cbor)], key: i64| -> Cbor {
        entries
            .iter()
            .find(|(k, _)| k.as_integer() == Some(key.into()))
            .unwrap()
            .1
            .clone()
    };
    let collection = Cbor::Tag(
        399,
        Box::new(Cbor::Map(vec![
            (
                Cbor::Integer(44234.into()),
                find(&parts(platform_of), 44234),
            ),
            (Cbor::Integer(44241.into()), find(&parts(realm_of), 44241)),
        ])),
    );
    let mut out = Vec::new();
    ciborium::ser::into_writer(&collection, &mut out).unwrap();
    out
}

#[test]
fn a_spliced_token_with_a_broken_binding_is_refused_at_the_boundary_ccatoken_trusts_it() {
    let genuine = EmulatedRealm::generate(Measurements::default()).unwrap();
    let attacker = EmulatedRealm::generate(Measurements::default()).unwrap();
    let challenge = [7u8; 64];
    let spki = b"client certificate SubjectPublicKeyInfo";
    let session = Session {
        challenge: &challenge,
        client_spki_der: spki,
    };
    let refs = ReferenceSet::from_json(genuine.reference_values_json("demo", None).as_bytes(), "t")
        .unwrap();
    let cpak = PlatformKeys::from_bytes(&genuine.cpak_public_sec1()).unwrap();
    let cpak_jwk = jwk_of(&PublicKey::from_sec1(&genuine.cpak_public_sec1()).unwrap());

    // The genuine token: both trust it.
    let good = genuine.token_for_session(&challenge, spki).unwrap();
    verify_local(&good, session, &refs, Some(&cpak)).expect("the genuine token passes");
    assert_eq!(
        oracle_verify(&good, &cpak_jwk),
        Ok((TRUSTWORTHY_INSTANCE, TRUSTWORTHY_INSTANCE))
    );

    // The genuine platform token on the attacker's realm token (same
    // measurements, the session's challenge, its own RAK).
    let spliced = splice(
        &good,
        &attacker.token_for_session(&challenge, spki).unwrap(),
    );
    let err = verify_local(&spliced, session, &refs, Some(&cpak))
        .expect_err("ir-attest must refuse a token whose platform binding fails");
    assert!(
        err.to_string().starts_with("platform binding mismatch"),
        "{err}"
    );
    assert_eq!(
        oracle_verify(&spliced, &cpak_jwk),
        Ok((TRUSTWORTHY_INSTANCE, TRUSTWORTHY_INSTANCE)),
        "ccatoken 0.1 trusts the spliced token (update docs/ratls.md if this changes)"
    );
}

#[test]
fn emulated_tokens_decode_to_the_same_claims_and_verify_in_both() {
    let mut sha512 = Measurements {
        rim: HashAlg::Sha512.digest(b"rim"),
        rems: [
            HashAlg::Sha512.digest(b"0"),
            HashAlg::Sha512.digest(b"1"),
            HashAlg::Sha512.digest(b"2"),
            HashAlg::Sha512.digest(b"3"),
        ],
        hash_algo: HashAlg::Sha512,
    };
    let default = EmulatedRealm::generate(Measurements::default()).unwrap();
    let mut personalized = EmulatedRealm::generate(Measurements::default()).unwrap();
    personalized.personalization = [0xa5; 64];
    personalized.lifecycle = 0x30ff;
    sha512.rems[3] = vec![0; 64];
    let long = EmulatedRealm::generate(sha512).unwrap();
    for (name, realm) in [
        ("default", &default),
        ("personalized", &personalized),
        ("sha-512", &long),
    ] {
        for challenge in [
            [0u8; 64],
            [0xff; 64],
            *b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let bytes = realm.token(&challenge).unwrap();
            let ir = CcaToken::parse(&bytes).unwrap();
            let oracle = oracle_decode(&bytes).unwrap_or_else(|e| panic!("{name}: ccatoken: {e}"));
            assert_same_claims(name, &ir, &oracle);
            let cpak = PublicKey::from_sec1(&realm.cpak_public_sec1()).unwrap();
            ir_verify(&bytes, &cpak).unwrap();
            assert_eq!(
                oracle_verify(&bytes, &jwk_of(&cpak)),
                Ok((TRUSTWORTHY_INSTANCE, TRUSTWORTHY_INSTANCE)),
                "{name}"
            );
            // Another platform's key: both refuse.
            let other = PublicKey::from_sec1(&default_other_cpak()).unwrap();
            assert!(ir_verify(&bytes, &other).is_err(), "{name}");
            assert!(oracle_verify(&bytes, &jwk_of(&other)).is_err(), "{name}");
        }
    }
}

fn default_other_cpak() -> Vec<u8> {
    EmulatedRealm::generate(Measurements::default())
        .unwrap()
        .cpak_public_sec1()
}

#[test]
fn newer_profile_tokens_verify_in_ir_attest_ccatoken_cannot_decode_them() {
    // ccatoken 0.1 knows only the `http://arm.com/CCA-SSD/1.0.0` platform
    // profile and a 97-byte raw RAK; the 2023 profiles (COSE_Key RAK) are
    // beyond it. ir-attest decodes and verifies both tokens.
    let draft = read("cca/veraison/cca-token-draft-ffm-00.cbor");
    ir_verify(&draft, &key_from_jwk_file("cca/veraison/cpak.json")).unwrap();
    let err = oracle_decode(&draft)
        .err()
        .expect("ccatoken 0.1 refuses it");
    assert!(err.to_string().contains("profile"), "{err}");

    // Veraison's CCA scheme test token (the one its EAR above appraises):
    // a COSE_Key RAK under the CCA-SSD platform profile.
    let good = read(CCA_TOKEN);
    let token = CcaToken::parse(&good).unwrap();
    assert_eq!(
        token.realm.claims.profile.as_deref(),
        Some("tag:arm.com,2023:realm#1.0.0")
    );
    verify_realm_signature(&token).expect("COSE_Key RAK signature");
    check_platform_binding(&token).expect("binding over the COSE_Key bytes");
    verify_sign1(
        &token.platform.sign1,
        &key_from_jwk_file("veraison/cca-good.cpak.jwk"),
    )
    .expect("platform signature with the scheme's test CPAK");
    let err = oracle_decode(&good).err().expect("ccatoken 0.1 refuses it");
    assert!(err.to_string().contains("public-key"), "{err}");
}
