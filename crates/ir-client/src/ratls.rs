//! The client side of RA-TLS (`shared/docs/ratls-protocol.md`).
//!
//! For every TLS handshake the server sends a 64-byte challenge as the
//! only entry of the CertificateRequest's certificate-authorities list,
//! encoded as the standard base64 text (with padding) of the 64 bytes.
//! rustls hands those bytes to [`ResolvesClientCert::resolve`] as
//! `root_hint_subjects`. The [`CertResolver`] then:
//!
//! 1. decodes the challenge;
//! 2. generates a fresh key pair for this session (P-256 or P-384);
//! 3. computes `realm_challenge = SHA-512(challenge || SPKI DER)`;
//! 4. asks its [`TokenSource`] for a CCA token for that realm challenge;
//! 5. presents a self-signed certificate for the key carrying the raw token
//!    as the value of the non-critical extension 1.3.3.3.7.
//!
//! rustls' CertificateVerify then proves possession of the key. Resolving
//! cannot return an error to rustls: on failure the resolver sends no
//! certificate (the server refuses the handshake) and keeps the reason,
//! which [`crate::Client`] reports.

use crate::{Error, TlsError, TokenError};
use base64::Engine as _;
use ir_attest::emulate::EmulatedRealm;
use ir_attest::RATLS_TOKEN_EXTENSION_ARCS;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Length of the server's challenge and of the realm challenge.
pub const CHALLENGE_LEN: usize = 64;
/// Largest token file accepted by [`TokenSource::file`].
pub const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// What a token source is asked for, once per handshake.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The server's 64-byte challenge.
    pub challenge: [u8; CHALLENGE_LEN],
    /// The SubjectPublicKeyInfo DER of this session's key.
    pub spki_der: Vec<u8>,
    /// `SHA-512(challenge || spki_der)`: the realm challenge the token
    /// must carry.
    pub realm_challenge: [u8; CHALLENGE_LEN],
}

/// A token-producing function, for tests and embedders.
pub type TokenFn = dyn Fn(&TokenRequest) -> Result<Vec<u8>, String> + Send + Sync;

/// Where the CCA token of each handshake comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// A fixed token (as the islet client sends). It cannot be bound to
    /// the session: servers refuse it unless built with their insecure
    /// skip-challenge feature.
    Fixed(Arc<Vec<u8>>),
    /// An emulated realm signing a real token for each session.
    /// **NOT SECURE**: for testing and demos.
    Emulated(Arc<EmulatedRealm>),
    /// A real realm, through the Linux RSI device (feature `rsi`).
    #[cfg(feature = "rsi")]
    Rsi(std::path::PathBuf),
    /// Any function of the request.
    Custom(Arc<TokenFn>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Fixed(t) => write!(f, "Fixed({} bytes)", t.len()),
            TokenSource::Emulated(r) => write!(f, "Emulated({r:?})"),
            #[cfg(feature = "rsi")]
            TokenSource::Rsi(p) => write!(f, "Rsi({})", p.display()),
            TokenSource::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl TokenSource {
    /// A fixed token read from a file (at most [`MAX_TOKEN_FILE`] bytes).
    pub fn file(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len == 0 || len > MAX_TOKEN_FILE {
            return Err(TokenError::FileSize {
                path: path.to_path_buf(),
                len,
                limit: MAX_TOKEN_FILE,
            }
            .into());
        }
        Ok(Self::Fixed(Arc::new(std::fs::read(path).map_err(io)?)))
    }

    /// An emulated realm (NOT SECURE).
    pub fn emulated(realm: EmulatedRealm) -> Self {
        Self::Emulated(Arc::new(realm))
    }

    /// The Linux RSI device at its usual path, `/dev/rsi`.
    #[cfg(feature = "rsi")]
    pub fn rsi() -> Self {
        Self::Rsi(crate::rsi::DEVICE.into())
    }

    /// A source backed by a function.
    pub fn custom(
        f: impl Fn(&TokenRequest) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// The token for one handshake.
    pub fn token(&self, request: &TokenRequest) -> Result<Vec<u8>, String> {
        match self {
            TokenSource::Fixed(t) => Ok(t.to_vec()),
            TokenSource::Emulated(realm) => realm
                .token(&request.realm_challenge)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "rsi")]
            TokenSource::Rsi(device) => {
                crate::rsi::attestation_token(device, &request.realm_challenge)
                    .map_err(|e| format!("RSI {}: {e}", device.display()))
            }
            TokenSource::Custom(f) => f(request),
        }
    }
}

