//! EC public keys (P-256, P-384, P-521) in the encodings CCA and Veraison
//! use: raw SEC1 points, COSE_Key maps, JWK, and PEM/DER
//! SubjectPublicKeyInfo. Also the decoding of the realm attestation key
//! (RAK), whose encoding depends on the token's profiles.

use aws_lc_rs::signature::{self, EcdsaVerificationAlgorithm, ParsedPublicKey};
use base64::Engine as _;
use ciborium::value::Value;
use std::fmt;

/// The realm profile under which the RAK is a COSE_Key.
pub const REALM_PROFILE_2023: &str = "tag:arm.com,2023:realm#1.0.0";
/// The platform profile under which, absent a realm profile, the RAK is a
/// COSE_Key.
pub const PLATFORM_PROFILE_2023: &str = "tag:arm.com,2023:cca_platform#1.0.0";

/// Largest accepted encoded key (a JWK or PEM file, a COSE_Key).
pub const MAX_KEY_TEXT: usize = 16 * 1024;

/// Why a key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a valid uncompressed SEC1 point on a supported curve.
    #[error("invalid SEC1 EC point ({len} bytes): {reason}")]
    InvalidPoint {
        /// Length of the bytes given.
        len: usize,
        /// What was wrong.
        reason: String,
    },
    /// The curve is not P-256, P-384 or P-521.
    #[error("unsupported curve: {0}")]
    UnsupportedCurve(String),
    /// A COSE_Key could not be decoded.
    #[error("invalid COSE_Key: {0}")]
    InvalidCoseKey(String),
    /// A JWK could not be decoded.
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    /// A PEM or DER public key could not be decoded.
    #[error("invalid PEM/DER public key: {0}")]
    InvalidPem(String),
    /// The input is larger than allowed.
    #[error("key encoding too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Length given.
        len: usize,
        /// Limit.
        limit: usize,
    },
}

/// A NIST curve that COSE ES256/384/512 use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256 (ES256).
    P256,
    /// P-384 (ES384).
    P384,
    /// P-521 (ES512).
    P521,
}

impl Curve {
    /// The curve name (`P-256`, `P-384`, `P-521`), as JWK's `crv` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// The curve a JWK `crv` names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    /// Length of one affine coordinate in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// Length of the uncompressed SEC1 point (`0x04 || x || y`).
    pub fn sec1_len(self) -> usize {
        1 + 2 * self.coordinate_len()
    }

    /// The curve whose uncompressed SEC1 point has `len` bytes.
    fn of_sec1_len(len: usize) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|c| c.sec1_len() == len)
    }

    /// aws-lc-rs's verification algorithm for this curve: ECDSA with the
    /// curve's hash and the fixed-length `r || s` signature COSE and JWS use.
    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }
}

/// An EC public key on one of the curves COSE ES256/384/512 use, checked to
/// be a point on its curve when it was made.
#[derive(Clone)]
pub struct PublicKey {
    curve: Curve,
    /// Parsed once (aws-lc-rs): verifying does not decode the point again.
    /// Always made from the uncompressed SEC1 point, which `as_ref` returns.
    key: ParsedPublicKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.curve == other.curve && self.sec1() == other.sec1()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.curve_name(),
            hex::encode(self.sec1())
        )
    }
}

fn point_err(len: usize, reason: impl Into<String>) -> KeyError {
    KeyError::InvalidPoint {
        len,
        reason: reason.into(),
    }
}

