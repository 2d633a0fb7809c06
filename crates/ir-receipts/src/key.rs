//! The checkpoint key: ES256 (P-256, SHA-256), PEM files, through
//! `ir-jose`. Its key id is the hex SHA-256 of the SubjectPublicKeyInfo.

use std::path::Path;

use ir_jose::{KeyFileError, PublicKey, SigningKey};

use crate::ReceiptsError;

/// Signs checkpoints (`--receipts-key`, a P-256 private key, PKCS#8 or SEC1 PEM).
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
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
        SigningKey::from_pem_file(path)
            .map(Self::of)
            .map_err(file_error)
    }

    /// A fresh key, for tests.
    pub fn generate() -> Self {
        Self::of(SigningKey::generate().expect("P-256 key generation"))
    }

    fn of(key: SigningKey) -> Self {
        let key_id = key.public().spki_sha256_hex();
        Self { key, key_id }
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a PEM SubjectPublicKeyInfo (`receipts verify --key`).
    pub fn public_key_pem(&self) -> String {
        self.key.public().pem()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> String {
        self.key
            .sign_base64url(message)
            .expect("ECDSA signing with a valid key")
    }
}

/// Checks checkpoints (`receipts verify --key`, a P-256 public key PEM).
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    key: PublicKey,
    key_id: String,
}

impl CheckpointVerifier {
    /// Reads a P-256 public key (PEM SubjectPublicKeyInfo).
    pub fn from_pem_file(path: &Path) -> Result<Self, ReceiptsError> {
        PublicKey::from_pem_file(path)
            .map(Self::of)
            .map_err(file_error)
    }

    /// Parses a P-256 public key (PEM SubjectPublicKeyInfo).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        PublicKey::from_pem(pem)
            .map(Self::of)
            .map_err(|e| e.to_string())
    }

    fn of(key: PublicKey) -> Self {
        let key_id = key.spki_sha256_hex();
        Self { key, key_id }
    }

    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn verifies(&self, message: &[u8], signature_b64: &str) -> bool {
        self.key.verify_base64url(message, signature_b64)
    }
}

fn file_error(e: KeyFileError) -> ReceiptsError {
    match e {
        KeyFileError::Io { path, source } => ReceiptsError::io(path, source),
        e => ReceiptsError::Key {
            reason: e.reason(),
            path: e.path().to_owned(),
        },
    }
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
