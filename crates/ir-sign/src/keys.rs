//! cosign key pairs through sigstore-rs: generation, the encrypted private
//! key PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt + NaCl secretbox, as
//! `cosign generate-key-pair` writes it), the public key PEM (SPKI).

use sigstore::crypto::signing_key::{ecdsa::ECDSAKeys, SigStoreKeyPair};
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, SigningScheme};
use zeroize::Zeroizing;

use crate::Error;

/// RSA modulus size for generated RSA keys.
const RSA_BITS: usize = 3072;

/// The key types `generate-key-pair` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256 (cosign's default).
    #[default]
    EcdsaP256,
    /// ECDSA P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA (3072 bits), PKCS#1 v1.5 signatures with SHA-256 (what cosign verifies RSA keys with).
    Rsa,
}

impl KeyType {
    fn scheme(self) -> SigningScheme {
        match self {
            KeyType::EcdsaP256 => SigningScheme::ECDSA_P256_SHA256_ASN1,
            KeyType::EcdsaP384 => SigningScheme::ECDSA_P384_SHA384_ASN1,
            KeyType::Ed25519 => SigningScheme::ED25519,
            KeyType::Rsa => SigningScheme::RSA_PKCS1_SHA256(RSA_BITS),
        }
    }
}

/// A generated key pair in cosign's files' formats.
pub struct GeneratedKeyPair {
    /// `cosign.key`: the encrypted private key PEM.
    pub private_pem: Zeroizing<String>,
    /// `cosign.pub`: the public key PEM (SPKI).
    pub public_pem: String,
}

/// Generates a key pair of `key_type`, the private key encrypted with `password`.
pub fn generate(key_type: KeyType, password: &[u8]) -> Result<GeneratedKeyPair, Error> {
    let pair = key_type.scheme().create_signer()?.to_sigstore_keypair()?;
    Ok(GeneratedKeyPair {
        private_pem: pair.private_key_to_encrypted_pem(password)?,
        public_pem: pair.public_key_to_pem()?,
    })
}

/// The signing scheme cosign uses for a key pair (from the key's type and curve).
fn scheme_of(pair: &SigStoreKeyPair) -> SigningScheme {
    match pair {
        SigStoreKeyPair::ECDSA(ECDSAKeys::P256(_)) => SigningScheme::ECDSA_P256_SHA256_ASN1,
        SigStoreKeyPair::ECDSA(ECDSAKeys::P384(_)) => SigningScheme::ECDSA_P384_SHA384_ASN1,
        SigStoreKeyPair::ECDSA(ECDSAKeys::P521(_)) => SigningScheme::ECDSA_P521_SHA512_ASN1,
        SigStoreKeyPair::ED25519(_) => SigningScheme::ED25519,
        SigStoreKeyPair::RSA(_) => SigningScheme::RSA_PKCS1_SHA256(RSA_BITS),
    }
}

/// Loads a signer from cosign's encrypted private key PEM.
pub fn load_signer(encrypted_pem: &[u8], password: &[u8]) -> Result<SigStoreSigner, Error> {
    let pair = SigStoreKeyPair::from_encrypted_pem(encrypted_pem, password).map_err(|e| {
        Error::Key(format!(
            "cannot decrypt the private key (wrong password?): {e}"
        ))
    })?;
    Ok(pair.to_sigstore_signer(&scheme_of(&pair))?)
}

/// Loads a verification key from a public key PEM (SPKI). The scheme
/// follows from the key as cosign chooses it (RSA: PKCS#1 v1.5 SHA-256).
pub fn load_verification_key(public_pem: &[u8]) -> Result<CosignVerificationKey, Error> {
    CosignVerificationKey::try_from_pem(public_pem)
        .map_err(|e| Error::Key(format!("cannot read the public key: {e}")))
}

/// The public key's hint in a sigstore bundle: base64 (standard) of the
/// SHA-256 of its SPKI DER, as cosign writes `verificationMaterial.publicKey.hint`.
pub fn public_key_hint(signer: &SigStoreSigner) -> Result<String, Error> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let der = signer.to_sigstore_keypair()?.public_key_to_der()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der)))
}
