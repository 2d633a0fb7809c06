//! Why an application (or a part of the root) was rejected: errors as data.
//!
//! Every rejection names the application, the file (relative to the
//! application) and the rule broken, so the log line, the `--check` report
//! and the tests all say the same thing.

use std::fmt;
use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::name::NameError;

/// A rule of the layout or image spec that content broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// The directory name is not a valid repository name.
    #[error("invalid application name: {0}")]
    InvalidName(NameError),
    /// A path component is a symbolic link; layouts must be self-contained.
    #[error("is a symbolic link (not followed)")]
    Symlink,
    /// Not a regular file (a directory, FIFO, socket or device).
    #[error("is not a regular file (it is a {0})")]
    NotRegularFile(&'static str),
    /// Not a directory where one is required.
    #[error("is not a directory")]
    NotADirectory,
    /// A required file is absent.
    #[error("is missing")]
    Missing,
    /// An I/O error other than absence.
    #[error("cannot be read: {0}")]
    Io(String),
    /// A JSON document is larger than the loader accepts.
    #[error("is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// Actual size.
        size: u64,
        /// Limit in force.
        limit: u64,
    },
    /// A document does not parse as what it must be.
    #[error("is not a valid {what}: {detail}")]
    InvalidJson {
        /// What the document should have been.
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// `oci-layout` has a version other than 1.0.0.
    #[error("imageLayoutVersion is {0:?}, expected \"1.0.0\"")]
    LayoutVersion(String),
    /// `schemaVersion` is not 2.
    #[error("schemaVersion is {0}, expected 2")]
    SchemaVersion(u32),
    /// A document's own mediaType disagrees with the descriptor pointing at it.
    #[error("mediaType {found:?} disagrees with the descriptor's {expected:?}")]
    MediaTypeMismatch {
        /// From the descriptor.
        expected: String,
        /// From the document.
        found: String,
    },
    /// A descriptor's media type is not a syntactically valid media type.
    #[error("descriptor media type {0:?} is not a valid media type")]
    InvalidMediaType(String),
    /// A manifest slot points at something that is not a manifest or index.
    #[error("descriptor in an index has media type {0:?}, which is not a manifest or index type")]
    NotAManifest(String),
    /// A descriptor's digest is malformed or uses an unsupported algorithm.
    #[error("descriptor digest invalid: {0}")]
    Digest(DigestError),
    /// A descriptor's size is beyond what JSON numbers represent exactly.
    #[error("descriptor size {0} exceeds 2^53-1")]
    SizeOutOfRange(u64),
    /// A blob's size differs from its descriptor.
    #[error("size is {actual} bytes but the descriptor says {expected}")]
    SizeMismatch {
        /// From the descriptor.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// Two descriptors give the same digest different sizes.
    #[error("descriptors disagree on the size of {digest}: {first} and {second}")]
    ConflictingSizes {
        /// The digest.
        digest: Digest,
        /// One size.
        first: u64,
        /// Another.
        second: u64,
    },
    /// A blob's content does not hash to its digest.
    #[error("content hashes to {actual}, not {expected}")]
    DigestMismatch {
        /// From the descriptor.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// Indexes nest deeper than the bound.
    #[error("indexes nest deeper than {0} levels")]
    TooDeep(usize),
    /// More descriptors than the bound.
    #[error("more than {0} descriptors are reachable")]
    TooManyDescriptors(usize),
    /// An `org.opencontainers.image.ref.name` is not a valid tag.
    #[error("invalid tag annotation: {0}")]
    InvalidTag(NameError),
    /// Two index.json descriptors carry the same tag.
    #[error("tag {0:?} is given to more than one descriptor")]
    DuplicateTag(String),
    /// The file changed while it was being verified.
    #[error("changed while it was being verified")]
    ChangedDuringVerification,
}

/// One rejected application (or directory under the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The application's path relative to the root, `/`-separated.
    pub application: String,
    /// The file inside the application that broke the rule, relative to the
    /// application directory (empty for the directory itself).
    pub file: PathBuf,
    /// The rule broken.
    pub rule: Rule,
}

impl Rejection {
    /// The rejection of `application` (relative to the root) because
    /// `file` (relative to the application; empty for the directory
    /// itself) broke `rule`.
    pub fn new(application: impl Into<String>, file: impl Into<PathBuf>, rule: Rule) -> Self {
        Rejection {
            application: application.into(),
            file: file.into(),
            rule,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.as_os_str().is_empty() {
            write!(
                f,
                "application {:?} rejected: directory {}",
                self.application, self.rule
            )
        } else {
            write!(
                f,
                "application {:?} rejected: {} {}",
                self.application,
                self.file.display(),
                self.rule
            )
        }
    }
}

impl Rule {
    /// A stable, machine-readable identifier of the rule (`snake_case`),
    /// for reports that programs read.
    pub fn code(&self) -> &'static str {
        match self {
            Rule::InvalidName(_) => "invalid_name",
            Rule::Symlink => "symlink",
            Rule::NotRegularFile(_) => "not_regular_file",
            Rule::NotADirectory => "not_a_directory",
            Rule::Missing => "missing",
            Rule::Io(_) => "io",
            Rule::TooLarge { .. } => "too_large",
            Rule::InvalidJson { .. } => "invalid_json",
            Rule::LayoutVersion(_) => "layout_version",
            Rule::SchemaVersion(_) => "schema_version",
            Rule::MediaTypeMismatch { .. } => "media_type_mismatch",
            Rule::InvalidMediaType(_) => "invalid_media_type",
            Rule::NotAManifest(_) => "not_a_manifest",
            Rule::Digest(_) => "digest",
            Rule::SizeOutOfRange(_) => "size_out_of_range",
            Rule::SizeMismatch { .. } => "size_mismatch",
            Rule::ConflictingSizes { .. } => "conflicting_sizes",
            Rule::DigestMismatch { .. } => "digest_mismatch",
            Rule::TooDeep(_) => "too_deep",
            Rule::TooManyDescriptors(_) => "too_many_descriptors",
            Rule::InvalidTag(_) => "invalid_tag",
            Rule::DuplicateTag(_) => "duplicate_tag",
            Rule::ChangedDuringVerification => "changed_during_verification",
        }
    }
}
