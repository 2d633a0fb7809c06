//! Parsing of Arm CCA attestation tokens.
//!
//! A CCA token is CBOR tag 399 wrapping a map of two byte strings: key
//! 44234 the platform token, key 44241 the realm delegated token, in either
//! order. Each is a COSE_Sign1 (tag 18) whose payload is a CBOR map of
//! claims. Parsing checks every known claim for its type and size,
//! tolerates unknown claims, rejects duplicates and trailing bytes, and
//! bounds every size. Parsing does NOT verify signatures: see
//! [`crate::verify`].

use crate::cbor::{decode_exact, int_key, type_name};
use ciborium::value::Value;
use coset::{CoseSign1, TaggedCborSerializable as _};
use std::fmt;

/// Largest accepted CCA token (the whole tag-399 collection).
pub const MAX_TOKEN_SIZE: usize = 64 * 1024;
/// CBOR tag of the CCA token collection.
pub const CCA_TOKEN_TAG: u64 = 399;
/// Collection key of the platform token.
pub const KEY_PLATFORM_TOKEN: i64 = 44234;
/// Collection key of the realm delegated token.
pub const KEY_REALM_TOKEN: i64 = 44241;
/// Most claims accepted in one token (known and unknown together).
pub const MAX_CLAIMS: usize = 64;
/// Most software components accepted in the platform token.
pub const MAX_SW_COMPONENTS: usize = 64;
/// Longest accepted text claim, in bytes.
pub const MAX_TEXT_CLAIM: usize = 1024;
/// Longest accepted byte-string claim of unbounded kind (RAK, config,
/// signer ID…), in bytes.
pub const MAX_BYTES_CLAIM: usize = 4096;

/// Realm claim keys.
pub mod realm_keys {
    /// Realm challenge (64 bytes).
    pub const CHALLENGE: i64 = 10;
    /// Realm profile (text, newer tokens).
    pub const PROFILE: i64 = 265;
    /// Realm personalization value (64 bytes).
    pub const PERSONALIZATION: i64 = 44235;
    /// Realm measurement hash algorithm (text).
    pub const MEASUREMENT_HASH_ALG: i64 = 44236;
    /// Realm attestation public key (bytes).
    pub const RAK: i64 = 44237;
    /// Realm initial measurement (bytes).
    pub const RIM: i64 = 44238;
    /// Realm extensible measurements (array of 4 byte strings).
    pub const REMS: i64 = 44239;
    /// RAK hash algorithm (text).
    pub const RAK_HASH_ALG: i64 = 44240;
}

/// Platform claim keys.
pub mod platform_keys {
    /// Platform challenge (hash of the RAK).
    pub const CHALLENGE: i64 = 10;
    /// Instance ID (UEID).
    pub const INSTANCE_ID: i64 = 256;
    /// Platform profile (text).
    pub const PROFILE: i64 = 265;
    /// Security lifecycle (unsigned integer).
    pub const LIFECYCLE: i64 = 2395;
    /// Implementation ID (bytes).
    pub const IMPLEMENTATION_ID: i64 = 2396;
    /// Software components (array of maps).
    pub const SW_COMPONENTS: i64 = 2399;
    /// Verification service indicator (text).
    pub const VERIFICATION_SERVICE: i64 = 2400;
    /// Platform configuration (bytes).
    pub const CONFIG: i64 = 2401;
    /// Platform hash algorithm (text).
    pub const HASH_ALG: i64 = 2402;
}

/// Which part of the token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The outer tag-399 collection.
    Collection,
    /// The platform token (44234).
    Platform,
    /// The realm delegated token (44241).
    Realm,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Collection => "CCA token collection",
            Part::Platform => "platform token",
            Part::Realm => "realm token",
        })
    }
}

/// Why a token could not be parsed; every variant says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is larger than [`MAX_TOKEN_SIZE`].
    #[error("CCA token too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Length given.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The CBOR or COSE structure is wrong.
    #[error("{part}: {reason}")]
    Malformed {
        /// Where.
        part: Part,
        /// What was wrong.
        reason: String,
    },
    /// A required claim is absent.
    #[error("{part}: claim {key} ({name}) is missing")]
    MissingClaim {
        /// Where.
        part: Part,
        /// Claim key.
        key: i64,
        /// Claim name.
        name: &'static str,
    },
    /// A claim appears twice.
    #[error("{part}: claim {key} appears more than once")]
    DuplicateClaim {
        /// Where.
        part: Part,
        /// Claim key.
        key: i64,
    },
    /// A claim has the wrong type or size.
    #[error("{part}: claim {key} ({name}): expected {expected}, found {found}")]
    BadClaim {
        /// Where.
        part: Part,
        /// Claim key.
        key: i64,
        /// Claim name.
        name: &'static str,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
}

