//! Generated PKI and envelopes for tests (this crate's and ir-trust's):
//! rcgen certificates, aws-lc-rs signatures, JWS and COSE envelopes
//! written the way notation writes them. Only with the `test-util`
//! feature; never in a production build.

use crate::{Target, TrustPolicy, TrustStore};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ciborium::Value;
use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

/// 2024-01-01T00:00:00Z, the signing time of generated envelopes.
pub const SIGNED_AT: i64 = 1_704_067_200;
/// 2025-01-01T00:00:00Z, "now" for verification.
pub const NOW: i64 = 1_735_689_600;
pub const DAY: i64 = 86_400;

pub enum Key {
    Ec(EcdsaKeyPair),
    Rsa(aws_lc_rs::signature::RsaKeyPair),
}

impl Key {
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&aws_lc_rs::signature::RSA_PSS_SHA256, &rng, msg, &mut sig)
                    .unwrap();
                sig
            }
        }
    }
}

/// An RSA 2048 key for aws-lc-rs and the same key for rcgen.
pub fn rsa2048() -> (aws_lc_rs::signature::RsaKeyPair, KeyPair) {
    use aws_lc_rs::encoding::AsDer;
    let key = aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let rc = KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    (key, rc)
}

pub struct Signer {
    pub key: Key,
    /// DER chain, signing certificate first.
    pub chain: Vec<Vec<u8>>,
    pub root_der: Vec<u8>,
}

pub fn p256() -> (EcdsaKeyPair, KeyPair) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let rc = KeyPair::try_from(pkcs8.as_ref()).unwrap();
    (key, rc)
}

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn dn(params: &mut CertificateParams, cn: &str) {
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::StateOrProvinceName, "WA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CommonName, cn);
}

/// How the signing certificate differs from a good one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Good,
    /// extendedKeyUsage serverAuth only.
    ServerAuthEku,
    /// Valid only before the signing time.
    ExpiredBeforeSigning,
    /// Valid at the signing time, expired before `NOW`.
    ExpiredBeforeNow,
    /// A good leaf under a root (left out of the envelope, as always
    /// here) valid only before the signing time.
    RootExpiredBeforeSigning,
    /// A good leaf under a root valid at the signing time, expired before
    /// `NOW`.
    RootExpiredBeforeNow,
}

/// root → intermediate → leaf (CN=`cn`), all P-256.
pub fn signer(cn: &str, leaf: Leaf) -> Signer {
    signer_with(cn, leaf, false)
}

/// As [`signer`], with an RSA 2048 signing key when `rsa`.
pub fn signer_with(cn: &str, leaf: Leaf, rsa: bool) -> Signer {
    let (_, root_key) = p256();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    dn(&mut rp, "Test Root");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (rp.not_before, rp.not_after) = match leaf {
        Leaf::RootExpiredBeforeSigning => (t(SIGNED_AT - 3650 * DAY), t(SIGNED_AT - 10 * DAY)),
        Leaf::RootExpiredBeforeNow => (t(SIGNED_AT - 3650 * DAY), t(SIGNED_AT + DAY)),
        _ => (t(SIGNED_AT - 3650 * DAY), t(SIGNED_AT + 3650 * DAY)),
    };
    let root = rp.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(rp, root_key);

    let (_, int_key) = p256();
    let mut ip = CertificateParams::new(Vec::<String>::new()).unwrap();
    dn(&mut ip, "Test Intermediate");
    ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ip.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ip.not_before = t(SIGNED_AT - 3650 * DAY);
    ip.not_after = t(SIGNED_AT + 3650 * DAY);
    let int = ip.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(ip, int_key);

    let (key, leaf_rc) = if rsa {
        let (k, rc) = rsa2048();
        (Key::Rsa(k), rc)
    } else {
        let (k, rc) = p256();
        (Key::Ec(k), rc)
    };
    let mut lp = CertificateParams::new(Vec::<String>::new()).unwrap();
    dn(&mut lp, cn);
    lp.is_ca = IsCa::ExplicitNoCa;
    lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    lp.extended_key_usages = vec![match leaf {
        Leaf::ServerAuthEku => ExtendedKeyUsagePurpose::ServerAuth,
        _ => ExtendedKeyUsagePurpose::CodeSigning,
    }];
    (lp.not_before, lp.not_after) = match leaf {
        Leaf::ExpiredBeforeSigning => (t(SIGNED_AT - 20 * DAY), t(SIGNED_AT - 10 * DAY)),
        Leaf::ExpiredBeforeNow => (t(SIGNED_AT - DAY), t(SIGNED_AT + DAY)),
        _ => (t(SIGNED_AT - DAY), t(NOW + 20 * 365 * DAY)),
    };
    let leaf_cert = lp.signed_by(&leaf_rc, &int_issuer).unwrap();
    Signer {
        key,
        chain: vec![leaf_cert.der().to_vec(), int.der().to_vec()],
        root_der: root.der().to_vec(),
    }
}

pub fn target() -> Target {
    Target {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 1234,
    }
}

pub fn payload(t: &Target) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "targetArtifact": {"mediaType": t.media_type, "digest": t.digest, "size": t.size}
    }))
    .unwrap()
}

