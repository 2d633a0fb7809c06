//! Verification of Veraison's EAR (EAT Attestation Result): a JWT signed
//! ES256.
//!
//! The JWT is verified by hand with aws-lc-rs and `serde_json` rather than with
//! `jsonwebtoken`: ES256 JWS is small (base64url `header.payload`, raw
//! `r || s` signature over those ASCII bytes), the hand-made check accepts
//! exactly one algorithm (no `alg` confusion, no `none`), and it keeps the
//! dependency tree free of `ring`/`aws-lc` feature juggling that
//! `jsonwebtoken` needs for its crypto backend.
//!
//! The key (`-v`) is one JWK or a JWK set (`{"keys": [...]}`, at most
//! [`MAX_KEYS`] P-256 keys, each `kid` at most once): the EAR header's
//! `kid` picks the key, so Veraison's key can rotate without a gap (list
//! the old and the new key, then drop the old one). A key whose `use` or
//! `alg` says it is for something else (not `sig`, not `ES256`) is
//! refused. An EAR without a `kid`
//! is accepted under any key of the set; a `kid` the set does not have is
//! refused (a single JWK without a `kid` is used whatever the header says).
//!
//! Checks, in order: size, shape, header (`alg` = `ES256`, no `crit`),
//! signature, `eat_profile` (Veraison's EAR profile, [`EAR_PROFILE`]),
//! `ear.verifier-id` (only when a developer is configured with
//! [`EarVerifier::with_verifier_id`]), `eat_nonce` (equal, as bytes, to the nonce sent: padded and
//! unpadded base64url both accepted), `iat` fresh (within `max_age`, with a
//! `clock_skew` allowance either way), `exp` not passed if present, the
//! submods Veraison's CCA scheme produces present under their names
//! (`CCA_SSD_PLATFORM` and `CCA_REALM`), and every submod other than
//! `CCA_REALM` with `ear.status` = `affirming`.
//!
//! An EAR is only about the token this connection sent if its annotated
//! evidence says so: [`Ear::check_evidence`] compares the claims Veraison
//! appraised (`ear.veraison.annotated-evidence` of the `CCA_SSD_PLATFORM`
//! and `CCA_REALM` submods, in the JSON form of Veraison's `ccatoken`:
//! `cca-platform-challenge`, `cca-platform-instance-id`,
//! `cca-platform-implementation-id`, `cca-realm-challenge`,
//! `cca-realm-initial-measurement`, `cca-realm-extensible-measurements`,
//! byte strings in base64) with the token received. Without it, a genuine
//! EAR that Veraison issued for another token with the same nonce would
//! vouch for a forged one.

