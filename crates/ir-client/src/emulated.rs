//! Setting up an emulated realm (**NOT SECURE**, for testing and demos)
//! from command-line style inputs, and exporting what a server needs to
//! trust it: the CPAK public key and matching reference values.

use crate::{Error, TokenError};
use base64::Engine as _;
use ir_attest::emulate::{EmulatedRealm, EMULATED_IMPLEMENTATION_ID};
use ir_attest::{HashAlg, Measurements};
use std::path::{Path, PathBuf};

/// The warning printed whenever an emulated realm is used.
pub const WARNING: &str = "NOT SECURE: emulated realm, for testing and demos";
/// File name of the RAK private key in a realm-keys directory.
pub const RAK_FILE: &str = "rak.pem";
/// File name of the CPAK private key in a realm-keys directory.
pub const CPAK_FILE: &str = "cpak.pem";

fn parse_hex(what: &str, text: &str, len: usize) -> Result<Vec<u8>, Error> {
    let bytes = hex::decode(text.trim()).map_err(|source| TokenError::NotHex {
        what: what.to_string(),
        text: text.to_string(),
        source,
    })?;
    if bytes.len() != len {
        return Err(TokenError::MeasurementLength {
            what: what.to_string(),
            found: bytes.len(),
            expected: len,
        }
        .into());
    }
    Ok(bytes)
}

/// Measurements from text: the hash algorithm name (`sha-256`, `sha-384`,
/// `sha-512`), an optional RIM in hex (default: the hash of
/// `ir-attest emulated realm`) and up to four REMs in hex (missing ones
/// are zero).
pub fn measurements(
    hash_algo: &str,
    rim: Option<&str>,
    rems: &[String],
) -> Result<Measurements, Error> {
    let alg = HashAlg::from_name(hash_algo)
        .ok_or_else(|| TokenError::HashAlgorithm(hash_algo.to_string()))?;
    let n = alg.output_len();
    if rems.len() > 4 {
        return Err(TokenError::TooManyRems(rems.len()).into());
    }
    let rim = match rim {
        Some(text) => parse_hex("RIM", text, n)?,
        None => alg.digest(b"ir-attest emulated realm"),
    };
    let mut out: [Vec<u8>; 4] = [vec![0; n], vec![0; n], vec![0; n], vec![0; n]];
    for (i, text) in rems.iter().enumerate() {
        out[i] = parse_hex(&format!("REM{i}"), text, n)?;
    }
    Ok(Measurements {
        rim,
        rems: out,
        hash_algo: alg,
    })
}

