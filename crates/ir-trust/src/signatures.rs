//! Finding the signatures of a manifest in a repository: cosign's tag
//! scheme (`sha256-<hex>.sig`), cosign's OCI 1.1 referrers mode, sigstore
//! bundles and notation signatures attached as referrers.
//!
//! Everything read here comes from the served root and is untrusted: sizes
//! and counts are bounded, and anything malformed becomes a
//! [`Signature::Malformed`] with its reason rather than an error that
//! stops the judgement.

use std::collections::HashMap;

use base64::Engine;
use ir_oci::{media_type, Digest};
use serde::Deserialize;

/// Media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation of a simple-signing layer that holds the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact type of a cosign signature in OCI 1.1 referrers mode.
pub const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Sigstore bundle media types (artifact type and layer).
pub const SIGSTORE_BUNDLES: [&str; 3] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
];
/// Artifact type of a notation signature.
pub const NOTATION_ARTIFACT: &str = "application/vnd.cncf.notary.signature";

/// Most signatures read for one manifest (over every place they are found).
pub const MAX_SIGNATURES: usize = 32;
/// Largest simple-signing payload read.
pub const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;
/// Largest sigstore bundle read.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 20;
/// Largest signature manifest parsed.
const MAX_SIGNATURE_MANIFEST_BYTES: usize = 256 * 1024;
/// How a layer that repeats an earlier one of its artifact is described
/// (followed by the earlier one's index). Such a layer is no signature of
/// its own: judgements leave it out.
pub(crate) const REPEATED: &str = "repeats layer ";
/// Longest base64 signature text (RSA-8192 is 1,366 characters).
const MAX_SIGNATURE_TEXT: usize = 4096;

/// Read access to one repository's verified content.
pub trait ArtifactSource {
    /// The manifest with this digest: its media type and exact bytes.
    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])>;
    /// The digest a tag names.
    fn tagged(&self, tag: &str) -> Option<Digest>;
    /// The manifest cosign's signature tag of `digest` names
    /// ([`cosign_tag`]). A source that has indexed those tags answers
    /// without building and parsing the tag.
    fn cosign_signature(&self, digest: &Digest) -> Option<Digest> {
        self.tagged(&cosign_tag(digest))
    }
    /// Digests of the manifests whose `subject` is `digest`.
    fn referrers(&self, digest: &Digest) -> Vec<Digest>;
    /// A blob's bytes, at most `limit` of them (larger is an error), its
    /// digest checked.
    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String>;
}

/// The signature material of one layer of a signature artifact.
#[derive(Debug, Clone)]
pub enum Signature {
    /// A cosign signature over a simple-signing payload.
    Simple {
        /// The payload bytes (signed as they are).
        payload: Vec<u8>,
        /// The decoded signature.
        signature: Vec<u8>,
    },
    /// A sigstore bundle's DSSE envelope.
    Dsse {
        /// `payloadType`.
        payload_type: String,
        /// The decoded payload.
        payload: Vec<u8>,
        /// The decoded signatures (any one may verify).
        signatures: Vec<Vec<u8>>,
    },
    /// A notation signature envelope.
    Notation {
        /// `application/jose+json` or `application/cose`.
        media_type: String,
        /// The envelope bytes.
        envelope: Vec<u8>,
    },
    /// Something in a signature's place that is not a usable signature.
    Malformed(String),
    /// A signature whose bytes could not be read now (a file changed or
    /// went away since it was verified): judged as malformed, but not a
    /// property of the artifact, so never remembered.
    Unavailable(String),
}

/// The cosign signature tag of a manifest digest (`sha256-<hex>.sig`).
pub fn cosign_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// The manifest digest a cosign signature tag names, if `tag` is one.
pub fn cosign_tag_target(tag: &str) -> Option<Digest> {
    let stem = tag.strip_suffix(".sig")?;
    let (alg, hex) = stem.split_once('-')?;
    Digest::parse_parts(alg, hex).ok()
}

