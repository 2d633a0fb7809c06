//! Local platform verification ("CPAK mode"), for deployments without
//! Veraison: the platform token's COSE signature is verified with a known
//! platform attestation key (CPAK).
//!
//! Key sources ([`PlatformKeys::from_bytes`] detects the format):
//!
//! - one key as a raw uncompressed SEC1 point (binary, 65/97/133 bytes),
//!   like `cpak-ab.pub`;
//! - one key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo);
//! - one key as a JWK (`{"kty":"EC",…}`);
//! - a trust-anchor list in Veraison's form
//!   `[{"instance-id": hex, "implementation-id": hex, "pkey": JWK}]`: the
//!   key is picked by the token's instance ID (claim 256) and, when the
//!   entry names one, the implementation ID (2396) must match too.
//!
//! Loading is strict: a key that is not a valid point, a malformed entry
//! or a duplicate instance ID fails the whole load, naming the entry.

use crate::cose::{verify_sign1, CoseError};
use crate::keys::{KeyError, PublicKey};
use crate::token::CcaToken;
use std::path::Path;

/// Largest accepted platform key file.
pub const MAX_KEY_FILE: u64 = 1024 * 1024;
/// Most entries accepted in a trust-anchor list.
pub const MAX_TRUST_ANCHORS: usize = 10_000;

/// Why platform keys could not be loaded or the platform token not verified.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The key file could not be read.
    #[error("cannot read platform key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is too large.
    #[error("platform key file too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Length.
        len: u64,
        /// Limit.
        limit: u64,
    },
    /// The content is none of the supported formats, or malformed.
    #[error("platform keys: {0}")]
    Format(String),
    /// A key is invalid (e.g. not a point on its curve).
    #[error("platform key {which}: {source}")]
    InvalidKey {
        /// Which key (e.g. `entry 0 (instance-id 01…)`).
        which: String,
        /// The key error.
        source: KeyError,
    },
    /// No trust anchor has the token's instance ID.
    #[error("no trusted platform key for instance ID {instance_id}")]
    UnknownInstanceId {
        /// The token's instance ID (hex).
        instance_id: String,
    },
    /// The trust anchor's implementation ID differs from the token's.
    #[error("implementation ID mismatch for instance ID {instance_id}: trusted {expected}, token {found}")]
    ImplementationIdMismatch {
        /// The instance ID (hex).
        instance_id: String,
        /// The trust anchor's implementation ID (hex).
        expected: String,
        /// The token's implementation ID (hex).
        found: String,
    },
    /// The platform token's signature does not verify with the key.
    #[error("platform token signature invalid: {0}")]
    BadSignature(#[source] CoseError),
}

/// One entry of a trust-anchor list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    /// The platform instance ID (claim 256).
    pub instance_id: Vec<u8>,
    /// The implementation ID (claim 2396), if the entry names one.
    pub implementation_id: Option<Vec<u8>>,
    /// The platform's public key.
    pub key: PublicKey,
}

/// The platform keys trusted in local CPAK mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformKeys {
    /// One key, trusted for every platform.
    Single(PublicKey),
    /// Keys picked by instance ID.
    TrustAnchors(Vec<TrustAnchor>),
}

impl PlatformKeys {
    /// Reads and decodes a key file (bounded to [`MAX_KEY_FILE`]).
    pub fn load(path: &Path) -> Result<Self, PlatformError> {
        let io = |source| PlatformError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEY_FILE {
            return Err(PlatformError::TooLarge {
                len,
                limit: MAX_KEY_FILE,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&bytes)
    }

    /// Decodes keys from bytes, detecting the format (see the module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PlatformError> {
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(PlatformError::TooLarge {
                len: bytes.len() as u64,
                limit: MAX_KEY_FILE,
            });
        }
        let single = |source| PlatformError::InvalidKey {
            which: "(single key)".into(),
            source,
        };
        if bytes.first() == Some(&0x04) && matches!(bytes.len(), 65 | 97 | 133) {
            return PublicKey::from_sec1(bytes)
                .map(Self::Single)
                .map_err(single);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PlatformError::Format("not a raw SEC1 point (65/97/133 bytes starting 0x04), PEM, JWK or trust-anchor JSON".into()))?
            .trim();
        if text.starts_with("-----BEGIN") {
            return PublicKey::from_spki_pem(text)
                .map(Self::Single)
                .map_err(single);
        }
        if text.starts_with('{') {
            return PublicKey::from_jwk_json(text.as_bytes())
                .map(Self::Single)
                .map_err(single);
        }
        if text.starts_with('[') {
            return Self::from_trust_anchor_json(text.as_bytes());
        }
        Err(PlatformError::Format(
            "not a raw SEC1 point (65/97/133 bytes starting 0x04), PEM, JWK or trust-anchor JSON"
                .into(),
        ))
    }

