//! notation's own published envelopes (notation-go test data) through our verifier.

use std::path::{Path, PathBuf};

use ir_notation::{
    verify, Error, Level, Target, TrustPolicy, TrustStore, MEDIA_TYPE_COSE, MEDIA_TYPE_JWS,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/notation-go")
        .join(name)
}

/// A trust store with `cert` in `x509/<kind>/test/`.
fn store_with(kind: &str, cert: &str) -> (tempfile::TempDir, TrustStore) {
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join("x509").join(kind).join("test");
    std::fs::create_dir_all(&named).unwrap();
    std::fs::copy(data(cert), named.join(cert)).unwrap();
    let store = TrustStore::load(dir.path()).unwrap();
    (dir, store)
}

fn policy(level: &str, store: &str, identity: &str) -> TrustPolicy {
    let json = format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["*"],
        "signatureVerification":{{"level":"{level}"}},"trustStores":["{store}"],
        "trustedIdentities":["{identity}"]}}]}}"#
    );
    TrustPolicy::from_json(json.as_bytes()).unwrap()
}

const NOTARY_SUBJECT: &str = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine";

fn alpine_target() -> Target {
    Target {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0".into(),
        size: 481,
    }
}

fn mock_target() -> Target {
    Target {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e".into(),
        size: 528,
    }
}

#[test]
fn notation_jws_signature_is_accepted() {
    let (_d, store) = store_with("ca", "alpine.pem");
    let p = policy("strict", "ca:test", NOTARY_SUBJECT);
    let env = std::fs::read(data("jws_signature.sig")).unwrap();
    let v = verify(
        &p,
        &store,
        "example.com/alpine",
        &alpine_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap();
    assert_eq!(
        v.signer_subject,
        "C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"
    );
    assert_eq!(v.level, Level::Strict);
    assert!(v.warnings.is_empty());
}

#[test]
fn notation_cose_signature_is_accepted() {
    let (_d, store) = store_with("ca", "alpine.pem");
    let p = policy("strict", "ca:test", NOTARY_SUBJECT);
    let env = std::fs::read(data("cose_signature.sig")).unwrap();
    let v = verify(
        &p,
        &store,
        "example.com/alpine",
        &alpine_target(),
        MEDIA_TYPE_COSE,
        &env,
    )
    .unwrap();
    assert_eq!(
        v.signer_subject,
        "C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"
    );
}

#[test]
fn notation_signature_for_another_artifact_is_refused() {
    let (_d, store) = store_with("ca", "alpine.pem");
    let p = policy("strict", "ca:test", "*");
    let env = std::fs::read(data("cose_signature.sig")).unwrap();
    let mut other = alpine_target();
    other.size = 482;
    let err = verify(
        &p,
        &store,
        "example.com/alpine",
        &other,
        MEDIA_TYPE_COSE,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::TargetMismatch(_)), "{err}");
}

#[test]
fn notation_signature_under_another_self_signed_cert_is_untrusted() {
    // withoutTimestamp.sig is signed by a different self-signed "alpine" certificate.
    let (_d, store) = store_with("ca", "alpine.pem");
    let p = policy("strict", "ca:test", "*");
    let env = std::fs::read(data("withoutTimestamp.sig")).unwrap();
    let target = Target {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda".into(),
        size: 528,
    };
    let err = verify(
        &p,
        &store,
        "example.com/alpine",
        &target,
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::UntrustedChain(_)), "{err}");
    let (_d2, own) = store_with("ca", "alpine-withoutTimestamp.pem");
    verify(
        &p,
        &own,
        "example.com/alpine",
        &target,
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap();
}

#[test]
fn notation_ca_chain_to_test_root_is_accepted() {
    let (_d, store) = store_with("ca", "NotationTestRoot.pem");
    let p = policy("strict", "ca:test", "x509.subject: C=US, ST=WA, O=Notary");
    let env = std::fs::read(data("ca_valid_sig_env.json")).unwrap();
    let v = verify(
        &p,
        &store,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap();
    assert!(v.signer_subject.contains("CN=Notation Test Root"));
    assert_eq!(v.expiry, Some(4760578800)); // 2120-11-09T07:00:00Z
}

#[test]
fn notation_signing_authority_envelope_needs_a_signing_authority_store() {
    let env = std::fs::read(data("sa_valid_sig_env.json")).unwrap();
    let (_d, sa) = store_with("signingAuthority", "NotationTestRoot.pem");
    let p = policy("strict", "signingAuthority:test", "*");
    let v = verify(
        &p,
        &sa,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap();
    assert_eq!(
        v.signing_scheme,
        Some(ir_notation::SigningScheme::X509SigningAuthority)
    );
    // The same root as a `ca` store does not vouch for a signing authority signature.
    let (_d2, ca) = store_with("ca", "NotationTestRoot.pem");
    let p = policy("strict", "ca:test", "*");
    let err = verify(
        &p,
        &ca,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::UntrustedChain(_)), "{err}");
}

#[test]
fn notation_invalid_signatures_are_refused() {
    let (_d, store) = store_with("ca", "NotationTestRoot.pem");
    let (_d2, sa) = store_with("signingAuthority", "NotationTestRoot.pem");
    let p = policy("strict", "ca:test", "*");
    // notation's "invalid" envelopes carry a tampered payload that is no longer valid
    // base64url (a padding character was appended).
    // notation's "invalid" envelopes carry a tampered payload that is no longer valid
    // base64url (a padding character was appended).
    let env = std::fs::read(data("ca_invalid_sig_env.json")).unwrap();
    let err = verify(
        &p,
        &store,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::MalformedEnvelope(_)), "{err}");
    let p = policy("strict", "signingAuthority:test", "*");
    let env = std::fs::read(data("sa_invalid_sig_env.json")).unwrap();
    let err = verify(
        &p,
        &sa,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::MalformedEnvelope(_)), "{err}");
}

#[test]
fn notation_expired_signatures_follow_the_level() {
    let (_d, store) = store_with("ca", "NotationTestRoot.pem");
    let env = std::fs::read(data("ca_expired_sig_env.json")).unwrap();
    let strict = policy("strict", "ca:test", "*");
    let err = verify(
        &strict,
        &store,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Expired(_)), "{err}");
    // permissive logs expiry: accepted with the failure as a warning.
    let permissive = policy("permissive", "ca:test", "*");
    let v = verify(
        &permissive,
        &store,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap();
    assert!(
        matches!(v.warnings.as_slice(), [Error::Expired(_)]),
        "{:?}",
        v.warnings
    );

    let (_d2, sa) = store_with("signingAuthority", "NotationTestRoot.pem");
    let env = std::fs::read(data("sa_expired_sig_env.json")).unwrap();
    let strict = policy("strict", "signingAuthority:test", "*");
    let err = verify(
        &strict,
        &sa,
        "localhost:5000/net-monitor",
        &mock_target(),
        MEDIA_TYPE_JWS,
        &env,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Expired(_)), "{err}");
}
