//! P-256 keys for ES256: private keys from PEM, public keys from PEM or JWK
//! coordinates, signatures in JOSE form, key ids.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{base64url, base64url_decode};

/// Largest key file read by [`SigningKey::from_pem_file`] and
/// [`PublicKey::from_pem_file`] (bytes).
pub const MAX_KEY_FILE: u64 = 64 * 1024;
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No PEM block of the kind expected.
    #[error("no {what} (PEM) found: {reason}")]
    NoPem {
        /// `private key` or `public key`.
        what: &'static str,
        /// What the PEM reader said.
        reason: String,
    },
    /// A private key that is not EC P-256.
    #[error("not an EC P-256 private key (ES256)")]
    NotP256Private,
    /// A public key that is not EC P-256 (or not a SubjectPublicKeyInfo).
    #[error("not an EC P-256 public key (ES256): {0}")]
    NotP256Public(String),
    /// A JWK coordinate that is not 32 base64url bytes.
    #[error("{0} is not a base64url P-256 coordinate")]
    Coordinate(&'static str),
    /// The coordinates name no point of P-256.
    #[error("the point is not on P-256")]
    NotOnCurve,
    /// The system's random generator failed.
    #[error("cannot generate a P-256 key")]
    Generate,
    /// aws-lc-rs refused to sign.
    #[error("signing failed")]
    Sign,
}

/// A key file that cannot be read or used: the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_KEY_FILE`].
    #[error("{path}: larger than {MAX_KEY_FILE} bytes")]
    TooLarge {
        /// The key file.
        path: PathBuf,
    },
    /// The file holds no usable key.
    #[error("{path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with the key.
        source: KeyError,
    },
}

impl KeyFileError {
    /// What is wrong, without the file's name (for messages that name the
    /// file already).
    pub fn reason(&self) -> String {
        match self {
            KeyFileError::Io { source, .. } => source.to_string(),
            KeyFileError::TooLarge { .. } => format!("larger than {MAX_KEY_FILE} bytes"),
            KeyFileError::Key { source, .. } => source.to_string(),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            KeyFileError::Io { path, .. }
            | KeyFileError::TooLarge { path }
            | KeyFileError::Key { path, .. } => path,
        }
    }
}

/// A P-256 public key: its uncompressed SEC1 point (65 bytes, checked to be
/// on the curve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    /// The key from a JWK's base64url `x` and `y` (32 bytes each).
    pub fn from_coordinates(x: &str, y: &str) -> Result<Self, KeyError> {
        let coordinate = |name: &'static str, text: &str| {
            base64url_decode(text)
                .filter(|c| c.len() == 32)
                .ok_or(KeyError::Coordinate(name))
        };
        let (x, y) = (coordinate("x", x)?, coordinate("y", y)?);
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Self::from_point(point).map_err(|_| KeyError::NotOnCurve)
    }

    /// The key in a PEM SubjectPublicKeyInfo (`PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|e| KeyError::NoPem {
            what: "public key",
            reason: e.to_string(),
        })?;
        Self::from_spki_der(der.as_ref())
    }

    /// The key in a PEM file (SubjectPublicKeyInfo), read up to
    /// [`MAX_KEY_FILE`] bytes; errors name the file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyFileError> {
        let pem = read_small(path)?;
        Self::from_pem(&pem).map_err(|source| KeyFileError::Key {
            path: path.to_owned(),
            source,
        })
    }

    /// The key in a DER SubjectPublicKeyInfo (id-ecPublicKey on P-256, an
    /// uncompressed point).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let not = |why: String| KeyError::NotP256Public(why);
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| not(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(not("bytes after the SubjectPublicKeyInfo".into()));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY
            || curve.as_deref() != Some(OID_P256)
        {
            return Err(not("another algorithm or curve".into()));
        }
        Self::from_point(spki.subject_public_key.data.to_vec())
            .map_err(|()| not("not an uncompressed point on the curve".into()))
    }

    fn from_point(point: Vec<u8>) -> Result<Self, ()> {
        if point.len() != 65 || point[0] != 4 {
            return Err(());
        }
        // A point off the curve is refused now, not at the first signature.
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).map_err(|_| ())?;
        Ok(PublicKey { point })
    }

    /// The uncompressed SEC1 point (`04 || x || y`).
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .and_then(|k| k.as_der().map_err(Into::into))
            .map(|der| der.as_ref().to_vec())
            .expect("a checked P-256 point encodes")
    }

    /// The PEM SubjectPublicKeyInfo (`PUBLIC KEY`).
    pub fn pem(&self) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn spki_sha256_hex(&self) -> String {
        hex::encode(digest::digest(&digest::SHA256, &self.spki_der()))
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the canonical JWK.
    pub fn thumbprint(&self) -> String {
        let (x, y) = self.coordinates();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        base64url(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    /// The key as a JWK, its `kid` the thumbprint.
    pub fn jwk(&self) -> serde_json::Value {
        let (x, y) = self.coordinates();
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "kid": self.thumbprint(),
            "x": x,
            "y": y,
        })
    }

    fn coordinates(&self) -> (String, String) {
        (
            base64url(&self.point[1..33]),
            base64url(&self.point[33..65]),
        )
    }

    /// Whether `signature` (JOSE form: r||s, 64 bytes) is this key's ES256
    /// signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == 64
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
                .verify(message, signature)
                .is_ok()
    }

    /// [`PublicKey::verify`] with the signature in base64url.
    pub fn verify_base64url(&self, message: &[u8], signature: &str) -> bool {
        base64url_decode(signature).is_some_and(|s| self.verify(message, &s))
    }
}

