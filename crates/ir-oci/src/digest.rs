//! Content digests (`<algorithm>:<hex>`), parsed once and validated.
//!
//! Only the two algorithms that the image spec registers are accepted,
//! with lowercase hex of exactly the algorithm's length. Everything else is
//! refused with an error that names what was wrong, so that layout
//! rejections and HTTP `DIGEST_INVALID` answers can say why.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A registered digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex characters.
    Sha256,
    /// SHA-512, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in digests and in `blobs/<alg>/`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the encoded (hex) part.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Every supported algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// A fresh streaming hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `:` separating algorithm and encoded part.
    #[error("digest {0:?} has no ':' between algorithm and hex")]
    MissingSeparator(String),
    /// The algorithm is well formed but not one we verify.
    #[error("digest algorithm {0:?} is not supported (only sha256 and sha512)")]
    UnsupportedAlgorithm(String),
    /// Wrong number of hex characters.
    #[error("{algorithm} digest must have {expected} hex characters, found {found}")]
    WrongLength {
        /// The digest's algorithm.
        algorithm: Algorithm,
        /// Characters required.
        expected: usize,
        /// Characters present.
        found: usize,
    },
    /// A character outside `[0-9a-f]`.
    #[error("{algorithm} digest must be lowercase hex, found {found:?}")]
    NotLowercaseHex {
        /// The digest's algorithm.
        algorithm: Algorithm,
        /// The first offending character.
        found: char,
    },
}

/// A validated digest such as `sha256:e3b0c442…`.
///
/// Held as the raw hash bytes, not as text: the model keeps one per
/// manifest, blob, tag and referrer, and a SHA-256 digest is then 40 bytes
/// inline with no heap allocation (the text form was 24 bytes plus an
/// 80-byte allocation). SHA-512, which is rare, is boxed to keep the common
/// case small. The canonical text is rebuilt on the stack when needed
/// ([`Digest::text`]); the ordering is that of the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Raw);

// Variant order matters: it makes the derived ordering equal to the
// ordering of the canonical strings ("sha256:…" < "sha512:…", and lowercase
// hex orders like the bytes it encodes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Raw {
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

/// Longest canonical digest text: `sha512:` and 128 hex characters.
const MAX_TEXT: usize = 7 + 128;

/// The text of a digest (or of its hex part), formatted on the stack.
/// Dereferences to `str`.
#[derive(Clone, Copy)]
pub struct DigestText {
    buf: [u8; MAX_TEXT],
    len: u8,
}

impl DigestText {
    fn new(prefix: &str, bytes: &[u8]) -> Self {
        let mut buf = [0u8; MAX_TEXT];
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        let hex_len = bytes.len() * 2;
        hex::encode_to_slice(bytes, &mut buf[prefix.len()..prefix.len() + hex_len])
            .expect("buffer sized for the longest digest");
        DigestText {
            buf,
            len: (prefix.len() + hex_len) as u8,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII (an algorithm name, ':' and hex) is ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("ASCII")
    }
}

impl std::ops::Deref for DigestText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for DigestText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DigestText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Digest {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator(truncate(s)))?;
        Digest::parse_parts(alg, hex)
    }

    /// Parses and validates a digest given as its algorithm name and its
    /// hex apart (as in cosign's `sha256-<hex>.sig` tags), without joining
    /// them first.
    pub fn parse_parts(alg: &str, hex: &str) -> Result<Self, DigestError> {
        let algorithm = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncate(alg)))?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.chars().count(),
            });
        }
        // Bytes, not chars: the common case is all ASCII, and any non-ASCII
        // byte fails the test anyway (the char is found for the message).
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let found = hex
                .chars()
                .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
                .unwrap_or('?');
            return Err(DigestError::NotLowercaseHex { algorithm, found });
        }
        // Validated above: exactly the right length of lowercase hex.
        let raw = match algorithm {
            Algorithm::Sha256 => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(hex, &mut b).expect("validated hex");
                Raw::Sha256(b)
            }
            Algorithm::Sha512 => {
                let mut b = Box::new([0u8; 64]);
                hex::decode_to_slice(hex, &mut b[..]).expect("validated hex");
                Raw::Sha512(b)
            }
        };
        Ok(Digest(raw))
    }

    /// Digest of `data` with `algorithm`.
    pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Raw::Sha256(_) => Algorithm::Sha256,
            Raw::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The raw hash bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.0 {
            Raw::Sha256(b) => b,
            Raw::Sha512(b) => &b[..],
        }
    }

    /// The canonical `<alg>:<hex>` text.
    pub fn text(&self) -> DigestText {
        let prefix = match self.algorithm() {
            Algorithm::Sha256 => "sha256:",
            Algorithm::Sha512 => "sha512:",
        };
        DigestText::new(prefix, self.bytes())
    }

    /// The hex part.
    pub fn hex(&self) -> DigestText {
        DigestText::new("", self.bytes())
    }

    /// The blob's path inside a layout: `blobs/<alg>/<hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/{}/{}", self.algorithm(), self.hex())
    }
}

