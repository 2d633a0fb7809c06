//! Keyless cosign signatures made with a test Fulcio CA and a test Rekor
//! key: a code-signing certificate for an e-mail and OIDC issuer, the
//! simple-signing layer with cosign's certificate, chain and Rekor SET
//! (`dev.sigstore.cosign/bundle`) annotations, and the broken variants a
//! verifier must refuse.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SigningKey,
};
use serde_json::{json, Value};

use crate::cosign::{payload, sig_tag, Key, SIMPLE_SIGNING};
use crate::{Desc, Layout};

/// Annotation with the Fulcio certificate.
pub const CERT: &str = "dev.sigstore.cosign/certificate";
/// Annotation with the certificate chain.
pub const CHAIN: &str = "dev.sigstore.cosign/chain";
/// Annotation with the Rekor SET.
pub const BUNDLE: &str = "dev.sigstore.cosign/bundle";

fn at(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).expect("a time")
}

/// A Fulcio-like CA (P-384, valid a year either side of `around`).
pub struct Fulcio {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate, PEM.
    pub pem: String,
}

impl Fulcio {
    /// A new CA named `name`, valid a year either side of `around` (Unix
    /// seconds).
    pub fn new(name: &str, around: i64) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(around - 86_400 * 365);
        params.not_after = at(around + 86_400 * 365);
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Fulcio { params, key, pem }
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).expect("write the CA");
        p
    }

    /// A code-signing certificate for `email` from OIDC `issuer`, valid
    /// `from..until` (Unix seconds), and its key.
    pub fn issue(&self, email: &str, issuer: &str, from: i64, until: i64) -> (KeyPair, String) {
        self.issue_with(email, &[IssuerExt::V1(issuer)], from, until)
    }

    /// [`Fulcio::issue`] with these OIDC issuer extensions.
    pub fn issue_with(
        &self,
        email: &str,
        issuers: &[IssuerExt<'_>],
        from: i64,
        until: i64,
    ) -> (KeyPair, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().expect("email"))];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.custom_extensions = issuers
            .iter()
            .map(|i| match i {
                IssuerExt::V1(text) => CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
                    text.as_bytes().to_vec(),
                ),
                IssuerExt::V2(text) => {
                    // A DER UTF8String (short form: under 128 bytes).
                    let mut der = vec![0x0c, text.len() as u8];
                    der.extend_from_slice(text.as_bytes());
                    CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], der)
                }
            })
            .collect();
        params.not_before = at(from);
        params.not_after = at(until);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).expect("issue").pem();
        (key, pem)
    }
}

/// A Fulcio OIDC issuer extension.
pub enum IssuerExt<'a> {
    /// 1.3.6.1.4.1.57264.1.1: the issuer's raw bytes.
    V1(&'a str),
    /// 1.3.6.1.4.1.57264.1.8: a DER UTF8String.
    V2(&'a str),
}

/// A Rekor-like log key (P-256).
pub struct Rekor(pub Key);

impl Rekor {
    /// A new log key.
    pub fn new() -> Self {
        Rekor(Key::p256())
    }

    /// The log ID: the hex SHA-256 of the key's SubjectPublicKeyInfo.
    pub fn log_id(&self) -> String {
        let pem = self.0.public_pem();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(b64).expect("PEM");
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der))
    }

    /// The SET (cosign's bundle annotation) of a hashedrekord entry for
    /// this certificate, signature and payload, integrated at `t`.
    pub fn set(&self, cert_pem: &str, signature: &[u8], payload: &[u8], t: i64) -> String {
        let hash = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            payload,
        ));
        let body = json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hash}},
            "signature": {"content": STANDARD.encode(signature),
                "publicKey": {"content": STANDARD.encode(cert_pem)}}}});
        let body = STANDARD.encode(serde_json::to_vec(&body).expect("JSON"));
        let log_id = self.log_id();
        let canonical =
            format!(r#"{{"body":"{body}","integratedTime":{t},"logID":"{log_id}","logIndex":7}}"#);
        let set = self.0.sign(canonical.as_bytes());
        json!({"SignedEntryTimestamp": STANDARD.encode(set),
            "Payload": {"body": body, "integratedTime": t, "logIndex": 7, "logID": log_id}})
        .to_string()
    }
}

impl Default for Rekor {
    fn default() -> Self {
        Rekor::new()
    }
}

/// How a keyless signature is made (the default: a valid one for
/// `email` and `issuer`, integrated at `time`).
pub struct Sign<'a> {
    /// The certificate's e-mail.
    pub email: &'a str,
    /// The certificate's OIDC issuer.
    pub issuer: &'a str,
    /// The integrated time (Unix seconds).
    pub time: i64,
    /// Another CA issues the certificate.
    pub ca: Option<&'a Fulcio>,
    /// The certificate's validity (default: 60 s before `time` to 9 min
    /// after).
    pub validity: Option<(i64, i64)>,
    /// The SET's signature altered.
    pub bad_set: bool,
    /// No SET.
    pub no_set: bool,
    /// A SET of another signature's entry.
    pub other_entry: bool,
    /// The certificate's issuer extensions instead of a v1 one of `issuer`.
    pub issuer_exts: Option<&'a [IssuerExt<'a>]>,
}

impl<'a> Sign<'a> {
    /// A valid signature for `email` from `issuer` integrated at `time`.
    pub fn new(email: &'a str, issuer: &'a str, time: i64) -> Self {
        Sign {
            email,
            issuer,
            time,
            ca: None,
            validity: None,
            bad_set: false,
            no_set: false,
            other_entry: false,
            issuer_exts: None,
        }
    }
}