fn rfc3339(secs: i64) -> String {
    t(secs)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Knobs for envelope headers.
#[derive(Clone)]
pub struct Headers {
    pub alg: &'static str,
    pub signing_time: i64,
    pub expiry: Option<i64>,
    pub extra_crit: Option<&'static str>,
    /// `notary.x509.signingAuthority` with `authenticSigningTime`.
    pub signing_authority: bool,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            alg: "ES256",
            signing_time: SIGNED_AT,
            expiry: None,
            extra_crit: None,
            signing_authority: false,
        }
    }
}

pub fn jws(s: &Signer, payload: &[u8], h: &Headers) -> Vec<u8> {
    let mut crit = vec!["io.cncf.notary.signingScheme"];
    let mut prot = serde_json::json!({
        "alg": h.alg,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
    });
    if h.signing_authority {
        prot["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority".into();
        prot["io.cncf.notary.authenticSigningTime"] = rfc3339(h.signing_time).into();
        crit.push("io.cncf.notary.authenticSigningTime");
    } else {
        prot["io.cncf.notary.signingScheme"] = "notary.x509".into();
        prot["io.cncf.notary.signingTime"] = rfc3339(h.signing_time).into();
    }
    if let Some(e) = h.expiry {
        prot["io.cncf.notary.expiry"] = rfc3339(e).into();
        crit.push("io.cncf.notary.expiry");
    }
    if let Some(c) = h.extra_crit {
        prot[c] = "value".into();
        crit.push(c);
    }
    prot["crit"] = serde_json::json!(crit);
    let prot_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&prot).unwrap());
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let signing_input = format!("{prot_b64}.{payload_b64}");
    let sig = s.key.sign(signing_input.as_bytes());
    serde_json::to_vec(&serde_json::json!({
        "payload": payload_b64,
        "protected": prot_b64,
        "header": {
            "x5c": s.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "ir-notation tests",
        },
        "signature": URL_SAFE_NO_PAD.encode(&sig),
    }))
    .unwrap()
}

pub fn cose(s: &Signer, payload: &[u8], h: &Headers) -> Vec<u8> {
    let alg = match h.alg {
        "ES256" => iana::Algorithm::ES256,
        "ES384" => iana::Algorithm::ES384,
        _ => iana::Algorithm::PS256,
    };
    let epoch = |secs: i64| Value::Tag(1, Box::new(Value::Integer(secs.into())));
    let mut b = HeaderBuilder::new()
        .algorithm(alg)
        .content_type("application/vnd.cncf.notary.payload.v1+json".into())
        .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.signingScheme".into(),
        ));
    b = if h.signing_authority {
        b.text_value(
            "io.cncf.notary.signingScheme".into(),
            Value::Text("notary.x509.signingAuthority".into()),
        )
        .text_value(
            "io.cncf.notary.authenticSigningTime".into(),
            epoch(h.signing_time),
        )
        .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.authenticSigningTime".into(),
        ))
    } else {
        b.text_value(
            "io.cncf.notary.signingScheme".into(),
            Value::Text("notary.x509".into()),
        )
        .text_value("io.cncf.notary.signingTime".into(), epoch(h.signing_time))
    };
    if let Some(e) = h.expiry {
        b = b
            .text_value("io.cncf.notary.expiry".into(), epoch(e))
            .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
                "io.cncf.notary.expiry".into(),
            ));
    }
    if let Some(c) = h.extra_crit {
        b = b
            .text_value(c.into(), Value::Text("value".into()))
            .add_critical_label(coset::RegisteredLabelWithPrivate::Text(c.into()));
    }
    let unprotected = HeaderBuilder::new()
        .value(
            33,
            Value::Array(s.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
        )
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(b.build())
        .unprotected(unprotected)
        .payload(payload.to_vec())
        .create_signature(&[], |data| s.key.sign(data))
        .build();
    sign1.to_tagged_vec().unwrap()
}

/// A trust store with `roots` as `ca:NAME` (and the same certificates as `signingAuthority:NAME`).
pub fn store(name: &str, roots: &[&[u8]]) -> (tempfile::TempDir, TrustStore) {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["ca", "signingAuthority"] {
        let d = dir.path().join("x509").join(kind).join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (i, r) in roots.iter().enumerate() {
            std::fs::write(d.join(format!("root{i}.der")), r).unwrap();
        }
    }
    let store = TrustStore::load(dir.path()).unwrap();
    (dir, store)
}

pub fn policy(level: &str, scopes: &str, identities: &str) -> TrustPolicy {
    let json = format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":[{scopes}],
        "signatureVerification":{{"level":"{level}"}},"trustStores":["ca:roots"],
        "trustedIdentities":[{identities}]}}]}}"#
    );
    TrustPolicy::from_json(json.as_bytes()).unwrap()
}

pub const SCOPE: &str = "registry.example/app";
pub const IDENTITY: &str = r#""x509.subject: C=US, ST=WA, O=Example, CN=signer""#;

/// A JWS envelope with `protected` as the exact protected header text.
pub fn jws_raw(s: &Signer, payload: &[u8], protected: &str) -> Vec<u8> {
    let prot_b64 = URL_SAFE_NO_PAD.encode(protected);
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let sig = s.key.sign(format!("{prot_b64}.{payload_b64}").as_bytes());
    serde_json::to_vec(&serde_json::json!({
        "payload": payload_b64,
        "protected": prot_b64,
        "header": {"x5c": s.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()},
        "signature": URL_SAFE_NO_PAD.encode(&sig),
    }))
    .unwrap()
}
