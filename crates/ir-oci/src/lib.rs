//! # ir-oci
//!
//! The OCI side of ir-server, with no HTTP and no async runtime in it:
//!
//! - [`digest`]: validated digests and streaming hashers;
//! - [`digest_map`]: the frozen digest-keyed maps of the model;
//! - [`name`]: repository names, tags and references;
//! - [`media_type`]: which media types are manifests, indexes or blobs;
//! - [`json`]: JSON for trusted inputs, refusing repeated keys;
//! - [`loader`]: reads a root of OCI image layouts and verifies every
//!   reachable byte, producing a [`model::Registry`];
//! - [`mapped`]: hashing large files through memory maps, a bus error
//!   (a file truncated meanwhile) becoming an ordinary failure, once the
//!   program opted into its process-wide `SIGBUS` handler
//!   ([`mapped::install_sigbus_handler`]; otherwise files are read);
//! - [`listing`]: one listing of an application's `blobs/`, shared by
//!   the read-ahead and the orphan check;
//! - [`prefetch`]: batched read-ahead of an application's small files
//!   when the page cache is cold;
//! - [`rule`]: the rules a layout can break, as data;
//! - [`report`]: the human summary of a load.
//!
//! Everything from [`loader`] down needs the default `loader` feature;
//! without it the crate is only the model types (digests, names,
//! references, media types, rules), with no io_uring, no memory maps and no
//! signal handling. [`mapped`] hashes through memory maps only once the
//! program opted into its process-wide `SIGBUS` handler.
#![deny(missing_docs)]

pub mod digest;
pub mod digest_map;
#[cfg(feature = "loader")]
mod fsx;
#[cfg(feature = "loader")]
pub use fsx::open_unchanged;
#[cfg(feature = "loader")]
pub mod listing;
#[cfg(feature = "loader")]
pub mod loader;
#[cfg(feature = "loader")]
pub mod mapped;
pub mod json;
pub mod media_type;
#[cfg(feature = "loader")]
pub mod model;
pub mod name;
#[cfg(feature = "loader")]
pub mod prefetch;
#[cfg(feature = "loader")]
pub mod progress;
#[cfg(feature = "loader")]
pub mod report;
pub mod rule;

pub use digest::{Algorithm, Digest};
pub use digest_map::DigestMap;
#[cfg(feature = "loader")]
pub use loader::{load, load_incremental, LoadError, LoadOptions, ReadAhead};
#[cfg(feature = "loader")]
pub use model::{Application, Blob, FileIdentity, Manifest, Referring, Registry};
pub use name::{Reference, RepoName, Tag};
#[cfg(feature = "loader")]
pub use progress::{LoadProgress, ProgressSnapshot};
pub use rule::{Rejection, Rule};
