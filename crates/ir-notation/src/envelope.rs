//! What both envelope formats carry, once decoded, and the header rules they share.

use crate::Error;

/// Content type of the payload notation signs.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Most certificates in an envelope's chain.
pub const MAX_CHAIN_LEN: usize = 10;
/// Most protected header parameters, and most `crit` entries.
pub const MAX_HEADERS: usize = 64;

/// Header names notation defines.
pub mod names {
    /// Signing scheme.
    pub const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
    /// Claimed signing time (`notary.x509`).
    pub const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
    /// Authentic signing time (`notary.x509.signingAuthority`).
    pub const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
    /// Signature expiry.
    pub const EXPIRY: &str = "io.cncf.notary.expiry";
}

/// notation's signing schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningScheme {
    /// `notary.x509`: the signing time is the signer's claim.
    X509,
    /// `notary.x509.signingAuthority`: the signing authority vouches for the signing time.
    X509SigningAuthority,
}

/// Signature algorithms from notation's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PSS with SHA-256 (RSA 2048).
    Ps256,
    /// RSASSA-PSS with SHA-384 (RSA 3072).
    Ps384,
    /// RSASSA-PSS with SHA-512 (RSA 4096).
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
}

/// A decoded envelope, before any cryptographic check.
#[derive(Debug)]
pub struct Decoded {
    pub alg: Algorithm,
    pub scheme: SigningScheme,
    /// Unix seconds: `signingTime` for `notary.x509`, `authenticSigningTime` otherwise.
    pub signing_time: i64,
    pub expiry: Option<i64>,
    pub payload: Vec<u8>,
    /// The exact bytes the signature covers.
    pub signed_bytes: Vec<u8>,
    /// Fixed-size `r || s` for ECDSA, the PSS signature for RSA.
    pub signature: Vec<u8>,
    /// DER certificates, signing certificate first.
    pub chain: Vec<Vec<u8>>,
}

/// The protected header values the shared rules look at.
pub struct Protected {
    pub crit: Vec<String>,
    /// Every parameter name in the protected header (text names only).
    pub present: Vec<String>,
    pub content_type: Option<String>,
    pub scheme: Option<String>,
    pub signing_time: Option<i64>,
    pub authentic_signing_time: Option<i64>,
    pub expiry: Option<i64>,
}

pub fn malformed(msg: impl Into<String>) -> Error {
    Error::MalformedEnvelope(msg.into())
}

/// Applies the rules both envelope specifications share: content type, `crit` lists only
/// known and present headers and includes the ones that must be critical, the scheme's time.
pub fn check_protected(p: &Protected) -> Result<(SigningScheme, i64), Error> {
    use names::*;
    if p.crit.len() > MAX_HEADERS || p.present.len() > MAX_HEADERS {
        return Err(malformed("too many header parameters"));
    }
    if p.content_type.as_deref() != Some(PAYLOAD_CONTENT_TYPE) {
        return Err(malformed(format!(
            "content type {:?} is not {PAYLOAD_CONTENT_TYPE}",
            p.content_type
        )));
    }
    for c in &p.crit {
        match c.as_str() {
            SIGNING_SCHEME | EXPIRY | AUTHENTIC_SIGNING_TIME => {}
            // Also unknown to us: plugins and extended attributes someone marked critical.
            other => return Err(Error::UnknownCriticalHeader(other.to_string())),
        }
        if !p.present.iter().any(|h| h == c) {
            return Err(malformed(format!("critical header {c:?} is absent")));
        }
    }
    let must_be_critical = |name: &str| {
        if p.crit.iter().any(|c| c == name) {
            Ok(())
        } else {
            Err(malformed(format!("{name} must be listed in crit")))
        }
    };
    must_be_critical(SIGNING_SCHEME)?;
    if p.expiry.is_some() {
        must_be_critical(EXPIRY)?;
    }
    let scheme = match p.scheme.as_deref() {
        Some("notary.x509") => SigningScheme::X509,
        Some("notary.x509.signingAuthority") => SigningScheme::X509SigningAuthority,
        other => {
            return Err(malformed(format!(
                "signing scheme {other:?} is not supported"
            )))
        }
    };
    let time = match scheme {
        SigningScheme::X509 => {
            if p.authentic_signing_time.is_some() {
                return Err(malformed("notary.x509 must not carry authenticSigningTime"));
            }
            p.signing_time
                .ok_or_else(|| malformed("signingTime is missing"))?
        }
        SigningScheme::X509SigningAuthority => {
            must_be_critical(AUTHENTIC_SIGNING_TIME)?;
            p.authentic_signing_time
                .ok_or_else(|| malformed("authenticSigningTime is missing"))?
        }
    };
    if let Some(expiry) = p.expiry {
        if expiry < time {
            return Err(malformed("expiry is before the signing time"));
        }
    }
    Ok((scheme, time))
}