/// The session key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (the default).
    #[default]
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl KeyAlg {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    fn scheme(self) -> SignatureScheme {
        match self {
            KeyAlg::P256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            KeyAlg::P384 => SignatureScheme::ECDSA_NISTP384_SHA384,
        }
    }
}

/// Options of the RA-TLS client certificate.
#[derive(Debug, Clone, Default)]
pub struct RaTlsOptions {
    /// The session key's type.
    pub key_alg: KeyAlg,
    /// Testing only: present the certificate WITHOUT the token extension
    /// (a server must refuse it).
    pub omit_token_extension: bool,
}

/// What the resolver did in one handshake (for tests and diagnostics).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The challenge the server sent.
    pub challenge: [u8; CHALLENGE_LEN],
    /// The SPKI DER of the session key.
    pub spki_der: Vec<u8>,
    /// `SHA-512(challenge || spki_der)`.
    pub realm_challenge: [u8; CHALLENGE_LEN],
    /// The token presented.
    pub token: Vec<u8>,
    /// The certificate presented (DER).
    pub certificate_der: Vec<u8>,
}

/// rustls client-certificate resolver for RA-TLS; see the module docs.
#[derive(Debug)]
pub struct CertResolver {
    source: TokenSource,
    options: RaTlsOptions,
    provider: Arc<rustls::crypto::CryptoProvider>,
    last: Mutex<Option<SessionRecord>>,
    last_error: Mutex<Option<String>>,
    /// Attested certificates presented so far (one per handshake).
    presented: AtomicU64,
}

impl CertResolver {
    /// A resolver drawing tokens from `source`.
    pub fn new(source: TokenSource, options: RaTlsOptions) -> Self {
        Self {
            source,
            options,
            provider: provider(),
            last: Mutex::new(None),
            last_error: Mutex::new(None),
            presented: AtomicU64::new(0),
        }
    }

    /// How many attested certificates this resolver has presented: one
    /// per RA-TLS handshake that reached the client's certificate.
    pub fn presented(&self) -> u64 {
        self.presented.load(Ordering::Relaxed)
    }

    /// The last successful handshake's record.
    pub fn last_session(&self) -> Option<SessionRecord> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the reason of the last failed resolution, if any.
    pub fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Builds the certificate and key for `challenge`.
    pub fn certify(
        &self,
        challenge: [u8; CHALLENGE_LEN],
    ) -> Result<(CertifiedKey, SessionRecord), String> {
        let key = rcgen::KeyPair::generate_for(self.options.key_alg.rcgen())
            .map_err(|e| format!("session key generation: {e}"))?;
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&key);
        let realm_challenge = ir_attest::expected_realm_challenge(&challenge, &spki_der);
        let request = TokenRequest {
            challenge,
            spki_der,
            realm_challenge,
        };
        let token = self
            .source
            .token(&request)
            .map_err(|e| format!("token source: {e}"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("certificate parameters: {e}"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ir-client RA-TLS realm");
        if !self.options.omit_token_extension {
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &RATLS_TOKEN_EXTENSION_ARCS,
                    token.clone(),
                ));
        }
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("self-signed certificate: {e}"))?;
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = self
            .provider
            .key_provider
            .load_private_key(pkcs8)
            .map_err(|e| format!("session key: {e}"))?;
        let der = cert.der().clone();
        let record = SessionRecord {
            challenge,
            spki_der: request.spki_der,
            realm_challenge,
            token,
            certificate_der: der.to_vec(),
        };
        Ok((CertifiedKey::new(vec![der], signing), record))
    }

    fn fail(&self, reason: String) -> Option<Arc<CertifiedKey>> {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        None
    }
}

