//! Envelopes signed here (rcgen chains, aws-lc-rs keys), one per refusal reason, in both
//! envelope formats.

use crate::util::*;
use ir_notation::{
    verify_at, Error, Level, Verified, MAX_ENVELOPE_BYTES, MEDIA_TYPE_COSE, MEDIA_TYPE_JWS,
};

type Make = fn(&Signer, &[u8], &Headers) -> Vec<u8>;
const FORMATS: [(&str, Make); 2] = [(MEDIA_TYPE_JWS, jws), (MEDIA_TYPE_COSE, cose)];

fn check(
    leaf: Leaf,
    trust_own_root: bool,
    level: &str,
    identities: &str,
    headers: &Headers,
    now: i64,
) -> Vec<Result<Verified, Error>> {
    let s = signer("signer", leaf);
    let other = signer("signer", Leaf::Good);
    let root = if trust_own_root {
        &s.root_der
    } else {
        &other.root_der
    };
    let (_d, store) = store("roots", &[root]);
    let p = policy(level, r#""registry.example/app""#, identities);
    let t = target();
    FORMATS
        .iter()
        .map(|(mt, make)| {
            let env = make(&s, &payload(&t), headers);
            verify_at(&p, &store, SCOPE, &t, mt, &env, now)
        })
        .collect()
}

fn strict(leaf: Leaf, headers: &Headers) -> Vec<Result<Verified, Error>> {
    check(leaf, true, "strict", IDENTITY, headers, NOW)
}

#[test]
fn valid_signature_is_accepted() {
    for r in strict(Leaf::Good, &Headers::default()) {
        let v = r.unwrap();
        // rcgen writes CN first.
        assert_eq!(v.signer_subject, "CN=signer, C=US, ST=WA, O=Example");
        assert_eq!(v.level, Level::Strict);
        assert_eq!(v.policy_name, "p");
        assert_eq!(v.signing_time, Some(SIGNED_AT));
        assert!(v.warnings.is_empty());
    }
}

#[test]
fn wrong_target_digest_is_refused() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let mut other = target();
    other.digest = format!("sha256:{}", "cd".repeat(32));
    for (mt, make) in FORMATS {
        let env = make(&s, &payload(&other), &Headers::default());
        let err = verify_at(&p, &store, SCOPE, &target(), mt, &env, NOW).unwrap_err();
        assert!(matches!(err, Error::TargetMismatch(_)), "{mt}: {err}");
    }
}

#[test]
fn one_flipped_bit_in_the_signature_is_refused() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    // JWS: flip a bit of the decoded signature and re-encode it.
    let env = jws(&s, &payload(&t), &Headers::default());
    let mut v: serde_json::Value = serde_json::from_slice(&env).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut sig = b64.decode(v["signature"].as_str().unwrap()).unwrap();
    sig[10] ^= 0x01;
    v["signature"] = b64.encode(&sig).into();
    let env = serde_json::to_vec(&v).unwrap();
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
    assert_eq!(err, Error::BadSignature);
    // COSE: the signature is the last 64 bytes of the structure.
    let mut env = cose(&s, &payload(&t), &Headers::default());
    let n = env.len();
    env[n - 5] ^= 0x01;
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_COSE, &env, NOW).unwrap_err();
    assert_eq!(err, Error::BadSignature);
    // COSE: one bit of the payload (the "size" digit) flipped.
    let mut env = cose(&s, &payload(&t), &Headers::default());
    let at = env.windows(4).position(|w| w == b"1234").unwrap();
    env[at] ^= 0x01;
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_COSE, &env, NOW).unwrap_err();
    assert_eq!(err, Error::BadSignature);
}

#[test]
fn untrusted_root_is_refused() {
    for r in check(
        Leaf::Good,
        false,
        "strict",
        IDENTITY,
        &Headers::default(),
        NOW,
    ) {
        assert!(matches!(r, Err(Error::UntrustedChain(_))), "{r:?}");
    }
    // audit logs authenticity: accepted, with the failure reported.
    for r in check(
        Leaf::Good,
        false,
        "audit",
        IDENTITY,
        &Headers::default(),
        NOW,
    ) {
        let v = r.unwrap();
        assert!(matches!(v.warnings.as_slice(), [Error::UntrustedChain(_)]));
    }
}

