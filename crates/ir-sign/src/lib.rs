//! An independent cosign / sigstore signer and verifier for OCI image
//! layouts, built on sigstore-rs (the `sigstore` crate), used by ir-server's
//! tests so that its own verifier is never checked only against itself.
//!
//! * [`keys`]: cosign key pairs (encrypted private key PEM as
//!   `cosign generate-key-pair` writes it, SPKI public key PEM).
//! * [`sign`]: signs a manifest of a layout in one of cosign's three forms
//!   ([`Mode`]): the `sha256-<hex>.sig` tag, an OCI 1.1 referrer, a sigstore
//!   bundle v0.3 referrer.
//! * [`verify`]: finds the signatures of a manifest in a layout, in all three
//!   forms, and checks them with sigstore-rs's key verification.
//!
//! Not a production signer: no transparency log, no keyless signing, keys
//! only. The layout is trusted as far as this tool goes (it is test
//! support), but every blob read is bounded and its digest checked.

pub mod dsse;
pub mod error;
pub mod keyless;
pub mod keys;
pub mod layout;
pub mod sign;
pub mod verify;

pub use error::Error;

/// Media type of cosign's simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation of a payload layer that carries the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact type of cosign's referrers-mode signature manifests.
pub const COSIGN_SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Media type of a sigstore bundle v0.3 (JSON), as artifact and layer type.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The tag annotation of index.json.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// How a signature is attached to the signed manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// cosign's default: a `sha256-<hex>.sig` tag whose layers are payloads.
    Tag,
    /// cosign's OCI 1.1 referrers mode: the same layer in an untagged
    /// manifest whose `subject` is the signed manifest.
    Referrers,
    /// A sigstore bundle v0.3 (DSSE envelope over an in-toto statement) as
    /// an OCI 1.1 referrer, exactly as cosign v3's `cosign sign` writes it
    /// (the statement names no image).
    Bundle,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Tag => "tag",
            Mode::Referrers => "referrers",
            Mode::Bundle => "bundle",
        })
    }
}

/// cosign's tag for the signatures of `digest` (`sha256:<hex>` → `sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}