/// One software component of the platform token (claim 2399).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwComponent {
    /// Measurement type (1), e.g. `BL`, `RMM`.
    pub measurement_type: Option<String>,
    /// Measurement value (2).
    pub measurement: Vec<u8>,
    /// Version (4).
    pub version: Option<String>,
    /// Signer ID (5).
    pub signer_id: Vec<u8>,
    /// Hash algorithm (6).
    pub hash_alg: Option<String>,
}

/// The claims of the platform token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformClaims {
    /// Challenge (10): the hash of the RAK claim bytes.
    pub challenge: Vec<u8>,
    /// Instance ID (256): picks the platform key in trust-anchor lists.
    pub instance_id: Vec<u8>,
    /// Profile (265), e.g. `http://arm.com/CCA-SSD/1.0.0`.
    pub profile: String,
    /// Security lifecycle (2395).
    pub lifecycle: u64,
    /// Implementation ID (2396).
    pub implementation_id: Vec<u8>,
    /// Software components (2399).
    pub sw_components: Vec<SwComponent>,
    /// Verification service indicator (2400), optional.
    pub verification_service: Option<String>,
    /// Configuration (2401).
    pub config: Vec<u8>,
    /// Hash algorithm (2402).
    pub hash_alg: String,
}

/// The claims of the realm delegated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmClaims {
    /// Challenge (10): SHA-512(server challenge || client SPKI) in RA-TLS.
    pub challenge: [u8; 64],
    /// Personalization value (44235).
    pub personalization: [u8; 64],
    /// Measurement hash algorithm (44236), e.g. `sha-256`.
    pub measurement_hash_alg: String,
    /// RAK claim bytes (44237) exactly as sent (SEC1 point or COSE_Key).
    pub rak: Vec<u8>,
    /// Realm initial measurement (44238).
    pub rim: Vec<u8>,
    /// The four realm extensible measurements (44239).
    pub rems: [Vec<u8>; 4],
    /// RAK hash algorithm (44240), e.g. `sha-256`.
    pub rak_hash_alg: String,
    /// Realm profile (265), absent in older tokens.
    pub profile: Option<String>,
}

/// One parsed inner token: its COSE_Sign1 (for signature checks) and its
/// claims.
#[derive(Debug, Clone)]
pub struct SignedToken<C> {
    /// The COSE_Sign1 as received (protected header bytes kept verbatim).
    pub sign1: CoseSign1,
    /// The parsed claims of its payload.
    pub claims: C,
}

/// A parsed (not yet verified) CCA token.
#[derive(Debug, Clone)]
pub struct CcaToken {
    /// The platform token (44234).
    pub platform: SignedToken<PlatformClaims>,
    /// The realm delegated token (44241).
    pub realm: SignedToken<RealmClaims>,
}

