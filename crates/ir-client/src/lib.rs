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
//! On every transport a registry's `401` challenge is answered
//! ([`auth`]): a token from its realm or Basic credentials, from the
//! Docker/containers auth files and credential helpers
//! ([`HttpOptions::auth`]).
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

pub mod auth;
mod browse;
pub mod emulated;
mod error;
mod http;
pub mod layout;
pub mod location;
pub mod platform_filter;
pub mod progress;
mod pull;
pub mod ratls;
#[cfg(feature = "rsi")]
pub mod rsi;
pub mod serve;
pub mod signatures;
pub mod sync;

pub use auth::AuthOptions;
pub use browse::{Blob, RawManifest};
pub use http::{client_identity, HttpOptions, Transport};
pub use ir_oci::Digest;
pub use location::{ImageLocation, RegistryUrl, Scheme};
pub use platform_filter::Platform;
pub use progress::Progress;
pub use pull::{
    Client, ClientOptions, Content, Fetched, PullReport, Resolved, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_MANIFEST,
};
pub use ratls::{TokenRequest, TokenSource};

pub use error::{
    AuthError, Error, LayoutError, ManifestError, ReferenceError, SyncError, TlsError, TokenError,
};
