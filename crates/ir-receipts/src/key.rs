//! The checkpoint key: ES256 (P-256, SHA-256), PEM files.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::ReceiptsError;

/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Signs checkpoints (`--receipts-key`, a P-256 private key, PKCS#8 or SEC1 PEM).
pub struct CheckpointSigner {
    pair: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Reads a P-256 private key from a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, ReceiptsError> {
        let pem = read_small(path)?;
        let bad = |reason: String| ReceiptsError::Key {
            path: path.to_owned(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| bad(format!("not a PEM private key: {e}")))?;
        let pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(|_| bad("not a P-256 (ES256) private key".into()))?;
        Self::from_pair(pair).map_err(bad)
    }

    /// A fresh key, for tests.
    pub fn generate() -> Self {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        Self::from_pair(pair).expect("a generated key has a public key")
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, String> {
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| "its public key cannot be encoded".to_string())?;
        let key_id = key_id(spki.as_ref());
        Ok(Self {
            pair,
            key_id,
            rng: SystemRandom::new(),
        })
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a PEM SubjectPublicKeyInfo (`receipts verify --key`).
    pub fn public_key_pem(&self) -> String {
        let spki = self.pair.public_key().as_der().expect("encodable");
        let body = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    pub(crate) fn sign(&self, message: &[u8]) -> String {
        let signature = self
            .pair
            .sign(&self.rng, message)
            .expect("ECDSA signing with a valid key");
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    }
}

/// Checks checkpoints (`receipts verify --key`, a P-256 public key PEM).
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    point: Vec<u8>,
    key_id: String,
}

impl CheckpointVerifier {
    /// Reads a P-256 public key (PEM SubjectPublicKeyInfo).
    pub fn from_pem_file(path: &Path) -> Result<Self, ReceiptsError> {
        let pem = read_small(path)?;
        Self::from_pem(&pem).map_err(|reason| ReceiptsError::Key {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses a P-256 public key (PEM SubjectPublicKeyInfo).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key: {e}"))?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(der.as_ref())
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY
            || curve.as_deref() != Some(OID_P256)
        {
            return Err("not a P-256 (ES256) public key".into());
        }
        Ok(Self {
            point: spki.subject_public_key.data.to_vec(),
            key_id: key_id(der.as_ref()),
        })
    }

    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn verifies(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, &signature)
            .is_ok()
    }
}

fn key_id(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

fn read_small(path: &Path) -> Result<Vec<u8>, ReceiptsError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| ReceiptsError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReceiptsError::io(path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(ReceiptsError::Key {
            path: path.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_public_key_and_only_over_its_message() {
        let signer = CheckpointSigner::generate();
        let verifier = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
        assert_eq!(verifier.key_id(), signer.key_id());
        let signature = signer.sign(b"message");
        assert!(verifier.verifies(b"message", &signature));
        assert!(!verifier.verifies(b"messagE", &signature));
        assert!(!verifier.verifies(b"message", "not base64!"));
    }

    #[test]
    fn a_key_of_another_curve_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let private = dir.path().join("p384.pem");
        std::fs::write(&private, p384.serialize_pem()).unwrap();
        let err = CheckpointSigner::from_pem_file(&private).unwrap_err();
        assert!(err.to_string().contains("p384.pem"), "{err}");
        assert!(err.to_string().contains("P-256"), "{err}");
        let public = dir.path().join("p384.pub");
        std::fs::write(&public, p384.public_key_pem()).unwrap();
        let err = CheckpointVerifier::from_pem_file(&public).unwrap_err();
        assert!(err.to_string().contains("P-256"), "{err}");
    }

    #[test]
    fn a_pkcs8_p256_key_from_rcgen_signs() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let private = dir.path().join("k.pem");
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        let signer = CheckpointSigner::from_pem_file(&private).unwrap();
        let verifier = CheckpointVerifier::from_pem(pair.public_key_pem().as_bytes()).unwrap();
        assert_eq!(verifier.key_id(), signer.key_id());
        assert!(verifier.verifies(b"m", &signer.sign(b"m")));
    }
}
