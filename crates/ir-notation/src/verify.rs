//! The verification workflow: integrity, then authenticity, authentic timestamp and expiry
//! as the applicable trust policy statement's level says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use serde::Deserialize;
use webpki::aws_lc_rs as algs;
use x509_parser::prelude::*;

use crate::envelope::{Decoded, SigningScheme};
use crate::policy::{Action, Level, PolicyStatement, StoreKind, TrustPolicy, TrustedIdentities};
use crate::store::TrustStore;
use crate::{certs, cose, dn, jws, Error};

/// Media type of JWS envelopes.
pub const MEDIA_TYPE_JWS: &str = "application/jose+json";
/// Media type of COSE envelopes.
pub const MEDIA_TYPE_COSE: &str = "application/cose";
/// Largest envelope accepted (notation's envelopes are a few KiB).
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// The artifact a signature must be for: the descriptor of the signed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Media type of the manifest or index.
    pub media_type: String,
    /// `algorithm:hex` digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// An accepted signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Subject of the signing certificate (`C=US, ST=WA, O=..., CN=...`); empty when the
    /// statement's level is `skip` (nothing was verified).
    pub signer_subject: String,
    /// Name of the trust policy statement applied.
    pub policy_name: String,
    /// Its level.
    pub level: Level,
    /// Signing scheme (`None` when skipped).
    pub signing_scheme: Option<SigningScheme>,
    /// Signing time in Unix seconds: claimed (`notary.x509`) or authentic
    /// (`notary.x509.signingAuthority`); `None` when skipped.
    pub signing_time: Option<i64>,
    /// Expiry in Unix seconds, if the signature has one.
    pub expiry: Option<i64>,
    /// Failed checks whose action is `log`.
    pub warnings: Vec<Error>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target_artifact: Descriptor,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// Verifies one signature envelope for `target` in repository `scope` (`host/repository`)
/// at the current time. See [`verify_at`].
pub fn verify(
    policy: &TrustPolicy,
    store: &TrustStore,
    scope: &str,
    target: &Target,
    envelope_media_type: &str,
    envelope: &[u8],
) -> Result<Verified, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    verify_at(
        policy,
        store,
        scope,
        target,
        envelope_media_type,
        envelope,
        now,
    )
}

