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
//! Loading is strict: a key that is not a valid point, a malformed entry,
//! an unknown key in an entry or a duplicate instance ID fails the whole
//! load, naming the entry.
//!
//! ## Platform appraisal
//!
//! Beyond its signature, a platform is judged by its state:
//!
//! - [`check_lifecycle`]: the security lifecycle (2395) must be "secured"
//!   (`0x3000`–`0x30ff`); debug, provisioning, decommissioned and unknown
//!   states are refused, in every mode;
//! - a trust-anchor entry may carry `"reference-values"`:
//!   `{"profile": text, "platform-config": hex, "hash-algo-id": text,
//!   "sw-components": [{"measurement-value": hex, "signer-id": hex,
//!   "measurement-type": text, "version": text, "hash-algo-id": text}]}`
//!   (all but `measurement-value` and `signer-id` optional). They are
//!   matched as Veraison matches its CCA endorsements: every reference
//!   component must be in the token with the same measurement and signer
//!   ID (and type, version and hash algorithm when the reference gives
//!   them; a component without its own hash algorithm has the platform's,
//!   claim 2402); in addition every component of the token must be one of
//!   the reference components, and the profile, platform configuration and
//!   hash algorithm (when given) must equal claims 265, 2401 and 2402.
//!
//! An entry is *pinned* when its reference values list the software
//! components ([`PlatformKeys::firmware_pins`]): only that firmware
//! passes. A single key, or an entry without `sw-components`, accepts
//! any firmware the platform key signs (servers refuse to start with such
//! keys unless told to accept any firmware).

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
    /// The security lifecycle is not "secured" (0x3000-0x30ff).
    #[error("platform security lifecycle {value:#06x} ({state}) is not secured (0x3000-0x30ff)")]
    Lifecycle {
        /// The claim (2395).
        value: u64,
        /// The state it names.
        state: &'static str,
    },
    /// The platform differs from the trust anchor's reference values.
    #[error("platform does not match its reference values: {0}")]
    Mismatch(String),
}

/// Lowest security lifecycle value of the "secured" state.
pub const LIFECYCLE_SECURED_MIN: u64 = 0x3000;
/// Highest security lifecycle value of the "secured" state.
pub const LIFECYCLE_SECURED_MAX: u64 = 0x30ff;

/// The CCA lifecycle state a claim value names (for messages).
pub fn lifecycle_state(value: u64) -> &'static str {
    match value {
        0x0000..=0x00ff => "unknown",
        0x1000..=0x10ff => "assembly and test",
        0x2000..=0x20ff => "CCA platform RoT provisioning",
        0x3000..=0x30ff => "secured",
        0x4000..=0x40ff => "non-CCA platform debug",
        0x5000..=0x50ff => "recoverable CCA platform debug",
        0x6000..=0x60ff => "decommissioned",
        _ => "invalid",
    }
}

/// Refuses a platform whose security lifecycle (2395) is not "secured".
pub fn check_lifecycle(token: &CcaToken) -> Result<(), PlatformError> {
    let value = token.platform.claims.lifecycle;
    if (LIFECYCLE_SECURED_MIN..=LIFECYCLE_SECURED_MAX).contains(&value) {
        Ok(())
    } else {
        Err(PlatformError::Lifecycle {
            value,
            state: lifecycle_state(value),
        })
    }
}

/// One reference software component of a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwReference {
    /// Measurement value (component field 2).
    pub measurement: Vec<u8>,
    /// Signer ID (field 5).
    pub signer_id: Vec<u8>,
    /// Measurement type (field 1), compared when given.
    pub measurement_type: Option<String>,
    /// Version (field 4), compared when given.
    pub version: Option<String>,
    /// Hash algorithm of the measurement (field 6, or the platform's
    /// claim 2402 when the component has none), compared when given.
    pub hash_alg: Option<String>,
}

impl SwReference {
    /// Whether component `c` of a platform whose hash algorithm (2402) is
    /// `platform_hash_alg` is this one.
    fn matches(&self, c: &crate::token::SwComponent, platform_hash_alg: &str) -> bool {
        self.measurement == c.measurement
            && self.signer_id == c.signer_id
            && self
                .measurement_type
                .as_ref()
                .is_none_or(|t| c.measurement_type.as_ref() == Some(t))
            && self
                .version
                .as_ref()
                .is_none_or(|v| c.version.as_ref() == Some(v))
            && self
                .hash_alg
                .as_ref()
                .is_none_or(|h| c.hash_alg.as_deref().unwrap_or(platform_hash_alg) == h)
    }
}