/// A keyless cosign signature of `signed` for `reference` in `layout`, as
/// the `.sig` tag's descriptor.
pub fn keyless_sign(
    layout: &Layout,
    signed: &Desc,
    reference: &str,
    fulcio: &Fulcio,
    rekor: &Rekor,
    how: &Sign<'_>,
) -> Desc {
    let p = payload(signed.digest_str(), reference);
    let layer = keyless_layer(layout, &p, fulcio, rekor, how);
    sig_tag(layout, signed, &[layer])
}

/// A simple-signing layer holding `p` (whatever it is), signed keyless:
/// cosign's signature, certificate, chain and SET annotations.
pub fn keyless_layer(
    layout: &Layout,
    p: &[u8],
    fulcio: &Fulcio,
    rekor: &Rekor,
    how: &Sign<'_>,
) -> Desc {
    let ca = how.ca.unwrap_or(fulcio);
    let t = how.time;
    let (from, until) = how.validity.unwrap_or((t - 60, t + 540));
    let v1 = [IssuerExt::V1(how.issuer)];
    let (key, cert) = ca.issue_with(how.email, how.issuer_exts.unwrap_or(&v1), from, until);
    let sig = key.sign(p).expect("sign");
    let mut set = if how.other_entry {
        let other = payload("sha256:0", "registry.test/other:1");
        rekor.set(&cert, &key.sign(&other).expect("sign"), &other, t)
    } else {
        rekor.set(&cert, &sig, p, t)
    };
    if how.bad_set {
        let mut v: Value = serde_json::from_str(&set).expect("JSON");
        let mut s = STANDARD
            .decode(v["SignedEntryTimestamp"].as_str().expect("SET"))
            .expect("base64");
        let last = s.len() - 1;
        s[last] ^= 1;
        v["SignedEntryTimestamp"] = json!(STANDARD.encode(s));
        set = v.to_string();
    }
    let mut annotations = json!({
        "dev.cosignproject.cosign/signature": STANDARD.encode(&sig),
        CERT: cert,
        CHAIN: ca.pem,
    });
    if !how.no_set {
        annotations[BUNDLE] = json!(set);
    }
    layout
        .blob(SIMPLE_SIGNING, p)
        .with("annotations", annotations)
}

/// The DER of a one-certificate PEM text.
fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).expect("PEM")
}

/// A keyless sigstore bundle v0.3 (DSSE in-toto statement for `signed`
/// naming `reference`, the certificate, and a `dsse` Rekor entry with its
/// inclusion promise) attached to `signed` as a referrer; `how` applies as
/// for [`keyless_sign`].
pub fn keyless_bundle(
    layout: &Layout,
    signed: &Desc,
    reference: &str,
    fulcio: &Fulcio,
    rekor: &Rekor,
    how: &Sign<'_>,
) -> Desc {
    let ca = how.ca.unwrap_or(fulcio);
    let t = how.time;
    let (from, until) = how.validity.unwrap_or((t - 60, t + 540));
    let v1 = [IssuerExt::V1(how.issuer)];
    let (key, cert) = ca.issue_with(how.email, how.issuer_exts.unwrap_or(&v1), from, until);
    let statement = |name: &str| {
        let (alg, hex) = signed.digest_str().split_once(':').expect("digest");
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {alg: hex}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }))
        .expect("JSON")
    };
    let pt = "application/vnd.in-toto+json";
    let pae = |s: &[u8]| {
        let mut m = format!("DSSEv1 {} {pt} {} ", pt.len(), s.len()).into_bytes();
        m.extend_from_slice(s);
        m
    };
    let payload = statement(reference);
    let sig = key.sign(&pae(&payload)).expect("sign");
    let (logged_payload, logged_sig) = if how.other_entry {
        let other = statement("registry.test/other:1");
        let s = key.sign(&pae(&other)).expect("sign");
        (other, s)
    } else {
        (payload.clone(), sig.clone())
    };
    let sha = |b: &[u8]| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b));
    let body = json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256", "value": sha(b"envelope")},
        "payloadHash": {"algorithm": "sha256", "value": sha(&logged_payload)},
        "signatures": [{"signature": STANDARD.encode(&logged_sig),
            "verifier": STANDARD.encode(&cert)}]}});
    let body = STANDARD.encode(serde_json::to_vec(&body).expect("JSON"));
    let log_id = rekor.log_id();
    let canonical =
        format!(r#"{{"body":"{body}","integratedTime":{t},"logID":"{log_id}","logIndex":7}}"#);
    let mut set = rekor.0.sign(canonical.as_bytes());
    if how.bad_set {
        let last = set.len() - 1;
        set[last] ^= 1;
    }
    let mut entry = json!({
        "logIndex": "7",
        "logId": {"keyId": STANDARD.encode(hex::decode(&log_id).expect("hex"))},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": t.to_string(),
        "canonicalizedBody": body,
    });
    if !how.no_set {
        entry["inclusionPromise"] = json!({"signedEntryTimestamp": STANDARD.encode(&set)});
    }
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let bundle = json!({
        "mediaType": media,
        "verificationMaterial": {
            "certificate": {"rawBytes": STANDARD.encode(pem_der(&cert))},
            "tlogEntries": [entry],
        },
        "dsseEnvelope": {
            "payload": STANDARD.encode(&payload),
            "payloadType": pt,
            "signatures": [{"sig": STANDARD.encode(&sig), "keyid": ""}],
        },
    });
    let layer = layout.json(media, &bundle);
    layout.artifact(media, &[layer], json!({"subject": signed.0}))
}
