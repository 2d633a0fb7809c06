//! EC public keys (P-256, P-384, P-521) in the encodings CCA and Veraison
//! use: raw SEC1 points, COSE_Key maps, JWK, and PEM/DER
//! SubjectPublicKeyInfo. Also the decoding of the realm attestation key
//! (RAK), whose encoding depends on the token's profiles.

use crate::cose::CoseAlg;
use base64::Engine as _;
use ciborium::value::Value;
use p256::pkcs8::DecodePublicKey as _;
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

/// An EC public key on one of the curves COSE ES256/384/512 use.
#[derive(Clone)]
pub enum PublicKey {
    /// A P-256 key (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// A P-384 key (ES384).
    P384(p384::ecdsa::VerifyingKey),
    /// A P-521 key (ES512).
    P521(p521::ecdsa::VerifyingKey),
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_sec1() == other.to_sec1()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.curve_name(),
            hex::encode(self.to_sec1())
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
        match len {
            65 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(Self::P256)
                .map_err(|_| point_err(len, "not a point on P-256")),
            97 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(Self::P384)
                .map_err(|_| point_err(len, "not a point on P-384")),
            133 => p521::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(Self::P521)
                .map_err(|_| point_err(len, "not a point on P-521")),
            _ => Err(point_err(len, "length is not 65, 97 or 133")),
        }
    }

    /// Builds a key from affine coordinates on the named curve
    /// (`P-256`, `P-384`, `P-521`), checking the point is on the curve.
    pub fn from_coordinates(curve: &str, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let size = match curve {
            "P-256" => 32,
            "P-384" => 48,
            "P-521" => 66,
            other => return Err(KeyError::UnsupportedCurve(other.to_string())),
        };
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
        let mut sec1 = Vec::with_capacity(1 + 2 * size);
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
            serde_json::from_slice(text).map_err(|e| KeyError::InvalidJwk(e.to_string()))?;
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
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::PublicKey::from_public_key_pem(text) {
            return p521_from_public(&k);
        }
        Err(KeyError::InvalidPem(
            "not a PEM SubjectPublicKeyInfo for an EC key on P-256, P-384 or P-521".into(),
        ))
    }

    /// Decodes a DER SubjectPublicKeyInfo on a supported curve.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if der.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLarge {
                len: der.len(),
                limit: MAX_KEY_TEXT,
            });
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
            return p521_from_public(&k);
        }
        Err(KeyError::InvalidPem(
            "not a DER SubjectPublicKeyInfo for an EC key on P-256, P-384 or P-521".into(),
        ))
    }

    /// The uncompressed SEC1 encoding (`0x04 || x || y`).
    pub fn to_sec1(&self) -> Vec<u8> {
        match self {
            Self::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            Self::P384(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            Self::P521(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// The curve name (`P-256`, `P-384`, `P-521`).
    pub fn curve_name(&self) -> &'static str {
        match self {
            Self::P256(_) => "P-256",
            Self::P384(_) => "P-384",
            Self::P521(_) => "P-521",
        }
    }

    /// The COSE algorithm that goes with this key's curve.
    pub fn cose_alg(&self) -> CoseAlg {
        match self {
            Self::P256(_) => CoseAlg::Es256,
            Self::P384(_) => CoseAlg::Es384,
            Self::P521(_) => CoseAlg::Es512,
        }
    }
}

fn p521_from_public(k: &p521::PublicKey) -> Result<PublicKey, KeyError> {
    p521::ecdsa::VerifyingKey::from_affine(*k.as_affine())
        .map(PublicKey::P521)
        .map_err(|_| KeyError::InvalidPem("invalid P-521 point".into()))
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
    fn b64url_lenient() {
        assert_eq!(b64url_decode_lenient("AQ==").as_deref(), Some(&[1u8][..]));
        assert_eq!(b64url_decode_lenient("AQ").as_deref(), Some(&[1u8][..]));
        assert_eq!(b64url_decode_lenient("AQ==="), None);
        assert_eq!(b64url_decode_lenient("A+=="), None);
    }
}