impl CcaToken {
    /// Parses a CCA token. Does not verify signatures or bindings.
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() > MAX_TOKEN_SIZE {
            return Err(TokenError::TooLarge {
                len: bytes.len(),
                limit: MAX_TOKEN_SIZE,
            });
        }
        let collection = |reason: String| TokenError::Malformed {
            part: Part::Collection,
            reason,
        };
        let value = decode_exact(bytes).map_err(collection)?;
        let inner = match value {
            Value::Tag(CCA_TOKEN_TAG, inner) => *inner,
            Value::Tag(t, _) => {
                return Err(collection(format!("expected CBOR tag 399, found tag {t}")))
            }
            other => {
                return Err(collection(format!(
                    "expected CBOR tag 399, found {}",
                    type_name(&other)
                )))
            }
        };
        let Value::Map(entries) = inner else {
            return Err(collection(format!(
                "expected a map inside tag 399, found {}",
                type_name(&inner)
            )));
        };
        if entries.len() != 2 {
            return Err(collection(format!(
                "expected a map of exactly 2 entries (44234, 44241), found {}",
                entries.len()
            )));
        }
        let (mut platform, mut realm) = (None, None);
        for (k, v) in entries {
            let key = int_key(&k);
            let slot = match key {
                Some(KEY_PLATFORM_TOKEN) => &mut platform,
                Some(KEY_REALM_TOKEN) => &mut realm,
                _ => {
                    // Named by its type or integer only: the key is the
                    // sender's and may be a 60,000-element array.
                    let found = match key {
                        Some(n) => n.to_string(),
                        None => type_name(&k).to_string(),
                    };
                    return Err(collection(format!(
                        "unexpected map key {found} (want 44234 and 44241)"
                    )));
                }
            };
            if slot.is_some() {
                return Err(collection(format!(
                    "map key {} appears twice",
                    key.unwrap_or_default()
                )));
            }
            match v {
                Value::Bytes(b) => *slot = Some(b),
                other => {
                    return Err(collection(format!(
                        "entry {}: expected a byte string, found {}",
                        key.unwrap_or_default(),
                        type_name(&other)
                    )))
                }
            }
        }
        let platform =
            platform.ok_or_else(|| collection("platform token (44234) missing".into()))?;
        let realm = realm.ok_or_else(|| collection("realm token (44241) missing".into()))?;
        // Parse the realm token first: its failures are the more common.
        let realm = parse_signed(&realm, Part::Realm, parse_realm_claims)?;
        let platform = parse_signed(&platform, Part::Platform, parse_platform_claims)?;
        Ok(Self { platform, realm })
    }

    /// A one-line description for logs (never the whole token): RIM,
    /// measurement hash, profiles and instance ID.
    pub fn summary(&self) -> String {
        let r = &self.realm.claims;
        let p = &self.platform.claims;
        format!(
            "rim={} hash={} realm-profile={} platform-profile={} instance-id={}",
            hex::encode(&r.rim),
            r.measurement_hash_alg,
            r.profile.as_deref().unwrap_or("-"),
            p.profile,
            hex::encode(&p.instance_id)
        )
    }
}

/// A parser of one inner token's claims map.
type ClaimsParser<C> = fn(&[(Value, Value)], Part) -> Result<C, TokenError>;

fn parse_signed<C>(
    bytes: &[u8],
    part: Part,
    claims: ClaimsParser<C>,
) -> Result<SignedToken<C>, TokenError> {
    let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|e| TokenError::Malformed {
        part,
        reason: format!("not a tagged COSE_Sign1 (tag 18): {e}"),
    })?;
    let payload = sign1.payload.as_deref().ok_or(TokenError::Malformed {
        part,
        reason: "COSE_Sign1 payload is detached (nil)".into(),
    })?;
    let value = decode_exact(payload).map_err(|reason| TokenError::Malformed {
        part,
        reason: format!("payload: {reason}"),
    })?;
    let Value::Map(entries) = value else {
        return Err(TokenError::Malformed {
            part,
            reason: format!(
                "payload: expected a claims map, found {}",
                type_name(&value)
            ),
        });
    };
    if entries.len() > MAX_CLAIMS {
        return Err(TokenError::Malformed {
            part,
            reason: format!("payload has {} claims (limit {MAX_CLAIMS})", entries.len()),
        });
    }
    let claims = claims(&entries, part)?;
    Ok(SignedToken { sign1, claims })
}

/// Claim lookup over a claims map, with duplicate detection.
struct Claims<'a> {
    part: Part,
    entries: &'a [(Value, Value)],
}

impl<'a> Claims<'a> {
    fn new(entries: &'a [(Value, Value)], part: Part) -> Result<Self, TokenError> {
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in entries {
            if let Some(key) = int_key(k) {
                if !seen.insert(key) {
                    return Err(TokenError::DuplicateClaim { part, key });
                }
            }
        }
        Ok(Self { part, entries })
    }

