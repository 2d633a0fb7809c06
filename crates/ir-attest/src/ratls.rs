//! The RA-TLS pieces that live inside the TLS handshake (rustls), per
//! `docs/ratls.md`:
//!
//! - a fresh 64-byte challenge per connection, sent as the only entry of
//!   the CertificateRequest's certificate-authorities list, as the base64
//!   text of the bytes (not a DER name: existing realm clients read it so);
//! - a client-certificate verifier that requires a certificate, runs the
//!   cheap checks of its token (no signature; [`Precheck`]) before the TLS
//!   signature that proves the client holds its key is checked, and defers
//!   the rest of the attestation (signatures, and a network round trip to
//!   Veraison) to [`crate::attestor::Attestor`] right after the handshake,
//!   before a single byte of application data is exchanged. A refusal
//!   travels through rustls as `CertificateError::Other` holding the
//!   [`AttestError`], so the transport can read its reason back
//!   ([`attest_error`]);
//! - extraction of the token (extension 1.3.3.3.7) and the SPKI from the
//!   presented certificate ([`crate::certificate`]).

use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::attestor::AttestError;
use crate::certificate::read_certificate;

/// The cheap checks of a presented certificate (DER), run inside the
/// handshake; see [`crate::attestor::Attestor::precheck`].
pub type Precheck = Arc<dyn Fn(&[u8]) -> Result<(), AttestError> + Send + Sync>;

/// Wraps an attestation refusal as the rustls error that carries it.
pub fn to_rustls_error(e: AttestError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(e),
    )))
}

/// The attestation refusal inside a rustls error, if it carries one.
pub fn attest_error(e: &rustls::Error) -> Option<&AttestError> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<AttestError>()
        }
        _ => None,
    }
}

/// A fresh random challenge from aws-lc-rs's generator (seeded by the
/// operating system).
pub fn new_challenge() -> [u8; 64] {
    let mut c = [0u8; 64];
    // AWS-LC's RAND_bytes aborts rather than fail; this never fires.
    aws_lc_rs::rand::fill(&mut c).expect("system random generator");
    c
}

/// The certificate-authorities entry that carries `challenge`.
pub fn challenge_hint(challenge: &[u8; 64]) -> DistinguishedName {
    let text = base64::engine::general_purpose::STANDARD.encode(challenge);
    DistinguishedName::from(text.into_bytes())
}

/// The client-certificate verifier for one RA-TLS connection.
///
/// It requires a certificate, advertises the connection's challenge as the
/// only acceptable issuer, and checks the handshake signature with the
/// certificate's key. It does not judge the certificate's issuer (realm
/// certificates are self-signed) — the attestation token inside it is the
/// credential, checked by the [`Attestor`](crate::attestor::Attestor) once
/// the handshake completes.
pub struct ChallengeVerifier {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
    precheck: Option<Precheck>,
}

impl std::fmt::Debug for ChallengeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeVerifier")
            .field("precheck", &self.precheck.is_some())
            .finish_non_exhaustive()
    }
}

impl ChallengeVerifier {
    /// A verifier advertising `challenge`, checking signatures with
    /// `provider`'s algorithms.
    pub fn new(challenge: &[u8; 64], provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(ChallengeVerifier {
            hints: vec![challenge_hint(challenge)],
            algorithms: provider.signature_verification_algorithms,
            precheck: None,
        })
    }

    /// A verifier that also runs `precheck` on the certificate (instead of
    /// only reading it) before the handshake signature is checked.
    pub fn with_precheck(
        challenge: &[u8; 64],
        provider: &CryptoProvider,
        precheck: Precheck,
    ) -> Arc<Self> {
        Arc::new(ChallengeVerifier {
            hints: vec![challenge_hint(challenge)],
            algorithms: provider.signature_verification_algorithms,
            precheck: Some(precheck),
        })
    }
}

impl ClientCertVerifier for ChallengeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Cheap checks now (rustls checks the handshake signature after
        // this); the signatures and Veraison follow the handshake.
        let checked = match &self.precheck {
            Some(precheck) => precheck(end_entity),
            None => read_certificate(end_entity)
                .map(|_| ())
                .map_err(AttestError::from),
        };
        checked
            .map(|()| ClientCertVerified::assertion())
            .map_err(to_rustls_error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_hint_is_base64_text_of_the_challenge() {
        let c = [0xabu8; 64];
        let hint = challenge_hint(&c);
        let text = std::str::from_utf8(hint.as_ref()).unwrap();
        assert_eq!(text.len(), 88);
        assert!(text.ends_with("=="));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
            c
        );
    }

    #[test]
    fn challenges_are_fresh() {
        assert_ne!(new_challenge(), new_challenge());
    }
}
