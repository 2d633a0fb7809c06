//! Keyless cosign signatures (tag form) checked by sigstore-rs: its
//! `SignedArtifactBundle::new_verified` verifies the Rekor SET (canonical
//! JSON, key chosen by log ID), and its `CertificateVerifier` checks the
//! certificate's purpose, its chain to the Fulcio CA, the signature with the
//! certificate's key and that the integrated time is within the
//! certificate's validity. sigstore-rs also requires the certificate to be
//! valid now, so only fresh signatures (as `keyless-sign` makes them)
//! verify here; the identity (e-mail, issuer) is not checked here, and
//! intermediates must be in the CA file (the chain annotation is not read).

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sigstore::cosign::bundle::SignedArtifactBundle;
use sigstore::cosign::bundle_content::BundleContent;
use sigstore::cosign::verification_constraint::{CertificateVerifier, VerificationConstraint};
use sigstore::cosign::verify_constraints;
use sigstore::crypto::CosignVerificationKey;
use sigstore::registry::{Certificate, CertificateEncoding};

use crate::layout::{sha256_hex, Layout};
use crate::verify::{find_candidates, simple_signing_layer, Verified};
use crate::{Error, Mode, SIGNATURE_ANNOTATION};

const CERT_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Verifies that one keyless signature (tag form) of manifest `digest` in
/// `layout`, for image `reference`, has a certificate from the CA in
/// `fulcio_pem` and a Rekor SET by the key in `rekor_pem`.
pub fn verify_keyless(
    layout: &Layout,
    fulcio_pem: &[u8],
    rekor_pem: &[u8],
    digest: &str,
    reference: &str,
) -> Result<Verified, Error> {
    sha256_hex(digest)?;
    let rekor = CosignVerificationKey::try_from_pem(rekor_pem)
        .map_err(|e| Error::Key(format!("cannot read the Rekor key: {e}")))?;
    let spki = pem_der(rekor_pem)?;
    let mut rekor_keys = BTreeMap::new();
    rekor_keys.insert(hex::encode(Sha256::digest(&spki)), rekor);
    let mut candidates = find_candidates(layout, digest)?;
    candidates.retain(|c| c.mode == Mode::Tag);
    let mut last = format!("no {} tag", crate::signature_tag(digest));
    for candidate in &candidates {
        let annotations = &candidate.layer["annotations"];
        let text = |name: &str| {
            annotations[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Refused(format!("no {name} annotation")))
        };
        let outcome = (|| {
            let mut layer = simple_signing_layer(layout, candidate, digest, reference)?;
            let cert = text(CERT_ANNOTATION)?;
            let set: serde_json::Value = serde_json::from_str(&text(BUNDLE_ANNOTATION)?)
                .map_err(|e| Error::Refused(format!("SET: {e}")))?;
            let wrapped = serde_json::json!({
                "base64Signature": text(SIGNATURE_ANNOTATION)?,
                "cert": base64::engine::general_purpose::STANDARD.encode(&cert),
                "rekorBundle": set,
            });
            let bundle = SignedArtifactBundle::new_verified(&wrapped.to_string(), &rekor_keys)
                .map_err(|e| Error::Refused(format!("Rekor SET: {e}")))?;
            layer.bundle = Some(BundleContent::RekorBundle(bundle.rekor_bundle));
            // sigstore-rs's certificate verifier trusts every certificate
            // it is given: only the CA's, never the signature's chain
            // annotation (intermediates belong in the CA file here).
            let chain: Vec<Certificate> = pem_blocks(&String::from_utf8_lossy(fulcio_pem))
                .into_iter()
                .map(|block| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: block.into_bytes(),
                })
                .collect();
            let verifier: Box<dyn VerificationConstraint> = Box::new(
                CertificateVerifier::from_pem(cert.as_bytes(), true, Some(&chain))
                    .map_err(|e| Error::Refused(format!("certificate: {e}")))?,
            );
            verify_constraints(std::slice::from_ref(&layer), std::iter::once(&verifier))
                .map_err(|_| Error::Refused("the certificate verifier refuses it".into()))
        })();
        match outcome {
            Ok(()) => {
                return Ok(Verified {
                    mode: candidate.mode,
                    signature_manifest: candidate.manifest.clone(),
                    layer: candidate.layer["digest"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
            }
            Err(e) => last = format!("signature {}: {e}", candidate.manifest),
        }
    }
    Err(Error::NotVerified(format!(
        "{} keyless candidate(s), none verifies; last: {last}",
        candidates.len()
    )))
}

/// The DER of the first PEM block.
fn pem_der(pem: &[u8]) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(pem).map_err(|_| Error::Key("not PEM".into()))?;
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| Error::Key("not PEM".into()))
}

/// Each `-----BEGIN ...-----` to `-----END ...-----` block of a PEM text.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END") {
            out.extend(current.take());
        }
    }
    out
}
