//! RA-TLS: TLS where the client must be an attested Arm CCA realm.
//!
//! Every connection gets its own challenge and so its own rustls
//! configuration (the challenge travels in the CertificateRequest).
//! Session resumption is off, so every connection attests; TLS 1.3 only
//! unless `--ratls-tls12`. Inside the handshake, before the client's
//! handshake signature is checked, the [`Attestor`]'s cheap checks run
//! (bindings, reference values: hashing only); once the handshake
//! completes (holding no slot: the client's flights are waited for under
//! their own timeouts), the [`Attestor`] judges the rest (signatures,
//! Veraison) holding a verification slot. Only
//! an attested realm's connection reaches HTTP, and every request on it is
//! checked against the reference values in force *now* (a reload that
//! removes or narrows the realm's entry, or changes its policy scope,
//! applies to open connections at their next request); the connection
//! closes between requests once it is `max_connection_age` old, so the
//! realm attests again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ir_attest::attestor::Attestor;
use ir_attest::ratls::{new_challenge, ChallengeVerifier};
use ir_attest::reference_values::{RealmReference, ReferenceSet};
use ir_attest::RealmClaims;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::StartHandshake;

use super::{bounded, Handshake, HandshakeError, MAX_DETAIL};
use crate::api::ConnInfo;
use crate::metrics::Metrics;
use crate::transport::cert_store::CertStore;

/// Default [`RaTls::with_max_connection_age`].
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// How one RA-TLS connection ended its attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationOutcome {
    /// Attested as this realm (its label).
    Accepted(String),
    /// Refused, with a stable reason label and the full one-line reason.
    Refused {
        /// Short label (as in metrics), e.g. `rim_mismatch`.
        reason: &'static str,
        /// The reason as logged (at most [`MAX_DETAIL`] bytes).
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
    max_connection_age: Duration,
    provider: Arc<rustls::crypto::CryptoProvider>,
    observer: Option<Observer>,
    metrics: Option<Arc<Metrics>>,
}

impl RaTls {
    /// Serves with the server certificate from `certs`, attesting clients
    /// with `attestor`.
    pub fn new(certs: Arc<CertStore>, attestor: Arc<Attestor>, allow_tls12: bool) -> Self {
        RaTls {
            certs,
            attestor,
            allow_tls12,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            observer: None,
            metrics: None,
        }
    }

    /// Also counts every attestation's outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also reports every connection's outcome to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Closes attested connections between requests once they are `age`
    /// old (default [`DEFAULT_MAX_CONNECTION_AGE`]).
    pub fn with_max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = age;
        self
    }

    fn report(&self, peer: SocketAddr, outcome: AttestationOutcome) {
        if let Some(m) = &self.metrics {
            match &outcome {
                AttestationOutcome::Accepted(_) => m.attestation("accepted", "ok"),
                AttestationOutcome::Refused { reason, .. } => m.attestation("refused", reason),
            }
        }
        if let Some(o) = &self.observer {
            o(peer, &outcome);
        }
    }

    fn refused(&self, peer: SocketAddr, e: HandshakeError) -> HandshakeError {
        self.report(
            peer,
            AttestationOutcome::Refused {
                reason: e.reason(),
                detail: bounded(&e.to_string(), MAX_DETAIL),
            },
        );
        e
    }

    fn config(&self, challenge: &[u8; 64]) -> Result<Arc<rustls::ServerConfig>, HandshakeError> {
        let versions: &[&rustls::SupportedProtocolVersion] = if self.allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let attestor = self.attestor.clone();
        let expected = *challenge;
        let verifier = ChallengeVerifier::with_precheck(
            challenge,
            &self.provider,
            Arc::new(move |cert: &[u8]| attestor.precheck(cert, &expected)),
        );
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .map_err(HandshakeError::Config)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.certs.clone());
        // Every connection attests: no resumption by ID or ticket, and so
        // no 0-RTT data (rustls's default `max_early_data_size` is 0).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// What an attested connection may see, judged at each request against the
