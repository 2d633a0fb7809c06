//! Compact JWS (RFC 7515) with ES256 only (RFC 7518 §3.4): the registry
//! tokens' signatures.
//!
//! Written here rather than taken from a JWT crate: the one such crate in
//! wide use (`jsonwebtoken`) is banned from shipped binaries (it brings a
//! second crypto stack), and the part needed is small: one algorithm, one
//! key type, base64url and JSON. Keys, signatures and base64url are
//! `ir-jose`'s (aws-lc-rs, the server's one crypto stack).
//! Only `ES256` is accepted: `none`, `HS*` and `RS*` headers are refused
//! before any key is looked at, so no algorithm confusion is possible, and
//! a header with `crit` is refused (no extension is understood).

use std::path::Path;

use ir_jose::{base64url, base64url_decode, KeyError};
use serde::Deserialize;

pub use ir_jose::PublicKey;

/// Longest token accepted (bytes of the compact form).
pub const MAX_TOKEN: usize = 8 * 1024;
/// Longest `kid` accepted.
const MAX_KID: usize = 256;

/// Why a token or a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts, too long, or not JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm than ES256.
    #[error("algorithm {0:?} refused: only ES256 is accepted")]
    Algorithm(String),
    /// The header carries `crit`.
    #[error("critical header extensions are not supported")]
    Critical,
    /// The key id is missing or names no trusted key.
    #[error("no trusted key with kid {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// A key that is not an ES256 (P-256) key.
    #[error("{0}")]
    Key(String),
}

impl From<KeyError> for JwsError {
    fn from(e: KeyError) -> Self {
        JwsError::Key(e.to_string())
    }
}

/// The protected header, as far as it is read.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// An ES256 signing key whose `kid` is its public key's RFC 7638
/// thumbprint.
#[derive(Debug)]
pub struct SigningKey(ir_jose::SigningKey);

impl SigningKey {
    /// The key in a PEM file: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE
    /// KEY`), on P-256.
    pub fn from_pem(pem: &[u8]) -> Result<Self, JwsError> {
        Ok(SigningKey(ir_jose::SigningKey::from_pem(pem)?))
    }

    /// The key in a PEM file, read up to [`ir_jose::MAX_KEY_FILE`] bytes;
    /// the error says what is wrong, not which file.
    pub fn from_pem_file(path: &Path) -> Result<Self, JwsError> {
        ir_jose::SigningKey::from_pem_file(path)
            .map(SigningKey)
            .map_err(|e| JwsError::Key(e.reason()))
    }

    /// A fresh random key (the tokens it signs die with the process).
    pub fn generate() -> Result<Self, JwsError> {
        Ok(SigningKey(ir_jose::SigningKey::generate()?))
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        self.0.public()
    }

    /// The key id in the tokens' headers.
    pub fn kid(&self) -> &str {
        self.0.thumbprint()
    }

    /// `payload` signed as a compact JWS (`typ` JWT).
    pub fn sign(&self, payload: &[u8]) -> Result<String, JwsError> {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid()});
        let mut out = base64url(header.to_string());
        out.push('.');
        out.push_str(&base64url(payload));
        let signature = self.0.sign_base64url(out.as_bytes())?;
        out.push('.');
        out.push_str(&signature);
        Ok(out)
    }
}

/// Checks `token`'s form, header and signature with the key its `kid`
/// names (found by `key`), and returns the payload's bytes.
pub fn verify<'k>(
    token: &str,
    key: impl Fn(&str) -> Option<&'k PublicKey>,
) -> Result<Vec<u8>, JwsError> {
    if token.len() > MAX_TOKEN {
        return Err(JwsError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three parts"));
    };
    let decode = |part: &str| base64url_decode(part).ok_or(JwsError::Malformed("not base64url"));
    let header: Header = ir_oci::json::from_slice(&decode(h)?)
        .map_err(|_| JwsError::Malformed("header is not a JSON object"))?;
    if header.alg != "ES256" {
        return Err(JwsError::Algorithm(header.alg));
    }
    if header.crit.is_some() {
        return Err(JwsError::Critical);
    }
    let kid = header.kid.unwrap_or_default();
    if kid.len() > MAX_KID {
        return Err(JwsError::Malformed("kid too long"));
    }
    let public = key(&kid).ok_or(JwsError::UnknownKey(kid))?;
    let signature = decode(s)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    if signature.len() != 64 || !public.verify(signing_input.as_bytes(), &signature) {
        return Err(JwsError::Signature);
    }
    decode(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only<'k>(k: &'k SigningKey) -> impl Fn(&str) -> Option<&'k PublicKey> {
        move |kid| (kid == k.kid()).then_some(k.public())
    }

    #[test]
    fn signs_and_verifies() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(br#"{"sub":"a"}"#).unwrap();
        assert_eq!(verify(&token, only(&key)).unwrap(), br#"{"sub":"a"}"#);
        let other = SigningKey::generate().unwrap();
        assert!(matches!(
            verify(&token, only(&other)),
            Err(JwsError::UnknownKey(_))
        ));
        // Same kid, another key: the signature fails.
        let swapped = |_: &str| Some(other.public());
        assert_eq!(verify(&token, swapped), Err(JwsError::Signature));
    }

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(b"{}").unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        for (alg, extra) in [
            ("none", ""),
            ("HS256", ""),
            ("RS256", ""),
            ("ES256", r#","crit":["b64"]"#),
        ] {
            let h = base64url(format!(r#"{{"alg":"{alg}","kid":"{}"{extra}}}"#, key.kid()));
            let forged = format!("{h}.{rest}");
            let e = verify(&forged, only(&key)).unwrap_err();
            assert!(
                matches!(e, JwsError::Algorithm(_) | JwsError::Critical),
                "{alg}: {e}"
            );
        }
        let dup = base64url(br#"{"alg":"ES256","alg":"none"}"#);
        assert!(matches!(
            verify(&format!("{dup}.{rest}"), only(&key)),
            Err(JwsError::Malformed(_))
        ));
        for bad in ["", "a.b", "a.b.c.d", &"x".repeat(MAX_TOKEN + 1)] {
            assert!(
                matches!(verify(bad, only(&key)), Err(JwsError::Malformed(_))),
                "{bad:.20}"
            );
        }
        // A tampered payload fails the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64url(br#"{"sub":"root"}"#);
        parts[1] = &forged_payload;
        assert_eq!(
            verify(&parts.join("."), only(&key)),
            Err(JwsError::Signature)
        );
    }

    #[test]
    fn thumbprint_is_rfc7638() {
        // RFC 7638 §3.1's key is RSA; this EC key's thumbprint is checked
        // against the same construction done by hand.
        let key = SigningKey::generate().unwrap();
        let jwk = key.public().jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let want = base64url(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ));
        assert_eq!(key.kid(), want);
        let back =
            PublicKey::from_coordinates(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        assert_eq!(&back, key.public());
        assert!(PublicKey::from_coordinates("AAAA", "AAAA").is_err());
    }
}