use crate::keys::{b64url_decode_lenient, Curve, KeyError, PublicKey};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest accepted EAR JWT.
pub const MAX_EAR_SIZE: usize = 64 * 1024;
/// Most submods accepted in one EAR.
pub const MAX_SUBMODS: usize = 64;
/// The submod that appraises the realm; its status is not used, as the
/// realm is judged by the local reference values, but it must be present
/// (its annotated evidence carries the realm claims Veraison saw).
pub const CCA_REALM_SUBMOD: &str = "CCA_REALM";
/// The submod of Veraison's CCA scheme that appraises the platform.
pub const CCA_PLATFORM_SUBMOD: &str = "CCA_SSD_PLATFORM";
/// The member of a submod that holds the claims Veraison appraised.
pub const ANNOTATED_EVIDENCE: &str = "ear.veraison.annotated-evidence";
/// The `eat_profile` of the EARs Veraison writes.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";
/// Most keys in a `-v` JWK set.
pub const MAX_KEYS: usize = 16;
/// Default maximum age of an EAR.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// Default allowance for clock differences with Veraison.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// Why an EAR was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EarError {
    /// The JWT is larger than [`MAX_EAR_SIZE`].
    #[error("EAR too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Length.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The JWT or its JSON is malformed.
    #[error("malformed EAR: {0}")]
    Malformed(String),
    /// The header names an algorithm other than ES256, or critical
    /// parameters.
    #[error("EAR header not accepted: {0}")]
    BadHeader(String),
    /// The signature does not verify with the Veraison key.
    #[error("EAR signature invalid")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("EAR claim {0} missing or of the wrong type")]
    BadClaim(&'static str),
    /// `eat_nonce` is not the nonce that was sent.
    #[error("EAR nonce mismatch: sent {expected}, EAR has {found}")]
    NonceMismatch {
        /// The nonce sent (base64url).
        expected: String,
        /// The EAR's `eat_nonce`.
        found: String,
    },
    /// `iat` is older than the maximum age.
    #[error("EAR is stale: iat {iat}, now {now}, max age {max_age_secs} s")]
    Stale {
        /// The EAR's `iat`.
        iat: i64,
        /// Now (Unix seconds).
        now: i64,
        /// The maximum age.
        max_age_secs: u64,
    },
    /// `iat` is in the future (beyond the clock skew allowance).
    #[error("EAR issued in the future: iat {iat}, now {now}")]
    FromFuture {
        /// The EAR's `iat`.
        iat: i64,
        /// Now (Unix seconds).
        now: i64,
    },
    /// `exp` has passed.
    #[error("EAR expired: exp {exp}, now {now}")]
    Expired {
        /// The EAR's `exp`.
        exp: i64,
        /// Now (Unix seconds).
        now: i64,
    },
    /// A submod other than `CCA_REALM` is not affirming.
    #[error("Veraison submod {submod} is {status}, not affirming")]
    NotAffirming {
        /// The submod name.
        submod: String,
        /// Its `ear.status`.
        status: String,
    },
    /// No `CCA_SSD_PLATFORM` submod: Veraison's CCA scheme did not
    /// appraise the platform.
    #[error("EAR has no CCA_SSD_PLATFORM submod (no platform appraisal by Veraison's CCA scheme)")]
    NoPlatformAppraisal,
    /// No `CCA_REALM` submod.
    #[error("EAR has no CCA_REALM submod")]
    NoRealmAppraisal,
    /// The evidence Veraison appraised is not the token received (or the
    /// EAR does not say what it appraised).
    #[error("EAR is not about this token: {0}")]
    EvidenceMismatch(String),
    /// The verification key is not a P-256 key.
    #[error("EAR key: {0}")]
    Key(String),
    /// The header names a `kid` that the key set does not have.
    #[error("EAR signed with key {0:?}, which is not in the -v key set")]
    UnknownKid(String),
    /// `eat_profile` is not Veraison's EAR profile.
    #[error("EAR eat_profile is {found:?}, expected {EAR_PROFILE:?}")]
    Profile {
        /// The EAR's `eat_profile` (`<missing>` if absent).
        found: String,
    },
    /// `ear.verifier-id` does not name the configured verifier.
    #[error("EAR ear.verifier-id developer is {found:?}, expected {expected:?}")]
    VerifierId {
        /// The configured developer.
        expected: String,
        /// The EAR's (`<missing>` if absent).
        found: String,
    },
}

impl From<KeyError> for EarError {
    fn from(e: KeyError) -> Self {
        EarError::Key(e.to_string())
    }
}

/// A verified EAR.
#[derive(Debug, Clone, PartialEq)]
pub struct Ear {
    /// Issued-at (Unix seconds).
    pub iat: i64,
    /// `eat_profile`, if present.
    pub profile: Option<String>,
    /// `ear.status` of every submod, by name (including `CCA_REALM`).
    pub submods: BTreeMap<String, String>,
    /// All claims, for logs.
    pub claims: serde_json::Value,
}

impl Ear {
    /// Checks that the EAR appraised `token`: the annotated evidence of
    /// the `CCA_SSD_PLATFORM` and `CCA_REALM` submods must carry the
    /// token's platform challenge, instance ID, implementation ID, realm
    /// challenge, RIM and REMs. Missing or different: refused.
    pub fn check_evidence(&self, token: &crate::token::CcaToken) -> Result<(), EarError> {
        let p = &token.platform.claims;
        let r = &token.realm.claims;
        let platform = self.annotated(CCA_PLATFORM_SUBMOD)?;
        compare_bytes(
            platform,
            CCA_PLATFORM_SUBMOD,
            "cca-platform-challenge",
            &p.challenge,
        )?;
        compare_bytes(
            platform,
            CCA_PLATFORM_SUBMOD,
            "cca-platform-instance-id",
            &p.instance_id,
        )?;
        compare_bytes(
            platform,
            CCA_PLATFORM_SUBMOD,
            "cca-platform-implementation-id",
            &p.implementation_id,
        )?;
        let realm = self.annotated(CCA_REALM_SUBMOD)?;
        compare_bytes(realm, CCA_REALM_SUBMOD, "cca-realm-challenge", &r.challenge)?;
        compare_bytes(
            realm,
            CCA_REALM_SUBMOD,
            "cca-realm-initial-measurement",
            &r.rim,
        )?;
        let field = "cca-realm-extensible-measurements";
        let rems = match realm.get(field) {
            Some(serde_json::Value::Array(items)) if items.len() == r.rems.len() => items,
            _ => {
                return Err(EarError::EvidenceMismatch(format!(
                    "{CCA_REALM_SUBMOD} annotated evidence has no {field} array of {}",
                    r.rems.len()
                )))
            }
        };
        for (i, (item, rem)) in rems.iter().zip(&r.rems).enumerate() {
            if json_bytes(item).as_deref() != Some(rem.as_slice()) {
                return Err(EarError::EvidenceMismatch(format!(
                    "{CCA_REALM_SUBMOD} {field}[{i}] is not the token's REM {i}"
                )));
            }
        }
        Ok(())
    }