#[derive(Deserialize)]
struct SignatureManifest {
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// What kind of signature artifact a manifest is, from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// Cosign simple-signing layers (tag scheme or referrers mode).
    Cosign,
    /// A sigstore bundle.
    Bundle,
    /// A notation signature.
    Notation,
}

/// The kind of signature artifact `manifest` is, or `None` for anything
/// else. A cosign artifact has only simple-signing layers.
pub fn artifact_kind(manifest: &[u8]) -> Option<ArtifactKind> {
    parse_artifact(manifest).map(|(kind, _)| kind)
}

/// [`artifact_kind`] and the parsed manifest, in one parse.
fn parse_artifact(manifest: &[u8]) -> Option<(ArtifactKind, SignatureManifest)> {
    if manifest.len() > MAX_SIGNATURE_MANIFEST_BYTES {
        return None;
    }
    let m: SignatureManifest = serde_json::from_slice(manifest).ok()?;
    let kind = m
        .artifact_type
        .as_deref()
        .or(m.config.as_ref().map(|c| c.media_type.as_str()));
    let kind = match kind {
        Some(NOTATION_ARTIFACT) => ArtifactKind::Notation,
        Some(k) if SIGSTORE_BUNDLES.contains(&k) => ArtifactKind::Bundle,
        _ if !m.layers.is_empty() && m.layers.iter().all(|l| l.media_type == SIMPLE_SIGNING) => {
            ArtifactKind::Cosign
        }
        _ => return None,
    };
    // Notation reads a signature manifest with exactly one layer (its
    // envelope); anything else is not a notation signature.
    if kind == ArtifactKind::Notation && m.layers.len() != 1 {
        return None;
    }
    // A signature artifact is served without a verdict of its own, so it
    // may not carry more than signatures: no layer is larger than what it
    // holds may be.
    let limit = match kind {
        ArtifactKind::Cosign => MAX_PAYLOAD_BYTES,
        ArtifactKind::Bundle => MAX_BUNDLE_BYTES,
        ArtifactKind::Notation => ir_notation::MAX_ENVELOPE_BYTES as u64,
    };
    if m.layers.iter().any(|l| l.size > limit) {
        return None;
    }
    Some((kind, m))
}

/// Largest config blob of a signature artifact served without a verdict.
pub const MAX_SIGNATURE_CONFIG_BYTES: u64 = 16 * 1024;
/// The OCI empty descriptor's media type (an artifact's `{}` config).
const EMPTY_CONFIG: &str = media_type::OCI_EMPTY;
/// Config media types a runtime runs an image by.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Media types a signature artifact's manifest may have (no index).
const SIGNATURE_MANIFESTS: [&str; 2] = [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST];
/// The fields a signature artifact's manifest may have: no `blobs`, no
/// `manifests`, nothing a client could be sent to fetch besides the config
/// and the signature layers.
const SIGNATURE_MANIFEST_FIELDS: [&str; 7] = [
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "subject",
    "annotations",
];
/// The fields its config and layer descriptors may have (no `urls`, no
/// embedded `data`).
const SIGNATURE_DESCRIPTOR_FIELDS: [&str; 5] =
    ["mediaType", "digest", "size", "annotations", "artifactType"];

impl ArtifactKind {
    /// The media types its signature layers have.
    pub fn layer_types(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::Cosign => &[SIMPLE_SIGNING],
            ArtifactKind::Bundle => &SIGSTORE_BUNDLES,
            ArtifactKind::Notation => &[ir_notation::MEDIA_TYPE_JWS, ir_notation::MEDIA_TYPE_COSE],
        }
    }

    /// How many signature layers it may have.
    fn layer_count(self) -> std::ops::RangeInclusive<usize> {
        match self {
            ArtifactKind::Notation => 1..=1,
            ArtifactKind::Cosign | ArtifactKind::Bundle => 1..=MAX_SIGNATURES,
        }
    }
}

