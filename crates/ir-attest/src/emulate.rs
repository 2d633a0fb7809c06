//! An emulated realm, for tests and demos. **NOT SECURE**: it holds its
//! "hardware" keys in ordinary memory or files and signs whatever it is
//! asked to; a token it makes proves nothing about the machine it runs on.
//!
//! It produces real CCA tokens, byte-compatible with the ones real realms
//! send: CBOR tag 399 with the platform token first, both COSE_Sign1 signed
//! ES384 with P-384 keys (the RAK for the realm token, the CPAK for the
//! platform token); the RAK claim is a raw SEC1 point (no realm profile),
//! the platform challenge is SHA-256 of the RAK claim bytes and claim 44240
//! says `sha-256`. Relying parties trust it by taking
//! [`EmulatedRealm::cpak_public_sec1`] as a platform key and
//! [`EmulatedRealm::reference_values_json`] as reference values.

use crate::cbor::{encode, int};
use crate::cose::sign1_es384;
use crate::hash::HashAlg;
use crate::token::{
    platform_keys as pk, realm_keys as rk, CCA_TOKEN_TAG, KEY_PLATFORM_TOKEN, KEY_REALM_TOKEN,
};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P384_SHA384_FIXED_SIGNING};
use base64::Engine as _;
use ciborium::value::Value;
use std::path::Path;

/// The platform profile emulated tokens carry.
pub const EMULATED_PLATFORM_PROFILE: &str = "http://arm.com/CCA-SSD/1.0.0";
/// The implementation ID emulated platform tokens carry.
pub const EMULATED_IMPLEMENTATION_ID: [u8; 32] = *b"ir-attest emulated CCA platform!";
/// The one software component emulated platforms report: its type,
/// measurement input (hashed with SHA-256), version and signer ID.
const EMULATED_RMM: (&str, &[u8], &str, [u8; 32]) =
    ("RMM", b"ir-attest emulated RMM", "0.0.0", [0; 32]);
/// The platform configuration (2401) emulated platforms report.
const EMULATED_CONFIG: [u8; 1] = [0xcf];
/// Largest accepted key file.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Why an emulated realm could not be set up or produce a token.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// A key could not be decoded or encoded.
    #[error("emulated realm key: {0}")]
    Key(String),
    /// A key file could not be read or written.
    #[error("emulated realm key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The measurements are inconsistent with the hash algorithm.
    #[error("emulated realm measurements: {0}")]
    Measurements(String),
    /// Encoding failed.
    #[error("emulated token encoding: {0}")]
    Encode(String),
}

/// The measurements an emulated realm reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurements {
    /// RIM (44238).
    pub rim: Vec<u8>,
    /// REMs (44239).
    pub rems: [Vec<u8>; 4],
    /// Measurement hash algorithm (44236); RIM and REMs must have its
    /// output length.
    pub hash_algo: HashAlg,
}

impl Default for Measurements {
    /// A recognisable RIM (SHA-256 of `ir-attest emulated realm`), zero
    /// REMs, `sha-256`.
    fn default() -> Self {
        Self {
            rim: HashAlg::Sha256.digest(b"ir-attest emulated realm"),
            rems: [vec![0; 32], vec![0; 32], vec![0; 32], vec![0; 32]],
            hash_algo: HashAlg::Sha256,
        }
    }
}

impl Measurements {
    fn validate(&self) -> Result<(), EmulateError> {
        let n = self.hash_algo.output_len();
        if self.rim.len() != n || self.rems.iter().any(|r| r.len() != n) {
            return Err(EmulateError::Measurements(format!(
                "RIM and REMs must be {n} bytes for {}",
                self.hash_algo
            )));
        }
        Ok(())
    }
}

/// An emulated CCA realm with its RAK and its platform's CPAK (both P-384).
/// NOT SECURE: see the module docs.
#[derive(Clone)]
pub struct EmulatedRealm {
    rak: EcdsaKeyPair,
    cpak: EcdsaKeyPair,
    measurements: Measurements,
    /// The realm personalization value (44235); zero by default.
    pub personalization: [u8; 64],
    /// The platform's security lifecycle (claim 2395); `0x3000`
    /// ("secured") unless a test wants another state.
    pub lifecycle: u64,
}

impl std::fmt::Debug for EmulatedRealm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedRealm")
            .field("rim", &hex::encode(&self.measurements.rim))
            .field("cpak", &hex::encode(self.cpak_public_sec1()))
            .finish_non_exhaustive()
    }
}

