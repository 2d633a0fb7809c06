//! What one line of the journal holds.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `prev` of the very first line of a journal.
pub(crate) const GENESIS: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Who received a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Identity {
    /// An attested realm (RA-TLS): its measurements, in hex.
    Realm {
        /// The realm initial measurement.
        rim: String,
        /// The four realm extensible measurements.
        rems: [String; 4],
        /// The realm personalization value.
        personalization: String,
        /// SHA-256 of the platform's instance ID: names the machine
        /// without publishing its identifier.
        platform_instance_id_sha256: String,
    },
    /// A user authenticated by password or token.
    User {
        /// The user name or token subject.
        name: String,
    },
    /// A TLS client certificate.
    Certificate {
        /// Its subject.
        subject: String,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Realm {
                rim,
                platform_instance_id_sha256,
                ..
            } => write!(f, "realm rim={rim} platform={platform_instance_id_sha256}"),
            Self::User { name } => write!(f, "user {name}"),
            Self::Certificate { subject } => write!(f, "certificate {subject}"),
        }
    }
}

/// One manifest served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The application (repository name).
    pub application: String,
    /// The tag asked for; `None` when asked by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest's digest (`sha256:...`).
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Who received it (shared with the connection that knows it).
    pub identity: Arc<Identity>,
    /// The signature-policy scope the identity pulls under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_scope: Option<Arc<str>>,
    /// SHA-256 of the signature policy in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<Arc<str>>,
    /// SHA-256 of the RA-TLS reference values in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_values_digest: Option<Arc<str>>,
}

/// The kind of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// The writer (re)started: the chain goes on from the last line.
    Start,
    /// Who receives, under which policy: written once per file for each
    /// one, then named by its `seq` from the deliveries that follow.
    Context,
    /// A manifest was served.
    Delivery,
    /// A signature over the chain up to this line.
    Checkpoint,
}

/// The part of a delivery that repeats from one record to the next: a
/// `context` line carries it once per file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Context<'a> {
    pub identity: Cow<'a, Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_scope: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_values_digest: Option<Cow<'a, str>>,
}

impl<'a> Context<'a> {
    pub fn of(delivery: &'a Delivery) -> Self {
        Self {
            identity: Cow::Borrowed(&delivery.identity),
            policy_scope: delivery.policy_scope.as_deref().map(Cow::Borrowed),
            policy_digest: delivery.policy_digest.as_deref().map(Cow::Borrowed),
            reference_values_digest: delivery
                .reference_values_digest
                .as_deref()
                .map(Cow::Borrowed),
        }
    }
}

/// What a delivery line holds: the manifest, and the `seq` of the
/// `context` line (in the same file) that says who received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record<'a> {
    pub application: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Cow<'a, str>>,
    pub digest: Cow<'a, str>,
    pub media_type: Cow<'a, str>,
    pub context: u64,
}

/// One line, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Line<'a> {
    /// Position in the whole journal, from 1, without gaps.
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// RFC 3339, UTC.
    pub time: Cow<'a, str>,
    /// `sha256:` of the previous line's bytes (without its newline).
    pub prev: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Record<'a>>,
    /// `start`: the server's name and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Cow<'a, str>>,
    /// `checkpoint`: SHA-256 of the signing key's SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Cow<'a, str>>,
    /// `checkpoint`: base64url ES256 signature of [`checkpoint_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The SHA-256 of a line's bytes.
pub(crate) fn line_digest(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// `sha256:<hex>` of a line's bytes.
pub(crate) fn line_hash(bytes: &[u8]) -> String {
    hash_text(&line_digest(bytes))
}

/// `sha256:<hex>` of a digest.
pub(crate) fn hash_text(digest: &[u8; 32]) -> String {
    let mut text = String::with_capacity(71);
    set_hash_text(&mut text, digest);
    text
}

/// Writes `sha256:<hex>` of a digest into `text`, reusing its buffer.
pub(crate) fn set_hash_text(text: &mut String, digest: &[u8; 32]) {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest, &mut hex).expect("64 hex digits for 32 bytes");
    text.clear();
    text.push_str("sha256:");
    text.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
}

/// What a checkpoint signs: its position, time and the hash of the line
/// before it, which through `prev` commits to every earlier line.
pub(crate) fn checkpoint_message(seq: u64, time: &str, prev: &str) -> Vec<u8> {
    format!("ir-receipts checkpoint v1\n{seq}\n{time}\n{prev}").into_bytes()
}

/// Now, as RFC 3339 UTC with seconds.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `at` as RFC 3339 UTC with seconds.
pub(crate) fn rfc3339(at: std::time::SystemTime) -> String {
    ir_jose::rfc3339_at(at)
}
