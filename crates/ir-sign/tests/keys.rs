//! Key pairs in cosign's formats.

use ir_sign::keys::{self, KeyType};

use crate::util::PASSWORD;

#[test]
fn private_key_is_cosigns_encrypted_pem_and_public_key_is_spki() {
    let pair = keys::generate(KeyType::EcdsaP256, PASSWORD).unwrap();
    assert!(pair
        .private_pem
        .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    keys::load_verification_key(pair.public_pem.as_bytes()).unwrap();
}

#[test]
fn private_key_needs_its_password() {
    let pair = keys::generate(KeyType::EcdsaP256, PASSWORD).unwrap();
    assert!(keys::load_signer(pair.private_pem.as_bytes(), PASSWORD).is_ok());
    let Err(err) = keys::load_signer(pair.private_pem.as_bytes(), b"wrong") else {
        panic!("a wrong password is refused");
    };
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
}

#[test]
fn every_key_type_round_trips() {
    for key_type in [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa,
    ] {
        let pair = keys::generate(key_type, b"").unwrap();
        let signer = keys::load_signer(pair.private_pem.as_bytes(), b"").unwrap();
        let signature = signer.sign(b"message").unwrap();
        let key = keys::load_verification_key(pair.public_pem.as_bytes()).unwrap();
        key.verify_signature(sigstore::crypto::Signature::Raw(&signature), b"message")
            .unwrap_or_else(|e| panic!("{key_type:?}: {e}"));
    }
}