/// Decodes the RA-TLS challenge from the certificate-authorities hints:
/// exactly one entry, the padded standard base64 of 64 bytes.
pub fn challenge_from_hints(hints: &[&[u8]]) -> Result<[u8; CHALLENGE_LEN], String> {
    let [hint] = hints else {
        return Err(format!(
            "server sent {} certificate-authority entries; RA-TLS sends exactly one (the challenge)",
            hints.len()
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(hint)
        .map_err(|e| format!("RA-TLS challenge is not base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "RA-TLS challenge has {} bytes, expected {CHALLENGE_LEN}",
            b.len()
        )
    })
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let challenge = match challenge_from_hints(root_hint_subjects) {
            Ok(c) => c,
            Err(e) => return self.fail(e),
        };
        let scheme = self.options.key_alg.scheme();
        if !sigschemes.contains(&scheme) {
            return self.fail(format!(
                "server does not accept {scheme:?} client signatures"
            ));
        }
        match self.certify(challenge) {
            Ok((key, record)) => {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
                self.presented.fetch_add(1, Ordering::Relaxed);
                Some(Arc::new(key))
            }
            Err(e) => self.fail(e),
        }
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The crypto provider (aws-lc-rs, as ir-server uses).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses PEM certificates into a root store (at least one required).
pub fn root_store(ca_pem: &[u8]) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(TlsError::CaFile)?;
        roots.add(cert).map_err(TlsError::CaCertificate)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCaCertificate.into());
    }
    Ok(roots)
}

/// A TLS client configuration: server certificates checked against
/// `ca_pem` (PEM roots) or, without it, the platform's roots; the client
/// certificate from `resolver` if given; ALPN h2 and http/1.1.
pub fn tls_config(
    ca_pem: Option<&[u8]>,
    resolver: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match ca_pem {
        Some(pem) => builder.with_root_certificates(root_store(pem)?),
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(TlsError::PlatformRoots)?
        }
    };
    let mut config = match resolver {
        Some(r) => builder.with_client_cert_resolver(r),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Every connection attests: never resume a session.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// An RA-TLS client configuration with tokens from `source` (P-256
/// session keys). Roots as in [`tls_config`].
pub fn client_config(
    ca_pem: Option<&[u8]>,
    source: TokenSource,
) -> Result<rustls::ClientConfig, Error> {
    client_config_with(
        ca_pem,
        Arc::new(CertResolver::new(source, RaTlsOptions::default())),
    )
}

/// [`client_config`] with a resolver the caller keeps (to read
/// [`CertResolver::last_session`] or errors).
pub fn client_config_with(
    ca_pem: Option<&[u8]>,
    resolver: Arc<CertResolver>,
) -> Result<rustls::ClientConfig, Error> {
    tls_config(ca_pem, Some(resolver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_hint_format() {
        let c = [7u8; 64];
        let text = base64::engine::general_purpose::STANDARD.encode(c);
        assert_eq!(text.len(), 88);
        assert_eq!(challenge_from_hints(&[text.as_bytes()]).unwrap(), c);
        assert!(challenge_from_hints(&[]).is_err());
        assert!(challenge_from_hints(&[text.as_bytes(), text.as_bytes()]).is_err());
        assert!(challenge_from_hints(&[b"not base64!"]).is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(challenge_from_hints(&[short.as_bytes()]).is_err());
    }

    #[test]
    fn certificate_carries_a_bound_token() {
        let realm = EmulatedRealm::generate(Default::default()).unwrap();
        let resolver = CertResolver::new(TokenSource::emulated(realm), RaTlsOptions::default());
        let challenge = [9u8; 64];
        let (_key, record) = resolver.certify(challenge).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&record.certificate_der).unwrap();
        assert_eq!(cert.tbs_certificate.subject_pki.raw, &record.spki_der[..]);
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == ir_attest::RATLS_TOKEN_EXTENSION_OID)
            .unwrap();
        assert!(!ext.critical);
        assert_eq!(ext.value, &record.token[..]);
        let token = ir_attest::CcaToken::parse(ext.value).unwrap();
        ir_attest::verify::check_session_binding(&token, &challenge, &record.spki_der).unwrap();
    }
}
