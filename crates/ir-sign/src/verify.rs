//! Finding and verifying the signatures of a manifest in a layout, in all
//! three of cosign's forms. The cryptographic check is sigstore-rs's:
//! each candidate becomes a `SignatureLayer` (the type its cosign client
//! builds from a registry) and must satisfy a `PublicKeyVerifier` through
//! `sigstore::cosign::verify_constraints`.

use base64::Engine as _;
use serde_json::Value;
use sigstore::cosign::payload::simple_signing::{
    Critical, Identity, Image, SimpleSigning, CRITICAL_TYPE_NAME,
};
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraint};
use sigstore::cosign::{verify_constraints, SignatureLayer};
use sigstore_protobuf_specs::dev::sigstore::bundle::v1::{bundle, verification_material, Bundle};

use crate::dsse::{
    pae, Statement, COSIGN_SIGN_PREDICATE_TYPE, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1_TYPE,
};
use crate::layout::{sha256_hex, Layout};
use crate::{
    signature_tag, Error, Mode, BUNDLE_MEDIA_TYPE, COSIGN_SIG_ARTIFACT_TYPE, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
};

/// Most signature layers looked at for one manifest.
pub const MAX_CANDIDATES: usize = 256;

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The form it was found in.
    pub mode: Mode,
    /// The signature manifest that carries it.
    pub signature_manifest: String,
    /// The layer (payload or bundle) that verified.
    pub layer: String,
}

/// One signature layer found for the manifest.
pub(crate) struct Candidate {
    pub(crate) mode: Mode,
    pub(crate) manifest: String,
    pub(crate) layer: Value,
}

/// Verifies that one signature of manifest `digest` in `layout`, for image
/// `reference`, verifies with the public key `public_pem`; with `only`,
/// signatures in that form alone count. The reason of a refusal names the
/// last candidate's failure (or that there is none).
pub fn verify(
    layout: &Layout,
    public_pem: &[u8],
    digest: &str,
    reference: &str,
    only: Option<Mode>,
) -> Result<Verified, Error> {
    sha256_hex(digest)?;
    let verifier: Box<dyn VerificationConstraint> = Box::new(
        PublicKeyVerifier::try_from(public_pem)
            .map_err(|e| Error::Key(format!("cannot read the public key: {e}")))?,
    );
    let mut candidates = find_candidates(layout, digest)?;
    candidates.retain(|c| only.is_none_or(|mode| c.mode == mode));
    if candidates.is_empty() {
        let form = only.map(|m| format!("{m} ")).unwrap_or_default();
        return Err(Error::NotVerified(format!(
            "no {form}signature found for {digest} (no {} tag, no signature referrer)",
            signature_tag(digest)
        )));
    }
    let mut last = String::new();
    for candidate in &candidates {
        let layer_digest = candidate.layer["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let built = match candidate.mode {
            Mode::Tag | Mode::Referrers => {
                simple_signing_layer(layout, candidate, digest, reference)
            }
            Mode::Bundle => bundle_layer(layout, &layer_digest, digest, reference),
        };
        let outcome = built.and_then(|layer| {
            verify_constraints(std::slice::from_ref(&layer), std::iter::once(&verifier)).map_err(
                |_| Error::Refused("the signature does not verify with the key".to_string()),
            )
        });
        match outcome {
            Ok(()) => {
                return Ok(Verified {
                    mode: candidate.mode,
                    signature_manifest: candidate.manifest.clone(),
                    layer: layer_digest,
                })
            }
            Err(e) => {
                last = format!(
                    "{} signature {} (layer {layer_digest}): {e}",
                    candidate.mode, candidate.manifest
                )
            }
        }
    }
    Err(Error::NotVerified(format!(
        "{} candidate(s), none verifies; last: {last}",
        candidates.len()
    )))
}

/// The signature layers of `digest`: those of its `.sig` tag, and those of
/// every manifest in index.json whose `subject` is `digest` (referrers).
pub(crate) fn find_candidates(layout: &Layout, digest: &str) -> Result<Vec<Candidate>, Error> {
    let tag = signature_tag(digest);
    let index = layout.index()?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in index.manifests() {
        let manifest_digest = entry.digest().to_string();
        let tagged_sig = crate::layout::tag_of(entry) == Some(tag.as_str());
        if !seen.insert((manifest_digest.clone(), tagged_sig)) {
            continue;
        }
        // A manifest that cannot be read is not a signature of ours: skip it.
        let Ok(bytes) = layout.read_blob(&manifest_digest) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let is_referrer = manifest["subject"]["digest"].as_str() == Some(digest);
        if !tagged_sig && !is_referrer {
            continue;
        }
        let artifact_type = manifest["artifactType"].as_str();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let mode = match (layer["mediaType"].as_str(), tagged_sig, artifact_type) {
                (Some(SIMPLE_SIGNING_MEDIA_TYPE), true, _) => Mode::Tag,
                (Some(SIMPLE_SIGNING_MEDIA_TYPE), false, Some(COSIGN_SIG_ARTIFACT_TYPE)) => {
                    Mode::Referrers
                }
                (Some(BUNDLE_MEDIA_TYPE), false, Some(BUNDLE_MEDIA_TYPE)) => Mode::Bundle,
                _ => continue,
            };
            if out.len() == MAX_CANDIDATES {
                return Err(Error::Layout(format!(
                    "more than {MAX_CANDIDATES} signature layers for {digest}"
                )));
            }
            out.push(Candidate {
                mode,
                manifest: manifest_digest.clone(),
                layer: layer.clone(),
            });
        }
    }
    Ok(out)
}