#[test]
fn wrong_identity_is_refused() {
    let other = r#""x509.subject: C=US, ST=WA, O=Example, CN=someone-else""#;
    for r in check(Leaf::Good, true, "strict", other, &Headers::default(), NOW) {
        assert!(matches!(r, Err(Error::IdentityNotTrusted(_))), "{r:?}");
    }
    // A subset of the subject's attributes matches; "*" matches anyone.
    let subset = r#""x509.subject: C=US, ST=WA, O=Example""#;
    for ids in [subset, r#""*""#] {
        for r in check(Leaf::Good, true, "strict", ids, &Headers::default(), NOW) {
            r.unwrap();
        }
    }
}

#[test]
fn certificate_expired_at_signing_time_is_refused() {
    for r in strict(Leaf::ExpiredBeforeSigning, &Headers::default()) {
        assert!(matches!(r, Err(Error::Expired(_))), "{r:?}");
    }
    // Even at level audit: validity at the signing time is part of integrity.
    let h = Headers::default();
    for r in check(Leaf::ExpiredBeforeSigning, true, "audit", IDENTITY, &h, NOW) {
        assert!(matches!(r, Err(Error::Expired(_))), "{r:?}");
    }
}

#[test]
fn certificate_expired_since_signing_follows_authentic_timestamp() {
    for r in strict(Leaf::ExpiredBeforeNow, &Headers::default()) {
        assert!(matches!(r, Err(Error::Expired(_))), "{r:?}");
    }
    let h = Headers::default();
    for r in check(
        Leaf::ExpiredBeforeNow,
        true,
        "permissive",
        IDENTITY,
        &h,
        NOW,
    ) {
        let v = r.unwrap();
        assert!(matches!(v.warnings.as_slice(), [Error::Expired(_)]));
    }
}

#[test]
fn a_trust_anchor_left_out_of_the_envelope_must_be_valid_too() {
    // The envelope's chain ends at the intermediate: the root comes from
    // the trust store, and its validity counts as the envelope's do.
    for r in strict(Leaf::RootExpiredBeforeSigning, &Headers::default()) {
        assert!(
            matches!(&r, Err(Error::Expired(m)) if m.contains("trust anchor")),
            "{r:?}"
        );
    }
    for r in strict(Leaf::RootExpiredBeforeNow, &Headers::default()) {
        assert!(matches!(r, Err(Error::Expired(_))), "{r:?}");
    }
    let h = Headers::default();
    for r in check(
        Leaf::RootExpiredBeforeNow,
        true,
        "permissive",
        IDENTITY,
        &h,
        NOW,
    ) {
        let v = r.unwrap();
        assert!(matches!(v.warnings.as_slice(), [Error::Expired(_)]));
    }
}

#[test]
fn expired_signature_is_refused() {
    let h = Headers {
        expiry: Some(SIGNED_AT + DAY),
        ..Headers::default()
    };
    for r in strict(Leaf::Good, &h) {
        assert!(matches!(r, Err(Error::Expired(_))), "{r:?}");
    }
    let h = Headers {
        expiry: Some(NOW + DAY),
        ..Headers::default()
    };
    for r in strict(Leaf::Good, &h) {
        assert_eq!(r.unwrap().expiry, Some(NOW + DAY));
    }
}

#[test]
fn leaf_without_code_signing_eku_is_refused() {
    for r in strict(Leaf::ServerAuthEku, &Headers::default()) {
        assert!(matches!(r, Err(Error::CertificateRequirement(_))), "{r:?}");
    }
}

#[test]
fn unknown_critical_header_is_refused() {
    let h = Headers {
        extra_crit: Some("io.cncf.notary.verificationPlugin"),
        ..Headers::default()
    };
    for r in strict(Leaf::Good, &h) {
        assert_eq!(
            r.unwrap_err(),
            Error::UnknownCriticalHeader("io.cncf.notary.verificationPlugin".into())
        );
    }
}