/// The kind of signature artifact the manifest `digest` is, when it is
/// structurally nothing but a signature of that kind and may therefore be
/// served without a verdict of its own: an image manifest (not an index)
/// with only the fields a signature has (no `blobs`, no `manifests`); a
/// config that is the empty descriptor, a small blob of a non-image type,
/// or (cosign's `.sig` image) a small image config that names no platform
/// (so no runtime runs it); one to [`MAX_SIGNATURES`] layers (notation:
/// exactly one), each of the kind's media types and within its size
/// limit. What its layers hold is checked by the caller.
pub fn structural_kind(
    source: &dyn ArtifactSource,
    digest: &Digest,
) -> Result<ArtifactKind, String> {
    let (media_type, bytes) = source
        .manifest(digest)
        .ok_or_else(|| format!("{digest} is not a manifest of the layout"))?;
    if !SIGNATURE_MANIFESTS.contains(&media_type) {
        return Err(format!(
            "a signature is an image manifest, not {media_type}"
        ));
    }
    if bytes.len() > MAX_SIGNATURE_MANIFEST_BYTES {
        return Err(format!(
            "{} bytes, more than a signature manifest's {MAX_SIGNATURE_MANIFEST_BYTES}",
            bytes.len()
        ));
    }
    let doc: serde_json::Map<String, serde_json::Value> =
        ir_oci::json::from_slice(bytes).map_err(|e| e.to_string())?;
    if let Some(field) = doc
        .keys()
        .find(|k| !SIGNATURE_MANIFEST_FIELDS.contains(&k.as_str()))
    {
        return Err(format!("a signature manifest has no {field:?} field"));
    }
    let descriptors = doc
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .chain(doc.get("config"));
    for d in descriptors {
        let Some(d) = d.as_object() else {
            return Err("a descriptor is not an object".into());
        };
        if let Some(field) = d
            .keys()
            .find(|k| !SIGNATURE_DESCRIPTOR_FIELDS.contains(&k.as_str()))
        {
            return Err(format!("a signature's descriptor has no {field:?} field"));
        }
    }
    let (kind, m) = parse_artifact(bytes).ok_or("not a signature artifact")?;
    if !kind.layer_count().contains(&m.layers.len()) {
        return Err(format!(
            "{} layers; a {kind:?} signature artifact has {:?}",
            m.layers.len(),
            kind.layer_count()
        ));
    }
    if let Some(l) = m
        .layers
        .iter()
        .find(|l| !kind.layer_types().contains(&l.media_type.as_str()))
    {
        return Err(format!(
            "a layer of type {:?} in a {kind:?} signature artifact",
            l.media_type
        ));
    }
    let config = m.config.as_ref().ok_or("no config")?;
    if config.size > MAX_SIGNATURE_CONFIG_BYTES {
        return Err(format!(
            "a config of {} bytes, more than a signature's {MAX_SIGNATURE_CONFIG_BYTES}",
            config.size
        ));
    }
    let ty = config.media_type.as_str();
    if ty == EMPTY_CONFIG {
        if config.size != 2 {
            return Err(format!("an empty config of {} bytes", config.size));
        }
    } else if IMAGE_CONFIGS.contains(&ty) {
        if kind != ArtifactKind::Cosign {
            return Err(format!(
                "an image config ({ty}) in a {kind:?} signature artifact"
            ));
        }
        let digest = Digest::parse(&config.digest).map_err(|e| format!("config: {e}"))?;
        let bytes = source.blob(&digest, MAX_SIGNATURE_CONFIG_BYTES)?;
        let c: serde_json::Map<String, serde_json::Value> =
            ir_oci::json::from_slice(&bytes).map_err(|e| format!("config: {e}"))?;
        for field in ["os", "architecture"] {
            if c.get(field).is_some_and(|v| v.as_str() != Some("")) {
                return Err(format!(
                    "its image config names {field} {}: a runnable image, not a signature",
                    c[field]
                ));
            }
        }
    }
    Ok(kind)
}

