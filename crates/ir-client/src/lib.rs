//! # ir-client
//!
//! Pulls an image (manifest or index, config, layers) from an OCI registry
//! into an OCI image layout directory, verifying the digest and size of
//! every manifest and blob while it streams: a blob is written to a
//! temporary file, checked, and only then renamed into `blobs/<alg>/<hex>`;
//! `index.json` is updated last, atomically.
//!
//! Three transports, chosen by the reference's scheme:
//!
//! - `http://`: plain HTTP;
//! - `https://`: TLS, server checked against a PEM CA file (or the
//!   platform's roots when none is given);
//! - `ra-tls://`: TLS whose client certificate carries an Arm CCA token
//!   bound to the handshake ([`ratls`]), from a [`ratls::TokenSource`]: a
//!   fixed token file, an emulated realm (NOT secure, for testing and
//!   demos), or a real realm through `/dev/rsi` (feature `rsi`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ir_client::Error> {
//! use ir_client::{Client, Transport};
//! let client = Client::new(Transport::Plain)?;
//! let report = client.pull("http://127.0.0.1:5000/app:latest", "out".as_ref()).await?;
//! println!("{} ({} blobs, {} bytes)", report.digest, report.blobs, report.bytes);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod browse;
pub mod emulated;
mod http;
pub mod layout;
pub mod platform;
pub mod progress;
mod pull;
pub mod ratls;
pub mod reference;
#[cfg(feature = "rsi")]
pub mod rsi;
pub mod signatures;

pub use browse::{Blob, RawManifest};
pub use http::{HttpOptions, Transport};
pub use ir_oci::Digest;
pub use platform::Platform;
pub use progress::Progress;
pub use pull::{
    Client, ClientOptions, Content, Fetched, PullReport, Resolved, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_MANIFEST,
};
pub use ratls::{TokenRequest, TokenSource};
pub use reference::{Reference, RegistryUrl, Scheme};

/// Why a pull failed. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse, or does not fit the transport.
    #[error("{0}")]
    Reference(String),
    /// The request could not be sent or its answer not read.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The whole cause chain, on one line.
        reason: String,
    },
    /// The RA-TLS handshake failed because no attested certificate could
    /// be made (the token source refused or failed).
    #[error("{url}: RA-TLS attestation: {reason}")]
    Attestation {
        /// The URL requested.
        url: String,
        /// The step that failed, and the cause chain, on one line.
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: HTTP {status}{message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: u16,
        /// The OCI error code and message, if any (with a leading `: `).
        message: String,
    },
    /// Content does not match its digest.
    #[error("{what}: digest mismatch: expected {expected}, content has {found}")]
    DigestMismatch {
        /// What was checked (a blob, a reference's manifest).
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        found: String,
    },
    /// Content does not have the size its descriptor says.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    Size {
        /// The blob.
        digest: String,
        /// The descriptor's size.
        expected: u64,
        /// What arrived.
        found: String,
    },
    /// A manifest or index is malformed or unsupported.
    #[error("manifest: {0}")]
    Manifest(String),
    /// No manifest of the index is for the wanted platform.
    #[error("index {index} has no manifest for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The index's digest.
        index: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// The output layout is unusable.
    #[error("layout: {0}")]
    Layout(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(String),
    /// The token source could not be set up.
    #[error("RA-TLS token: {0}")]
    Token(String),
    /// The signature policy refuses the image (nothing was written).
    #[error("{image}: refused by the signature policy: {reason}")]
    Refused {
        /// The image as the policy named it (`host/name:tag`).
        image: String,
        /// The requirement, the reason code and the detail.
        reason: String,
    },
    /// The signature policy could not be read.
    #[error("{0}")]
    Policy(String),
}

impl Error {
    /// The process exit status for this error (documented in
    /// docs/client.md): 2 usage, 3 registry refusal, 4 verification,
    /// 5 attestation, 6 signature policy refusal, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reference(_) | Error::Policy(_) => 2,
            Error::Refused { .. } => 6,
            Error::Status { .. } => 3,
            Error::DigestMismatch { .. }
            | Error::Size { .. }
            | Error::Manifest(_)
            | Error::NoPlatform { .. } => 4,
            Error::Attestation { .. } | Error::Token(_) => 5,
            Error::Transport { .. } | Error::Layout(_) | Error::Io { .. } | Error::Tls(_) => 1,
        }
    }
}