    fn annotated(&self, submod: &str) -> Result<&serde_json::Value, EarError> {
        self.claims
            .get("submods")
            .and_then(|s| s.get(submod))
            .and_then(|s| s.get(ANNOTATED_EVIDENCE))
            .filter(|e| e.is_object())
            .ok_or_else(|| {
                EarError::EvidenceMismatch(format!("{submod} has no {ANNOTATED_EVIDENCE}"))
            })
    }
}

fn compare_bytes(
    evidence: &serde_json::Value,
    submod: &str,
    field: &str,
    expected: &[u8],
) -> Result<(), EarError> {
    match evidence.get(field).and_then(json_bytes) {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(EarError::EvidenceMismatch(format!(
            "{submod} {field} is {}, the token has {}",
            hex::encode(&found[..found.len().min(64)]),
            hex::encode(&expected[..expected.len().min(64)])
        ))),
        None => Err(EarError::EvidenceMismatch(format!(
            "{submod} annotated evidence has no {field}"
        ))),
    }
}

/// Bytes as Veraison's JSON carries them: a base64 string (Go encodes
/// `[]byte` as padded standard base64; base64url is accepted too), or a
/// one-element array of one (an EAT nonce).
fn json_bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    match v {
        serde_json::Value::String(s) if s.len() <= 8192 => STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .ok()
            .or_else(|| b64url_decode_lenient(s)),
        serde_json::Value::Array(a) if a.len() == 1 => json_bytes(&a[0]),
        _ => None,
    }
}

/// Verifies EARs with Veraison's ES256 public key (or key set).
#[derive(Debug, Clone)]
pub struct EarVerifier {
    /// P-256 keys with their `kid`, if any.
    keys: Vec<(Option<String>, PublicKey)>,
    /// Maximum age of `iat`.
    pub max_age: Duration,
    /// Clock-skew allowance, applied on both sides of the window.
    pub clock_skew: Duration,
    /// The `ear.verifier-id` developer required, if any.
    verifier_id: Option<String>,
}

impl EarVerifier {
    /// A verifier for a P-256 key, with the default max age and skew.
    pub fn new(key: &PublicKey) -> Result<Self, EarError> {
        Self::with_keys(vec![(None, key.clone())])
    }

