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
/// The canonical string is kept, so `Display` and `as_str` cost nothing on
/// the request path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    // The whole canonical string "<alg>:<hex>".
    text: Box<str>,
}

impl Digest {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator(truncate(s)))?;
        let algorithm = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncate(alg)))?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.chars().count(),
            });
        }
        if let Some(found) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestError::NotLowercaseHex { algorithm, found });
        }
        Ok(Digest {
            algorithm,
            text: s.into(),
        })
    }

    /// Digest of `data` with `algorithm`.
    pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The canonical `<alg>:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The blob's path inside a layout: `blobs/<alg>/<hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/{}/{}", self.algorithm, self.hex())
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
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
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
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            text: format!("{algorithm}:{hex}").into(),
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
        assert_eq!(Digest::parse(&s512).unwrap().algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(Digest::of_bytes(Algorithm::Sha256, b"").as_str(), EMPTY256);
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
