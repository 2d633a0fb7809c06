//! What one line of the journal holds.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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

/// One manifest served, borrowed from whoever holds its parts: what the
/// sink queues and the journal writes, without copying into a
/// [`Delivery`] first.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRef<'a> {
    /// The application (repository name).
    pub application: &'a str,
    /// The tag asked for; `None` when asked by digest.
    pub tag: Option<&'a str>,
    /// The manifest's digest (`sha256:...`).
    pub digest: &'a str,
    /// The manifest's media type.
    pub media_type: &'a str,
    /// Who received it.
    pub identity: &'a Arc<Identity>,
    /// The signature-policy scope the identity pulls under, if any.
    pub policy_scope: Option<&'a Arc<str>>,
    /// SHA-256 of the signature policy in force, if any.
    pub policy_digest: Option<&'a Arc<str>>,
    /// SHA-256 of the RA-TLS reference values in force, if any.
    pub reference_values_digest: Option<&'a Arc<str>>,
}

impl<'a> From<&'a Delivery> for DeliveryRef<'a> {
    fn from(d: &'a Delivery) -> Self {
        Self {
            application: &d.application,
            tag: d.tag.as_deref(),
            digest: &d.digest,
            media_type: &d.media_type,
            identity: &d.identity,
            policy_scope: d.policy_scope.as_ref(),
            policy_digest: d.policy_digest.as_ref(),
            reference_values_digest: d.reference_values_digest.as_ref(),
        }
    }
}

/// Who received a delivery and under which policy, owned: what a queued
/// record carries and what a written `context` line says.
#[derive(Debug)]
pub(crate) struct Recipient {
    pub identity: Arc<Identity>,
    pub policy_scope: Option<Arc<str>>,
    pub policy_digest: Option<Arc<str>>,
    pub reference_values_digest: Option<Arc<str>>,
}

impl Recipient {
    /// The recipient of `d` (its `Arc`s shared, not copied).
    pub fn of(d: &DeliveryRef<'_>) -> Self {
        Self {
            identity: d.identity.clone(),
            policy_scope: d.policy_scope.cloned(),
            policy_digest: d.policy_digest.cloned(),
            reference_values_digest: d.reference_values_digest.cloned(),
        }
    }