    /// Decodes a Veraison-style trust-anchor list.
    pub fn from_trust_anchor_json(text: &[u8]) -> Result<Self, PlatformError> {
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| PlatformError::Format(format!("trust-anchor list is not JSON: {e}")))?;
        let serde_json::Value::Array(entries) = value else {
            return Err(PlatformError::Format(
                "trust-anchor list must be a JSON array".into(),
            ));
        };
        if entries.is_empty() || entries.len() > MAX_TRUST_ANCHORS {
            return Err(PlatformError::Format(format!(
                "trust-anchor list must have 1 to {MAX_TRUST_ANCHORS} entries, found {}",
                entries.len()
            )));
        }
        let mut anchors: Vec<TrustAnchor> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let hex_field = |name: &str,
                             required: bool|
             -> Result<Option<Vec<u8>>, PlatformError> {
                match entry.get(name) {
                    None | Some(serde_json::Value::Null) if !required => Ok(None),
                    Some(serde_json::Value::String(s)) => hex::decode(s).map(Some).map_err(|e| {
                        PlatformError::Format(format!("entry {i}: \"{name}\" is not hex: {e}"))
                    }),
                    _ => Err(PlatformError::Format(format!(
                        "entry {i}: \"{name}\" missing or not a hex string"
                    ))),
                }
            };
            let instance_id = hex_field("instance-id", true)?.unwrap_or_default();
            if instance_id.is_empty() {
                return Err(PlatformError::Format(format!(
                    "entry {i}: \"instance-id\" is empty"
                )));
            }
            let implementation_id = hex_field("implementation-id", false)?;
            let which = format!("entry {i} (instance-id {})", hex::encode(&instance_id));
            let jwk = entry
                .get("pkey")
                .ok_or_else(|| PlatformError::Format(format!("{which}: \"pkey\" missing")))?;
            let key = PublicKey::from_jwk(jwk).map_err(|source| PlatformError::InvalidKey {
                which: which.clone(),
                source,
            })?;
            if anchors.iter().any(|a| a.instance_id == instance_id) {
                return Err(PlatformError::Format(format!(
                    "{which}: duplicate instance ID"
                )));
            }
            anchors.push(TrustAnchor {
                instance_id,
                implementation_id,
                key,
            });
        }
        Ok(Self::TrustAnchors(anchors))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::TrustAnchors(a) => a.len(),
        }
    }

    /// Whether there are no keys (never true for a loaded value).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key to verify `token`'s platform token with.
    pub fn key_for(&self, token: &CcaToken) -> Result<&PublicKey, PlatformError> {
        match self {
            Self::Single(k) => Ok(k),
            Self::TrustAnchors(anchors) => {
                let claims = &token.platform.claims;
                let anchor = anchors
                    .iter()
                    .find(|a| a.instance_id == claims.instance_id)
                    .ok_or_else(|| PlatformError::UnknownInstanceId {
                        instance_id: hex::encode(&claims.instance_id),
                    })?;
                if let Some(expected) = &anchor.implementation_id {
                    if *expected != claims.implementation_id {
                        return Err(PlatformError::ImplementationIdMismatch {
                            instance_id: hex::encode(&claims.instance_id),
                            expected: hex::encode(expected),
                            found: hex::encode(&claims.implementation_id),
                        });
                    }
                }
                Ok(&anchor.key)
            }
        }
    }

    /// Verifies the platform token's COSE_Sign1 signature with the right
    /// trusted key. This does not check the platform binding (see
    /// [`crate::verify::check_platform_binding`]).
    pub fn verify(&self, token: &CcaToken) -> Result<(), PlatformError> {
        let key = self.key_for(token)?;
        verify_sign1(&token.platform.sign1, key).map_err(PlatformError::BadSignature)?;
        Ok(())
    }
}