/// A simple-signing layer (tag or referrers mode) as sigstore-rs's
/// `SignatureLayer`, after the checks its cosign client makes when it
/// builds one (media type, digest, payload digest) and the identity check.
pub(crate) fn simple_signing_layer(
    layout: &Layout,
    candidate: &Candidate,
    digest: &str,
    reference: &str,
) -> Result<SignatureLayer, Error> {
    let layer_digest = candidate.layer["digest"].as_str().unwrap_or_default();
    let payload = layout.read_blob(layer_digest)?;
    let signature = candidate.layer["annotations"][SIGNATURE_ANNOTATION]
        .as_str()
        .ok_or_else(|| Error::Refused(format!("no {SIGNATURE_ANNOTATION} annotation")))?;
    let simple_signing: SimpleSigning = serde_json::from_slice(&payload)
        .map_err(|e| Error::Refused(format!("payload is not simple signing: {e}")))?;
    if simple_signing.critical.type_name != CRITICAL_TYPE_NAME {
        return Err(Error::Refused(format!(
            "payload type {:?}",
            simple_signing.critical.type_name
        )));
    }
    if !simple_signing.satisfies_manifest_digest(digest) {
        return Err(Error::Refused(format!(
            "payload signs {}, not {digest}",
            simple_signing.critical.image.docker_manifest_digest
        )));
    }
    check_identity(
        &simple_signing.critical.identity.docker_reference,
        reference,
    )?;
    Ok(SignatureLayer {
        simple_signing,
        oci_digest: layer_digest.to_string(),
        certificate_signature: None,
        bundle: None,
        signature: Some(signature.to_string()),
        raw_data: payload,
    })
}

/// A sigstore bundle v0.3 layer as a `SignatureLayer` over DSSE's PAE, the
/// way sigstore-rs's own `SignatureLayer::from_sigstore_bundle` builds it
/// (that function is crate-private and insists on a transparency log entry;
/// key-signed bundles here have none).
fn bundle_layer(
    layout: &Layout,
    layer_digest: &str,
    digest: &str,
    reference: &str,
) -> Result<SignatureLayer, Error> {
    let bytes = layout.read_blob(layer_digest)?;
    let bundle: Bundle = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Refused(format!("not a sigstore bundle: {e}")))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(Error::Refused(format!(
            "bundle media type {:?}",
            bundle.media_type
        )));
    }
    match bundle.verification_material.and_then(|m| m.content) {
        Some(verification_material::Content::PublicKey(_)) => {}
        _ => {
            return Err(Error::Refused(
                "bundle verification material is not a public key".to_string(),
            ))
        }
    }
    let Some(bundle::Content::DsseEnvelope(envelope)) = bundle.content else {
        return Err(Error::Refused(
            "bundle content is not a DSSE envelope".to_string(),
        ));
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Error::Refused(format!(
            "DSSE payload type {:?}",
            envelope.payload_type
        )));
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(Error::Refused(format!(
            "DSSE envelope has {} signatures, not 1",
            envelope.signatures.len()
        )));
    };
    let statement: Statement = serde_json::from_slice(&envelope.payload)
        .map_err(|e| Error::Refused(format!("DSSE payload is not an in-toto statement: {e}")))?;
    if statement.statement_type != STATEMENT_V1_TYPE
        || statement.predicate_type != COSIGN_SIGN_PREDICATE_TYPE
    {
        return Err(Error::Refused(format!(
            "statement {:?} with predicate {:?}",
            statement.statement_type, statement.predicate_type
        )));
    }
    let hex = sha256_hex(digest)?;
    let subject = statement
        .subject
        .iter()
        .find(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
        .ok_or_else(|| Error::Refused(format!("no statement subject has digest {digest}")))?;
    // cosign v3's `cosign sign` names no image; like `cosign verify`, the
    // signature and digest are then all that is checked. (ir-server's
    // policy refuses such a bundle: it signs no identity.)
    let name = subject.name.clone().unwrap_or_default();
    if let Some(signed) = &subject.name {
        check_identity(signed, reference)?;
    }
    Ok(SignatureLayer {
        // Synthesised from the statement, as sigstore-rs does for bundles.
        simple_signing: SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: name,
                },
                image: Image {
                    docker_manifest_digest: digest.to_string(),
                },
                type_name: statement.predicate_type.clone(),
            },
            optional: None,
        },
        oci_digest: layer_digest.to_string(),
        certificate_signature: None,
        bundle: None,
        signature: Some(base64::engine::general_purpose::STANDARD.encode(&signature.sig)),
        raw_data: pae(&envelope.payload_type, &envelope.payload),
    })
}

/// The signed identity must be the reference asked for, exactly.
fn check_identity(signed: &str, reference: &str) -> Result<(), Error> {
    if signed == reference {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "signed for {signed:?}, not {reference:?}"
        )))
    }
}