    /// A verifier for a key set (`kid`, key); every key must be P-256.
    pub fn with_keys(keys: Vec<(Option<String>, PublicKey)>) -> Result<Self, EarError> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(EarError::Key(format!(
                "a key set must have 1 to {MAX_KEYS} keys, found {}",
                keys.len()
            )));
        }
        for (i, (kid, key)) in keys.iter().enumerate() {
            if key.curve() != Curve::P256 {
                return Err(EarError::Key(format!(
                    "EAR key must be P-256 (ES256), found {}",
                    key.curve_name()
                )));
            }
            if kid.is_some() && keys[..i].iter().any(|(k, _)| k == kid) {
                return Err(EarError::Key(format!(
                    "kid {:?} appears twice in the key set",
                    kid.as_deref().unwrap_or_default()
                )));
            }
        }
        Ok(Self {
            keys,
            max_age: DEFAULT_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            verifier_id: None,
        })
    }

    /// A verifier from a JWK's or a JWK set's JSON text (the `-v` file).
    /// Strict JSON: a key written twice is refused, naming it.
    pub fn from_jwk_json(text: &[u8]) -> Result<Self, EarError> {
        if text.len() > crate::keys::MAX_KEY_TEXT {
            return Err(EarError::Key(format!(
                "key file too large: {} bytes (limit {})",
                text.len(),
                crate::keys::MAX_KEY_TEXT
            )));
        }
        let value: serde_json::Value = ir_oci::json::from_slice(text)
            .map_err(|e| EarError::Key(format!("invalid JWK: {e}")))?;
        let kid_of = |jwk: &serde_json::Value| -> Result<Option<String>, EarError> {
            // A key meant for something else is not Veraison's EAR key.
            for (member, wanted) in [("use", "sig"), ("alg", "ES256")] {
                if let Some(v) = jwk.get(member) {
                    if v.as_str() != Some(wanted) {
                        return Err(EarError::Key(format!(
                            "\"{member}\" is {v}, an EAR key must have {wanted:?} or none"
                        )));
                    }
                }
            }
            match jwk.get("kid") {
                None => Ok(None),
                Some(serde_json::Value::String(k)) if !k.is_empty() && k.len() <= 256 => {
                    Ok(Some(k.clone()))
                }
                Some(_) => Err(EarError::Key(
                    "\"kid\" must be a string of 1 to 256 bytes".into(),
                )),
            }
        };
        match value.get("keys") {
            Some(serde_json::Value::Array(set)) => {
                let mut keys = Vec::with_capacity(set.len().min(MAX_KEYS));
                for (i, jwk) in set.iter().enumerate().take(MAX_KEYS + 1) {
                    let key = PublicKey::from_jwk(jwk)
                        .map_err(|e| EarError::Key(format!("keys[{i}]: {e}")))?;
                    keys.push((kid_of(jwk)?, key));
                }
                Self::with_keys(keys)
            }
            Some(_) => Err(EarError::Key("\"keys\" must be an array of JWKs".into())),
            None => Self::with_keys(vec![(kid_of(&value)?, PublicKey::from_jwk(&value)?)]),
        }
    }

    /// Reads a JWK or JWK set file (bounded size); errors name the file.
    pub fn load(path: &Path) -> Result<Self, EarError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| EarError::Key(format!("{}: {e}", path.display())))?;
        if meta.len() > crate::keys::MAX_KEY_TEXT as u64 {
            return Err(EarError::Key(format!("{}: file too large", path.display())));
        }
        let text =
            std::fs::read(path).map_err(|e| EarError::Key(format!("{}: {e}", path.display())))?;
        Self::from_jwk_json(&text).map_err(|e| match e {
            EarError::Key(m) => EarError::Key(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Requires `ear.verifier-id` with this `developer` (as Veraison's
    /// configuration names it); `None`: not checked.
    pub fn with_verifier_id(mut self, developer: Option<String>) -> Self {
        self.verifier_id = developer;
        self
    }

    /// The keys EARs may be signed with (one, or a JWKS's).
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().map(|(_, k)| k)
    }

    /// Sets the maximum age.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets the clock-skew allowance.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Verifies the JWT's header and signature and returns its claims,
    /// without checking their content.
    pub fn verify_signature(&self, jwt: &str) -> Result<serde_json::Value, EarError> {
        if jwt.len() > MAX_EAR_SIZE {
            return Err(EarError::TooLarge {
                len: jwt.len(),
                limit: MAX_EAR_SIZE,
            });
        }
        let jwt = jwt.trim();
        let mut parts = jwt.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EarError::Malformed(
                "a JWT has three dot-separated parts".into(),
            ));
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64
            .decode(h64)
            .map_err(|e| EarError::Malformed(format!("header is not base64url: {e}")))?;
        let header: serde_json::Value = ir_oci::json::from_slice(&header)
            .map_err(|e| EarError::Malformed(format!("header is not JSON: {e}")))?;
        match header.get("alg").and_then(|a| a.as_str()) {
            Some("ES256") => {}
            Some(other) => {
                return Err(EarError::BadHeader(format!(
                    "alg {other:?}, only ES256 is accepted"
                )))
            }
            None => return Err(EarError::BadHeader("no alg".into())),
        }
        if header.get("crit").is_some() {
            return Err(EarError::BadHeader(
                "critical parameters are not supported".into(),
            ));
        }
        let sig = b64
            .decode(s64)
            .map_err(|e| EarError::Malformed(format!("signature is not base64url: {e}")))?;
        let signed = &jwt[..h64.len() + 1 + p64.len()];
        // ES256 JWS signatures are the fixed 64-byte `r || s` (RFC 7518).
        let candidates: Vec<&PublicKey> = match header.get("kid") {
            None => self.keys.iter().map(|(_, k)| k).collect(),
            Some(serde_json::Value::String(kid)) => {
                match self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)) {
                    Some((_, key)) => vec![key],
                    // A single key without a kid: the file predates kids.
                    None if self.keys.len() == 1 && self.keys[0].0.is_none() => {
                        vec![&self.keys[0].1]
                    }
                    None => {
                        return Err(EarError::UnknownKid(
                            kid.chars().take(256).collect::<String>(),
                        ))
                    }
                }
            }
            Some(_) => return Err(EarError::BadHeader("kid is not a string".into())),
        };
        if !candidates
            .iter()
            .any(|key| key.verify_fixed(signed.as_bytes(), &sig))
        {
            return Err(EarError::BadSignature);
        }
        let payload = b64
            .decode(p64)
            .map_err(|e| EarError::Malformed(format!("payload is not base64url: {e}")))?;
        ir_oci::json::from_slice(&payload)
            .map_err(|e| EarError::Malformed(format!("payload is not JSON: {e}")))
    }

    /// Verifies an EAR fully (see the module docs). `expected_nonce` is the
    /// nonce sent to Veraison (the 64-byte realm challenge); `now` is the
    /// current time.
    pub fn verify(
        &self,
        jwt: &str,
        expected_nonce: &[u8],
        now: SystemTime,
    ) -> Result<Ear, EarError> {
        let claims = self.verify_signature(jwt)?;
        match claims.get("eat_profile").and_then(|p| p.as_str()) {
            Some(EAR_PROFILE) => {}
            other => {
                return Err(EarError::Profile {
                    found: other
                        .map(|p| p.chars().take(256).collect())
                        .unwrap_or_else(|| "<missing>".into()),
                })
            }
        }
        if let Some(expected) = &self.verifier_id {
            let found = claims
                .get("ear.verifier-id")
                .and_then(|v| v.get("developer"))
                .and_then(|d| d.as_str());
            if found != Some(expected.as_str()) {
                return Err(EarError::VerifierId {
                    expected: expected.clone(),
                    found: found
                        .map(|d| d.chars().take(256).collect())
                        .unwrap_or_else(|| "<missing>".into()),
                });
            }
        }
        let nonce = match claims.get("eat_nonce") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) if a.len() == 1 => a[0]
                .as_str()
                .ok_or(EarError::BadClaim("eat_nonce"))?
                .to_string(),
            _ => return Err(EarError::BadClaim("eat_nonce")),
        };
        if b64url_decode_lenient(&nonce).as_deref() != Some(expected_nonce) {
            return Err(EarError::NonceMismatch {
                expected: nonce_to_b64url(expected_nonce),
                found: nonce,
            });
        }
        let now = unix_seconds(now);
        let iat = claims
            .get("iat")
            .and_then(json_int)
            .ok_or(EarError::BadClaim("iat"))?;
        let skew = i64::try_from(self.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let max_age = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        if iat > now.saturating_add(skew) {
            return Err(EarError::FromFuture { iat, now });
        }
        if now.saturating_sub(iat) > max_age.saturating_add(skew) {
            return Err(EarError::Stale {
                iat,
                now,
                max_age_secs: self.max_age.as_secs(),
            });
        }
        if let Some(exp) = claims.get("exp") {
            let exp = json_int(exp).ok_or(EarError::BadClaim("exp"))?;
            if now > exp.saturating_add(skew) {
                return Err(EarError::Expired { exp, now });
            }
        }
        let Some(serde_json::Value::Object(submods_json)) = claims.get("submods") else {
            return Err(EarError::BadClaim("submods"));
        };
        if submods_json.len() > MAX_SUBMODS {
            return Err(EarError::Malformed(format!(
                "more than {MAX_SUBMODS} submods"
            )));
        }
        let mut submods = BTreeMap::new();
        for (name, appraisal) in submods_json {
            let status = appraisal
                .get("ear.status")
                .map(status_name)
                .ok_or(EarError::BadClaim("ear.status"))?;
            submods.insert(name.clone(), status);
        }
        // Veraison's CCA scheme names its appraisals: another submod
        // cannot stand in for the platform's.
        if !submods.contains_key(CCA_PLATFORM_SUBMOD) {
            return Err(EarError::NoPlatformAppraisal);
        }
        if !submods.contains_key(CCA_REALM_SUBMOD) {
            return Err(EarError::NoRealmAppraisal);
        }
        // Check in name order so the reported submod is deterministic.
        for (name, status) in &submods {
            if name == CCA_REALM_SUBMOD {
                continue;
            }
            if status != "affirming" {
                return Err(EarError::NotAffirming {
                    submod: name.clone(),
                    status: status.clone(),
                });
            }
        }
        let profile = claims
            .get("eat_profile")
            .and_then(|p| p.as_str())
            .map(str::to_string);
        Ok(Ear {
            iat,
            profile,
            submods,
            claims,
        })
    }
}

