//! Signing a manifest of a layout in cosign's three forms ([`Mode`]).
//!
//! The payloads are sigstore-rs's types (`SimpleSigning`, the bundle
//! protobuf messages) and the signatures sigstore-rs's signers
//! (`PrivateKeySigner` for simple signing, as cosign signs the payload
//! bytes; `SigStoreSigner::sign` over DSSE's PAE for the bundle).

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::payload::simple_signing::{
    Critical, Identity, Image, SimpleSigning, CRITICAL_TYPE_NAME,
};
use sigstore::cosign::{Constraint as _, SignatureLayer};
use sigstore::crypto::SigStoreSigner;
use sigstore_protobuf_specs::dev::sigstore::bundle::v1::{
    bundle, verification_material, Bundle, VerificationMaterial,
};
use sigstore_protobuf_specs::dev::sigstore::common::v1::PublicKeyIdentifier;
use sigstore_protobuf_specs::io::intoto::{Envelope, Signature};

use crate::dsse::{pae, Statement, IN_TOTO_PAYLOAD_TYPE};
use crate::layout::{sha256_hex, Layout};
use crate::{
    keys, signature_tag, Error, Mode, BUNDLE_MEDIA_TYPE, COSIGN_SIG_ARTIFACT_TYPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};

/// What signing wrote.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The digest of the signed manifest.
    pub subject: String,
    /// The digest of the signature manifest written to the layout.
    pub signature_manifest: String,
    /// Its tag (tag mode only: `sha256-<hex>.sig`).
    pub tag: Option<String>,
}

/// Signs the manifest `digest` of `layout` for image `reference`, attaching
/// the signature as `mode` says.
pub fn sign(
    layout: &Layout,
    signer: SigStoreSigner,
    digest: &str,
    reference: &str,
    mode: Mode,
) -> Result<Signed, Error> {
    sha256_hex(digest)?;
    if reference.is_empty() {
        return Err(Error::Invalid("empty --reference".to_string()));
    }
    let subject = subject_descriptor(layout, digest)?;
    match mode {
        Mode::Tag => sign_tag(layout, signer, digest, reference),
        Mode::Referrers => sign_referrer(layout, signer, subject, reference),
        Mode::Bundle => sign_bundle(layout, signer, subject),
    }
}

/// cosign's simple-signing payload for `reference` at `digest`, signed.
fn signed_payload(
    signer: SigStoreSigner,
    digest: &str,
    reference: &str,
) -> Result<SignatureLayer, Error> {
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: reference.to_string(),
            },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            type_name: CRITICAL_TYPE_NAME.to_string(),
        },
        optional: None,
    };
    let mut layer = SignatureLayer {
        simple_signing: payload,
        oci_digest: String::new(),
        certificate_signature: None,
        bundle: None,
        signature: None,
        raw_data: Vec::new(),
    };
    // Serialises the payload into raw_data and signs those bytes.
    if !PrivateKeySigner::new_with_signer(signer).add_constraint(&mut layer)? {
        return Err(Error::Invalid(
            "sigstore-rs did not sign the payload".to_string(),
        ));
    }
    Ok(layer)
}

/// Writes the signed payload as a blob; its descriptor carries the signature annotation.
fn payload_layer(layout: &Layout, layer: &SignatureLayer) -> Result<Descriptor, Error> {
    let mut descriptor = layout.write_blob(
        MediaType::Other(SIMPLE_SIGNING_MEDIA_TYPE.to_string()),
        &layer.raw_data,
    )?;
    let signature = layer.signature.clone().unwrap_or_default();
    descriptor.set_annotations(Some(HashMap::from([(
        SIGNATURE_ANNOTATION.to_string(),
        signature,
    )])));
    Ok(descriptor)
}

