//! Signatures cosign itself wrote (tests/data/cosign, see its README),
//! judged through an [`ArtifactSource`] that holds them in cosign's
//! shapes: the simple-signing `.sig` form verifies; a bundle of an
//! attestation is no signature.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use ir_oci::{Algorithm, Digest};
use ir_trust::{ArtifactSource, DockerReference, Evidence, Reason, Subject, Verdict};
use serde_json::{json, Value};

use crate::util::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cosign")
        .join(name)
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of_bytes(Algorithm::Sha256, bytes)
}

#[derive(Default)]
struct Source {
    manifests: HashMap<Digest, (String, Vec<u8>)>,
    blobs: HashMap<Digest, Vec<u8>>,
    tags: HashMap<String, Digest>,
    referrers: HashMap<Digest, Vec<Digest>>,
}

impl Source {
    fn add_blob(&mut self, bytes: Vec<u8>) -> Digest {
        let d = sha256(&bytes);
        self.blobs.insert(d.clone(), bytes);
        d
    }
    fn add_manifest(&mut self, doc: &Value) -> Digest {
        let bytes = serde_json::to_vec(doc).unwrap();
        let d = sha256(&bytes);
        self.manifests.insert(
            d.clone(),
            ("application/vnd.oci.image.manifest.v1+json".into(), bytes),
        );
        d
    }
}

impl ArtifactSource for Source {
    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])> {
        self.manifests
            .get(digest)
            .map(|(t, b)| (t.as_str(), b.as_slice()))
    }
    fn tagged(&self, tag: &str) -> Option<Digest> {
        self.tags.get(tag).cloned()
    }
    fn referrers(&self, digest: &Digest) -> Vec<Digest> {
        self.referrers.get(digest).cloned().unwrap_or_default()
    }
    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        let b = self.blobs.get(digest).ok_or("no such blob")?;
        if b.len() as u64 > limit {
            return Err("too large".into());
        }
        Ok(b.clone())
    }
}

fn judge(source: &Source, policy: &Value, image: &str, digest: &Digest) -> Verdict {
    let root = ir_testkit::Root::new();
    let trust = trust_of(&root, policy);
    let subject = Subject {
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        size: 0,
    };
    trust.judge(
        &DockerReference::parse(image).unwrap(),
        &subject,
        source,
        &mut Evidence::new(),
    )
}

fn policy(host: &str, identity: Value) -> Value {
    json!({"default": [{"type": "reject"}], "transports": {"docker": {host: [{
        "type": "sigstoreSigned",
        "keyPath": data("cosign.pub"),
        "signedIdentity": identity,
    }]}}})
}

#[test]
fn a_simple_signing_signature_cosign_wrote_verifies() {
    let manifest = std::fs::read(data("simple-signing.manifest.json")).unwrap();
    let signed = sha256(&manifest);
    let stored = std::fs::read(data("simple-signing.signature-1")).unwrap();
    let stored = stored.strip_prefix(b"\0sigstore-json\n").unwrap();
    let sig: Value = serde_json::from_slice(stored).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(sig["payload"].as_str().unwrap())
        .unwrap();
    // The `.sig` image cosign pushes around it.
    let mut source = Source::default();
    let payload_digest = source.add_blob(payload.clone());
    let config = source.add_blob(br#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#.to_vec());
    let sig_manifest = source.add_manifest(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "size": source.blobs[&config].len(), "digest": config.to_string()},
        "layers": [{"mediaType": sig["mimeType"], "size": payload.len(),
                    "digest": payload_digest.to_string(), "annotations": sig["annotations"]}],
    }));
    source.tags.insert(
        ir_trust::signatures::cosign_tag(&signed),
        sig_manifest.clone(),
    );
    assert_eq!(
        ir_trust::signatures::structural_kind(&source, &sig_manifest),
        Ok(ir_trust::signatures::ArtifactKind::Cosign)
    );

    let host = "192.168.64.2:5000";
    let image = format!("{host}/cosign-signed-single-sample:latest");
    let v = judge(
        &source,
        &policy(host, json!({"type": "matchRepository"})),
        &image,
        &signed,
    );
    assert!(v.is_accepted(), "{v:?}");
    // Its identity has no tag: under the default (matchRepoDigestOrExact)
    // a tagged name is not the one signed.
    let v = judge(
        &source,
        &policy(host, json!({"type": "matchRepoDigestOrExact"})),
        &image,
        &signed,
    );
    assert!(
        matches!(&v, Verdict::Refused(r) if r.reason == Reason::WrongIdentity),
        "{v:?}"
    );
    let v = judge(
        &source,
        &policy(host, json!({"type": "matchRepository"})),
        &format!("{host}/another:latest"),
        &signed,
    );
    assert!(
        matches!(&v, Verdict::Refused(r) if r.reason == Reason::WrongIdentity),
        "{v:?}"
    );
}

#[test]
fn an_attestation_bundle_cosign_wrote_is_not_a_signature() {
    let bundle = std::fs::read(data("oci-attestation.sigstore.json")).unwrap();
    let b: Value = serde_json::from_slice(&bundle).unwrap();
    let statement = base64::engine::general_purpose::STANDARD
        .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let e = ir_trust::payload::in_toto(&statement).unwrap_err();
    assert!(
        e.contains("attestation") && e.contains("https://cosign.sigstore.dev/attestation/v1"),
        "{e}"
    );
    // Attached to the image it names, as cosign attaches bundles.
    let s: Value = serde_json::from_slice(&statement).unwrap();
    let signed = Digest::parse(&format!(
        "sha256:{}",
        s["subject"][0]["digest"]["sha256"].as_str().unwrap()
    ))
    .unwrap();
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let mut source = Source::default();
    let layer = source.add_blob(bundle.clone());
    let empty = source.add_blob(b"{}".to_vec());
    let referrer = source.add_manifest(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": media,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "artifactType": media,
                   "size": 2, "digest": empty.to_string()},
        "layers": [{"mediaType": media, "size": bundle.len(), "digest": layer.to_string()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 1, "digest": signed.to_string()},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": s["predicateType"]},
    }));
    source.referrers.insert(signed.clone(), vec![referrer]);
    let v = judge(
        &source,
        &policy("127.0.0.1:60943", json!({"type": "matchRepository"})),
        "127.0.0.1:60943/repo:latest",
        &signed,
    );
    match &v {
        Verdict::Refused(r) => {
            assert_eq!(r.reason, Reason::BadSignature, "{r}");
            assert!(r.detail.contains("attestation"), "{r}");
        }
        v => panic!("{v:?}"),
    }
}
