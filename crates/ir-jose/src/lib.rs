//! ES256 keys and the small JOSE pieces ir-server's crates share, in one
//! place: P-256 private keys from PEM (PKCS#8 or SEC1) and public keys from
//! PEM SubjectPublicKeyInfo or JWK coordinates, ES256 signatures in JOSE
//! form (r||s, 64 bytes, RFC 7518 §3.4), base64url, the two key ids in use
//! (RFC 7638 thumbprint, hex SHA-256 of the SubjectPublicKeyInfo), and RFC
//! 3339 UTC times.
//!
//! aws-lc-rs is the only crypto (the stack rustls links). No I/O but
//! [`SigningKey::from_pem_file`], which reads one bounded file.

mod key;
mod rfc3339;

pub use key::{KeyError, KeyFileError, PublicKey, SigningKey, MAX_KEY_FILE};
pub use rfc3339::{rfc3339, rfc3339_at};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// `bytes` as base64url without padding (RFC 4648 §5, as JOSE uses it).
pub fn base64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` for anything else (padding,
/// the standard alphabet, stray characters).
pub fn base64url_decode(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_unpadded_and_strict() {
        assert_eq!(base64url([0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(base64url_decode("+/8="), None);
        assert_eq!(base64url_decode("-_8="), None);
        assert_eq!(base64url_decode("a b"), None);
    }
}
