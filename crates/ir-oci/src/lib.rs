//! # ir-oci
//!
//! The OCI side of ir-server, with no HTTP and no async runtime in it.
//!
//! The model:
//!
//! - [`digest`]: validated digests and streaming hashers;
//! - [`digest_map`]: the frozen digest-keyed maps of the model;
//! - [`name`]: repository names, tags and references;
//! - [`media_type`]: the media types, and which are manifests, indexes or
//!   blobs;
//! - [`json`]: JSON for trusted inputs, refusing repeated keys;
//! - [`model`]: the verified registry that a load produces;
//! - [`rule`]: the rules a layout can break, as data;
//! - [`report`]: the human summary of a load.
//!
//! The `loader` (the default feature) reads a root of OCI image layouts
//! and verifies every reachable byte, producing a [`model::Registry`]. Its
//! internals live under it: the phases, `loader::fsx` (opening files
//! unchanged), `loader::mapped` (hashing through memory maps once the
//! program opted into its process-wide `SIGBUS` handler),
//! `loader::listing`, `loader::prefetch` (batched `io_uring` read-ahead)
//! and `loader::progress`. Without the feature the crate is only the
//! model, with no io_uring, no memory maps and no signal handling.
#![deny(missing_docs)]

pub mod digest;
pub mod digest_map;
pub mod json;
pub mod media_type;
pub mod model;
pub mod name;
pub mod report;
pub mod rule;

pub use digest::{Algorithm, Digest};
pub use digest_map::DigestMap;
pub use model::{Application, Blob, FileIdentity, Manifest, Referring, Registry};
pub use name::{Reference, RepoName, Tag, REF_NAME};
pub use rule::{Rejection, Rule};

#[cfg(feature = "loader")]
pub mod loader;
#[cfg(feature = "loader")]
pub use loader::{
    load, load_incremental, open_unchanged, LoadError, LoadOptions, LoadProgress, ProgressSnapshot,
    ReadAhead,
};