/// True when `envelope` looks like the notation envelope its media type
/// says (a JWS JSON object, or a tagged COSE_Sign1): what else sits in a
/// notation layer is not served without a verdict.
pub fn notation_envelope_shaped(media_type: &str, envelope: &[u8]) -> bool {
    match media_type {
        ir_notation::MEDIA_TYPE_JWS => {
            #[derive(Deserialize)]
            #[allow(dead_code)] // Only the shape is checked.
            struct Jws {
                payload: String,
                protected: String,
                signature: String,
            }
            serde_json::from_slice::<Jws>(envelope).is_ok()
        }
        // CBOR tag 18 (COSE_Sign1) then an array of four.
        ir_notation::MEDIA_TYPE_COSE => envelope.starts_with(&[0xd2, 0x84]),
        _ => false,
    }
}

/// A manifest that may hold signatures of another, and where it was found.
#[derive(Debug, Clone)]
pub struct ArtifactAt {
    /// The artifact manifest's digest.
    pub digest: Digest,
    /// Found by cosign's signature tag of this digest (the one signed), or
    /// `None` for a referrer.
    pub by_tag_of: Option<Digest>,
}

impl ArtifactAt {
    /// Where it was found, for messages (`tag sha256-….sig`,
    /// `referrer sha256:…`).
    pub fn origin(&self) -> String {
        match &self.by_tag_of {
            Some(signed) => format!("tag {}", cosign_tag(signed)),
            None => format!("referrer {}", self.digest),
        }
    }
}

/// The manifests that may hold signatures of `digest`: the cosign tag's
/// first, then each referrer. Which of them are signature artifacts is
/// decided by reading them ([`read_artifact`]).
pub fn artifacts(source: &dyn ArtifactSource, digest: &Digest) -> Vec<ArtifactAt> {
    let mut out = Vec::new();
    if let Some(sig) = source.cosign_signature(digest) {
        out.push(ArtifactAt {
            digest: sig,
            by_tag_of: Some(digest.clone()),
        });
    }
    for referrer in source.referrers(digest) {
        out.push(ArtifactAt {
            digest: referrer,
            by_tag_of: None,
        });
    }
    out
}

/// The signatures in one artifact manifest, layer by layer (at most
/// [`MAX_SIGNATURES`]), or `None` when it is not a signature artifact (an
/// SBOM, an attestation, anything else).
pub fn read_artifact(
    source: &dyn ArtifactSource,
    digest: &Digest,
) -> Option<(ArtifactKind, Vec<Signature>)> {
    let (_, bytes) = source.manifest(digest)?;
    let (kind, m) = parse_artifact(bytes)?;
    let layers = m
        .layers
        .iter()
        .take(MAX_SIGNATURES)
        .enumerate()
        .map(|(i, layer)| {
            // A layer repeated holds the same signature: read once, not
            // once per repetition (an artifact listing one large bundle
            // 32 times would read and hold it 32 times).
            if let Some(first) = m.layers[..i].iter().position(|l| same_layer(l, layer)) {
                return Signature::Malformed(format!("{REPEATED}{first}"));
            }
            match kind {
                ArtifactKind::Cosign => simple(source, layer),
                ArtifactKind::Bundle => bundle(source, layer),
                ArtifactKind::Notation => notation(source, layer),
            }
            .unwrap_or_else(|e| e)
        })
        .collect();
    Some((kind, layers))
}

fn same_layer(a: &Descriptor, b: &Descriptor) -> bool {
    a.digest == b.digest && a.media_type == b.media_type && a.annotations == b.annotations
}

