//! Why a connection's handshake failed, as data: the transports return a
//! [`HandshakeError`], and its [`reason`](HandshakeError::reason) labels
//! logs and metrics. An attestation refused inside the TLS handshake
//! travels through rustls as `CertificateError::Other` holding the
//! [`AttestError`] (see `ir_attest::ratls`), and is read back by type,
//! never by searching error text.

use std::sync::Arc;
use std::time::Duration;

use ir_attest::attestor::AttestError;

/// Why a handshake did not produce a connection to serve.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// No complete TLS ClientHello arrived in time.
    #[error("no TLS ClientHello within {0:?}")]
    HelloTimeout(Duration),
    /// The client's next flight (after the server's answer to its
    /// ClientHello: for RA-TLS, its certificate and token) did not arrive
    /// in time.
    #[error("client's handshake flight not received within {0:?}")]
    FlightTimeout(Duration),
    /// Its source address already has as many connections in a handshake
    /// as allowed (`--max-handshakes-per-address`).
    #[error("{0} connections from this source address already in a handshake")]
    AddressBusy(usize),
    /// The handshake (and attestation) did not finish in time.
    #[error("handshake not completed within {0:?}")]
    Timeout(Duration),
    /// The TLS layer refused the handshake; this includes attestation
    /// refusals made inside it (see [`HandshakeError::attestation`]).
    #[error("{}", tls_message(.0))]
    Tls(#[source] rustls::Error),
    /// The socket failed, or the peer closed it, during the handshake.
    #[error("handshake I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The server's TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The attestation that follows the RA-TLS handshake refused the realm.
    #[error("RA-TLS attestation refused ({reason}): {0}", reason = .0.reason())]
    Attestation(#[source] Arc<AttestError>),
    /// `--proxy-protocol`: the connection did not start with a valid
    /// PROXY protocol header.
    #[error(transparent)]
    ProxyHeader(#[from] super::proxy_protocol::ProxyHeaderError),
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

fn tls_message(e: &rustls::Error) -> String {
    match ir_attest::ratls::attest_error(e) {
        Some(a) => format!("RA-TLS attestation refused ({}): {a}", a.reason()),
        None => format!("TLS handshake failed: {e}"),
    }
}

impl HandshakeError {
    /// Sorts an I/O error from tokio-rustls: the rustls error it carries,
    /// if any, else the I/O error itself.
    pub fn from_io(e: std::io::Error) -> Self {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => HandshakeError::Tls(tls.clone()),
            None => HandshakeError::Io(e),
        }
    }

    /// The attestation refusal this error carries, if it is one.
    pub fn attestation(&self) -> Option<&AttestError> {
        match self {
            HandshakeError::Tls(e) => ir_attest::ratls::attest_error(e),
            HandshakeError::Attestation(a) => Some(a),
            _ => None,
        }
    }

    /// A short stable label for logs and metrics (`rim_mismatch`,
    /// `no_certificate`, `client_hello_timeout` …).
    pub fn reason(&self) -> &'static str {
        if let Some(a) = self.attestation() {
            return a.reason();
        }
        match self {
            HandshakeError::HelloTimeout(_) => "client_hello_timeout",
            HandshakeError::FlightTimeout(_) => "client_flight_timeout",
            HandshakeError::AddressBusy(_) => "address_busy",
            HandshakeError::Timeout(_) => "handshake_timeout",
            HandshakeError::Tls(rustls::Error::NoCertificatesPresented) => "no_certificate",
            HandshakeError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            )) => "handshake_signature",
            HandshakeError::Tls(_) | HandshakeError::Io(_) => "handshake",
            HandshakeError::Config(_) => "tls_config",
            HandshakeError::ProxyHeader(super::proxy_protocol::ProxyHeaderError::NotFromProxy) => {
                "proxy_source"
            }
            HandshakeError::ProxyHeader(_) => "proxy_header",
            HandshakeError::ShuttingDown => "shutting_down",
            HandshakeError::Attestation(a) => a.reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir_attest::certificate::CertificateError;
    use ir_attest::ratls::to_rustls_error;

    #[test]
    fn attestation_reasons_survive_rustls_and_io() {
        let tls = to_rustls_error(AttestError::Certificate(CertificateError::MissingExtension));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let e = HandshakeError::from_io(io);
        assert_eq!(e.reason(), "missing_extension");
        assert!(e
            .to_string()
            .starts_with("RA-TLS attestation refused (missing_extension)"));
        let none = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(HandshakeError::from_io(none).reason(), "no_certificate");
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeError::from_io(eof).reason(), "handshake");
    }
}
