//! Public keys of a `sigstoreSigned` requirement: PEM `PUBLIC KEY`
//! (SubjectPublicKeyInfo), as `cosign generate-key-pair` writes `cosign.pub`.
//!
//! Verification follows cosign and containers/image for key-based
//! signatures: ECDSA (P-256, P-384, P-521) with an ASN.1 DER signature over
//! the SHA-256 of the message (and, for P-384 and P-521, also the curve's
//! own hash, as sigstore-rs signs), Ed25519 over the message itself, and
//! RSA PKCS#1 v1.5 or PSS with SHA-256. Crypto is aws-lc-rs.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The largest key file read (a PEM public key is well under 2 KiB).
pub const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

/// One trusted public key.
pub struct PublicKey {
    /// `sha256:` and the hex SHA-256 of the DER SubjectPublicKeyInfo.
    fingerprint: String,
    kind: &'static str,
    verifiers: Vec<ParsedPublicKey>,
    /// The file it was read from (`keyPath`, `keyPaths`), if any.
    file: Option<std::path::PathBuf>,
    /// Set when its file no longer holds it: it verifies nothing from then
    /// on, whatever was recorded (see [`PublicKey::revoke`]).
    revoked: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.kind, self.fingerprint)
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `PUBLIC KEY` PEM block.
    #[error("no PEM PUBLIC KEY block")]
    NotPem,
    /// The SubjectPublicKeyInfo does not parse.
    #[error("malformed SubjectPublicKeyInfo")]
    Malformed,
    /// A key type cosign does not sign with.
    #[error("unsupported key type {0}")]
    Unsupported(String),
    /// An RSA key of a size no signature can verify with (aws-lc-rs
    /// verifies 2048 to 8192 bits).
    #[error("RSA key of {0} bits: only 2048 to 8192 bits can verify")]
    RsaSize(usize),
}

/// Smallest and largest RSA modulus, in bits, that verifies.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The size in bits of an RSA public key's modulus, or `None` when the
/// key does not parse as one.
fn rsa_bits(spki: &SubjectPublicKeyInfo<'_>) -> Option<usize> {
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        return None;
    };
    let modulus = rsa.modulus;
    let start = modulus.iter().position(|b| *b != 0)?;
    let modulus = &modulus[start..];
    Some((modulus.len() - 1) * 8 + (8 - modulus[0].leading_zeros() as usize))
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

impl PublicKey {
    /// Parses the first `PUBLIC KEY` block of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| KeyError::NotPem)?;
        PublicKey::from_spki_der(der.as_ref())
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| KeyError::Malformed)?;
        if !rest.is_empty() {
            return Err(KeyError::Malformed);
        }
        let key = spki.subject_public_key.data.as_ref();
        let alg = spki.algorithm.algorithm.to_id_string();
        let (kind, algs): (&'static str, &[&'static dyn VerificationAlgorithm]) = match alg.as_str()
        {
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => ("ecdsa-p256", &[&signature::ECDSA_P256_SHA256_ASN1]),
                    OID_P384 => (
                        "ecdsa-p384",
                        &[
                            &signature::ECDSA_P384_SHA256_ASN1,
                            &signature::ECDSA_P384_SHA384_ASN1,
                        ],
                    ),
                    OID_P521 => (
                        "ecdsa-p521",
                        &[
                            &signature::ECDSA_P521_SHA256_ASN1,
                            &signature::ECDSA_P521_SHA512_ASN1,
                        ],
                    ),
                    other => return Err(KeyError::Unsupported(format!("EC curve {other}"))),
                }
            }
            OID_ED25519 => ("ed25519", &[&signature::ED25519]),
            OID_RSA => {
                let bits = rsa_bits(&spki).ok_or(KeyError::Malformed)?;
                if !RSA_BITS.contains(&bits) {
                    return Err(KeyError::RsaSize(bits));
                }
                (
                    "rsa",
                    &[
                        &signature::RSA_PKCS1_2048_8192_SHA256,
                        &signature::RSA_PSS_2048_8192_SHA256,
                    ],
                )
            }
            other => return Err(KeyError::Unsupported(other.to_owned())),
        };
        let verifiers = algs
            .iter()
            .map(|a| ParsedPublicKey::new(*a, key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| KeyError::Malformed)?;
        let fingerprint = format!(
            "sha256:{}",
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
        );
        Ok(PublicKey {
            fingerprint,
            kind,
            verifiers,
            file: None,
            revoked: Default::default(),
        })
    }

    /// The same key, read from `file`.
    pub fn read_from(mut self, file: &std::path::Path) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    /// The file the key was read from, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Stops (or, with `false`, resumes) trusting the key: a revoked key
    /// verifies nothing.
    pub fn revoke(&self, revoked: bool) {
        self.revoked
            .store(revoked, std::sync::atomic::Ordering::Relaxed);
    }

    /// True once [`PublicKey::revoke`]d.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Parses `keyData`: the base64 of a PEM key file.
    pub fn from_key_data(data: &str) -> Result<Self, KeyError> {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| KeyError::NotPem)?;
        PublicKey::from_pem(&pem)
    }

    /// True when `signature` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        !self.is_revoked()
            && self
                .verifiers
                .iter()
                .any(|v| v.verify_sig(message, signature).is_ok())
    }

    /// `sha256:` and the hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521`, `ed25519` or `rsa`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    /// A P-256 key pair and its public key as a PEM SubjectPublicKeyInfo.
    fn p256() -> (EcdsaKeyPair, String) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        // SPKI for id-ecPublicKey / prime256v1, then the point.
        let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        der.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        (
            pair,
            format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
        )
    }

    #[test]
    fn p256_signature_verifies_and_a_flipped_bit_does_not() {
        let (pair, pem) = p256();
        let key = PublicKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.kind(), "ecdsa-p256");
        assert!(key.fingerprint().starts_with("sha256:") && key.fingerprint().len() == 71);
        let sig = pair.sign(&SystemRandom::new(), b"payload").unwrap();
        assert!(key.verifies(b"payload", sig.as_ref()));
        assert!(!key.verifies(b"payloaD", sig.as_ref()));
        let mut bad = sig.as_ref().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!key.verifies(b"payload", &bad));
        let data = base64::engine::general_purpose::STANDARD.encode(&pem);
        assert_eq!(
            PublicKey::from_key_data(&data).unwrap().fingerprint(),
            key.fingerprint()
        );
    }

    #[test]
    fn junk_is_not_a_key() {
        assert_eq!(PublicKey::from_pem(b"hello").unwrap_err(), KeyError::NotPem);
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            PublicKey::from_pem(pem.as_bytes()).unwrap_err(),
            KeyError::Malformed
        );
    }
}
