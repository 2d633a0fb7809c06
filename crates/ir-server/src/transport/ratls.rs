//! RA-TLS: TLS where the client must be an attested Arm CCA realm.
//!
//! Every connection gets its own challenge and so its own rustls
//! configuration (the challenge travels in the CertificateRequest).
//! Session resumption is off, so every connection attests; TLS 1.3 only
//! unless `--ratls-tls12`. Once the handshake completes, the
//! [`Attestor`] judges the presented certificate; only an attested realm's
//! connection reaches HTTP, carrying the realm's application filter.

use std::net::SocketAddr;
use std::sync::Arc;

use ir_attest::attestor::Attestor;
use ir_attest::ratls::{new_challenge, ChallengeVerifier};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Handshake;
use crate::api::ConnInfo;
use crate::tls::CertStore;

/// How one RA-TLS connection ended its attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationOutcome {
    /// Attested as this realm (its label).
    Accepted(String),
    /// Refused, with a stable reason label and the full one-line reason.
    Refused {
        /// Short label (as in metrics), e.g. `rim_mismatch`.
        reason: &'static str,
        /// The full reason, as logged.
        detail: String,
    },
}

/// Called with every connection's outcome (metrics, audit, tests).
pub type Observer = Arc<dyn Fn(SocketAddr, &AttestationOutcome) + Send + Sync>;

/// The RA-TLS transport.
pub struct RaTls {
    certs: Arc<CertStore>,
    attestor: Arc<Attestor>,
    allow_tls12: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
    observer: Option<Observer>,
}

/// Labels a failed handshake: the verifier refuses certificates without
/// the token extension during the handshake, and rustls refuses clients
/// that present no certificate.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("attestation token extension") {
        "missing_extension"
    } else if text.contains("peer sent no certificates") {
        "no_certificate"
    } else {
        "handshake"
    }
}

impl RaTls {
    /// Serves with the server certificate from `certs`, attesting clients
    /// with `attestor`.
    pub fn new(certs: Arc<CertStore>, attestor: Arc<Attestor>, allow_tls12: bool) -> Self {
        RaTls {
            certs,
            attestor,
            allow_tls12,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            observer: None,
        }
    }

    /// Also reports every connection's outcome to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn report(&self, peer: SocketAddr, outcome: AttestationOutcome) {
        match &outcome {
            AttestationOutcome::Accepted(_) => crate::metrics::attestation("accepted", "ok"),
            AttestationOutcome::Refused { reason, .. } => {
                crate::metrics::attestation("refused", reason)
            }
        }
        if let Some(o) = &self.observer {
            o(peer, &outcome);
        }
    }

    fn config(&self, challenge: &[u8; 64]) -> Result<Arc<rustls::ServerConfig>, String> {
        let versions: &[&rustls::SupportedProtocolVersion] = if self.allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(ChallengeVerifier::new(challenge, &self.provider))
            .with_cert_resolver(self.certs.clone());
        // Every connection attests: no resumption by ID or ticket.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Handshake for RaTls {
    type Io = TlsStream<TcpStream>;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Self::Io, ConnInfo), String> {
        let challenge = new_challenge();
        let refused = |reason: &'static str, detail: String| {
            self.report(
                peer,
                AttestationOutcome::Refused {
                    reason,
                    detail: detail.clone(),
                },
            );
            detail
        };
        let stream = match TlsAcceptor::from(self.config(&challenge)?)
            .accept(tcp)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(refused(
                    handshake_reason(&e),
                    format!("RA-TLS handshake failed: {e}"),
                ))
            }
        };
        let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
        else {
            return Err(refused(
                "no_certificate",
                "RA-TLS: no client certificate presented".into(),
            ));
        };
        match self.attestor.attest(cert, challenge).await {
            Ok(attested) => {
                let realm = attested.realm;
                tracing::info!(%peer, realm = %realm.label(), "realm attested");
                tracing::debug!(%peer, "attested token: {}", attested.summary);
                self.report(peer, AttestationOutcome::Accepted(realm.label()));
                let name: Arc<str> = realm.name.as_deref().unwrap_or("unnamed realm").into();
                let visibility: crate::api::Visibility = realm.applications.is_some().then(|| {
                    Arc::new(move |name: &ir_oci::RepoName| realm.allows(name.as_str())) as _
                });
                Ok((
                    stream,
                    ConnInfo {
                        peer,
                        visibility,
                        realm: Some(name),
                    },
                ))
            }
            Err(e) => Err(refused(
                e.reason(),
                format!("RA-TLS attestation refused ({}): {e}", e.reason()),
            )),
        }
    }
}