/// The nonce as sent to Veraison: base64url with padding.
pub fn nonce_to_b64url(nonce: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(nonce)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn json_int(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// `ear.status` as text: strings as they are, the EAR integer trust tiers
/// mapped to their names (0 none, 2 affirming, 32 warning, 96
/// contraindicated).
fn status_name(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(0) => "none".into(),
            Some(2) => "affirming".into(),
            Some(32) => "warning".into(),
            Some(96) => "contraindicated".into(),
            _ => format!("unknown tier {n}"),
        },
        other => format!("invalid status {other}"),
    }
}

/// Minting signed EARs for tests and test servers (feature `test-util`).
/// Never use in production.
#[cfg(any(test, feature = "test-util"))]
pub mod test_util {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

    /// What to put in a minted EAR.
    #[derive(Debug, Clone)]
    pub struct EarSpec {
        /// The nonce bytes (encoded as padded base64url in `eat_nonce`).
        pub nonce: Vec<u8>,
        /// Overrides the `eat_nonce` text (e.g. a wrong or malformed nonce).
        pub nonce_text: Option<String>,
        /// Issued-at (Unix seconds).
        pub iat: i64,
        /// Submods and their `ear.status`.
        pub submods: Vec<(String, String)>,
        /// `ear.veraison.annotated-evidence` per submod name.
        pub annotated: BTreeMap<String, serde_json::Value>,
    }