    /// Whether `d` went to this recipient under the same policy.
    pub fn received(&self, d: &DeliveryRef<'_>) -> bool {
        fn same<T: ?Sized + PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
            Arc::ptr_eq(a, b) || **a == **b
        }
        fn same_opt(a: &Option<Arc<str>>, b: Option<&Arc<str>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.identity, d.identity)
            && same_opt(&self.policy_scope, d.policy_scope)
            && same_opt(&self.policy_digest, d.policy_digest)
            && same_opt(&self.reference_values_digest, d.reference_values_digest)
    }
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
    pub fn of(delivery: &DeliveryRef<'a>) -> Self {
        Self {
            identity: Cow::Borrowed(&**delivery.identity),
            policy_scope: delivery.policy_scope.map(|s| Cow::Borrowed(&**s)),
            policy_digest: delivery.policy_digest.map(|s| Cow::Borrowed(&**s)),
            reference_values_digest: delivery
                .reference_values_digest
                .map(|s| Cow::Borrowed(&**s)),
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
    /// `checkpoint`: `true` on the one the server writes as it stops
    /// (signed with the rest): a journal that does not end in one is
    /// still being written, was stopped abruptly, or was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<bool>,
}

/// Appends a `delivery` line to `out`, byte for byte what serde_json
/// makes of the same [`Line`] (a test holds them equal). Written by hand
/// because it runs once per manifest served, and serde's generic path
/// was a third of the writer's time.
pub(crate) fn encode_delivery(
    out: &mut Vec<u8>,
    seq: u64,
    time: &str,
    prev: &ChainHash,
    delivery: &DeliveryRef<'_>,
    context: u64,
) {
    let mut number = itoa_buffer();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(format_u64(&mut number, seq));
    out.extend_from_slice(b",\"type\":\"delivery\",\"time\":");
    json_plain(out, time.as_bytes());
    out.extend_from_slice(b",\"prev\":");
    json_plain(out, prev.as_bytes());
    out.extend_from_slice(b",\"delivery\":{\"application\":");
    json_string(out, delivery.application);
    if let Some(tag) = delivery.tag {
        out.extend_from_slice(b",\"tag\":");
        json_string(out, tag);
    }
    out.extend_from_slice(b",\"digest\":");
    json_string(out, delivery.digest);
    out.extend_from_slice(b",\"media_type\":");
    json_string(out, delivery.media_type);
    out.extend_from_slice(b",\"context\":");
    out.extend_from_slice(format_u64(&mut number, context));
    out.extend_from_slice(b"}}");
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, in the tail of `buffer`.
fn format_u64(buffer: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// `text` as a JSON string, escaped as serde_json escapes it: `"`, `\\`,
/// the five short control escapes, other control bytes as `\u00XX`.
fn json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    // The common case: nothing to escape, checked without a branch per
    // byte (the compiler vectorizes it), then copied at once.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether JSON needs `b` escaped in a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Text this crate made (times, `sha256:` hashes), which never needs an
/// escape, as a JSON string.
fn json_plain(out: &mut Vec<u8>, text: &[u8]) {
    debug_assert!(!text.iter().any(|&b| needs_escape(b)));
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// The SHA-256 of a line's bytes.
pub(crate) fn line_digest(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// `sha256:<hex>` of a line's bytes.
pub(crate) fn line_hash(bytes: &[u8]) -> String {
    ChainHash::of(&line_digest(bytes)).as_str().to_string()
}

/// `sha256:<hex>` of a line, as the next line's `prev` holds it: a fixed
/// array the writer overwrites per line, with no allocation or UTF-8 check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHash([u8; 71]);

impl ChainHash {
    /// The text of `digest`.
    pub fn of(digest: &[u8; 32]) -> Self {
        let mut text = [0u8; 71];
        text[..7].copy_from_slice(b"sha256:");
        for (pair, &b) in text[7..].chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        Self(text)
    }

    /// `prev` of the very first line of a journal: `sha256:` and 64 zeros.
    pub fn genesis() -> Self {
        Self::of(&[0; 32])
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("sha256: and hex digits are ASCII")
    }
}

/// What a checkpoint signs: its position, time and the hash of the line
/// before it, which through `prev` commits to every earlier line; and
/// whether it closes the journal (a closing one cannot pass for another
/// or the other way round).
pub(crate) fn checkpoint_message(seq: u64, time: &str, prev: &str, closing: bool) -> Vec<u8> {
    let mut message = format!("ir-receipts checkpoint v1\n{seq}\n{time}\n{prev}");
    if closing {
        message.push_str("\nclosing");
    }
    message.into_bytes()
}

/// Now, as RFC 3339 UTC with seconds.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `at` as RFC 3339 UTC with seconds.
pub(crate) fn rfc3339(at: std::time::SystemTime) -> String {
    ir_jose::rfc3339_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_line(seq: u64, time: &str, prev: &str, d: &DeliveryRef<'_>, context: u64) -> Vec<u8> {
        serde_json::to_vec(&Line {
            seq,
            kind: Kind::Delivery,
            time: time.into(),
            prev: prev.into(),
            context: None,
            delivery: Some(Record {
                application: d.application.into(),
                tag: d.tag.map(Into::into),
                digest: d.digest.into(),
                media_type: d.media_type.into(),
                context,
            }),
            server: None,
            key_id: None,
            signature: None,
            closing: None,
        })
        .unwrap()
    }

    #[test]
    fn a_chain_hash_is_sha256_and_lowercase_hex() {
        use sha2::Digest as _;
        assert_eq!(
            ChainHash::genesis().as_str(),
            format!("sha256:{}", "0".repeat(64))
        );
        for line in [&b""[..], b"{}", &[0xff; 1000]] {
            let expected = format!("sha256:{}", hex::encode(sha2::Sha256::digest(line)));
            assert_eq!(line_hash(line), expected);
            assert_eq!(
                ChainHash::of(&line_digest(line)).as_bytes(),
                expected.as_bytes()
            );
        }
    }

    #[test]
    fn the_hand_written_delivery_line_is_what_serde_json_writes() {
        let identity = Arc::new(Identity::User { name: "u".into() });
        // Every byte that may need escaping, non-ASCII, and the edges.
        let mut texts: Vec<String> = (0u8..0x80).map(|b| format!("a{}z", b as char)).collect();
        texts.extend(
            [
                "",
                "\"\\",
                "é∂𝄞",
                "\u{7f}\u{80}",
                "x\u{0}\u{1f}y",
                "sha256:5e5e",
            ]
            .map(String::from),
        );
        let numbers = [0, 1, 9, 10, 99, 1000, u64::MAX - 1, u64::MAX];
        for (i, text) in texts.iter().enumerate() {
            let d = DeliveryRef {
                application: text,
                tag: (i % 2 == 0).then_some(text.as_str()),
                digest: text,
                media_type: text,
                identity: &identity,
                policy_scope: None,
                policy_digest: None,
                reference_values_digest: None,
            };
            let (seq, context) = (numbers[i % numbers.len()], numbers[(i + 3) % numbers.len()]);
            let mut ours = Vec::new();
            let (time, prev) = ("2026-12-07T13:30:00Z", ChainHash::genesis());
            encode_delivery(&mut ours, seq, time, &prev, &d, context);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde_line(seq, time, prev.as_str(), &d, context)),
                "{text:?}"
            );
        }
    }
}