/// reference values in force: the realm's claims are matched again after a
/// reload (once per reload, the result cached), so a removed entry sees
/// nothing, a narrowed one sees only what it still lists, and the
/// signature policy scope is the one its entry names now.
struct RealmAccess {
    attestor: Arc<Attestor>,
    claims: RealmClaims,
    /// The reference set last matched against, and the realm it gave.
    matched: Mutex<(Arc<ReferenceSet>, Option<RealmReference>)>,
}

impl RealmAccess {
    /// Runs `f` on the realm's entry in the reference values in force
    /// (`None`: no entry matches the realm any more).
    fn with_entry<T>(&self, f: impl FnOnce(Option<&RealmReference>) -> T) -> T {
        let current = self.attestor.references();
        let mut matched = self.matched.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&matched.0, &current) {
            let realm = current.match_claims(&self.claims).ok().cloned();
            *matched = (current, realm);
        }
        f(matched.1.as_ref())
    }

    fn allows(&self, name: &str) -> bool {
        self.with_entry(|realm| realm.is_some_and(|realm| realm.allows(name)))
    }

    fn policy_scope(&self) -> Option<Arc<str>> {
        self.with_entry(|realm| realm.and_then(|r| r.policy_scope.as_deref().map(Into::into)))
    }
}

/// An RA-TLS handshake completed, not yet attested.
pub struct Exchanged {
    stream: TlsStream<TcpStream>,
    challenge: [u8; 64],
}

impl Handshake for RaTls {
    type Io = TlsStream<TcpStream>;
    type Hello = StartHandshake<TcpStream>;
    type Exchanged = Exchanged;

    async fn hello(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> Result<Self::Hello, HandshakeError> {
        super::tls::read_client_hello(tcp).await
    }

    async fn handshake(
        &self,
        hello: Self::Hello,
        peer: SocketAddr,
    ) -> Result<Exchanged, HandshakeError> {
        let challenge = new_challenge();
        let config = self.config(&challenge)?;
        match hello.into_stream(config).await {
            Ok(stream) => Ok(Exchanged { stream, challenge }),
            Err(e) => Err(self.refused(peer, HandshakeError::from_io(e))),
        }
    }

    async fn verify(
        &self,
        exchanged: Exchanged,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        let Exchanged { stream, challenge } = exchanged;
        let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
        else {
            return Err(self.refused(
                peer,
                HandshakeError::Tls(rustls::Error::NoCertificatesPresented),
            ));
        };
        let references = self.attestor.references();
        match self.attestor.attest(cert, challenge, deadline).await {
            Ok(attested) => {
                let realm = attested.realm;
                tracing::info!(%peer, realm = %realm.label(), "realm attested");
                tracing::debug!(%peer, "attested token: {}", attested.summary);
                self.report(peer, AttestationOutcome::Accepted(realm.label()));
                let name: Arc<str> = realm.name.as_deref().unwrap_or("unnamed realm").into();
                let identity = Arc::new(crate::audit::identity::realm_identity(
                    &attested.claims,
                    &attested.platform_instance_id,
                ));
                let access = Arc::new(RealmAccess {
                    attestor: self.attestor.clone(),
                    claims: attested.claims,
                    matched: Mutex::new((references, Some(realm))),
                });
                let scope_of = access.clone();
                let policy_scope: crate::api::PolicyScope =
                    Some(Arc::new(move || scope_of.policy_scope()));
                let visibility: crate::api::Visibility =
                    Some(Arc::new(move |name: &ir_oci::RepoName| {
                        access.allows(name.as_str())
                    }));
                Ok((
                    stream,
                    ConnInfo {
                        peer,
                        visibility,
                        max_age: Some(self.max_connection_age),
                        realm: Some(name),
                        policy_scope,
                        identity: Some(identity),
                    },
                ))
            }
            Err(e) => Err(self.refused(peer, HandshakeError::Attestation(Arc::new(e)))),
        }
    }
}
