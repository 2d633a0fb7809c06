//! Trust policy parsing and notation's validation rules; trust store layout rules.

use ir_notation::{Action, Error, Level, StoreKind, TrustPolicy, TrustStore, TrustedIdentities};

fn statement(name: &str, scopes: &str, verification: &str, rest: &str) -> String {
    format!(
        r#"{{"name":"{name}","registryScopes":[{scopes}],"signatureVerification":{verification}{rest}}}"#
    )
}

const STORES: &str = r#","trustStores":["ca:roots"],"trustedIdentities":["*"]"#;

fn doc(statements: &[String]) -> Vec<u8> {
    format!(
        r#"{{"version":"1.0","trustPolicies":[{}]}}"#,
        statements.join(",")
    )
    .into_bytes()
}

fn refused(bytes: &[u8]) -> String {
    match TrustPolicy::from_json(bytes) {
        Err(Error::InvalidPolicy(m)) => m,
        other => panic!("expected InvalidPolicy, got {other:?}"),
    }
}

#[test]
fn notation_example_policy_parses() {
    let json = br#"{
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "wabbit-networks-images",
                "registryScopes": ["registry.acme-rockets.io/software/net-monitor", "registry.acme-rockets.io/software/net-logger"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:acme-rockets", "signingAuthority:wabbit"],
                "trustedIdentities": ["x509.subject: C=US, ST=WA, L=Seattle, O=wabbit-networks.io, OU=Security Tools"]
            },
            {
                "name": "global-policy",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "audit", "override": {"revocation": "skip"}},
                "trustStores": ["ca:acme-rockets"],
                "trustedIdentities": ["*"]
            }
        ]
    }"#;
    let p = TrustPolicy::from_json(json).unwrap();
    let exact = p
        .statement_for("registry.acme-rockets.io/software/net-monitor")
        .unwrap();
    assert_eq!(exact.name, "wabbit-networks-images");
    assert_eq!(exact.verification.level, Level::Strict);
    assert_eq!(exact.trust_stores[1].kind, StoreKind::SigningAuthority);
    assert!(matches!(&exact.trusted_identities, TrustedIdentities::Subjects(s) if s.len() == 1));
    // The exact scope wins over "*"; anything else falls to "*".
    let other = p
        .statement_for("registry.acme-rockets.io/software/other")
        .unwrap();
    assert_eq!(other.name, "global-policy");
    assert_eq!(other.verification.authenticity, Action::Log);
    assert_eq!(other.verification.revocation, Action::Skip);
}

#[test]
fn levels_and_overrides() {
    let p = TrustPolicy::from_json(&doc(&[statement(
        "s",
        r#""*""#,
        r#"{"level":"permissive","override":{"authenticity":"log","expiry":"enforce"}}"#,
        STORES,
    )]))
    .unwrap();
    let v = p.statement_for("a.io/b").unwrap().verification;
    assert_eq!(
        (
            v.authenticity,
            v.authentic_timestamp,
            v.expiry,
            v.revocation
        ),
        (Action::Log, Action::Log, Action::Enforce, Action::Log)
    );
    let m = refused(&doc(&[statement(
        "s",
        r#""*""#,
        r#"{"level":"strict","override":{"integrity":"log"}}"#,
        STORES,
    )]));
    assert!(m.contains("integrity"), "{m}");
    let m = refused(&doc(&[statement(
        "s",
        r#""*""#,
        r#"{"level":"strict","override":{"expiry":"skip"}}"#,
        STORES,
    )]));
    assert!(m.contains("cannot be skipped"), "{m}");
    let m = refused(&doc(&[statement(
        "s",
        r#""*""#,
        r#"{"level":"lenient"}"#,
        STORES,
    )]));
    assert!(m.contains("lenient"), "{m}");
}

