//! Signing in the three forms, verifying with sigstore-rs, and refusals.

use base64::Engine as _;
use ir_sign::keys::KeyType;
use ir_sign::layout::{sha256_digest, Layout};
use ir_sign::sign::sign;
use ir_sign::verify::verify;
use ir_sign::{signature_tag, Error, Mode};
use oci_spec::image::MediaType;
use serde_json::Value;

use crate::util::{key_pair, Scratch, REFERENCE};

const MODES: [Mode; 3] = [Mode::Tag, Mode::Referrers, Mode::Bundle];

fn refusal(result: Result<ir_sign::verify::Verified, Error>) -> String {
    match result {
        Ok(v) => panic!("verified unexpectedly: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_form_signs_and_verifies() {
    for mode in MODES {
        let scratch = Scratch::new();
        let (signer, public) = key_pair(KeyType::EcdsaP256);
        let digest = scratch.latest();
        let signed = sign(&scratch.layout(), signer, &digest, REFERENCE, mode).unwrap();
        assert_eq!(signed.subject, digest);
        let verified = verify(&scratch.layout(), &public, &digest, REFERENCE, Some(mode)).unwrap();
        assert_eq!(verified.mode, mode);
        assert_eq!(verified.signature_manifest, signed.signature_manifest);
    }
}

#[test]
fn other_key_types_sign_and_verify() {
    for key_type in [KeyType::EcdsaP384, KeyType::Ed25519] {
        for mode in MODES {
            let scratch = Scratch::new();
            let (signer, public) = key_pair(key_type);
            let digest = scratch.latest();
            sign(&scratch.layout(), signer, &digest, REFERENCE, mode).unwrap();
            verify(&scratch.layout(), &public, &digest, REFERENCE, Some(mode))
                .unwrap_or_else(|e| panic!("{key_type:?} {mode}: {e}"));
        }
    }
}

#[test]
fn tag_form_is_cosigns_layout() {
    let scratch = Scratch::new();
    let (signer, _) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    let signed = sign(&scratch.layout(), signer, &digest, REFERENCE, Mode::Tag).unwrap();
    assert_eq!(signed.tag.as_deref(), Some(signature_tag(&digest).as_str()));
    assert!(
        signature_tag(&digest).starts_with("sha256-") && signature_tag(&digest).ends_with(".sig")
    );
    let layout = scratch.layout();
    let manifest: Value =
        serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(layer["annotations"]["dev.cosignproject.cosign/signature"].is_string());
    let payload: Value =
        serde_json::from_slice(&layout.read_blob(layer["digest"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        REFERENCE
    );
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        payload["critical"]["type"],
        "cosign container image signature"
    );
    assert!(payload["optional"].is_null());
}

#[test]
fn referrer_forms_name_their_subject_and_are_untagged() {
    for (mode, artifact_type) in [
        (
            Mode::Referrers,
            "application/vnd.dev.cosign.artifact.sig.v1+json",
        ),
        (
            Mode::Bundle,
            "application/vnd.dev.sigstore.bundle.v0.3+json",
        ),
    ] {
        let scratch = Scratch::new();
        let (signer, _) = key_pair(KeyType::EcdsaP256);
        let digest = scratch.latest();
        let signed = sign(&scratch.layout(), signer, &digest, REFERENCE, mode).unwrap();
        assert!(signed.tag.is_none());
        let layout = scratch.layout();
        let manifest: Value =
            serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
        assert_eq!(manifest["artifactType"], artifact_type);
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let entry = layout
            .index()
            .unwrap()
            .manifests()
            .iter()
            .find(|d| d.digest().to_string() == signed.signature_manifest)
            .cloned()
            .expect("in index.json");
        assert!(ir_sign::layout::tag_of(&entry).is_none());
    }
}

#[test]
fn bundle_carries_an_in_toto_statement_and_a_key_hint() {
    let scratch = Scratch::new();
    let (signer, _) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    let signed = sign(&scratch.layout(), signer, &digest, REFERENCE, Mode::Bundle).unwrap();
    let layout = scratch.layout();
    let manifest: Value =
        serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
    let bundle: Value = serde_json::from_slice(
        &layout
            .read_blob(manifest["layers"][0]["digest"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        bundle["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert!(bundle["verificationMaterial"]["publicKey"]["hint"].is_string());
    assert_eq!(
        bundle["dsseEnvelope"]["payloadType"],
        "application/vnd.in-toto+json"
    );
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    // As cosign v3 writes it: no name, empty annotations.
    assert_eq!(
        statement["subject"][0],
        serde_json::json!({"digest": {"sha256": &digest["sha256:".len()..]}, "annotations": {}})
    );
    assert_eq!(statement["predicate"], serde_json::json!({}));
    // Attached as cosign attaches it.
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(manifest["config"]["artifactType"], manifest["artifactType"]);
    assert_eq!(
        manifest["annotations"]["dev.sigstore.bundle.content"],
        "dsse-envelope"
    );
    assert_eq!(
        manifest["annotations"]["dev.sigstore.bundle.predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    let created = manifest["annotations"]["org.opencontainers.image.created"]
        .as_str()
        .unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        &digest["sha256:".len()..]
    );
}

#[test]
fn signing_twice_appends_a_layer_to_the_sig_tag() {
    let scratch = Scratch::new();
    let (first, public_first) = key_pair(KeyType::EcdsaP256);
    let (second, public_second) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    sign(&scratch.layout(), first, &digest, REFERENCE, Mode::Tag).unwrap();
    let signed = sign(&scratch.layout(), second, &digest, REFERENCE, Mode::Tag).unwrap();
    let layout = scratch.layout();
    let tag = signature_tag(&digest);
    let tagged: Vec<_> = layout
        .index()
        .unwrap()
        .manifests()
        .iter()
        .filter(|d| ir_sign::layout::tag_of(d) == Some(tag.as_str()))
        .cloned()
        .collect();
    assert_eq!(tagged.len(), 1, "one manifest carries the tag");
    assert_eq!(tagged[0].digest().to_string(), signed.signature_manifest);
    let manifest: Value =
        serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    for public in [public_first, public_second] {
        verify(&layout, &public, &digest, REFERENCE, Some(Mode::Tag)).unwrap();
    }
}

#[test]
fn unsigned_manifest_is_refused() {
    let scratch = Scratch::new();
    let (_, public) = key_pair(KeyType::EcdsaP256);
    let reason = refusal(verify(
        &scratch.layout(),
        &public,
        &scratch.latest(),
        REFERENCE,
        None,
    ));
    assert!(reason.contains("no signature found"), "{reason}");
}

#[test]
fn another_key_is_refused() {
    for mode in MODES {
        let scratch = Scratch::new();
        let (signer, _) = key_pair(KeyType::EcdsaP256);
        let (_, other_public) = key_pair(KeyType::EcdsaP256);
        let digest = scratch.latest();
        sign(&scratch.layout(), signer, &digest, REFERENCE, mode).unwrap();
        let reason = refusal(verify(
            &scratch.layout(),
            &other_public,
            &digest,
            REFERENCE,
            None,
        ));
        assert!(
            reason.contains("does not verify with the key"),
            "{mode}: {reason}"
        );
    }
}

#[test]
fn another_reference_is_refused() {
    // A bundle names no image (as cosign v3 writes it): like `cosign
    // verify`, any reference verifies.
    let scratch = Scratch::new();
    let (signer, public) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    sign(&scratch.layout(), signer, &digest, REFERENCE, Mode::Bundle).unwrap();
    let other = "registry.example:5000/other:latest";
    verify(&scratch.layout(), &public, &digest, other, None).unwrap();
    for mode in [Mode::Tag, Mode::Referrers] {
        let scratch = Scratch::new();
        let (signer, public) = key_pair(KeyType::EcdsaP256);
        let digest = scratch.latest();
        sign(&scratch.layout(), signer, &digest, REFERENCE, mode).unwrap();
        let other = "registry.example:5000/other:latest";
        let reason = refusal(verify(&scratch.layout(), &public, &digest, other, None));
        assert!(reason.contains("signed for"), "{mode}: {reason}");
    }
}

#[test]
fn a_signature_for_another_manifest_is_refused() {
    let scratch = Scratch::new();
    let (signer, public) = key_pair(KeyType::EcdsaP256);
    let layout = scratch.layout();
    // Another manifest in the same layout, signed.
    let other = layout
        .write_blob(MediaType::ImageManifest, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#)
        .unwrap();
    let other_digest = other.digest().to_string();
    sign(&layout, signer, &other_digest, REFERENCE, Mode::Tag).unwrap();
    // Its signature manifest, tagged as if it were latest's.
    let sig = layout.resolve_tag(&signature_tag(&other_digest)).unwrap();
    let digest = scratch.latest();
    layout
        .add_to_index(sig, Some(&signature_tag(&digest)))
        .unwrap();
    let reason = refusal(verify(&layout, &public, &digest, REFERENCE, None));
    assert!(
        reason.contains(&format!("payload signs {other_digest}")),
        "{reason}"
    );
}

/// Replaces the payload of the `.sig` tag's first layer by `edit(payload)`,
/// keeping the signature annotation, and retags the rewritten manifest.
fn tamper_tag_payload(layout: &Layout, digest: &str, edit: impl Fn(&mut Value)) {
    let tag = signature_tag(digest);
    let descriptor = layout.resolve_tag(&tag).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&layout.read_blob(descriptor.digest().as_ref()).unwrap()).unwrap();
    let layer = &mut manifest["layers"][0];
    let mut payload: Value =
        serde_json::from_slice(&layout.read_blob(layer["digest"].as_str().unwrap()).unwrap())
            .unwrap();
    edit(&mut payload);
    let bytes = serde_json::to_vec(&payload).unwrap();
    let written = layout
        .write_blob(
            MediaType::Other("application/vnd.dev.cosign.simplesigning.v1+json".into()),
            &bytes,
        )
        .unwrap();
    layer["digest"] = Value::String(sha256_digest(&bytes));
    layer["size"] = Value::from(written.size());
    let manifest = layout
        .write_blob(
            MediaType::ImageManifest,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    layout.add_to_index(manifest, Some(&tag)).unwrap();
}

#[test]
fn a_tampered_payload_is_refused() {
    let scratch = Scratch::new();
    let (signer, public) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    sign(&scratch.layout(), signer, &digest, REFERENCE, Mode::Tag).unwrap();
    let forged = "registry.example:5000/forged:latest";
    tamper_tag_payload(&scratch.layout(), &digest, |payload| {
        payload["critical"]["identity"]["docker-reference"] = Value::String(forged.into());
    });
    let reason = refusal(verify(&scratch.layout(), &public, &digest, forged, None));
    assert!(reason.contains("does not verify with the key"), "{reason}");
}

#[test]
fn a_payload_blob_changed_in_place_is_refused() {
    let scratch = Scratch::new();
    let (signer, public) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    let signed = sign(
        &scratch.layout(),
        signer,
        &digest,
        REFERENCE,
        Mode::Referrers,
    )
    .unwrap();
    let layout = scratch.layout();
    let manifest: Value =
        serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let path = scratch
        .path()
        .join("blobs/sha256")
        .join(&layer["sha256:".len()..]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let reason = refusal(verify(&layout, &public, &digest, REFERENCE, None));
    assert!(reason.contains("does not match its digest"), "{reason}");
}

#[test]
fn a_flipped_bundle_signature_bit_is_refused() {
    let scratch = Scratch::new();
    let (signer, public) = key_pair(KeyType::EcdsaP256);
    let digest = scratch.latest();
    let signed = sign(&scratch.layout(), signer, &digest, REFERENCE, Mode::Bundle).unwrap();
    let layout = scratch.layout();
    let mut manifest: Value =
        serde_json::from_slice(&layout.read_blob(&signed.signature_manifest).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bundle: Value =
        serde_json::from_slice(&layout.read_blob(&layer_digest).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64
        .decode(
            bundle["dsseEnvelope"]["signatures"][0]["sig"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = Value::String(b64.encode(&sig));
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let written = layout
        .write_blob(MediaType::Other(ir_sign::BUNDLE_MEDIA_TYPE.into()), &bytes)
        .unwrap();
    manifest["layers"][0]["digest"] = Value::String(written.digest().to_string());
    manifest["layers"][0]["size"] = Value::from(written.size());
    // Replace the original referrer by the tampered one.
    std::fs::remove_file(
        scratch
            .path()
            .join("blobs/sha256")
            .join(&signed.signature_manifest["sha256:".len()..]),
    )
    .unwrap();
    let tampered = layout
        .write_blob(
            MediaType::ImageManifest,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    layout.add_to_index(tampered, None).unwrap();
    let reason = refusal(verify(
        &layout,
        &public,
        &digest,
        REFERENCE,
        Some(Mode::Bundle),
    ));
    assert!(reason.contains("does not verify with the key"), "{reason}");
}
