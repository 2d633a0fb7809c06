//! notation's certificate requirements, the signing key's algorithm, and the envelope
//! signature check with aws-lc-rs.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::envelope::Algorithm;
use crate::Error;

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

fn requirement(cert: &X509Certificate<'_>, msg: impl std::fmt::Display) -> Error {
    Error::CertificateRequirement(format!("{}: {msg}", cert.subject()))
}

/// The algorithm notation's table assigns to the certificate's key; refuses keys outside it
/// (RSA other than 2048/3072/4096 bits, EC curves other than P-256/384/521).
pub fn signing_algorithm(cert: &X509Certificate<'_>) -> Result<Algorithm, Error> {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
            2048 => Ok(Algorithm::Ps256),
            3072 => Ok(Algorithm::Ps384),
            4096 => Ok(Algorithm::Ps512),
            bits => Err(Error::UnsupportedAlgorithm(format!(
                "RSA key of {bits} bits"
            ))),
        },
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(Algorithm::Es256),
                Some(OID_P384) => Ok(Algorithm::Es384),
                Some(OID_P521) => Ok(Algorithm::Es512),
                other => Err(Error::UnsupportedAlgorithm(format!("EC curve {other:?}"))),
            }
        }
        _ => Err(Error::UnsupportedAlgorithm(
            "signing key is neither RSA nor EC".into(),
        )),
    }
}

/// Verifies the envelope signature over `message` with the certificate's key.
pub fn verify_signature(
    cert: &X509Certificate<'_>,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let algorithm: &'static dyn VerificationAlgorithm = match alg {
        Algorithm::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::Es256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::Es384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::Es512 => &sig::ECDSA_P521_SHA512_FIXED,
    };
    let key = &cert.public_key().subject_public_key.data;
    UnparsedPublicKey::new(algorithm, key)
        .verify(message, signature)
        .map_err(|_| Error::BadSignature)
}

/// Key length rule for every certificate: RSA at least 2048 bits, EC at least 256.
fn check_key_length(cert: &X509Certificate<'_>) -> Result<(), Error> {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() < 2048 => {
            Err(requirement(cert, "RSA key shorter than 2048 bits"))
        }
        Ok(PublicKey::EC(ec)) if ec.key_size() < 256 => {
            Err(requirement(cert, "EC key shorter than 256 bits"))
        }
        Ok(PublicKey::RSA(_)) | Ok(PublicKey::EC(_)) => Ok(()),
        _ => Err(requirement(cert, "key is neither RSA nor EC")),
    }
}

/// The signing certificate: basicConstraints cA false if present; keyUsage present, critical,
/// digitalSignature and none of the key-management or CA bits; extendedKeyUsage, if present,
/// includes id-kp-codeSigning and none of anyExtendedKeyUsage, serverAuth, clientAuth,
/// emailProtection, timeStamping.
///
/// notation's specification lets an EKU without codeSigning pass; this crate requires
/// codeSigning whenever an EKU is present (fail closed).
pub fn check_leaf(cert: &X509Certificate<'_>) -> Result<(), Error> {
    check_key_length(cert)?;
    let ext_err = |e: X509Error| requirement(cert, format!("bad extension: {e}"));
    if let Some(bc) = cert.basic_constraints().map_err(ext_err)? {
        if bc.value.ca {
            return Err(requirement(cert, "signing certificate is a CA"));
        }
    }
    let ku = cert
        .key_usage()
        .map_err(ext_err)?
        .ok_or_else(|| requirement(cert, "keyUsage is missing"))?;
    if !ku.critical {
        return Err(requirement(cert, "keyUsage is not critical"));
    }
    let k = ku.value;
    if !k.digital_signature() {
        return Err(requirement(cert, "keyUsage lacks digitalSignature"));
    }
    if k.key_encipherment()
        || k.data_encipherment()
        || k.key_agreement()
        || k.key_cert_sign()
        || k.crl_sign()
        || k.encipher_only()
        || k.decipher_only()
    {
        return Err(requirement(
            cert,
            "keyUsage has bits a signing certificate must not have",
        ));
    }
    if let Some(eku) = cert.extended_key_usage().map_err(ext_err)? {
        let e = eku.value;
        if e.any || e.server_auth || e.client_auth || e.email_protection || e.time_stamping {
            return Err(requirement(
                cert,
                "extendedKeyUsage has a forbidden purpose",
            ));
        }
        if !e.code_signing {
            return Err(requirement(cert, "extendedKeyUsage lacks codeSigning"));
        }
    }
    Ok(())
}

/// A CA certificate of the chain: basicConstraints present, critical, cA true; keyUsage
/// present, critical, keyCertSign.
pub fn check_ca(cert: &X509Certificate<'_>) -> Result<(), Error> {
    check_key_length(cert)?;
    let ext_err = |e: X509Error| requirement(cert, format!("bad extension: {e}"));
    let bc = cert
        .basic_constraints()
        .map_err(ext_err)?
        .ok_or_else(|| requirement(cert, "CA certificate without basicConstraints"))?;
    if !bc.critical || !bc.value.ca {
        return Err(requirement(
            cert,
            "basicConstraints must be critical with cA true",
        ));
    }
    let ku = cert
        .key_usage()
        .map_err(ext_err)?
        .ok_or_else(|| requirement(cert, "CA certificate without keyUsage"))?;
    if !ku.critical || !ku.value.key_cert_sign() {
        return Err(requirement(
            cert,
            "keyUsage must be critical with keyCertSign",
        ));
    }
    Ok(())
}

/// Whether the certificate is valid at Unix time `t`.
pub fn valid_at(cert: &X509Certificate<'_>, t: i64) -> bool {
    ASN1Time::from_timestamp(t)
        .map(|t| cert.validity().is_valid_at(t))
        .unwrap_or(false)
}
