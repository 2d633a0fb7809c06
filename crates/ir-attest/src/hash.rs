//! Hash algorithms named by CCA claims (`sha-256`, `sha-384`, `sha-512`).

use sha2::{Digest, Sha256, Sha384, Sha512};
use std::fmt;

/// A hash algorithm as named in CCA claims (44236, 44240, 2402) and in
/// reference values (`hash-algo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256 (`sha-256`).
    Sha256,
    /// SHA-384 (`sha-384`).
    Sha384,
    /// SHA-512 (`sha-512`).
    Sha512,
}

impl HashAlg {
    /// Parses the claim text (`sha-256`, `sha-384`, `sha-512`; exact,
    /// lower case). Returns `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha-256" => Some(Self::Sha256),
            "sha-384" => Some(Self::Sha384),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The claim text of this algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            assert_eq!(HashAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.digest(b"x").len(), alg.output_len());
        }
        assert_eq!(HashAlg::from_name("SHA-256"), None);
        assert_eq!(HashAlg::from_name("sha256"), None);
    }
}
