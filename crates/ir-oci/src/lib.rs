//! # ir-oci
//!
//! The OCI side of ir-server, with no HTTP and no async runtime in it:
//!
//! - [`digest`]: validated digests and streaming hashers;
//! - [`digest_map`]: the frozen digest-keyed maps of the model;
//! - [`name`]: repository names, tags and references;
//! - [`media_type`]: which media types are manifests, indexes or blobs;
//! - [`loader`]: reads a root of OCI image layouts and verifies every
//!   reachable byte, producing a [`model::Registry`];
//! - [`mapped`]: hashing large files through memory maps, a bus error
//!   (a file truncated meanwhile) becoming an ordinary failure;
//! - [`listing`]: one listing of an application's `blobs/`, shared by
//!   the read-ahead and the orphan check;
//! - [`prefetch`]: batched read-ahead of an application's small files
//!   when the page cache is cold;
//! - [`rule`]: the rules a layout can break, as data;
//! - [`report`]: the human summary of a load.
#![deny(missing_docs)]

pub mod digest;
pub mod digest_map;
mod fsx;
pub use fsx::open_unchanged;
pub mod listing;
pub mod loader;
pub mod mapped;
pub mod media_type;
pub mod model;
pub mod name;
pub mod prefetch;
pub mod progress;
pub mod report;
pub mod rule;

pub use digest::{Algorithm, Digest};
pub use digest_map::DigestMap;
pub use loader::{load, load_incremental, LoadError, LoadOptions, ReadAhead};
pub use model::{Application, Blob, FileIdentity, Manifest, Referring, Registry};
pub use name::{Reference, RepoName, Tag};
pub use progress::{LoadProgress, ProgressSnapshot};
pub use rule::{Rejection, Rule};
