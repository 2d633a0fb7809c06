//! Test support: cosign-shaped signatures written into layouts (P-256,
//! P-384 and Ed25519 keys from aws-lc-rs), policies, and loading a root
//! through the policy. The independent signer (sigstore-rs) is `ir-sign`;
//! these helpers cover the shapes and edge cases it cannot produce.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ir_oci::Registry;
use ir_testkit::{Desc, Layout, Root};
use ir_trust::enforce::Judgement;
use ir_trust::{Policy, Trust, Verdict};
use serde_json::{json, Value};

pub const HOST: &str = "registry.test";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A signing key and its public key PEM.
pub enum Key {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    pub fn p256() -> Self {
        Key::P256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }
    pub fn p384() -> Self {
        Key::P384(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap())
    }
    pub fn ed25519() -> Self {
        Key::Ed25519(Ed25519KeyPair::generate().unwrap())
    }

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

/// A sigstore bundle v0.3 with a DSSE in-toto statement for `digest`
/// naming `reference`, attached to `signed` as a referrer.
pub fn bundle_referrer(
    layout: &Layout,
    signed: &Desc,
    digest: &str,
    reference: &str,
    key: &Key,
) -> Desc {
    let (alg, hex) = digest.split_once(':').unwrap();
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": reference, "digest": {alg: hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap();
    let pt = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {pt} {} ", pt.len(), statement.len()).into_bytes();
    pae.extend_from_slice(&statement);
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "test"}},
        "dsseEnvelope": {
            "payload": STANDARD.encode(&statement),
            "payloadType": pt,
            "signatures": [{"sig": STANDARD.encode(key.sign(&pae)), "keyid": ""}],
        },
    });
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let layer = layout.json(media, &bundle);
    layout.artifact(media, &[layer], json!({"subject": signed.0}))
}

/// A policy file in `dir` with `body` as its JSON.
pub fn policy_file(dir: &Path, body: &Value) -> PathBuf {
    let p = dir.join("policy.json");
    std::fs::write(&p, serde_json::to_vec_pretty(body).unwrap()).unwrap();
    p
}

/// `sigstoreSigned` with `keyPath` (and `signedIdentity` when given) for
/// `HOST`, reject by default.
pub fn signed_by(key: &Path, identity: Option<Value>) -> Value {
    let mut req = json!({"type": "sigstoreSigned", "keyPath": key});
    if let Some(i) = identity {
        req["signedIdentity"] = i;
    }
    json!({"default": [{"type": "reject"}], "transports": {"docker": {HOST: [req]}}})
}

/// Loads `root` and applies the policy in `policy` under [`HOST`].
pub fn judge(root: &Root, policy: &Value) -> (Registry, Vec<Judgement>) {
    let dir = root.outside("policy");
    std::fs::create_dir_all(&dir).unwrap();
    let file = policy_file(&dir, policy);
    let trust = Trust {
        policy: Some(Policy::load(&file).unwrap()),
        notation: None,
    };
    judge_with(root, &trust)
}

/// Loads `root` and applies `trust` under [`HOST`].
pub fn judge_with(root: &Root, trust: &Trust) -> (Registry, Vec<Judgement>) {
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
    ir_trust::enforce::enforce(trust, HOST, registry)
}

/// The verdict of `app:tag`.
pub fn verdict<'a>(judgements: &'a [Judgement], app: &str, tag: &str) -> &'a Verdict {
    let j = judgements
        .iter()
        .find(|j| j.application.as_str() == app)
        .unwrap_or_else(|| panic!("no application {app}"));
    &j.tags
        .iter()
        .find(|(t, _)| t.as_str() == tag)
        .unwrap_or_else(|| panic!("no tag {tag}"))
        .1
         .1
}

/// The reason code of a refused `app:tag` (panics when accepted).
pub fn reason(judgements: &[Judgement], app: &str, tag: &str) -> &'static str {
    match verdict(judgements, app, tag) {
        Verdict::Refused(r) => r.reason.code(),
        Verdict::Accepted { .. } => panic!("{app}:{tag} was accepted"),
    }
}