/// Loads the realm's keys from `dir` (`rak.pem`, `cpak.pem`), or, when
/// neither exists, generates them and saves them there (mode 0600).
pub fn load_or_generate(dir: &Path, measurements: Measurements) -> Result<EmulatedRealm, Error> {
    let (rak, cpak) = (dir.join(RAK_FILE), dir.join(CPAK_FILE));
    match (rak.exists(), cpak.exists()) {
        (true, true) => {
            Ok(EmulatedRealm::load(&rak, &cpak, measurements).map_err(TokenError::from)?)
        }
        (false, false) => {
            let realm = EmulatedRealm::generate(measurements).map_err(TokenError::from)?;
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let rak_pem = realm.rak_pem().map_err(TokenError::from)?;
            let cpak_pem = realm.cpak_pem().map_err(TokenError::from)?;
            write_private(&rak, rak_pem.as_bytes())?;
            write_private(&cpak, cpak_pem.as_bytes())?;
            Ok(realm)
        }
        _ => Err(TokenError::HalfKeys {
            dir: dir.to_path_buf(),
            rak: RAK_FILE,
            cpak: CPAK_FILE,
        }
        .into()),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// The CPAK public key as a JWK (P-384).
pub fn cpak_jwk(realm: &EmulatedRealm) -> serde_json::Value {
    let point = realm.cpak_public_sec1();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let half = (point.len() - 1) / 2;
    serde_json::json!({
        "kty": "EC",
        "crv": "P-384",
        "x": b64.encode(&point[1..1 + half]),
        "y": b64.encode(&point[1 + half..]),
    })
}

/// A Veraison-style trust-anchor list with this realm's platform, its
/// firmware pinned by reference values.
pub fn trust_anchor_json(realm: &EmulatedRealm) -> String {
    serde_json::to_string_pretty(&serde_json::json!([{
        "instance-id": hex::encode(realm.instance_id()),
        "implementation-id": hex::encode(EMULATED_IMPLEMENTATION_ID),
        "pkey": cpak_jwk(realm),
        "reference-values": realm.platform_reference_values(),
    }]))
    .expect("JSON serializes")
}

/// What [`export`] writes.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// The CPAK public key as a raw SEC1 point (a server's `--cpak` file).
    pub cpak: Option<PathBuf>,
    /// The CPAK as a JWK.
    pub cpak_jwk: Option<PathBuf>,
    /// The trust-anchor list form.
    pub trust_anchors: Option<PathBuf>,
    /// Reference values (islet JSON) matching the realm.
    pub reference_values: Option<PathBuf>,
    /// The realm's name in the reference values.
    pub name: String,
    /// Applications the realm may pull (none: all).
    pub applications: Vec<String>,
}

/// Writes the files of `what` for `realm`.
pub fn export(realm: &EmulatedRealm, what: &Export) -> Result<(), Error> {
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    };
    if let Some(p) = &what.cpak {
        write(p, &realm.cpak_public_sec1())?;
    }
    if let Some(p) = &what.cpak_jwk {
        write(p, cpak_jwk(realm).to_string().as_bytes())?;
    }
    if let Some(p) = &what.trust_anchors {
        write(p, trust_anchor_json(realm).as_bytes())?;
    }
    if let Some(p) = &what.reference_values {
        let apps: Vec<&str> = what.applications.iter().map(String::as_str).collect();
        let json =
            realm.reference_values_json(&what.name, (!apps.is_empty()).then_some(apps.as_slice()));
        write(p, json.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir_attest::platform::PlatformKeys;

    #[test]
    fn keys_persist_and_exports_are_accepted() {
        let dir = tempfile::TempDir::new().unwrap();
        let keys = dir.path().join("keys");
        let m = measurements("sha-256", None, &["11".repeat(32)]).unwrap();
        let a = load_or_generate(&keys, m.clone()).unwrap();
        let b = load_or_generate(&keys, m).unwrap();
        assert_eq!(a.cpak_public_sec1(), b.cpak_public_sec1());
        assert_eq!(a.rak_public_sec1(), b.rak_public_sec1());

        let what = Export {
            cpak: Some(dir.path().join("cpak.pub")),
            cpak_jwk: Some(dir.path().join("cpak.jwk")),
            trust_anchors: Some(dir.path().join("ta.json")),
            reference_values: Some(dir.path().join("ref.json")),
            name: "demo".into(),
            applications: vec!["app".into()],
        };
        export(&a, &what).unwrap();
        let token = a.token(&[3; 64]).unwrap();
        let parsed = ir_attest::CcaToken::parse(&token).unwrap();
        for f in ["cpak.pub", "cpak.jwk", "ta.json"] {
            let keys = PlatformKeys::load(&dir.path().join(f)).unwrap();
            keys.verify(&parsed).unwrap();
            // Only the trust-anchor list pins the platform's firmware.
            assert_eq!(keys.firmware_pins()[0].1, f == "ta.json", "{f}");
        }
        let refs = ir_attest::ReferenceSet::load(&dir.path().join("ref.json")).unwrap();
        let realm = refs.match_claims(&parsed.realm.claims).unwrap();
        assert!(realm.allows("app") && !realm.allows("other"));
    }

    #[test]
    fn bad_measurements() {
        assert!(measurements("md5", None, &[]).is_err());
        assert!(measurements("sha-256", Some("00"), &[]).is_err());
        assert!(measurements("sha-512", None, &vec!["00".repeat(64); 5]).is_err());
        assert_eq!(measurements("sha-512", None, &[]).unwrap().rim.len(), 64);
    }
}