impl PublicKey {
    /// Decodes an uncompressed SEC1 point (`0x04 || x || y`); the curve is
    /// chosen by the length (65: P-256, 97: P-384, 133: P-521). The point
    /// must be on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        let len = bytes.len();
        if bytes.first() != Some(&0x04) {
            return Err(point_err(
                len,
                "not an uncompressed point (first byte is not 0x04)",
            ));
        }
        let curve =
            Curve::of_sec1_len(len).ok_or_else(|| point_err(len, "length is not 65, 97 or 133"))?;
        let key = ParsedPublicKey::new(curve.verification(), bytes)
            .map_err(|_| point_err(len, format!("not a point on {}", curve.name())))?;
        Ok(Self { curve, key })
    }

    /// Builds a key from affine coordinates on the named curve
    /// (`P-256`, `P-384`, `P-521`), checking the point is on the curve.
    pub fn from_coordinates(curve: &str, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let named =
            Curve::from_name(curve).ok_or_else(|| KeyError::UnsupportedCurve(curve.to_string()))?;
        let size = named.coordinate_len();
        if x.len() != size || y.len() != size {
            return Err(point_err(
                1 + x.len() + y.len(),
                format!(
                    "{curve} coordinates must be {size} bytes each (x {}, y {})",
                    x.len(),
                    y.len()
                ),
            ));
        }
        let mut sec1 = Vec::with_capacity(named.sec1_len());
        sec1.push(0x04);
        sec1.extend_from_slice(x);
        sec1.extend_from_slice(y);
        Self::from_sec1(&sec1)
    }

    /// Decodes a COSE_Key (CBOR map) of type EC2 (kty 2) with crv 1/2/3
    /// and byte-string x and y. Other parameters are ignored.
    pub fn from_cose_key(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLarge {
                len: bytes.len(),
                limit: MAX_KEY_TEXT,
            });
        }
        let value = crate::cbor::decode_exact(bytes).map_err(KeyError::InvalidCoseKey)?;
        let Value::Map(entries) = value else {
            return Err(KeyError::InvalidCoseKey(format!(
                "expected a map, found {}",
                crate::cbor::type_name(&value)
            )));
        };
        let (mut kty, mut crv, mut x, mut y) = (None, None, None, None);
        for (k, v) in &entries {
            let Some(label) = crate::cbor::int_key(k) else {
                continue;
            };
            let slot = match label {
                1 => &mut kty,
                -1 => &mut crv,
                -2 => &mut x,
                -3 => &mut y,
                _ => continue,
            };
            if slot.is_some() {
                return Err(KeyError::InvalidCoseKey(format!("duplicate label {label}")));
            }
            *slot = Some(v);
        }
        let as_int = |name: &str, v: Option<&Value>| -> Result<i64, KeyError> {
            v.and_then(crate::cbor::int_key).ok_or_else(|| {
                KeyError::InvalidCoseKey(format!("{name} missing or not an integer"))
            })
        };
        let as_bytes = |name: &str, v: Option<&Value>| -> Result<Vec<u8>, KeyError> {
            match v {
                Some(Value::Bytes(b)) => Ok(b.clone()),
                Some(other) => Err(KeyError::InvalidCoseKey(format!(
                    "{name} must be a byte string, found {}",
                    crate::cbor::type_name(other)
                ))),
                None => Err(KeyError::InvalidCoseKey(format!("{name} missing"))),
            }
        };
        let kty = as_int("kty (1)", kty)?;
        if kty != 2 {
            return Err(KeyError::InvalidCoseKey(format!(
                "kty is {kty}, expected 2 (EC2)"
            )));
        }
        let curve = match as_int("crv (-1)", crv)? {
            1 => "P-256",
            2 => "P-384",
            3 => "P-521",
            other => return Err(KeyError::UnsupportedCurve(format!("COSE crv {other}"))),
        };
        let x = as_bytes("x (-2)", x)?;
        let y = as_bytes("y (-3)", y)?;
        Self::from_coordinates(curve, &x, &y)
    }

    /// Decodes a JWK (`{"kty":"EC","crv":"P-384","x":…,"y":…}`, base64url
    /// coordinates) from its JSON text.
    pub fn from_jwk_json(text: &[u8]) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLarge {
                len: text.len(),
                limit: MAX_KEY_TEXT,
            });
        }
        let value: serde_json::Value =
            ir_oci::json::from_slice(text).map_err(|e| KeyError::InvalidJwk(e.to_string()))?;
        Self::from_jwk(&value)
    }

    /// Decodes a JWK already parsed as JSON.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, KeyError> {
        let field = |name: &str| -> Result<&str, KeyError> {
            jwk.get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| KeyError::InvalidJwk(format!("\"{name}\" missing or not a string")))
        };
        let kty = field("kty")?;
        if kty != "EC" {
            return Err(KeyError::InvalidJwk(format!(
                "kty is {kty:?}, expected \"EC\""
            )));
        }
        let crv = field("crv")?;
        let decode = |name: &str| -> Result<Vec<u8>, KeyError> {
            let text = field(name)?;
            b64url_decode_lenient(text)
                .ok_or_else(|| KeyError::InvalidJwk(format!("\"{name}\" is not base64url")))
        };
        let x = decode("x")?;
        let y = decode("y")?;
        Self::from_coordinates(crv, &x, &y)
    }

    /// Decodes a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) on a supported curve.
    pub fn from_spki_pem(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLarge {
                len: text.len(),
                limit: MAX_KEY_TEXT,
            });
        }
        let not_pem = || {
            KeyError::InvalidPem(
                "not a PEM SubjectPublicKeyInfo for an EC key on P-256, P-384 or P-521".into(),
            )
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|_| not_pem())?;
        if pem.label != "PUBLIC KEY" {
            return Err(not_pem());
        }
        Self::from_spki_der(&pem.contents).map_err(|_| not_pem())
    }

    /// Decodes a DER SubjectPublicKeyInfo on a supported curve: algorithm
    /// id-ecPublicKey with a named curve, and the point that curve's length.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use x509_parser::oid_registry::{
            OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
        };
        use x509_parser::prelude::FromDer as _;
        if der.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLarge {
                len: der.len(),
                limit: MAX_KEY_TEXT,
            });
        }
        let not_ec = || {
            KeyError::InvalidPem(
                "not a DER SubjectPublicKeyInfo for an EC key on P-256, P-384 or P-521".into(),
            )
        };
        let (rest, spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(der).map_err(|_| not_ec())?;
        if !rest.is_empty() || spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(not_ec());
        }
        let named = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(not_ec)?;
        let curve = if named == OID_EC_P256 {
            Curve::P256
        } else if named == OID_NIST_EC_P384 {
            Curve::P384
        } else if named == OID_NIST_EC_P521 {
            Curve::P521
        } else {
            return Err(not_ec());
        };
        let key = Self::from_sec1(&spki.subject_public_key.data).map_err(|_| not_ec())?;
        if key.curve != curve {
            return Err(not_ec());
        }
        Ok(key)
    }

    /// The uncompressed SEC1 encoding (`0x04 || x || y`).
    pub fn to_sec1(&self) -> Vec<u8> {
        self.sec1().to_vec()
    }

    fn sec1(&self) -> &[u8] {
        self.key.as_ref()
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The curve name (`P-256`, `P-384`, `P-521`).
    pub fn curve_name(&self) -> &'static str {
        self.curve.name()
    }

    /// Verifies a fixed-length `r || s` ECDSA signature over `msg`, hashed
    /// with the curve's hash (SHA-256, SHA-384, SHA-512). The caller checks
    /// that the algorithm it was asked for goes with this curve.
    pub(crate) fn verify_fixed(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(msg, sig).is_ok()
    }
}