/// Reference values of one platform (a trust-anchor entry's
/// `"reference-values"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformReference {
    /// Expected profile (265), if given.
    pub profile: Option<String>,
    /// Expected platform configuration (2401), if given.
    pub config: Option<Vec<u8>>,
    /// Expected platform hash algorithm (2402), if given.
    pub hash_alg: Option<String>,
    /// The software components the platform may run, if given.
    pub sw_components: Option<Vec<SwReference>>,
}

impl PlatformReference {
    /// Compares the platform claims of `token` (see the module docs).
    pub fn check(&self, token: &CcaToken) -> Result<(), PlatformError> {
        let claims = &token.platform.claims;
        if let Some(profile) = &self.profile {
            if *profile != claims.profile {
                return Err(PlatformError::Mismatch(format!(
                    "profile {:?}, expected {profile:?}",
                    claims.profile
                )));
            }
        }
        if let Some(config) = &self.config {
            if *config != claims.config {
                return Err(PlatformError::Mismatch(format!(
                    "platform configuration {}, expected {}",
                    hex::encode(&claims.config),
                    hex::encode(config)
                )));
            }
        }
        if let Some(alg) = &self.hash_alg {
            if *alg != claims.hash_alg {
                return Err(PlatformError::Mismatch(format!(
                    "platform hash algorithm {:?}, expected {alg:?}",
                    claims.hash_alg
                )));
            }
        }
        let Some(refs) = &self.sw_components else {
            return Ok(());
        };
        let platform_alg = claims.hash_alg.as_str();
        for (i, c) in claims.sw_components.iter().enumerate() {
            if !refs.iter().any(|r| r.matches(c, platform_alg)) {
                return Err(PlatformError::Mismatch(format!(
                    "software component {i} ({} measurement {} signer {}) is not a reference component",
                    c.measurement_type.as_deref().unwrap_or("-"),
                    hex::encode(&c.measurement),
                    hex::encode(&c.signer_id)
                )));
            }
        }
        for r in refs {
            if !claims
                .sw_components
                .iter()
                .any(|c| r.matches(c, platform_alg))
            {
                return Err(PlatformError::Mismatch(format!(
                    "reference component {} (measurement {}) is missing from the token",
                    r.measurement_type.as_deref().unwrap_or("-"),
                    hex::encode(&r.measurement)
                )));
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatformReference {
    #[serde(default)]
    profile: Option<String>,
    #[serde(default, rename = "platform-config")]
    config: Option<String>,
    #[serde(default, rename = "hash-algo-id")]
    hash_alg: Option<String>,
    #[serde(default, rename = "sw-components")]
    sw_components: Option<Vec<RawSwReference>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwReference {
    #[serde(rename = "measurement-value")]
    measurement: String,
    #[serde(rename = "signer-id")]
    signer_id: String,
    #[serde(default, rename = "measurement-type")]
    measurement_type: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default, rename = "hash-algo-id")]
    hash_alg: Option<String>,
}

/// Most reference software components per platform.
pub const MAX_SW_REFERENCES: usize = 256;

fn platform_reference(
    value: &serde_json::Value,
    which: &str,
) -> Result<PlatformReference, PlatformError> {
    let bad =
        |reason: String| PlatformError::Format(format!("{which}: reference-values: {reason}"));
    let raw: RawPlatformReference =
        serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
    let sw_components = match raw.sw_components {
        None => None,
        Some(list) => {
            if list.len() > MAX_SW_REFERENCES {
                return Err(bad(format!("more than {MAX_SW_REFERENCES} sw-components")));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, c) in list.into_iter().enumerate() {
                let hex_of = |name: &str, text: &str| {
                    hex::decode(text)
                        .map_err(|e| bad(format!("sw-components[{i}].{name} is not hex: {e}")))
                };
                let measurement = hex_of("measurement-value", &c.measurement)?;
                let signer_id = hex_of("signer-id", &c.signer_id)?;
                if measurement.is_empty() || signer_id.is_empty() {
                    return Err(bad(format!(
                        "sw-components[{i}]: empty measurement or signer-id"
                    )));
                }
                out.push(SwReference {
                    measurement,
                    signer_id,
                    measurement_type: c.measurement_type,
                    version: c.version,
                    hash_alg: c.hash_alg,
                });
            }
            Some(out)
        }
    };
    let config = raw
        .config
        .map(|text| hex::decode(&text).map_err(|e| bad(format!("platform-config is not hex: {e}"))))
        .transpose()?;
    Ok(PlatformReference {
        profile: raw.profile,
        config,
        hash_alg: raw.hash_alg,
        sw_components,
    })
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
    /// The platform's reference values, if the entry gives them.
    pub reference: Option<PlatformReference>,
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
        // Strict: a key written twice in an entry is refused, naming it.
        let value: serde_json::Value = ir_oci::json::from_slice(text)
            .map_err(|e| PlatformError::Format(format!("trust-anchor list: {e}")))?;
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
            if let Some(obj) = entry.as_object() {
                if let Some(unknown) = obj.keys().find(|k| {
                    !matches!(
                        k.as_str(),
                        "instance-id" | "implementation-id" | "pkey" | "reference-values"
                    )
                }) {
                    return Err(PlatformError::Format(format!(
                        "entry {i}: unknown key {unknown:?} (known: instance-id, implementation-id, pkey, reference-values)"
                    )));
                }
            }
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
            let reference = entry
                .get("reference-values")
                .map(|v| platform_reference(v, &which))
                .transpose()?;
            anchors.push(TrustAnchor {
                instance_id,
                implementation_id,
                key,
                reference,
            });
        }
        Ok(Self::TrustAnchors(anchors))
    }

    /// Each key with whether the firmware it accepts is pinned: `(label,
    /// pinned)`, where a key is pinned when its reference values list the
    /// software components (a single key never is). For the start-up
    /// report, and to refuse unpinned keys unless any firmware is allowed.
    pub fn firmware_pins(&self) -> Vec<(String, bool)> {
        match self {
            Self::Single(_) => vec![("single key (any platform)".to_string(), false)],
            Self::TrustAnchors(anchors) => anchors
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let pinned = a
                        .reference
                        .as_ref()
                        .is_some_and(|r| r.sw_components.is_some());
                    (
                        format!("entry {i} (instance-id {})", hex::encode(&a.instance_id)),
                        pinned,
                    )
                })
                .collect(),
        }
    }

    /// The first key whose private half is published
    /// ([`crate::published`]): `(label, which key it is)`.
    pub fn published_key(&self) -> Option<(String, &'static str)> {
        match self {
            Self::Single(k) => {
                crate::published::published_key(k).map(|name| ("single key".to_string(), name))
            }
            Self::TrustAnchors(anchors) => anchors.iter().enumerate().find_map(|(i, a)| {
                crate::published::published_key(&a.key).map(|name| {
                    (
                        format!("entry {i} (instance-id {})", hex::encode(&a.instance_id)),
                        name,
                    )
                })
            }),
        }
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
        self.anchor_for(token).map(|(key, _)| key)
    }

    /// The key for `token` and the reference values its entry gives.
    fn anchor_for(
        &self,
        token: &CcaToken,
    ) -> Result<(&PublicKey, Option<&PlatformReference>), PlatformError> {
        match self {
            Self::Single(k) => Ok((k, None)),
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
                Ok((&anchor.key, anchor.reference.as_ref()))
            }
        }
    }

    /// Appraises the platform locally: the security lifecycle
    /// ([`check_lifecycle`]), the entry's reference values if any (cheap
    /// comparisons first), then the platform token's COSE_Sign1 signature
    /// with the right trusted key. This does not check the platform
    /// binding (see [`crate::verify::check_platform_binding`]).
    pub fn verify(&self, token: &CcaToken) -> Result<(), PlatformError> {
        let (key, reference) = self.anchor_for(token)?;
        check_lifecycle(token)?;
        if let Some(reference) = reference {
            reference.check(token)?;
        }
        verify_sign1(&token.platform.sign1, key).map_err(PlatformError::BadSignature)?;
        Ok(())
    }
}