    /// The annotated evidence Veraison's CCA scheme puts in its
    /// `CCA_SSD_PLATFORM` and `CCA_REALM` submods for `token`: the claims
    /// in the JSON form of Veraison's `ccatoken` (byte strings as padded
    /// standard base64, as Go encodes them).
    pub fn veraison_annotated_evidence(
        token: &crate::token::CcaToken,
    ) -> BTreeMap<String, serde_json::Value> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let p = &token.platform.claims;
        let r = &token.realm.claims;
        let sw: Vec<serde_json::Value> = p
            .sw_components
            .iter()
            .map(|c| {
                let mut m = serde_json::json!({
                    "measurement-value": b64(&c.measurement),
                    "signer-id": b64(&c.signer_id),
                });
                if let Some(t) = &c.measurement_type {
                    m["measurement-type"] = t.clone().into();
                }
                if let Some(v) = &c.version {
                    m["version"] = v.clone().into();
                }
                if let Some(h) = &c.hash_alg {
                    m["measurement-description"] = h.clone().into();
                }
                m
            })
            .collect();
        let mut platform = serde_json::json!({
            "cca-platform-profile": p.profile,
            "cca-platform-challenge": b64(&p.challenge),
            "cca-platform-implementation-id": b64(&p.implementation_id),
            "cca-platform-instance-id": b64(&p.instance_id),
            "cca-platform-config": b64(&p.config),
            "cca-platform-lifecycle": p.lifecycle,
            "cca-platform-sw-components": sw,
            "cca-platform-hash-algo-id": p.hash_alg,
        });
        if let Some(vsi) = &p.verification_service {
            platform["cca-platform-service-indicator"] = vsi.clone().into();
        }
        let mut realm = serde_json::json!({
            "cca-realm-challenge": b64(&r.challenge),
            "cca-realm-personalization-value": b64(&r.personalization),
            "cca-realm-initial-measurement": b64(&r.rim),
            "cca-realm-extensible-measurements": r.rems.iter().map(|m| b64(m)).collect::<Vec<_>>(),
            "cca-realm-hash-algo-id": r.measurement_hash_alg,
            "cca-realm-public-key": b64(&r.rak),
            "cca-realm-public-key-hash-algo-id": r.rak_hash_alg,
        });
        if let Some(profile) = &r.profile {
            realm["cca-realm-profile"] = profile.clone().into();
        }
        BTreeMap::from([
            (CCA_PLATFORM_SUBMOD.to_string(), platform),
            (CCA_REALM_SUBMOD.to_string(), realm),
        ])
    }

    impl EarSpec {
        /// An affirming EAR for `nonce`, issued now, with the submods
        /// Veraison's CCA plug-ins produce (`CCA_SSD_PLATFORM` affirming,
        /// `CCA_REALM` warning: the realm is judged locally).
        pub fn affirming(nonce: &[u8]) -> Self {
            Self {
                nonce: nonce.to_vec(),
                nonce_text: None,
                iat: unix_seconds(SystemTime::now()),
                submods: vec![
                    (CCA_PLATFORM_SUBMOD.into(), "affirming".into()),
                    (CCA_REALM_SUBMOD.into(), "warning".into()),
                ],
                annotated: BTreeMap::new(),
            }
        }

        /// An affirming EAR for `token` (its realm challenge as the
        /// nonce), with the annotated evidence Veraison would give.
        pub fn affirming_for(token: &crate::token::CcaToken) -> Self {
            let mut spec = Self::affirming(&token.realm.claims.challenge);
            spec.annotated = veraison_annotated_evidence(token);
            spec
        }

        /// Sets the status of a submod (adding it if absent).
        pub fn with_status(mut self, submod: &str, status: &str) -> Self {
            match self.submods.iter_mut().find(|(n, _)| n == submod) {
                Some(entry) => entry.1 = status.to_string(),
                None => self.submods.push((submod.to_string(), status.to_string())),
            }
            self
        }

        /// The claims JSON.
        pub fn claims(&self) -> serde_json::Value {
            let submods: serde_json::Map<String, serde_json::Value> = self
                .submods
                .iter()
                .map(|(name, status)| {
                    let mut appraisal = serde_json::json!({
                        "ear.status": status,
                        "ear.appraisal-policy-id": format!("policy:ARM_CCA"),
                    });
                    if let Some(evidence) = self.annotated.get(name) {
                        appraisal[ANNOTATED_EVIDENCE] = evidence.clone();
                    }
                    (name.clone(), appraisal)
                })
                .collect();
            serde_json::json!({
                "eat_profile": "tag:github.com,2023:veraison/ear",
                "iat": self.iat,
                "eat_nonce": self.nonce_text.clone().unwrap_or_else(|| nonce_to_b64url(&self.nonce)),
                "ear.verifier-id": { "developer": "ir-attest test-util", "build": "test" },
                "submods": submods,
            })
        }
    }

    /// An ES256 key that signs EARs.
    #[derive(Clone)]
    pub struct EarSigner {
        key: EcdsaKeyPair,
    }

    impl std::fmt::Debug for EarSigner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("EarSigner(..)")
        }
    }

    impl EarSigner {
        /// A fresh random key.
        pub fn generate() -> Self {
            Self {
                key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key generation"),
            }
        }

        /// The public key as a JWK (the form of Veraison's `-v` file).
        pub fn public_jwk(&self) -> String {
            // The uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
            let point = self.key.public_key().as_ref();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            serde_json::json!({
                "kty": "EC", "crv": "P-256",
                "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..]),
            })
            .to_string()
        }

        /// The public key.
        pub fn public_key(&self) -> PublicKey {
            PublicKey::from_sec1(self.key.public_key().as_ref())
                .expect("aws-lc-rs made a P-256 point")
        }

        /// A verifier for this key, with default settings.
        pub fn verifier(&self) -> EarVerifier {
            EarVerifier::new(&self.public_key()).expect("a P-256 key")
        }

        /// The public key as a JWK with a `kid` (an entry of a JWK set).
        pub fn public_jwk_with_kid(&self, kid: &str) -> serde_json::Value {
            let mut jwk: serde_json::Value =
                serde_json::from_str(&self.public_jwk()).expect("JWK JSON");
            jwk["kid"] = kid.into();
            jwk
        }

        /// Signs arbitrary claims as an ES256 JWT.
        pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
            self.sign_claims_with_kid(claims, None)
        }

        /// Signs arbitrary claims as an ES256 JWT whose header names `kid`.
        pub fn sign_claims_with_kid(
            &self,
            claims: &serde_json::Value,
            kid: Option<&str>,
        ) -> String {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = kid.into();
            }
            let header = b64.encode(header.to_string());
            let payload = b64.encode(claims.to_string());
            let signed = format!("{header}.{payload}");
            let sig = self
                .key
                .sign(&SystemRandom::new(), signed.as_bytes())
                .expect("ES256 signing");
            format!("{signed}.{}", b64.encode(sig.as_ref()))
        }

        /// Signs the EAR described by `spec`.
        pub fn sign(&self, spec: &EarSpec) -> String {
            self.sign_claims(&spec.claims())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{EarSigner, EarSpec};
    use super::*;

    const NONCE: [u8; 64] = [7; 64];

    fn jwks(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    #[test]
    fn the_kid_picks_the_key_of_a_set() {
        let (old, new) = (EarSigner::generate(), EarSigner::generate());
        let claims = EarSpec::affirming(&NONCE).claims();
        let both = EarVerifier::from_jwk_json(&jwks(&[
            old.public_jwk_with_kid("old"),
            new.public_jwk_with_kid("new"),
        ]))
        .unwrap();
        assert_eq!(both.key_count(), 2);
        let now = SystemTime::now();
        for (signer, kid) in [(&old, "old"), (&new, "new")] {
            let jwt = signer.sign_claims_with_kid(&claims, Some(kid));
            both.verify(&jwt, &NONCE, now).unwrap();
        }
        // No kid: any key of the set.
        both.verify(&new.sign_claims(&claims), &NONCE, now).unwrap();
        // The kid names the key: another key's signature under it fails.
        let swapped = new.sign_claims_with_kid(&claims, Some("old"));
        assert_eq!(
            both.verify(&swapped, &NONCE, now).unwrap_err(),
            EarError::BadSignature
        );
        // Before the rotation: the new kid is unknown.
        let only_old =
            EarVerifier::from_jwk_json(&jwks(&[old.public_jwk_with_kid("old")])).unwrap();
        let jwt = new.sign_claims_with_kid(&claims, Some("new"));
        assert_eq!(
            only_old.verify(&jwt, &NONCE, now).unwrap_err(),
            EarError::UnknownKid("new".into())
        );
        // A single JWK without a kid is used whatever the header names.
        let plain = EarVerifier::from_jwk_json(old.public_jwk().as_bytes()).unwrap();
        let jwt = old.sign_claims_with_kid(&claims, Some("any"));
        plain.verify(&jwt, &NONCE, now).unwrap();
    }

    #[test]
    fn key_sets_are_strict() {
        let a = EarSigner::generate();
        let twice = jwks(&[a.public_jwk_with_kid("k"), a.public_jwk_with_kid("k")]);
        let err = EarVerifier::from_jwk_json(&twice).unwrap_err().to_string();
        assert!(err.contains("kid \"k\" appears twice"), "{err}");
        assert!(EarVerifier::from_jwk_json(&jwks(&[])).is_err());
        let mut enc = a.public_jwk_with_kid("e");
        enc["use"] = "enc".into();
        assert!(EarVerifier::from_jwk_json(&jwks(&[enc])).is_err());
        let mut es384 = a.public_jwk_with_kid("e");
        es384["alg"] = "ES384".into();
        assert!(EarVerifier::from_jwk_json(&jwks(&[es384])).is_err());
        let mut sig = a.public_jwk_with_kid("s");
        sig["use"] = "sig".into();
        sig["alg"] = "ES256".into();
        EarVerifier::from_jwk_json(&jwks(&[sig])).unwrap();
        let many: Vec<_> = (0..=MAX_KEYS)
            .map(|i| a.public_jwk_with_kid(&i.to_string()))
            .collect();
        assert!(EarVerifier::from_jwk_json(&jwks(&many)).is_err());
        // A JWK naming a coordinate twice: the later one would win.
        let jwk = a.public_jwk();
        let dup = jwk.replacen("\"x\":", "\"x\":\"AAAA\",\"x\":", 1);
        let err = EarVerifier::from_jwk_json(dup.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"x\""), "{err}");
    }

    #[test]
    fn eat_profile_and_verifier_id_are_checked() {
        let s = EarSigner::generate();
        let now = SystemTime::now();
        let mut claims = EarSpec::affirming(&NONCE).claims();
        claims["eat_profile"] = "tag:github.com,2022:veraison/ear".into();
        assert!(matches!(
            s.verifier().verify(&s.sign_claims(&claims), &NONCE, now),
            Err(EarError::Profile { .. })
        ));
        claims.as_object_mut().unwrap().remove("eat_profile");
        assert!(matches!(
            s.verifier().verify(&s.sign_claims(&claims), &NONCE, now),
            Err(EarError::Profile { .. })
        ));
        let claims = EarSpec::affirming(&NONCE).claims();
        let jwt = s.sign_claims(&claims);
        let developer = claims["ear.verifier-id"]["developer"].as_str().unwrap();
        s.verifier()
            .with_verifier_id(Some(developer.into()))
            .verify(&jwt, &NONCE, now)
            .unwrap();
        let err = s
            .verifier()
            .with_verifier_id(Some("Veraison Project".into()))
            .verify(&jwt, &NONCE, now)
            .unwrap_err();
        assert!(matches!(err, EarError::VerifierId { .. }), "{err}");
    }
}