/// Which encoding the realm token's RAK claim (44237) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RakEncoding {
    /// An uncompressed SEC1 point (the original CCA-SSD profile).
    Sec1,
    /// A COSE_Key map (the 2023 Arm profiles).
    CoseKey,
}

impl RakEncoding {
    /// Chooses the encoding from the profiles, as the protocol says: a
    /// COSE_Key when the realm profile is [`REALM_PROFILE_2023`], or when it
    /// is absent and the platform profile is [`PLATFORM_PROFILE_2023`];
    /// otherwise a raw SEC1 point.
    pub fn for_profiles(realm_profile: Option<&str>, platform_profile: Option<&str>) -> Self {
        match realm_profile {
            Some(REALM_PROFILE_2023) => Self::CoseKey,
            Some(_) => Self::Sec1,
            None if platform_profile == Some(PLATFORM_PROFILE_2023) => Self::CoseKey,
            None => Self::Sec1,
        }
    }
}

/// Decodes the RAK claim bytes with the encoding the profiles call for.
pub fn decode_rak(
    rak: &[u8],
    realm_profile: Option<&str>,
    platform_profile: Option<&str>,
) -> Result<PublicKey, KeyError> {
    match RakEncoding::for_profiles(realm_profile, platform_profile) {
        RakEncoding::Sec1 => PublicKey::from_sec1(rak),
        RakEncoding::CoseKey => PublicKey::from_cose_key(rak),
    }
}