// Error messages quote untrusted input; keep them one short line.
fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text())
    }
}

/// A streaming hasher for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Finishes and returns the digest.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest(Raw::Sha256(h.finalize().into())),
            Hasher::Sha512(h) => Digest(Raw::Sha512(Box::new(h.finalize().into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_sha256_and_sha512() {
        let d = Digest::parse(EMPTY256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(d.blob_path(), format!("blobs/sha256/{}", d.hex()));
        let s512 = format!("sha512:{}", "ab".repeat(64));
        let d512 = Digest::parse(&s512).unwrap();
        assert_eq!(d512.algorithm(), Algorithm::Sha512);
        assert_eq!(d512.to_string(), s512);
        assert_eq!(d512.bytes(), &[0xab; 64][..]);
    }

    #[test]
    fn stays_small_and_orders_like_its_text() {
        // The model holds hundreds of thousands of these.
        assert!(std::mem::size_of::<Digest>() <= 40);
        let mut texts = vec![
            format!("sha512:{}", "0".repeat(128)),
            format!("sha256:{}", "f".repeat(64)),
            format!("sha256:{}", "0".repeat(63) + "1"),
            format!("sha256:{}", "a".repeat(64)),
        ];
        let mut digests: Vec<Digest> = texts.iter().map(|t| Digest::parse(t).unwrap()).collect();
        texts.sort();
        digests.sort();
        let back: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        assert_eq!(back, texts);
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(&*Digest::of_bytes(Algorithm::Sha256, b"").text(), EMPTY256);
        let d = Digest::of_bytes(Algorithm::Sha512, b"abc");
        assert!(d.hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn rejects_each_malformation_with_its_reason() {
        assert!(matches!(
            Digest::parse("sha256"),
            Err(DigestError::MissingSeparator(_))
        ));
        assert!(matches!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::UnsupportedAlgorithm(a)) if a == "md5"
        ));
        assert!(matches!(
            Digest::parse("SHA256:abc"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::WrongLength {
                expected: 64,
                found: 3,
                ..
            })
        ));
        let upper = EMPTY256.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            Digest::parse(&upper),
            Err(DigestError::NotLowercaseHex { found: 'E', .. })
        ));
        let slash = format!("sha256:{}/{}", "a".repeat(31), "b".repeat(32));
        assert!(matches!(
            Digest::parse(&slash),
            Err(DigestError::NotLowercaseHex { found: '/', .. })
        ));
        // sha512 length on a sha256 digest
        let long = format!("sha256:{}", "a".repeat(128));
        assert!(matches!(
            Digest::parse(&long),
            Err(DigestError::WrongLength { .. })
        ));
    }

    #[test]
    fn error_messages_are_bounded() {
        let huge = format!("{}:x", "a".repeat(10_000));
        let msg = Digest::parse(&huge).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }
}
