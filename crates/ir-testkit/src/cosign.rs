//! Cosign-shaped signatures written into layouts: P-256, P-384 and
//! Ed25519 keys (aws-lc-rs), simple-signing payloads under a
//! `sha256-<hex>.sig` tag, cosign's OCI 1.1 referrers mode, and sigstore
//! bundles (DSSE in-toto). The independent signer built on sigstore-rs is
//! `ir-sign`; these cover the shapes and broken cases it cannot produce.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::{Desc, Layout};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A signing key and its public key PEM.
pub enum Key {
    /// ECDSA P-256 (cosign's default).
    P256(EcdsaKeyPair),
    /// ECDSA P-384.
    P384(EcdsaKeyPair),
    /// Ed25519.
    Ed25519(Ed25519KeyPair),
}

impl Key {
    /// A new P-256 key.
    pub fn p256() -> Self {
        Key::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }
    /// A new P-384 key.
    pub fn p384() -> Self {
        Key::P384(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap())
    }
    /// A new Ed25519 key.
    pub fn ed25519() -> Self {
        Key::Ed25519(Ed25519KeyPair::generate().unwrap())
    }

    /// The signature of `msg` (ECDSA: DER over SHA-256/384; Ed25519: raw).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::P256(k) | Key::P384(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Key::Ed25519(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// The SubjectPublicKeyInfo as PEM, as `cosign.pub` holds it.
    pub fn public_pem(&self) -> String {
        let (prefix, point): (&str, Vec<u8>) = match self {
            Key::P256(k) => (
                "3059301306072a8648ce3d020106082a8648ce3d030107034200",
                k.public_key().as_ref().to_vec(),
            ),
            Key::P384(k) => (
                "3076301006072a8648ce3d020106052b81040022036200",
                k.public_key().as_ref().to_vec(),
            ),
            Key::Ed25519(k) => ("302a300506032b6570032100", k.public_key().as_ref().to_vec()),
        };
        let mut der = hex::decode(prefix).unwrap();
        der.extend_from_slice(&point);
        let b64 = STANDARD.encode(&der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// Writes the public key to `dir/name` and returns the path.
    pub fn write_public(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.public_pem()).unwrap();
        p
    }
}

/// cosign's simple-signing payload.
pub fn payload(digest: &str, reference: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap()
}

/// One simple-signing layer: the payload blob with its signature.
pub fn signature_layer(layout: &Layout, payload: &[u8], signature: &[u8]) -> Desc {
    let d = layout.blob(SIMPLE_SIGNING, payload);
    d.with(
        "annotations",
        json!({"dev.cosignproject.cosign/signature": STANDARD.encode(signature)}),
    )
}

/// The cosign signature manifest (tag scheme) over `layers`, tagged
/// `sha256-<hex>.sig` for `signed`.
pub fn sig_tag(layout: &Layout, signed: &Desc, layers: &[Desc]) -> Desc {
    let config = layout.json(
        "application/vnd.oci.image.config.v1+json",
        &json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
    );
    let m = layout.manifest(&config, layers);
    m.tagged(&format!("{}.sig", signed.digest_str().replace(':', "-")))
}

/// A cosign signature of `signed` naming `reference`, by `key`, as the
/// `.sig` tag's manifest descriptor (to put in the index).
pub fn cosign_sign(layout: &Layout, signed: &Desc, reference: &str, key: &Key) -> Desc {
    let p = payload(signed.digest_str(), reference);
    let layer = signature_layer(layout, &p, &key.sign(&p));
    sig_tag(layout, signed, &[layer])
}

/// The same signature as an OCI 1.1 referrer (cosign's referrers mode).
pub fn cosign_referrer(layout: &Layout, signed: &Desc, reference: &str, key: &Key) -> Desc {
    let p = payload(signed.digest_str(), reference);
    let layer = signature_layer(layout, &p, &key.sign(&p));
    layout.artifact(
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        &[layer],
        json!({"subject": signed.0}),
    )
}

/// The predicate type of a cosign image signature in a sigstore bundle.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The sigstore bundle media type cosign writes (artifact type and layer).
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// An in-toto Statement v1 about the manifest `digest` (`alg:hex`), as
/// cosign v3's `cosign sign` writes it: the subject has the digest and
/// (empty) annotations, and a name only when `name` is given (cosign
/// writes none); the predicate is `{}`.
pub fn statement(digest: &str, name: Option<&str>, predicate_type: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    let mut subject = json!({"digest": {alg: hex}, "annotations": {}});
    if let Some(name) = name {
        subject["name"] = json!(name);
    }
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [subject],
        "predicateType": predicate_type,
        "predicate": {},
    }))
    .unwrap()
}

/// A sigstore bundle v0.3 holding `statement` in a DSSE envelope signed by
/// `key`, as cosign writes it with a key: the public key's hint (base64 of
/// the SHA-256 of its DER), no transparency log entry.
pub fn bundle(statement: &[u8], key: &Key) -> serde_json::Value {
    use sha2::Digest as _;
    let pt = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {pt} {} ", pt.len(), statement.len()).into_bytes();
    pae.extend_from_slice(statement);
    let pem = key.public_pem();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).unwrap();
    json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {
            "publicKey": {"hint": STANDARD.encode(sha2::Sha256::digest(der))},
        },
        "dsseEnvelope": {
            "payload": STANDARD.encode(statement),
            "payloadType": pt,
            "signatures": [{"sig": STANDARD.encode(key.sign(&pae))}],
        },
    })
}

/// `bundle` attached to `signed` as cosign attaches it
/// (`WriteAttestationNewBundleFormat`): an OCI 1.1 referrer of artifact
/// type [`BUNDLE`] whose config is the empty descriptor (carrying the
/// artifact type too), one bundle layer, and cosign's annotations.
pub fn attach_bundle(
    layout: &Layout,
    signed: &Desc,
    bundle: &serde_json::Value,
    predicate_type: &str,
) -> Desc {
    let layer = layout.json(BUNDLE, bundle);
    let empty = layout.blob("application/vnd.oci.empty.v1+json", b"{}");
    let subject = json!({
        "mediaType": signed.media_type(),
        "digest": signed.digest_str(),
        "size": signed.size(),
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": empty.with("artifactType", json!(BUNDLE)).0,
        "layers": [layer.0],
        "subject": subject,
        "annotations": {
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": predicate_type,
        },
        "artifactType": BUNDLE,
    });
    layout
        .json("application/vnd.oci.image.manifest.v1+json", &manifest)
        .with("artifactType", json!(BUNDLE))
}

/// Exactly what cosign v3's `cosign sign --key` attaches to `signed`: a
/// sigstore bundle whose statement names no image (so no docker
/// reference).
pub fn cosign_bundle_referrer(layout: &Layout, signed: &Desc, key: &Key) -> Desc {
    let s = statement(signed.digest_str(), None, SIGN_PREDICATE);
    attach_bundle(layout, signed, &bundle(&s, key), SIGN_PREDICATE)
}

/// A cosign-shaped bundle signature of `digest` whose statement names
/// `reference` (which cosign itself does not write), attached to `signed`.
pub fn bundle_referrer(
    layout: &Layout,
    signed: &Desc,
    digest: &str,
    reference: &str,
    key: &Key,
) -> Desc {
    let s = statement(digest, Some(reference), SIGN_PREDICATE);
    attach_bundle(layout, signed, &bundle(&s, key), SIGN_PREDICATE)
}