fn layer_bytes(
    source: &dyn ArtifactSource,
    layer: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>, Signature> {
    if layer.size > limit {
        return Err(Signature::Malformed(format!(
            "{} bytes, more than the limit of {limit}",
            layer.size
        )));
    }
    let digest = Digest::parse(&layer.digest)
        .map_err(|e| Signature::Malformed(format!("layer digest: {e}")))?;
    source.blob(&digest, limit).map_err(Signature::Unavailable)
}

fn decode_b64(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_SIGNATURE_TEXT {
        return Err("signature text too long".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("signature is not base64: {e}"))
}

/// A layer's signature, or (as the error) why it is none.
type LayerResult = Result<Signature, Signature>;

fn simple(source: &dyn ArtifactSource, layer: &Descriptor) -> LayerResult {
    let text = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or_else(|| Signature::Malformed(format!("no {SIGNATURE_ANNOTATION} annotation")))?;
    let signature = decode_b64(text).map_err(Signature::Malformed)?;
    let payload = layer_bytes(source, layer, MAX_PAYLOAD_BYTES)?;
    Ok(Signature::Simple { payload, signature })
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "dsseEnvelope", default)]
    dsse: Option<Envelope>,
    #[serde(rename = "messageSignature", default)]
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

fn bundle(source: &dyn ArtifactSource, layer: &Descriptor) -> LayerResult {
    let bytes = layer_bytes(source, layer, MAX_BUNDLE_BYTES)?;
    parse_bundle(&bytes).map_err(Signature::Malformed)
}

fn parse_bundle(bytes: &[u8]) -> Result<Signature, String> {
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| format!("bundle: {e}"))?;
    let Some(env) = b.dsse else {
        return Err(if b.message_signature.is_some() {
            "bundle holds a messageSignature (a blob signature), not a DSSE image signature".into()
        } else {
            "bundle holds no dsseEnvelope".into()
        });
    };
    if env.signatures.is_empty() || env.signatures.len() > MAX_SIGNATURES {
        return Err(format!(
            "DSSE envelope with {} signatures",
            env.signatures.len()
        ));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .map_err(|e| format!("DSSE payload is not base64: {e}"))?;
    let signatures = env
        .signatures
        .iter()
        .map(|s| decode_b64(&s.sig))
        .collect::<Result<_, _>>()?;
    Ok(Signature::Dsse {
        payload_type: env.payload_type,
        payload,
        signatures,
    })
}

fn notation(source: &dyn ArtifactSource, layer: &Descriptor) -> LayerResult {
    let envelope = layer_bytes(source, layer, ir_notation::MAX_ENVELOPE_BYTES as u64)?;
    Ok(Signature::Notation {
        media_type: layer.media_type.clone(),
        envelope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_round_trip() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let tag = cosign_tag(&d);
        assert_eq!(tag, format!("sha256-{}.sig", "ab".repeat(32)));
        assert_eq!(cosign_tag_target(&tag), Some(d));
        assert_eq!(cosign_tag_target("latest"), None);
        assert_eq!(cosign_tag_target("sha256-zz.sig"), None);
    }

    #[test]
    fn artifact_kinds() {
        let cosign = format!(
            r#"{{"layers":[{{"mediaType":"{SIMPLE_SIGNING}","digest":"sha256:00","size":1}}]}}"#
        );
        assert_eq!(artifact_kind(cosign.as_bytes()), Some(ArtifactKind::Cosign));
        let layer = r#"{"mediaType":"application/jose+json","digest":"sha256:00","size":1}"#;
        let notation = format!(r#"{{"artifactType":"{NOTATION_ARTIFACT}","layers":[{layer}]}}"#);
        assert_eq!(
            artifact_kind(notation.as_bytes()),
            Some(ArtifactKind::Notation)
        );
        // Notation reads exactly one layer: none, or two, is no notation
        // signature.
        for layers in [String::new(), format!("{layer},{layer}")] {
            let notation =
                format!(r#"{{"artifactType":"{NOTATION_ARTIFACT}","layers":[{layers}]}}"#);
            assert_eq!(artifact_kind(notation.as_bytes()), None, "{layers}");
        }
        let bundle = format!(
            r#"{{"artifactType":"{}","layers":[]}}"#,
            SIGSTORE_BUNDLES[0]
        );
        assert_eq!(artifact_kind(bundle.as_bytes()), Some(ArtifactKind::Bundle));
        let mixed = format!(
            r#"{{"layers":[{{"mediaType":"{SIMPLE_SIGNING}","digest":"sha256:00"}},{{"mediaType":"x","digest":"sha256:00"}}]}}"#
        );
        assert_eq!(artifact_kind(mixed.as_bytes()), None);
        assert_eq!(artifact_kind(b"{}"), None);
    }
}
