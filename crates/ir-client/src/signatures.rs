//! `--policy`: a pull is judged by the same signature policy file the
//! server reads (containers-policy.json, and notation's trust policy and
//! store) before anything is written, so a realm can require signed images
//! even from a server it did not configure.
//!
//! What is judged is what the tag (or digest) names: the index when the
//! reference names one (its digest covers the manifests it lists), as
//! podman and skopeo do. Its signatures are fetched from the registry: the
//! cosign tag `sha256-<hex>.sig` and the referrers API (cosign referrers,
//! sigstore bundles, notation). A registry without the referrers API
//! answers 404: then the referrers tag schema's index (tag
//! `sha256-<hex>`) lists them, if it exists. Every fetch is bounded and
//! checked against its digest.

use std::collections::HashMap;
use std::io::Write;

use ir_oci::{Digest, Reference};
use ir_trust::signatures::{self, ArtifactKind, ArtifactSource};
use ir_trust::{DockerReference, Evidence, Subject, Verdict};
use oci_spec::image::Descriptor;

use crate::location::ImageLocation;
pub use crate::pull::SignaturePolicy;
use crate::pull::{digest_of, Client, Content, Fetched};
use crate::Error;

/// Signature material fetched from the registry, as ir-trust reads it.
#[derive(Default)]
struct Material {
    manifests: HashMap<Digest, (String, Vec<u8>)>,
    tags: HashMap<String, Digest>,
    referrers: HashMap<Digest, Vec<Digest>>,
    blobs: HashMap<Digest, Vec<u8>>,
}

impl ArtifactSource for Material {
    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])> {
        self.manifests
            .get(digest)
            .map(|(m, b)| (m.as_str(), b.as_slice()))
    }
    fn tagged(&self, tag: &str) -> Option<Digest> {
        self.tags.get(tag).cloned()
    }
    fn referrers(&self, digest: &Digest) -> Vec<Digest> {
        self.referrers.get(digest).cloned().unwrap_or_default()
    }
    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        match self.blobs.get(digest) {
            Some(b) if b.len() as u64 <= limit => Ok(b.clone()),
            Some(b) => Err(format!(
                "blob {digest} has {} bytes, more than {limit}",
                b.len()
            )),
            None => Err(format!("blob {digest} could not be fetched")),
        }
    }
}

/// A writer that refuses to grow past a limit.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "larger than {} bytes",
                self.limit
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Status { status: 404, .. })
}

impl Client {
    /// Judges the image `reference` names (its manifest or index is
    /// `subject`) by `policy`: `Ok` with the signers when accepted,
    /// [`Error::Refused`] otherwise.
    pub async fn judge(
        &self,
        reference: &ImageLocation,
        subject: &Fetched,
        policy: &SignaturePolicy,
    ) -> Result<Vec<String>, Error> {
        let host = policy
            .registry_host
            .clone()
            .unwrap_or_else(|| reference.authority.clone());
        let base =
            DockerReference::of_repository(&host, &reference.name).map_err(|e| Error::Policy {
                what: format!("--registry-host {host}"),
                source: Box::new(e),
            })?;
        let image = match &reference.reference {
            Reference::Tag(tag) => base.with_tag(tag),
            Reference::Digest(_) => base.with_digest(&subject.digest),
        };
        let source = self.signature_material(reference, &subject.digest).await?;
        let media_type = subject.descriptor.media_type().to_string();
        let verdict = policy.trust.judge(
            &image,
            &Subject {
                digest: &subject.digest,
                media_type: &media_type,
                size: subject.bytes.len() as u64,
            },
            &source,
            &mut Evidence::new(),
        );
        match verdict {
            Verdict::Accepted { signers } => Ok(signers),
            Verdict::Refused(refusal) => Err(Error::Refused {
                image: image.to_string(),
                reason: refusal.to_string(),
            }),
        }
    }

    /// The signatures of `digest` in `reference`'s repository.
    async fn signature_material(
        &self,
        reference: &ImageLocation,
        digest: &Digest,
    ) -> Result<Material, Error> {
        let mut out = Material::default();
        let tag = signatures::cosign_tag(digest);
        match self.fetch_manifest(reference, &tag, None).await {
            Ok(sig) => {
                self.artifact_blobs(reference, &sig, &mut out).await?;
                out.tags.insert(tag, sig.digest.clone());
                out.manifests.insert(
                    sig.digest.clone(),
                    (sig.descriptor.media_type().to_string(), sig.bytes),
                );
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let referrers = self.referrers_of(reference, digest).await?;
        let mut listed = Vec::new();
        for d in referrers
            .iter()
            .filter(|d| is_signature_type(d))
            .take(signatures::MAX_SIGNATURES)
        {
            let rd = digest_of(d, "referrer")?;
            let m = self
                .fetch_manifest(
                    reference,
                    &rd.to_string(),
                    Some((rd.clone(), Some(d.size()))),
                )
                .await?;
            self.artifact_blobs(reference, &m, &mut out).await?;
            out.manifests
                .insert(rd.clone(), (m.descriptor.media_type().to_string(), m.bytes));
            listed.push(rd);
        }
        out.referrers.insert(digest.clone(), listed);
        Ok(out)
    }

    /// The referrers of `digest` in `reference`'s repository: the
    /// referrers API, or where the registry has none (404) the referrers
    /// tag schema's index (tag `sha256-<hex>`); none when neither exists.
    pub(crate) async fn referrers_of(
        &self,
        reference: &ImageLocation,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, Error> {
        match self
            .referrers(&reference.at_digest(digest.clone()), None)
            .await
        {
            Ok(list) => Ok(list),
            Err(e) if is_not_found(&e) => {
                let tag = format!("{}-{}", digest.algorithm(), digest.hex());
                match self.fetch_manifest(reference, &tag, None).await {
                    Ok(Fetched {
                        content: Content::Index(index),
                        ..
                    }) => Ok(index.manifests().clone()),
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if is_not_found(&e) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the layers of a signature artifact (bounded by its kind).
    async fn artifact_blobs(
        &self,
        reference: &ImageLocation,
        artifact: &Fetched,
        out: &mut Material,
    ) -> Result<(), Error> {
        let Some(kind) = signatures::artifact_kind(&artifact.bytes) else {
            return Ok(());
        };
        let limit = match kind {
            ArtifactKind::Cosign => signatures::MAX_PAYLOAD_BYTES,
            ArtifactKind::Bundle => signatures::MAX_BUNDLE_BYTES,
            ArtifactKind::Notation => ir_notation::MAX_ENVELOPE_BYTES as u64,
        } as usize;
        let Content::Manifest(m) = &artifact.content else {
            return Ok(());
        };
        for layer in m.layers().iter().take(signatures::MAX_SIGNATURES) {
            if layer.size() > limit as u64 {
                continue; // ir-trust reports it as too large.
            }
            let d = digest_of(layer, "signature layer")?;
            let mut w = Bounded {
                bytes: Vec::new(),
                limit,
            };
            match self.blob(&reference.at_digest(d.clone()), &mut w).await {
                Ok(_) => {
                    out.blobs.insert(d, w.bytes);
                }
                // A missing or oversized signature layer is a signature
                // that does not verify, not a failed pull.
                Err(Error::Io { .. }) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn is_signature_type(d: &Descriptor) -> bool {
    let t = d.artifact_type().as_ref().map(|t| t.to_string());
    matches!(t.as_deref(), Some(t) if t == signatures::COSIGN_ARTIFACT
        || t == signatures::NOTATION_ARTIFACT
        || signatures::SIGSTORE_BUNDLES.contains(&t))
}