/// Decodes base64url, with or without padding. `None` if invalid.
pub(crate) fn b64url_decode_lenient(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rak_encoding_follows_profiles() {
        use RakEncoding::*;
        assert_eq!(RakEncoding::for_profiles(None, None), Sec1);
        assert_eq!(
            RakEncoding::for_profiles(None, Some("http://arm.com/CCA-SSD/1.0.0")),
            Sec1
        );
        assert_eq!(
            RakEncoding::for_profiles(None, Some(PLATFORM_PROFILE_2023)),
            CoseKey
        );
        assert_eq!(
            RakEncoding::for_profiles(Some(REALM_PROFILE_2023), None),
            CoseKey
        );
        assert_eq!(
            RakEncoding::for_profiles(Some("other"), Some(PLATFORM_PROFILE_2023)),
            Sec1
        );
    }

    #[test]
    fn bad_points_are_errors() {
        assert!(matches!(
            PublicKey::from_sec1(&[]),
            Err(KeyError::InvalidPoint { .. })
        ));
        assert!(matches!(
            PublicKey::from_sec1(&[4; 97]),
            Err(KeyError::InvalidPoint { .. })
        ));
        assert!(matches!(
            PublicKey::from_sec1(&[4; 10]),
            Err(KeyError::InvalidPoint { .. })
        ));
        assert!(matches!(
            PublicKey::from_coordinates("P-192", &[0; 24], &[0; 24]),
            Err(KeyError::UnsupportedCurve(_))
        ));
    }

    #[test]
    fn spki_der_and_pem_import_the_same_point() {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
        for (alg, curve) in [
            (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Curve::P256),
            (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Curve::P384),
            (&signature::ECDSA_P521_SHA512_FIXED_SIGNING, Curve::P521),
        ] {
            let pair = EcdsaKeyPair::generate(alg).unwrap();
            let sec1 = pair.public_key().as_ref().to_vec();
            let der = pair.public_key().as_der().unwrap();
            let from_der = PublicKey::from_spki_der(der.as_ref()).unwrap();
            assert_eq!(from_der.curve(), curve);
            assert_eq!(from_der.to_sec1(), sec1);
            let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
            assert_eq!(PublicKey::from_spki_pem(&pem).unwrap(), from_der);
            let wrong_label = pem.replace("PUBLIC KEY", "CERTIFICATE");
            assert!(matches!(
                PublicKey::from_spki_pem(&wrong_label),
                Err(KeyError::InvalidPem(_))
            ));
        }
        assert!(matches!(
            PublicKey::from_spki_der(b"not der"),
            Err(KeyError::InvalidPem(_))
        ));
    }

    #[test]
    fn b64url_lenient() {
        assert_eq!(b64url_decode_lenient("AQ==").as_deref(), Some(&[1u8][..]));
        assert_eq!(b64url_decode_lenient("AQ").as_deref(), Some(&[1u8][..]));
        assert_eq!(b64url_decode_lenient("AQ==="), None);
        assert_eq!(b64url_decode_lenient("A+=="), None);
    }
}
