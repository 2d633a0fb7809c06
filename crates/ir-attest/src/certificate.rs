//! The RA-TLS client certificate: the CCA token it carries (extension
//! 1.3.3.3.7) and its SubjectPublicKeyInfo, which the token binds to the
//! TLS session.

use crate::RATLS_TOKEN_EXTENSION_OID;

/// Largest client certificate accepted (a token is at most 64 KiB).
pub const MAX_CLIENT_CERT: usize = 96 << 10;

/// Why a presented certificate cannot carry an attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No client certificate was presented.
    #[error("no client certificate presented")]
    Missing,
    /// Larger than any certificate with a token can be.
    #[error("client certificate is {0} bytes, more than {MAX_CLIENT_CERT}")]
    TooLarge(usize),
    /// Not X.509.
    #[error("client certificate does not parse as X.509: {0}")]
    Unparsable(String),
    /// The extension with the token is absent.
    #[error("client certificate has no attestation token extension ({RATLS_TOKEN_EXTENSION_OID})")]
    MissingExtension,
    /// The extension appears more than once.
    #[error("client certificate has the attestation token extension more than once")]
    DuplicateExtension,
}

/// What the attestation needs from the presented certificate.
#[derive(Debug, Clone)]
pub struct PresentedCertificate {
    /// The raw CCA token (the extension's extnValue octets).
    pub token: Vec<u8>,
    /// The certificate's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

/// Reads the token and SPKI out of a client certificate.
pub fn read_certificate(der: &[u8]) -> Result<PresentedCertificate, CertificateError> {
    if der.len() > MAX_CLIENT_CERT {
        return Err(CertificateError::TooLarge(der.len()));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertificateError::Unparsable(e.to_string()))?;
    let mut found = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == RATLS_TOKEN_EXTENSION_OID {
            if found.is_some() {
                return Err(CertificateError::DuplicateExtension);
            }
            found = Some(ext.value.to_vec());
        }
    }
    let token = found.ok_or(CertificateError::MissingExtension)?;
    Ok(PresentedCertificate {
        token,
        spki_der: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_certificates() {
        assert!(matches!(
            read_certificate(b"not der"),
            Err(CertificateError::Unparsable(_))
        ));
        assert!(matches!(
            read_certificate(&vec![0u8; MAX_CLIENT_CERT + 1]),
            Err(CertificateError::TooLarge(_))
        ));
    }
}