fn secret_from_pem(text: &str, what: &str) -> Result<EcdsaKeyPair, EmulateError> {
    let invalid = || {
        EmulateError::Key(format!(
            "{what}: not a P-384 private key in PKCS#8 or SEC1 PEM"
        ))
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|_| invalid())?;
    if !matches!(pem.label.as_str(), "PRIVATE KEY" | "EC PRIVATE KEY") {
        return Err(invalid());
    }
    // Reads PKCS#8 and SEC1 (RFC 5915) DER alike, and refuses other curves.
    EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, &pem.contents)
        .map_err(|_| invalid())
}

fn generate_key() -> Result<EcdsaKeyPair, EmulateError> {
    EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
        .map_err(|_| EmulateError::Key("P-384 key generation failed".into()))
}

fn read_bounded(path: &Path) -> Result<String, EmulateError> {
    let io = |source| EmulateError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_KEY_FILE {
        return Err(EmulateError::Key(format!(
            "{}: file too large",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

impl EmulatedRealm {
    /// A realm with fresh random keys.
    pub fn generate(measurements: Measurements) -> Result<Self, EmulateError> {
        measurements.validate()?;
        Ok(Self {
            rak: generate_key()?,
            cpak: generate_key()?,
            measurements,
            personalization: [0; 64],
            lifecycle: 0x3000,
        })
    }

    /// A realm with the given keys (P-384, PKCS#8 or SEC1 PEM).
    pub fn from_pem(
        rak_pem: &str,
        cpak_pem: &str,
        measurements: Measurements,
    ) -> Result<Self, EmulateError> {
        measurements.validate()?;
        Ok(Self {
            rak: secret_from_pem(rak_pem, "RAK")?,
            cpak: secret_from_pem(cpak_pem, "CPAK")?,
            measurements,
            personalization: [0; 64],
            lifecycle: 0x3000,
        })
    }

    /// A realm with keys read from PEM files.
    pub fn load(
        rak_path: &Path,
        cpak_path: &Path,
        measurements: Measurements,
    ) -> Result<Self, EmulateError> {
        Self::from_pem(
            &read_bounded(rak_path)?,
            &read_bounded(cpak_path)?,
            measurements,
        )
    }

    /// The RAK private key as PKCS#8 PEM (to save and reload).
    pub fn rak_pem(&self) -> Result<String, EmulateError> {
        pem_of(&self.rak)
    }

    /// The CPAK private key as PKCS#8 PEM (to save and reload).
    pub fn cpak_pem(&self) -> Result<String, EmulateError> {
        pem_of(&self.cpak)
    }

    /// The measurements reported.
    pub fn measurements(&self) -> &Measurements {
        &self.measurements
    }

    /// The RAK public key as a raw SEC1 point (the 44237 claim bytes).
    pub fn rak_public_sec1(&self) -> Vec<u8> {
        self.rak.public_key().as_ref().to_vec()
    }

    /// The CPAK public key as a raw uncompressed SEC1 point (97 bytes), the
    /// format of `cpak-ab.pub`: a platform key file for local CPAK mode.
    pub fn cpak_public_sec1(&self) -> Vec<u8> {
        self.cpak.public_key().as_ref().to_vec()
    }

    /// The platform instance ID: `0x01 || SHA-256(CPAK SEC1)`, as in the
    /// islet fixture tokens.
    pub fn instance_id(&self) -> Vec<u8> {
        let mut id = vec![0x01];
        id.extend(HashAlg::Sha256.digest(&self.cpak_public_sec1()));
        id
    }

    /// Reference values (islet JSON) that this realm's tokens match.
    /// `applications`, when given, is written under `realm`.
    pub fn reference_values_json(&self, name: &str, applications: Option<&[&str]>) -> String {
        let m = &self.measurements;
        let mut realm = serde_json::json!({
            "name": name,
            "version": "0.0.0",
            "uuid": "00000000-0000-0000-0000-000000000000",
            "attestation-protocol": "HTTPS/RA-TLSv1.0",
            "reference-values": {
                "rim": hex::encode(&m.rim),
                "rems": [m.rems.iter().map(hex::encode).collect::<Vec<_>>()],
                "hash-algo": m.hash_algo.name(),
            },
        });
        if let (Some(apps), Some(obj)) = (applications, realm.as_object_mut()) {
            obj.insert("applications".into(), serde_json::json!(apps));
        }
        serde_json::to_string_pretty(&serde_json::json!({
            "version": "0.1",
            "issuer": { "name": "ir-attest emulated realm (NOT SECURE)" },
            "realm": realm,
        }))
        .unwrap_or_default()
    }

    /// The platform reference values (a trust-anchor entry's
    /// `"reference-values"`, see [`crate::cca_platform`]) that pin this
    /// realm's emulated platform firmware.
    pub fn platform_reference_values(&self) -> serde_json::Value {
        let (kind, input, version, signer) = EMULATED_RMM;
        serde_json::json!({
            "profile": EMULATED_PLATFORM_PROFILE,
            "platform-config": hex::encode(EMULATED_CONFIG),
            "hash-algo-id": "sha-256",
            "sw-components": [{
                "measurement-type": kind,
                "measurement-value": hex::encode(HashAlg::Sha256.digest(input)),
                "version": version,
                "signer-id": hex::encode(signer),
                "hash-algo-id": "sha-256",
            }],
        })
    }

    /// A CCA token whose realm challenge is `realm_challenge`.
    pub fn token(&self, realm_challenge: &[u8; 64]) -> Result<Vec<u8>, EmulateError> {
        let rak = self.rak_public_sec1();
        let m = &self.measurements;
        let realm_claims = Value::Map(vec![
            (int(rk::CHALLENGE), Value::Bytes(realm_challenge.to_vec())),
            (
                int(rk::PERSONALIZATION),
                Value::Bytes(self.personalization.to_vec()),
            ),
            (
                int(rk::MEASUREMENT_HASH_ALG),
                Value::Text(m.hash_algo.name().into()),
            ),
            (int(rk::RAK), Value::Bytes(rak.clone())),
            (int(rk::RIM), Value::Bytes(m.rim.clone())),
            (
                int(rk::REMS),
                Value::Array(m.rems.iter().map(|r| Value::Bytes(r.clone())).collect()),
            ),
            (
                int(rk::RAK_HASH_ALG),
                Value::Text(HashAlg::Sha256.name().into()),
            ),
        ]);
        let (kind, input, version, signer) = EMULATED_RMM;
        let sw_component = Value::Map(vec![
            (int(1), Value::Text(kind.into())),
            (int(2), Value::Bytes(HashAlg::Sha256.digest(input))),
            (int(4), Value::Text(version.into())),
            (int(5), Value::Bytes(signer.to_vec())),
            (int(6), Value::Text("sha-256".into())),
        ]);
        let platform_claims = Value::Map(vec![
            (
                int(pk::PROFILE),
                Value::Text(EMULATED_PLATFORM_PROFILE.into()),
            ),
            (
                int(pk::CHALLENGE),
                Value::Bytes(HashAlg::Sha256.digest(&rak)),
            ),
            (
                int(pk::IMPLEMENTATION_ID),
                Value::Bytes(EMULATED_IMPLEMENTATION_ID.to_vec()),
            ),
            (int(pk::INSTANCE_ID), Value::Bytes(self.instance_id())),
            (int(pk::CONFIG), Value::Bytes(EMULATED_CONFIG.to_vec())),
            (
                int(pk::LIFECYCLE),
                Value::Integer(ciborium::value::Integer::from(self.lifecycle)),
            ),
            (int(pk::SW_COMPONENTS), Value::Array(vec![sw_component])),
            (
                int(pk::VERIFICATION_SERVICE),
                Value::Text("https://veraison.example/".into()),
            ),
            (int(pk::HASH_ALG), Value::Text("sha-256".into())),
        ]);
        let sign = |key: &EcdsaKeyPair, claims: &Value| -> Result<Vec<u8>, EmulateError> {
            let payload = encode(claims).map_err(EmulateError::Encode)?;
            sign1_es384(key, payload).map_err(EmulateError::Encode)
        };
        let platform = sign(&self.cpak, &platform_claims)?;
        let realm = sign(&self.rak, &realm_claims)?;
        // Platform first: islet verifiers read the map by position.
        let collection = Value::Tag(
            CCA_TOKEN_TAG,
            Box::new(Value::Map(vec![
                (int(KEY_PLATFORM_TOKEN), Value::Bytes(platform)),
                (int(KEY_REALM_TOKEN), Value::Bytes(realm)),
            ])),
        );
        encode(&collection).map_err(EmulateError::Encode)
    }

    /// A CCA token for an RA-TLS session: the realm challenge is
    /// SHA-512(`challenge` || `client_spki_der`).
    pub fn token_for_session(
        &self,
        challenge: &[u8; 64],
        client_spki_der: &[u8],
    ) -> Result<Vec<u8>, EmulateError> {
        self.token(&crate::verify::expected_realm_challenge(
            challenge,
            client_spki_der,
        ))
    }
}

/// PKCS#8 PEM of a key. Written here because the PEM framing is a few
/// lines (RFC 7468: base64 in 64-character lines between the labels) and
/// aws-lc-rs gives the DER.
fn pem_of(key: &EcdsaKeyPair) -> Result<String, EmulateError> {
    let der = key
        .to_pkcs8v1()
        .map_err(|_| EmulateError::Key("PKCS#8 encoding failed".into()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}