#[test]
fn algorithm_must_match_the_signing_key() {
    let h = Headers {
        alg: "ES384",
        ..Headers::default()
    };
    for r in strict(Leaf::Good, &h) {
        assert!(matches!(r, Err(Error::UnsupportedAlgorithm(_))), "{r:?}");
    }
}

#[test]
fn oversize_envelope_and_unknown_media_type_are_refused() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let err = verify_at(&p, &store, SCOPE, &target(), MEDIA_TYPE_JWS, &big, NOW).unwrap_err();
    assert!(matches!(err, Error::EnvelopeTooLarge { .. }), "{err}");
    let env = jws(&s, &payload(&target()), &Headers::default());
    let err = verify_at(&p, &store, SCOPE, &target(), "application/json", &env, NOW).unwrap_err();
    assert_eq!(err, Error::UnsupportedEnvelope("application/json".into()));
}

#[test]
fn scope_outside_the_policy_is_refused() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""registry.example/app""#, IDENTITY);
    let env = jws(&s, &payload(&target()), &Headers::default());
    for scope in ["registry.example/other", "other.example/app", "not a scope"] {
        let err = verify_at(&p, &store, scope, &target(), MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
        assert_eq!(err, Error::NoApplicablePolicy(scope.into()));
    }
}

#[test]
fn skip_level_verifies_nothing() {
    let p = ir_notation::TrustPolicy::from_json(
        br#"{"version":"1.0","trustPolicies":[{"name":"test","registryScopes":["*"],
            "signatureVerification":{"level":"skip"}}]}"#,
    )
    .unwrap();
    let store = ir_notation::TrustStore::default();
    let v = verify_at(&p, &store, SCOPE, &target(), MEDIA_TYPE_JWS, b"junk", NOW).unwrap();
    assert_eq!(v.level, Level::Skip);
    assert_eq!(v.signer_subject, "");
}

#[test]
fn malformed_envelopes_never_panic() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    for (mt, make) in FORMATS {
        let env = make(&s, &payload(&t), &Headers::default());
        // Every truncation, and every single-byte corruption at a stride.
        for n in 0..env.len() {
            assert!(verify_at(&p, &store, SCOPE, &t, mt, &env[..n], NOW).is_err());
        }
        for i in (0..env.len()).step_by(3) {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = env.clone();
                bad[i] ^= x;
                let _ = verify_at(&p, &store, SCOPE, &t, mt, &bad, NOW);
            }
        }
    }
    for junk in [
        &b"{}"[..],
        b"[]",
        b"null",
        b"\xd2\x84",
        b"\xd2\x84\x40\xa0\xf6\x40",
        b"{\"payload\":1}",
    ] {
        for (mt, _) in FORMATS {
            assert!(verify_at(&p, &store, SCOPE, &t, mt, junk, NOW).is_err());
        }
    }
}

#[test]
fn rsa_pss_signature_is_accepted() {
    let s = signer_with("signer", Leaf::Good, true);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    let h = Headers {
        alg: "PS256",
        ..Headers::default()
    };
    for (mt, make) in FORMATS {
        let env = make(&s, &payload(&t), &h);
        verify_at(&p, &store, SCOPE, &t, mt, &env, NOW).unwrap();
        // The same key cannot claim ECDSA.
        let env = make(&s, &payload(&t), &Headers::default());
        let err = verify_at(&p, &store, SCOPE, &t, mt, &env, NOW).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm(_)), "{mt}: {err}");
    }
}

#[test]
fn signing_authority_scheme_uses_signing_authority_stores() {
    // A certificate expired now but valid at the authentic signing time is accepted.
    let s = signer("signer", Leaf::ExpiredBeforeNow);
    let (_d, store) = store("roots", &[&s.root_der]);
    let sa = ir_notation::TrustPolicy::from_json(
        br#"{"version":"1.0","trustPolicies":[{"name":"sa","registryScopes":["*"],
            "signatureVerification":{"level":"strict"},"trustStores":["signingAuthority:roots"],
            "trustedIdentities":["*"]}]}"#,
    )
    .unwrap();
    let ca = policy("strict", r#""*""#, r#""*""#);
    let t = target();
    let h = Headers {
        signing_authority: true,
        ..Headers::default()
    };
    for (mt, make) in FORMATS {
        let env = make(&s, &payload(&t), &h);
        let v = verify_at(&sa, &store, SCOPE, &t, mt, &env, NOW).unwrap();
        assert_eq!(
            v.signing_scheme,
            Some(ir_notation::SigningScheme::X509SigningAuthority)
        );
        // A policy with only `ca` stores does not trust signing authority signatures.
        let err = verify_at(&ca, &store, SCOPE, &t, mt, &env, NOW).unwrap_err();
        assert!(matches!(err, Error::UntrustedChain(_)), "{mt}: {err}");
    }
}