    fn get(&self, key: i64) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| int_key(k) == Some(key))
            .map(|(_, v)| v)
    }

    fn required(&self, key: i64, name: &'static str) -> Result<&'a Value, TokenError> {
        self.get(key).ok_or(TokenError::MissingClaim {
            part: self.part,
            key,
            name,
        })
    }

    fn bad(
        &self,
        key: i64,
        name: &'static str,
        expected: impl Into<String>,
        found: String,
    ) -> TokenError {
        TokenError::BadClaim {
            part: self.part,
            key,
            name,
            expected: expected.into(),
            found,
        }
    }

    /// A byte string whose length is in `lens` (or any length up to
    /// [`MAX_BYTES_CLAIM`] when `lens` is empty).
    fn bytes_of(
        &self,
        v: &Value,
        key: i64,
        name: &'static str,
        lens: &[usize],
    ) -> Result<Vec<u8>, TokenError> {
        let expected = || match lens {
            [] => format!("a byte string of at most {MAX_BYTES_CLAIM} bytes"),
            [n] => format!("a byte string of {n} bytes"),
            _ => format!(
                "a byte string of {} bytes",
                lens.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        match v {
            Value::Bytes(b) => {
                let ok = if lens.is_empty() {
                    b.len() <= MAX_BYTES_CLAIM
                } else {
                    lens.contains(&b.len())
                };
                if ok {
                    Ok(b.clone())
                } else {
                    Err(self.bad(key, name, expected(), format!("{} bytes", b.len())))
                }
            }
            other => Err(self.bad(key, name, expected(), type_name(other).into())),
        }
    }

    fn bytes(&self, key: i64, name: &'static str, lens: &[usize]) -> Result<Vec<u8>, TokenError> {
        let v = self.required(key, name)?;
        self.bytes_of(v, key, name, lens)
    }

    fn text_of(&self, v: &Value, key: i64, name: &'static str) -> Result<String, TokenError> {
        match v {
            Value::Text(t) if t.len() <= MAX_TEXT_CLAIM => Ok(t.clone()),
            Value::Text(t) => Err(self.bad(
                key,
                name,
                format!("a text string of at most {MAX_TEXT_CLAIM} bytes"),
                format!("{} bytes", t.len()),
            )),
            other => Err(self.bad(key, name, "a text string", type_name(other).into())),
        }
    }

    fn text(&self, key: i64, name: &'static str) -> Result<String, TokenError> {
        let v = self.required(key, name)?;
        self.text_of(v, key, name)
    }

    fn opt_text(&self, key: i64, name: &'static str) -> Result<Option<String>, TokenError> {
        self.get(key)
            .map(|v| self.text_of(v, key, name))
            .transpose()
    }
}

const MEASUREMENT_LENS: &[usize] = &[32, 48, 64];

fn array64(v: Vec<u8>) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Callers checked the length is 64; copy defensively anyway.
    let n = v.len().min(64);
    out[..n].copy_from_slice(&v[..n]);
    out
}

fn parse_realm_claims(entries: &[(Value, Value)], part: Part) -> Result<RealmClaims, TokenError> {
    use realm_keys::*;
    let c = Claims::new(entries, part)?;
    let challenge = array64(c.bytes(CHALLENGE, "challenge", &[64])?);
    let personalization = array64(c.bytes(PERSONALIZATION, "personalization value", &[64])?);
    let measurement_hash_alg = c.text(MEASUREMENT_HASH_ALG, "measurement hash algorithm")?;
    let rak = c.bytes(RAK, "realm attestation key", &[])?;
    if rak.is_empty() {
        return Err(c.bad(
            RAK,
            "realm attestation key",
            "a non-empty byte string",
            "0 bytes".into(),
        ));
    }
    let rim = c.bytes(RIM, "RIM", MEASUREMENT_LENS)?;
    let rems_value = c.required(REMS, "REMs")?;
    let rems = match rems_value {
        Value::Array(items) if items.len() == 4 => {
            let mut out: [Vec<u8>; 4] = Default::default();
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = c
                    .bytes_of(item, REMS, "REMs", MEASUREMENT_LENS)
                    .map_err(|e| match e {
                        TokenError::BadClaim {
                            part,
                            key,
                            name,
                            expected,
                            found,
                        } => TokenError::BadClaim {
                            part,
                            key,
                            name,
                            expected: format!("an array of 4 × {expected}"),
                            found: format!("an element with {found}"),
                        },
                        other => other,
                    })?;
            }
            out
        }
        Value::Array(items) => {
            return Err(c.bad(
                REMS,
                "REMs",
                "an array of 4 byte strings",
                format!("an array of {}", items.len()),
            ))
        }
        other => {
            return Err(c.bad(
                REMS,
                "REMs",
                "an array of 4 byte strings",
                type_name(other).into(),
            ))
        }
    };
    let rak_hash_alg = c.text(RAK_HASH_ALG, "RAK hash algorithm")?;
    let profile = c.opt_text(PROFILE, "profile")?;
    Ok(RealmClaims {
        challenge,
        personalization,
        measurement_hash_alg,
        rak,
        rim,
        rems,
        rak_hash_alg,
        profile,
    })
}