/// [`verify`] at Unix time `now`.
///
/// Always enforced (integrity): the envelope decodes within bounds, the headers follow the
/// envelope specification, the signature verifies with the signing certificate's key using
/// the algorithm notation assigns to that key, the payload names `target`, every certificate
/// meets notation's requirements and is valid at the signing time. Then, per the statement:
/// authenticity (the chain leads to a certificate in the statement's `ca` stores for
/// `notary.x509` or `signingAuthority` stores for `notary.x509.signingAuthority`, and the
/// signer matches `trustedIdentities`), authentic timestamp (`notary.x509`: every certificate
/// still valid at `now`), expiry. Revocation is never checked.
pub fn verify_at(
    policy: &TrustPolicy,
    store: &TrustStore,
    scope: &str,
    target: &Target,
    envelope_media_type: &str,
    envelope: &[u8],
    now: i64,
) -> Result<Verified, Error> {
    let statement = policy.statement_for(scope)?;
    let v = statement.verification;
    if v.level == Level::Skip {
        return Ok(Verified {
            signer_subject: String::new(),
            policy_name: statement.name.clone(),
            level: v.level,
            signing_scheme: None,
            signing_time: None,
            expiry: None,
            warnings: Vec::new(),
        });
    }
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return Err(Error::EnvelopeTooLarge {
            size: envelope.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    let decoded = match envelope_media_type {
        MEDIA_TYPE_JWS => jws::decode(envelope)?,
        MEDIA_TYPE_COSE => cose::decode(envelope)?,
        other => return Err(Error::UnsupportedEnvelope(other.to_string())),
    };
    let chain = decoded
        .chain
        .iter()
        .map(|der| match X509Certificate::from_der(der) {
            Ok(([], cert)) => Ok(cert),
            _ => Err(Error::MalformedEnvelope(
                "certificate chain holds something that is not one DER certificate".into(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &chain[0];

    // Integrity.
    let key_alg = certs::signing_algorithm(leaf)?;
    if key_alg != decoded.alg {
        return Err(Error::UnsupportedAlgorithm(format!(
            "header says {:?} but the signing key requires {key_alg:?}",
            decoded.alg
        )));
    }
    certs::verify_signature(leaf, decoded.alg, &decoded.signed_bytes, &decoded.signature)?;
    check_target(&decoded.payload, target)?;
    certs::check_leaf(leaf)?;
    for ca in &chain[1..] {
        certs::check_ca(ca)?;
    }
    for cert in &chain {
        if !certs::valid_at(cert, decoded.signing_time) {
            return Err(Error::Expired(format!(
                "certificate {} is not valid at the signing time",
                cert.subject()
            )));
        }
    }

    let mut warnings = Vec::new();
    // The trust store's root the chain ends at, when the envelope leaves it out (its
    // validity is checked as the envelope's certificates are).
    let mut anchor = None;
    apply(v.authenticity, &mut warnings, || {
        anchor = authenticity(statement, store, &decoded, &chain)?;
        Ok(())
    })?;
    let anchor = anchor.and_then(|der| match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    });
    apply(v.authentic_timestamp, &mut warnings, || {
        if decoded.scheme == SigningScheme::X509 {
            // No timestamp is verified, so the claimed signing time proves nothing: every
            // certificate must still be valid now.
            for cert in chain.iter().chain(anchor.iter()) {
                if !certs::valid_at(cert, now) {
                    return Err(Error::Expired(format!(
                        "certificate {} is not valid now",
                        cert.subject()
                    )));
                }
            }
        }
        Ok(())
    })?;
    apply(v.expiry, &mut warnings, || match decoded.expiry {
        Some(expiry) if now > expiry => Err(Error::Expired("the signature has expired".into())),
        _ => Ok(()),
    })?;
    Ok(Verified {
        signer_subject: leaf.subject().to_string(),
        policy_name: statement.name.clone(),
        level: v.level,
        signing_scheme: Some(decoded.scheme),
        signing_time: Some(decoded.signing_time),
        expiry: decoded.expiry,
        warnings,
    })
}

fn apply(
    action: Action,
    warnings: &mut Vec<Error>,
    check: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    if action == Action::Skip {
        return Ok(());
    }
    match check() {
        Ok(()) => Ok(()),
        Err(e) if action == Action::Log => {
            warnings.push(e);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn check_target(payload: &[u8], target: &Target) -> Result<(), Error> {
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| Error::MalformedEnvelope(format!("payload: {e}")))?;
    let t = p.target_artifact;
    if t.media_type != target.media_type {
        return Err(Error::TargetMismatch(format!(
            "media type {:?}",
            t.media_type
        )));
    }
    if t.digest != target.digest {
        return Err(Error::TargetMismatch(format!("digest {:?}", t.digest)));
    }
    if t.size != target.size {
        return Err(Error::TargetMismatch(format!("size {}", t.size)));
    }
    Ok(())
}

/// Certificate purposes are checked on the signing certificate by `certs::check_leaf`;
/// notation puts no EKU rule on CA certificates, so webpki is told to accept any.
struct AnyPurpose;

impl webpki::ExtendedKeyUsageValidator for AnyPurpose {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Algorithms certificates in a chain may be signed with.
static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
    algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P256_SHA384,
    algs::ECDSA_P384_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ECDSA_P521_SHA256,
    algs::ECDSA_P521_SHA384,
    algs::ECDSA_P521_SHA512,
];

/// Checks the chain against the statement's trust stores and identities; returns the
/// store's root it ends at when the envelope does not hold that root.
fn authenticity<'s>(
    statement: &PolicyStatement,
    store: &'s TrustStore,
    decoded: &Decoded,
    chain: &[X509Certificate<'_>],
) -> Result<Option<&'s [u8]>, Error> {
    let kind = match decoded.scheme {
        SigningScheme::X509 => StoreKind::Ca,
        SigningScheme::X509SigningAuthority => StoreKind::SigningAuthority,
    };
    let mut roots: Vec<&CertificateDer<'static>> = Vec::new();
    for r in statement.trust_stores.iter().filter(|r| r.kind == kind) {
        let certs = store.certificates(kind, &r.name).ok_or_else(|| {
            Error::UntrustedChain(format!(
                "trust store {}:{} named by statement {:?} does not exist",
                kind.as_str(),
                r.name,
                statement.name
            ))
        })?;
        roots.extend(certs);
    }
    if roots.is_empty() {
        return Err(Error::UntrustedChain(format!(
            "statement {:?} names no {} trust store",
            statement.name,
            kind.as_str()
        )));
    }
    let (anchor_certs, anchors): (Vec<&CertificateDer<'static>>, Vec<_>) = roots
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok().map(|a| (*c, a)))
        .unzip();
    let leaf_der = CertificateDer::from(decoded.chain[0].as_slice());
    let intermediates: Vec<CertificateDer<'_>> = decoded.chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| Error::UntrustedChain(format!("signing certificate: {e}")))?;
    // The chain is built at the signing time: authentic for signingAuthority, and for
    // notary.x509 the authentic-timestamp check adds validity now.
    let at = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(decoded.signing_time).unwrap_or(0),
    ));
    let path = ee
        .verify_for_usage(
            CHAIN_ALGS,
            &anchors,
            &intermediates,
            at,
            AnyPurpose,
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                Error::Expired(format!("certificate chain at the signing time: {e}"))
            }
            e => Error::UntrustedChain(e.to_string()),
        })?;
    // webpki takes a trust anchor as a name and a key, without its validity: when the
    // envelope does not hold the root, the store's copy must be valid at the signing time
    // as every certificate of the envelope must.
    let root = anchors
        .iter()
        .position(|a| std::ptr::eq(a, path.anchor()))
        .map(|i| anchor_certs[i].as_ref());
    let root = root.filter(|der| !decoded.chain.iter().any(|c| c.as_slice() == *der));
    if let Some(der) = root {
        match X509Certificate::from_der(der) {
            Ok(([], cert)) if certs::valid_at(&cert, decoded.signing_time) => {}
            Ok(([], cert)) => {
                return Err(Error::Expired(format!(
                    "trust anchor {} is not valid at the signing time",
                    cert.subject()
                )))
            }
            _ => {
                return Err(Error::UntrustedChain(
                    "trust anchor does not parse as one certificate".into(),
                ))
            }
        }
    }

    match &statement.trusted_identities {
        TrustedIdentities::Any => Ok(root),
        TrustedIdentities::Subjects(ids) => {
            let leaf = &chain[0];
            let subject = dn::certificate_subject(leaf.subject());
            match subject {
                Some(s) if ids.iter().any(|id| dn::is_subset(id, &s)) => Ok(root),
                _ => Err(Error::IdentityNotTrusted(leaf.subject().to_string())),
            }
        }
    }
}