/// An ES256 (P-256, SHA-256) private key, its public half and its RFC 7638
/// thumbprint.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    thumbprint: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key in PEM: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`),
    /// on P-256.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::NoPem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(alg, k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()),
            _ => return Err(KeyError::NotP256Private),
        }
        .map_err(|_| KeyError::NotP256Private)?;
        Ok(Self::of(pair))
    }

    /// The key in a PEM file, read up to [`MAX_KEY_FILE`] bytes; errors
    /// name the file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyFileError> {
        let pem = read_small(path)?;
        Self::from_pem(&pem).map_err(|source| KeyFileError::Key {
            path: path.to_owned(),
            source,
        })
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map(Self::of)
            .map_err(|_| KeyError::Generate)
    }

    fn of(pair: EcdsaKeyPair) -> Self {
        let public = PublicKey {
            point: pair.public_key().as_ref().to_vec(),
        };
        let thumbprint = public.thumbprint();
        SigningKey {
            pair,
            public,
            thumbprint,
            rng: SystemRandom::new(),
        }
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The public key's RFC 7638 thumbprint (computed once).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The ES256 signature of `message` in JOSE form (r||s, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Sign)
    }

    /// [`SigningKey::sign`], base64url.
    pub fn sign_base64url(&self, message: &[u8]) -> Result<String, KeyError> {
        self.sign(message).map(base64url)
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    use std::io::Read as _;
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn signs_and_verifies_in_jose_form() {
        let key = SigningKey::generate().unwrap();
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), 64);
        assert!(key.public().verify(b"message", &signature));
        assert!(!key.public().verify(b"messagE", &signature));
        assert!(!key.public().verify(b"message", &signature[..63]));
        let text = key.sign_base64url(b"m").unwrap();
        assert!(key.public().verify_base64url(b"m", &text));
        assert!(!key.public().verify_base64url(b"m", "not base64!"));
        let other = SigningKey::generate().unwrap();
        assert!(!other.public().verify(b"message", &signature));
    }

    #[test]
    fn pkcs8_and_sec1_pem_keys_load_and_match_their_public_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 =
            SigningKey::from_pem_file(&write(dir.path(), "k.pem", &pair.serialize_pem())).unwrap();
        let public = PublicKey::from_pem(pair.public_key_pem().as_bytes()).unwrap();
        assert_eq!(pkcs8.public(), &public);
        assert_eq!(
            public.spki_der(),
            rcgen::PublicKeyData::subject_public_key_info(&pair)
        );
        // The same key as SEC1 (`EC PRIVATE KEY`): PKCS#8's inner key.
        let der = pair.serialize_der();
        let sec1_der = sec1_of_pkcs8(&der);
        let sec1_pem = pem_block("EC PRIVATE KEY", &sec1_der);
        let sec1 = SigningKey::from_pem(sec1_pem.as_bytes()).unwrap();
        assert_eq!(sec1.public(), &public);
        assert_eq!(sec1.thumbprint(), pkcs8.thumbprint());
        // Its own PEM reads back to the same key and key ids.
        let back = PublicKey::from_pem(public.pem().as_bytes()).unwrap();
        assert_eq!(back.spki_sha256_hex(), public.spki_sha256_hex());
        assert_eq!(back.spki_sha256_hex().len(), 64);
    }

    #[test]
    fn other_curves_and_kinds_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let private = write(dir.path(), "p384.pem", &p384.serialize_pem());
        let e = SigningKey::from_pem_file(&private).unwrap_err();
        assert!(matches!(
            e,
            KeyFileError::Key {
                source: KeyError::NotP256Private,
                ..
            }
        ));
        assert_eq!(e.path(), private);
        assert!(
            e.to_string().starts_with(&private.display().to_string()),
            "{e}"
        );
        assert!(e.to_string().contains("P-256"), "{e}");
        let public = write(dir.path(), "p384.pub", &p384.public_key_pem());
        let e = PublicKey::from_pem_file(&public).unwrap_err();
        assert!(e.to_string().contains("p384.pub"), "{e}");
        assert!(e.to_string().contains("P-256"), "{e}");
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            SigningKey::from_pem(ed.serialize_pem().as_bytes()).unwrap_err(),
            KeyError::NotP256Private
        );
        assert!(matches!(
            SigningKey::from_pem(b"no pem here"),
            Err(KeyError::NoPem { .. })
        ));
        // A public key where a private key is expected, and back.
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(SigningKey::from_pem(p256.public_key_pem().as_bytes()).is_err());
        assert!(PublicKey::from_pem(p256.serialize_pem().as_bytes()).is_err());
    }

    #[test]
    fn key_files_are_bounded_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let big = write(
            dir.path(),
            "big.pem",
            &"A".repeat(MAX_KEY_FILE as usize + 1),
        );
        let e = SigningKey::from_pem_file(&big).unwrap_err();
        assert!(matches!(e, KeyFileError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("big.pem"), "{e}");
        assert_eq!(e.reason(), format!("larger than {MAX_KEY_FILE} bytes"));
        let missing = dir.path().join("missing.pem");
        let e = PublicKey::from_pem_file(&missing).unwrap_err();
        assert!(matches!(e, KeyFileError::Io { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }

    #[test]
    fn jwk_coordinates_round_trip_and_bad_points_are_refused() {
        let key = SigningKey::generate().unwrap();
        let jwk = key.public().jwk();
        let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let want = base64url(digest::digest(&digest::SHA256, canonical.as_bytes()));
        assert_eq!(key.thumbprint(), want);
        assert_eq!(jwk["kid"], want.as_str());
        assert_eq!(&PublicKey::from_coordinates(x, y).unwrap(), key.public());
        assert_eq!(
            PublicKey::from_coordinates("AAAA", y),
            Err(KeyError::Coordinate("x"))
        );
        assert_eq!(
            PublicKey::from_coordinates(x, "AAAA"),
            Err(KeyError::Coordinate("y"))
        );
        // (0, 0) is not on the curve.
        let zero = base64url([0u8; 32]);
        assert_eq!(
            PublicKey::from_coordinates(&zero, &zero),
            Err(KeyError::NotOnCurve)
        );
    }

    /// The `privateKey` OCTET STRING of a PKCS#8 key: for EC, its SEC1
    /// `ECPrivateKey`.
    fn sec1_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        let (_, info) = x509_parser::der_parser::der::parse_der(pkcs8).unwrap();
        let items = info.as_sequence().unwrap();
        items[2].as_slice().unwrap().to_vec()
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}