#[test]
fn protected_header_rules_are_enforced() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    let base = r#""alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2024-01-01T00:00:00Z""#;
    let ok = format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme"]}}"#);
    let env = jws_raw(&s, &payload(&t), &ok);
    verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap();
    let cases = [
        // A repeated header name.
        format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme"],"alg":"ES256"}}"#),
        // signingScheme not critical.
        format!(r#"{{{base},"crit":[]}}"#),
        // Expiry present but not critical.
        format!(
            r#"{{{base},"crit":["io.cncf.notary.signingScheme"],"io.cncf.notary.expiry":"2030-01-01T00:00:00Z"}}"#
        ),
        // A critical header that is absent.
        format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme","io.cncf.notary.expiry"]}}"#),
        // Another content type.
        format!(
            r#"{{{},"crit":["io.cncf.notary.signingScheme"]}}"#,
            base.replace("vnd.cncf.notary.payload.v1+json", "json")
        ),
        // An unknown signing scheme.
        format!(
            r#"{{{},"crit":["io.cncf.notary.signingScheme"]}}"#,
            base.replace("\"notary.x509\"", "\"notary.x509.tsa\"")
        ),
        // A signing time that is not RFC 3339.
        format!(
            r#"{{{},"crit":["io.cncf.notary.signingScheme"]}}"#,
            base.replace("2024-01-01T00:00:00Z", "yesterday")
        ),
    ];
    for c in cases {
        let env = jws_raw(&s, &payload(&t), &c);
        let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
        assert!(matches!(err, Error::MalformedEnvelope(_)), "{c}: {err}");
    }
    let none = base.replace("\"ES256\"", "\"none\"");
    let env = jws_raw(
        &s,
        &payload(&t),
        &format!(r#"{{{none},"crit":["io.cncf.notary.signingScheme"]}}"#),
    );
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
    assert!(matches!(err, Error::UnsupportedAlgorithm(_)), "{err}");
}

#[test]
fn cose_must_be_tagged_sign1() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    let env = cose(&s, &payload(&t), &Headers::default());
    assert_eq!(env[0], 0xd2, "tag 18");
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_COSE, &env[1..], NOW).unwrap_err();
    assert!(matches!(err, Error::MalformedEnvelope(_)), "{err}");
    // A JWS is not a COSE envelope, and the other way round.
    let jws_env = jws(&s, &payload(&t), &Headers::default());
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_COSE, &jws_env, NOW).unwrap_err();
    assert!(matches!(err, Error::MalformedEnvelope(_)), "{err}");
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
    assert!(matches!(err, Error::MalformedEnvelope(_)), "{err}");
}

#[test]
fn chain_length_is_bounded() {
    let s = signer("signer", Leaf::Good);
    let (_d, store) = store("roots", &[&s.root_der]);
    let p = policy("strict", r#""*""#, IDENTITY);
    let t = target();
    let env = jws(&s, &payload(&t), &Headers::default());
    let mut v: serde_json::Value = serde_json::from_slice(&env).unwrap();
    let first = v["header"]["x5c"][0].clone();
    v["header"]["x5c"] = serde_json::Value::Array(vec![first; ir_notation::MAX_CHAIN_LEN + 1]);
    let env = serde_json::to_vec(&v).unwrap();
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedEnvelope(m) if m.contains("x5c")),
        "{err}"
    );
    v["header"]["x5c"] = serde_json::json!([]);
    let env = serde_json::to_vec(&v).unwrap();
    let err = verify_at(&p, &store, SCOPE, &t, MEDIA_TYPE_JWS, &env, NOW).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedEnvelope(m) if m.contains("x5c")),
        "{err}"
    );
}
