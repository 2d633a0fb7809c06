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
//! Checks, in order: size, shape, header (`alg` = `ES256`, no `crit`),
//! signature, `eat_nonce` (equal, as bytes, to the nonce sent: padded and
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

/// Verifies EARs with Veraison's ES256 public key.
#[derive(Debug, Clone)]
pub struct EarVerifier {
    /// A P-256 key.
    key: PublicKey,
    /// Maximum age of `iat`.
    pub max_age: Duration,
    /// Clock-skew allowance, applied on both sides of the window.
    pub clock_skew: Duration,
}

impl EarVerifier {
    /// A verifier for a P-256 key, with the default max age and skew.
    pub fn new(key: &PublicKey) -> Result<Self, EarError> {
        match key.curve() {
            Curve::P256 => Ok(Self {
                key: key.clone(),
                max_age: DEFAULT_MAX_AGE,
                clock_skew: DEFAULT_CLOCK_SKEW,
            }),
            _ => Err(EarError::Key(format!(
                "EAR key must be P-256 (ES256), found {}",
                key.curve_name()
            ))),
        }
    }

    /// A verifier from a JWK's JSON text (the `-v` file).
    pub fn from_jwk_json(text: &[u8]) -> Result<Self, EarError> {
        Self::new(&PublicKey::from_jwk_json(text)?)
    }

    /// Reads a JWK file (bounded size).
    pub fn load(path: &Path) -> Result<Self, EarError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| EarError::Key(format!("{}: {e}", path.display())))?;
        if meta.len() > crate::keys::MAX_KEY_TEXT as u64 {
            return Err(EarError::Key(format!("{}: file too large", path.display())));
        }
        let text =
            std::fs::read(path).map_err(|e| EarError::Key(format!("{}: {e}", path.display())))?;
        Self::from_jwk_json(&text)
    }

    /// The key EARs must be signed with.
    pub fn key(&self) -> &PublicKey {
        &self.key
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
        let header: serde_json::Value = serde_json::from_slice(&header)
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
        if !self.key.verify_fixed(signed.as_bytes(), &sig) {
            return Err(EarError::BadSignature);
        }
        let payload = b64
            .decode(p64)
            .map_err(|e| EarError::Malformed(format!("payload is not base64url: {e}")))?;
        serde_json::from_slice(&payload)
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
            EarVerifier {
                key: self.public_key(),
                max_age: DEFAULT_MAX_AGE,
                clock_skew: DEFAULT_CLOCK_SKEW,
            }
        }

        /// Signs arbitrary claims as an ES256 JWT.
        pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = b64.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
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