fn parse_platform_claims(
    entries: &[(Value, Value)],
    part: Part,
) -> Result<PlatformClaims, TokenError> {
    use platform_keys::*;
    let c = Claims::new(entries, part)?;
    let challenge = c.bytes(CHALLENGE, "challenge", MEASUREMENT_LENS)?;
    let instance_id = c.bytes(INSTANCE_ID, "instance ID", &[])?;
    if instance_id.is_empty() || instance_id.len() > 64 {
        return Err(c.bad(
            INSTANCE_ID,
            "instance ID",
            "a byte string of 1 to 64 bytes",
            format!("{} bytes", instance_id.len()),
        ));
    }
    let profile = c.text(PROFILE, "profile")?;
    let lifecycle = match c.required(LIFECYCLE, "security lifecycle")? {
        Value::Integer(i) => u64::try_from(i128::from(*i)).map_err(|_| {
            c.bad(
                LIFECYCLE,
                "security lifecycle",
                "an unsigned integer",
                "a negative integer".into(),
            )
        })?,
        other => {
            return Err(c.bad(
                LIFECYCLE,
                "security lifecycle",
                "an unsigned integer",
                type_name(other).into(),
            ))
        }
    };
    let implementation_id = c.bytes(IMPLEMENTATION_ID, "implementation ID", &[])?;
    let sw_components = match c.required(SW_COMPONENTS, "software components")? {
        Value::Array(items) if items.len() <= MAX_SW_COMPONENTS => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_sw_component(&c, i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Array(items) => {
            return Err(c.bad(
                SW_COMPONENTS,
                "software components",
                format!("at most {MAX_SW_COMPONENTS} components"),
                format!("{}", items.len()),
            ))
        }
        other => {
            return Err(c.bad(
                SW_COMPONENTS,
                "software components",
                "an array of maps",
                type_name(other).into(),
            ))
        }
    };
    let verification_service = c.opt_text(VERIFICATION_SERVICE, "verification service")?;
    let config = c.bytes(CONFIG, "configuration", &[])?;
    let hash_alg = c.text(HASH_ALG, "hash algorithm")?;
    Ok(PlatformClaims {
        challenge,
        instance_id,
        profile,
        lifecycle,
        implementation_id,
        sw_components,
        verification_service,
        config,
        hash_alg,
    })
}

fn parse_sw_component(
    c: &Claims<'_>,
    index: usize,
    item: &Value,
) -> Result<SwComponent, TokenError> {
    const KEY: i64 = platform_keys::SW_COMPONENTS;
    const NAME: &str = "software components";
    let bad = |expected: String, found: String| {
        c.bad(KEY, NAME, expected, format!("component {index}: {found}"))
    };
    let Value::Map(fields) = item else {
        return Err(bad("an array of maps".into(), type_name(item).into()));
    };
    let (mut measurement_type, mut measurement, mut version, mut signer_id, mut hash_alg) =
        (None, None, None, None, None);
    for (k, v) in fields {
        let Some(field) = int_key(k) else { continue };
        let text = || match v {
            Value::Text(t) if t.len() <= MAX_TEXT_CLAIM => Ok(t.clone()),
            other => Err(bad(
                format!("field {field} a text string"),
                type_name(other).into(),
            )),
        };
        let bytes = || match v {
            Value::Bytes(b) if b.len() <= MAX_BYTES_CLAIM => Ok(b.clone()),
            other => Err(bad(
                format!("field {field} a byte string"),
                type_name(other).into(),
            )),
        };
        let dup = |present: bool| {
            if present {
                Err(bad(format!("field {field} once"), "twice".into()))
            } else {
                Ok(())
            }
        };
        match field {
            1 => {
                dup(measurement_type.is_some())?;
                measurement_type = Some(text()?);
            }
            2 => {
                dup(measurement.is_some())?;
                measurement = Some(bytes()?);
            }
            4 => {
                dup(version.is_some())?;
                version = Some(text()?);
            }
            5 => {
                dup(signer_id.is_some())?;
                signer_id = Some(bytes()?);
            }
            6 => {
                dup(hash_alg.is_some())?;
                hash_alg = Some(text()?);
            }
            _ => {}
        }
    }
    Ok(SwComponent {
        measurement_type,
        measurement: measurement
            .ok_or_else(|| bad("field 2 (measurement)".into(), "missing".into()))?,
        version,
        signer_id: signer_id.ok_or_else(|| bad("field 5 (signer ID)".into(), "missing".into()))?,
        hash_alg,
    })
}