#[test]
fn notation_validation_rules() {
    let strict = r#"{"level":"strict"}"#;
    // Unique names.
    refused(&doc(&[
        statement("s", r#""a.io/x""#, strict, STORES),
        statement("s", r#""a.io/y""#, strict, STORES),
    ]));
    // One statement per scope, so only one wildcard.
    refused(&doc(&[
        statement("s1", r#""*""#, strict, STORES),
        statement("s2", r#""*""#, strict, STORES),
    ]));
    refused(&doc(&[
        statement("s1", r#""a.io/x""#, strict, STORES),
        statement("s2", r#""a.io/x""#, strict, STORES),
    ]));
    // Wildcard alone; scope format.
    refused(&doc(&[statement("s", r#""*","a.io/x""#, strict, STORES)]));
    for bad in [
        r#""a.io""#,
        r#""a.io/X""#,
        r#""a.io/x:tag""#,
        r#""a.io/*""#,
        r#""https://a.io/x""#,
    ] {
        refused(&doc(&[statement("s", bad, strict, STORES)]));
    }
    refused(&doc(&[statement("s", "", strict, STORES)]));
    // Stores and identities required unless skip, forbidden with skip.
    refused(&doc(&[statement(
        "s",
        r#""*""#,
        strict,
        r#","trustStores":["ca:roots"]"#,
    )]));
    refused(&doc(&[statement(
        "s",
        r#""*""#,
        r#"{"level":"skip"}"#,
        STORES,
    )]));
    // Store references.
    for bad in [
        r#""roots""#,
        r#""x509:roots""#,
        r#""ca:../etc""#,
        r#""ca:""#,
    ] {
        let rest = format!(r#","trustStores":[{bad}],"trustedIdentities":["*"]"#);
        refused(&doc(&[statement("s", r#""*""#, strict, &rest)]));
    }
    // Identities: "*" alone, x509.subject with C, ST and O, no overlap.
    for bad in [
        r#""*","x509.subject: C=US, ST=WA, O=A""#,
        r#""x509.subject: C=US, O=A""#,
        r#""x509.subject:""#,
        r#""email: a@b""#,
        r#""x509.subject: C=US, ST=WA, O=A","x509.subject: C=US, ST=WA, O=A, CN=b""#,
    ] {
        let rest = format!(r#","trustStores":["ca:roots"],"trustedIdentities":[{bad}]"#);
        refused(&doc(&[statement("s", r#""*""#, strict, &rest)]));
    }
    // Version, emptiness, unknown fields, not JSON.
    refused(br#"{"version":"2.0","trustPolicies":[]}"#);
    refused(br#"{"version":"1.0","trustPolicies":[]}"#);
    refused(br#"{"version":"1.0","trustPolicies":[],"extra":1}"#);
    refused(b"\xff not json");
}

#[test]
fn trust_store_layout() {
    let s = crate::util::signer("signer", crate::util::Leaf::Good);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("x509/ca/roots");
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::write(ca.join("root.der"), &s.root_der).unwrap();
    // PEM with two certificates in one file.
    let pem = |der: &[u8]| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----\n")
    };
    std::fs::write(ca.join("more.pem"), pem(&s.root_der) + &pem(&s.chain[1])).unwrap();
    // Stray files beside the named stores are ignored.
    std::fs::write(dir.path().join("x509/ca/README"), "hello").unwrap();
    let store = TrustStore::load(dir.path()).unwrap();
    assert_eq!(store.certificates(StoreKind::Ca, "roots").unwrap().len(), 3);
    assert!(store
        .certificates(StoreKind::SigningAuthority, "roots")
        .is_none());
    assert_eq!(store.store_names().collect::<Vec<_>>(), ["ca:roots"]);

    // A file that is not a certificate, a signing (non-CA) certificate, a symlink, a
    // subdirectory: each refuses the store, as notation does.
    type Spoil<'a> = Box<dyn Fn(&std::path::Path) + 'a>;
    let cases: [(&str, Spoil<'_>); 4] = [
        (
            "junk",
            Box::new(|d| std::fs::write(d.join("junk.pem"), "not a cert").unwrap()),
        ),
        (
            "leaf",
            Box::new(|d| std::fs::write(d.join("leaf.der"), &s.chain[0]).unwrap()),
        ),
        (
            "symlink",
            Box::new(|d| {
                std::os::unix::fs::symlink(d.join("root.der"), d.join("link.der")).unwrap()
            }),
        ),
        (
            "subdir",
            Box::new(|d| std::fs::create_dir(d.join("sub")).unwrap()),
        ),
    ];
    for (what, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("x509/ca/roots");
        std::fs::create_dir_all(&ca).unwrap();
        std::fs::write(ca.join("root.der"), &s.root_der).unwrap();
        make(&ca);
        let err = TrustStore::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::InvalidTrustStore(_)), "{what}: {err}");
    }
    // No x509 directory at all: an empty store, and a policy naming a store it lacks is an
    // untrusted chain, not a crash.
    let empty = TrustStore::load(tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(empty.store_names().count(), 0);
}

#[test]
fn missing_named_store_is_an_untrusted_chain() {
    let s = crate::util::signer("signer", crate::util::Leaf::Good);
    let p = crate::util::policy("strict", r#""*""#, r#""*""#);
    let t = crate::util::target();
    let env = crate::util::jws(
        &s,
        &crate::util::payload(&t),
        &crate::util::Headers::default(),
    );
    let err = ir_notation::verify_at(
        &p,
        &TrustStore::default(),
        crate::util::SCOPE,
        &t,
        ir_notation::MEDIA_TYPE_JWS,
        &env,
        crate::util::NOW,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::UntrustedChain(m) if m.contains("ca:roots")),
        "{err}"
    );
}

#[test]
fn policy_file_is_loaded_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trustpolicy.json");
    std::fs::write(
        &path,
        doc(&[statement("s", r#""*""#, r#"{"level":"strict"}"#, STORES)]),
    )
    .unwrap();
    TrustPolicy::load(&path).unwrap();
    let err = TrustPolicy::load(dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(err, Error::InvalidPolicy(_)));
    let err = TrustPolicy::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidPolicy(m) if m.contains("not a regular file")),
        "{err}"
    );
}
