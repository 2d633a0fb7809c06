//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and incremental
//! hashing, so every byte is checked while it streams.

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::path::PathBuf;

/// A digest algorithm the client can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha256`.
    Sha256,
    /// `sha512`.
    Sha512,
}

impl Algorithm {
    /// The name used in digests and under `blobs/`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

/// A validated digest: a supported algorithm and lowercase hex of the
/// right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `<algorithm>:<hex>`; only `sha256` and `sha512` with
    /// lowercase hex of the right length are accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (alg, hex) = text
            .split_once(':')
            .ok_or_else(|| format!("digest {text:?} has no algorithm"))?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(format!("digest algorithm {other:?} is not supported")),
        };
        if hex.len() != alg.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "digest {text:?}: expected {} lowercase hex digits",
                alg.hex_len()
            ));
        }
        Ok(Self {
            alg,
            hex: hex.to_string(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// `blobs/<alg>/<hex>`, relative to the layout.
    pub fn blob_path(&self) -> PathBuf {
        PathBuf::from("blobs").join(self.alg.name()).join(&self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

/// An incremental hasher for one [`Algorithm`].
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(Sha512),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                alg: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                alg: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Algorithm::Sha256.digest(b"abc");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(d.blob_path(), PathBuf::from("blobs/sha256").join(d.hex()));
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse(&d.to_string().to_uppercase()).is_err());
        assert!(Digest::parse("md5:00").is_err());
        assert!(Digest::parse("sha256").is_err());
        assert!(Digest::parse(&format!("sha512:{}", d.hex())).is_err());
        let d512 = Algorithm::Sha512.digest(b"abc");
        assert_eq!(Digest::parse(&d512.to_string()).unwrap(), d512);
    }
}