fn sign_tag(
    layout: &Layout,
    signer: SigStoreSigner,
    digest: &str,
    reference: &str,
) -> Result<Signed, Error> {
    let tag = signature_tag(digest);
    let signed = signed_payload(signer, digest, reference)?;
    let new_layer = payload_layer(layout, &signed)?;
    // Signing again appends a layer to the existing signature manifest, as cosign does.
    let mut layers = match layout.resolve_tag(&tag) {
        Ok(existing) => {
            let bytes = layout.read_blob(existing.digest().as_ref())?;
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Layout(format!("existing {tag}: {e}")))?;
            manifest.layers().clone()
        }
        Err(Error::TagNotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    // The same payload signed again by another key is another layer (same
    // digest, other annotation); only an identical layer is not repeated.
    layers
        .retain(|l| l.digest() != new_layer.digest() || l.annotations() != new_layer.annotations());
    layers.push(new_layer);
    let config = cosign_config(layout, &layers)?;
    let manifest = build_manifest(config, layers, None, None, None)?;
    let descriptor = write_manifest(layout, &manifest)?;
    let signature_manifest = descriptor.digest().to_string();
    layout.add_to_index(descriptor, Some(&tag))?;
    Ok(Signed {
        subject: digest.to_string(),
        signature_manifest,
        tag: Some(tag),
    })
}

fn sign_referrer(
    layout: &Layout,
    signer: SigStoreSigner,
    subject: Descriptor,
    reference: &str,
) -> Result<Signed, Error> {
    let digest = subject.digest().to_string();
    let signed = signed_payload(signer, &digest, reference)?;
    let layer = payload_layer(layout, &signed)?;
    let manifest = build_manifest(
        empty_config(layout)?,
        vec![layer],
        Some(COSIGN_SIG_ARTIFACT_TYPE),
        Some(subject),
        None,
    )?;
    finish_referrer(layout, &manifest, digest)
}

/// As cosign v3's `cosign sign --key` writes it: the statement names no
/// image (so `reference` is not written), the bundle is attached as
/// `WriteAttestationNewBundleFormat` attaches it.
fn sign_bundle(
    layout: &Layout,
    signer: SigStoreSigner,
    subject: Descriptor,
) -> Result<Signed, Error> {
    let digest = subject.digest().to_string();
    let statement = Statement::cosign_sign(sha256_hex(&digest)?);
    let payload = serde_json::to_vec(&statement)?;
    let signature = signer.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload))?;
    let hint = keys::public_key_hint(&signer)?;
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.to_string(),
        verification_material: Some(VerificationMaterial {
            content: Some(verification_material::Content::PublicKey(
                PublicKeyIdentifier { hint },
            )),
            tlog_entries: Vec::new(),
            timestamp_verification_data: None,
        }),
        content: Some(bundle::Content::DsseEnvelope(Envelope {
            payload,
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_string(),
            signatures: vec![Signature {
                sig: signature,
                keyid: String::new(),
            }],
        })),
    };
    let bytes = serde_json::to_vec(&bundle)?;
    let layer = layout.write_blob(MediaType::Other(BUNDLE_MEDIA_TYPE.to_string()), &bytes)?;
    // The annotations cosign puts on its bundle referrers.
    let annotations = HashMap::from([
        (
            "org.opencontainers.image.created".to_string(),
            created_now(),
        ),
        (
            "dev.sigstore.bundle.content".to_string(),
            "dsse-envelope".to_string(),
        ),
        (
            "dev.sigstore.bundle.predicateType".to_string(),
            statement.predicate_type.clone(),
        ),
    ]);
    // cosign's config descriptor carries the artifact type too.
    let mut config = empty_config(layout)?;
    config.set_artifact_type(Some(MediaType::Other(BUNDLE_MEDIA_TYPE.to_string())));
    let manifest = build_manifest(
        config,
        vec![layer],
        Some(BUNDLE_MEDIA_TYPE),
        Some(subject),
        Some(annotations),
    )?;
    finish_referrer(layout, &manifest, digest)
}

/// Now in RFC 3339 UTC to the second, as cosign writes
/// `org.opencontainers.image.created`.
fn created_now() -> String {
    ir_jose::rfc3339_at(std::time::SystemTime::now())
}

fn finish_referrer(
    layout: &Layout,
    manifest: &ImageManifest,
    subject: String,
) -> Result<Signed, Error> {
    let mut descriptor = write_manifest(layout, manifest)?;
    descriptor.set_artifact_type(manifest.artifact_type().clone());
    let signature_manifest = descriptor.digest().to_string();
    layout.add_to_index(descriptor, None)?;
    Ok(Signed {
        subject,
        signature_manifest,
        tag: None,
    })
}

/// The signed manifest's descriptor (media type, size, digest), from its blob.
fn subject_descriptor(layout: &Layout, digest: &str) -> Result<Descriptor, Error> {
    let bytes = layout.read_blob(digest)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Layout(format!("manifest {digest}: {e}")))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let digest = digest
        .parse::<oci_spec::image::Digest>()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Descriptor::new(
        MediaType::from(media_type),
        bytes.len() as u64,
        digest,
    ))
}

fn build_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    artifact_type: Option<&str>,
    subject: Option<Descriptor>,
    annotations: Option<HashMap<String, String>>,
) -> Result<ImageManifest, Error> {
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers);
    if let Some(artifact_type) = artifact_type {
        builder = builder.artifact_type(MediaType::Other(artifact_type.to_string()));
    }
    if let Some(subject) = subject {
        builder = builder.subject(subject);
    }
    if let Some(annotations) = annotations {
        builder = builder.annotations(annotations);
    }
    builder
        .build()
        .map_err(|e| Error::Invalid(format!("manifest: {e}")))
}

fn write_manifest(layout: &Layout, manifest: &ImageManifest) -> Result<Descriptor, Error> {
    let bytes = serde_json::to_vec(manifest)?;
    layout.write_blob(MediaType::ImageManifest, &bytes)
}

/// The OCI empty descriptor (`{}`), the config of an artifact manifest.
fn empty_config(layout: &Layout) -> Result<Descriptor, Error> {
    layout.write_blob(MediaType::EmptyJSON, b"{}")
}

/// cosign's config blob for a `.sig` image: an empty image config whose
/// rootfs lists the payload layers.
fn cosign_config(layout: &Layout, layers: &[Descriptor]) -> Result<Descriptor, Error> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest().to_string()).collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let bytes = serde_json::to_vec(&config)?;
    layout.write_blob(MediaType::ImageConfig, &bytes)
}
