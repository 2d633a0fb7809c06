//! Signature policy for ir-server and ir-client: which images may be
//! served (or pulled), decided offline from signatures that travel with the
//! images.
//!
//! * [`Policy`]: containers-policy.json(5), the file podman, skopeo, CRI-O
//!   and the confidential-containers agent read; `insecureAcceptAnything`,
//!   `reject` and `sigstoreSigned` with keys or keyless (Fulcio and Rekor,
//!   [`keyless`]) with every `signedIdentity`.
//! * [`signatures`]: where signatures are found (cosign's `sha256-<hex>.sig`
//!   tag, OCI 1.1 referrers: cosign, sigstore bundles, notation) through
//!   an [`ArtifactSource`].
//! * [`Trust::judge`]: the verdict for one image name and manifest, with
//!   notation's trust policy as a second, independent gate
//!   ([`ir_notation`]).
//! * [`TrustFiles`]: reading the policy files into a [`Trust`], for the
//!   server and the client alike.
//! * [`Memo`]: what was read and verified of each signature artifact,
//!   recalled by reloads, other policy scopes and (from a file) the next
//!   start instead of verifying again.
//! * `enforce` (feature `registry`): a loaded ir-oci registry minus what the
//!   policy refuses, with per-tag verdicts.
//!
//! The policy and its keys are operator input; everything found in the
//! served root (signature manifests, payloads, bundles, envelopes) is
//! untrusted and bounded.

pub mod budget;
pub mod docker_reference;
#[cfg(feature = "registry")]
pub mod enforce;
mod evidence;
pub mod identity;
pub mod key;
pub mod keyless;
pub mod memo;
pub mod payload;
pub mod policy;
pub mod reason;
pub mod signatures;
pub mod trust_files;
pub mod verdict;

pub use docker_reference::{DockerReference, ReferenceError};
pub use identity::SignedIdentity;
pub use key::{KeyError, PublicKey};
pub use memo::{Memo, MemoError};
pub use policy::{Policy, PolicyError, Requirement};
pub use reason::Reason;
pub use signatures::ArtifactSource;
pub use trust_files::{NotationFiles, TrustFiles, TrustFilesError};
pub use verdict::{Evidence, NotationTrust, Refusal, Subject, Trust, Verdict};
