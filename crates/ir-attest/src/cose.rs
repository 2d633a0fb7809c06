//! COSE_Sign1 signature verification for ES256, ES384 and ES512
//! (RFC 9052/9053: the signature is the raw `r || s` of the curve's size,
//! over the `Signature1` Sig_structure with empty external AAD).

use crate::keys::{Curve, PublicKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::EcdsaKeyPair;
use coset::{iana, CoseSign1, RegisteredLabelWithPrivate};
use std::fmt;

/// A COSE signature algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoseAlg {
    /// ECDSA P-256 with SHA-256 (COSE -7).
    Es256,
    /// ECDSA P-384 with SHA-384 (COSE -35).
    Es384,
    /// ECDSA P-521 with SHA-512 (COSE -36).
    Es512,
}

impl CoseAlg {
    /// The COSE algorithm identifier.
    pub fn id(self) -> i64 {
        match self {
            Self::Es256 => -7,
            Self::Es384 => -35,
            Self::Es512 => -36,
        }
    }

    /// The algorithm for a COSE identifier, if supported.
    pub fn from_id(id: i64) -> Option<Self> {
        match id {
            -7 => Some(Self::Es256),
            -35 => Some(Self::Es384),
            -36 => Some(Self::Es512),
            _ => None,
        }
    }

    /// Length of the raw `r || s` signature in bytes.
    pub fn signature_len(self) -> usize {
        match self {
            Self::Es256 => 64,
            Self::Es384 => 96,
            Self::Es512 => 132,
        }
    }

    /// The coset header value for this algorithm.
    pub fn to_coset(self) -> iana::Algorithm {
        match self {
            Self::Es256 => iana::Algorithm::ES256,
            Self::Es384 => iana::Algorithm::ES384,
            Self::Es512 => iana::Algorithm::ES512,
        }
    }
}

impl PublicKey {
    /// The COSE algorithm that goes with this key's curve.
    pub fn cose_alg(&self) -> CoseAlg {
        match self.curve() {
            Curve::P256 => CoseAlg::Es256,
            Curve::P384 => CoseAlg::Es384,
            Curve::P521 => CoseAlg::Es512,
        }
    }
}

impl fmt::Display for CoseAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        })
    }
}

/// Why a COSE_Sign1 signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    /// The protected header names no algorithm.
    #[error("the protected header has no algorithm")]
    MissingAlg,
    /// The protected header names an algorithm other than ES256/384/512.
    #[error("unsupported COSE algorithm {0} (only ES256, ES384, ES512)")]
    UnsupportedAlg(String),
    /// The protected header lists critical parameters, which this verifier
    /// does not understand.
    #[error("the protected header lists critical parameters")]
    CriticalHeaders,
    /// The algorithm does not go with the key's curve.
    #[error("algorithm {alg} does not match the {curve} key")]
    AlgKeyMismatch {
        /// The token's algorithm.
        alg: CoseAlg,
        /// The key's curve.
        curve: &'static str,
    },
    /// The signature has the wrong length for the algorithm.
    #[error("{alg} signature must be {expected} bytes, found {found}")]
    BadSignatureLength {
        /// The algorithm.
        alg: CoseAlg,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The payload is detached (nil), which CCA tokens never are.
    #[error("the payload is detached")]
    DetachedPayload,
    /// The signature does not verify with the key.
    #[error("{alg} signature does not verify")]
    BadSignature {
        /// The algorithm.
        alg: CoseAlg,
    },
}

/// The algorithm in the protected header of `sign1`.
pub fn sign1_alg(sign1: &CoseSign1) -> Result<CoseAlg, CoseError> {
    let header = &sign1.protected.header;
    if !header.crit.is_empty() {
        return Err(CoseError::CriticalHeaders);
    }
    match &header.alg {
        None => Err(CoseError::MissingAlg),
        Some(RegisteredLabelWithPrivate::Assigned(a)) => match *a {
            iana::Algorithm::ES256 => Ok(CoseAlg::Es256),
            iana::Algorithm::ES384 => Ok(CoseAlg::Es384),
            iana::Algorithm::ES512 => Ok(CoseAlg::Es512),
            other => Err(CoseError::UnsupportedAlg(format!("{other:?}"))),
        },
        Some(RegisteredLabelWithPrivate::PrivateUse(i)) => {
            Err(CoseError::UnsupportedAlg(format!("private {i}")))
        }
        Some(RegisteredLabelWithPrivate::Text(t)) => {
            // The sender's text, so only its start (a log line stays short).
            let head: String = t.chars().take(32).collect();
            let more = if head.len() < t.len() { "…" } else { "" };
            Err(CoseError::UnsupportedAlg(format!("{head:?}{more}")))
        }
    }
}

/// Verifies a COSE_Sign1 with `key` (no external AAD). The algorithm comes
/// from the protected header and must match the key's curve.
pub fn verify_sign1(sign1: &CoseSign1, key: &PublicKey) -> Result<CoseAlg, CoseError> {
    let alg = sign1_alg(sign1)?;
    if alg != key.cose_alg() {
        return Err(CoseError::AlgKeyMismatch {
            alg,
            curve: key.curve_name(),
        });
    }
    if sign1.payload.is_none() {
        return Err(CoseError::DetachedPayload);
    }
    sign1.verify_signature(b"", |sig, data| verify_raw(key, alg, data, sig))?;
    Ok(alg)
}

/// Verifies a raw `r || s` ECDSA signature over `msg` (hashed with the
/// algorithm's hash) with `key`.
pub fn verify_raw(key: &PublicKey, alg: CoseAlg, msg: &[u8], sig: &[u8]) -> Result<(), CoseError> {
    if sig.len() != alg.signature_len() {
        return Err(CoseError::BadSignatureLength {
            alg,
            expected: alg.signature_len(),
            found: sig.len(),
        });
    }
    if alg != key.cose_alg() {
        return Err(CoseError::AlgKeyMismatch {
            alg,
            curve: key.curve_name(),
        });
    }
    if key.verify_fixed(msg, sig) {
        Ok(())
    } else {
        Err(CoseError::BadSignature { alg })
    }
}

/// Signs `payload` as a tagged COSE_Sign1 with ES384 (used by the
/// emulated realm); `key` must be a P-384 key made for
/// `ECDSA_P384_SHA384_FIXED_SIGNING` (the `r || s` form COSE uses).
/// Returns the CBOR bytes.
pub(crate) fn sign1_es384(key: &EcdsaKeyPair, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    use coset::TaggedCborSerializable as _;
    let protected = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .build();
    let sign1 = coset::CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .try_create_signature(b"", |data| {
            key.sign(&SystemRandom::new(), data)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| "ES384 signing failed".to_string())
        })?
        .build();
    sign1.to_tagged_vec().map_err(|e| e.to_string())
}
