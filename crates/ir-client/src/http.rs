//! The HTTP side: one request with retries, on the transport the
//! reference's scheme chose.

use crate::auth::{AuthOptions, Authenticator, Target};
use crate::error::chain;
use crate::location::Scheme;
use crate::ratls::{tls_config, CertResolver, RaTlsOptions, TokenSource};
use crate::{Error, TlsError};
use reqwest::header;
use std::sync::Arc;
use std::time::Duration;

/// Longest OCI error body read for an error message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest wait between two attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most authentication challenges answered for one request.
const MAX_CHALLENGES: u32 = 2;
/// First wait between two attempts; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Largest HTTP/2 frame the server may send (h2's default is 16 KiB).
/// ir-server sends blobs in 256 KiB chunks: one frame each, not sixteen,
/// so a blob arrives in a sixteenth of the frames, wakeups and chunks.
const H2_MAX_FRAME: u32 = 256 * 1024;

/// How to reach the registry.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain HTTP (`http://` references).
    Plain,
    /// TLS (`https://` references); `ca` is a PEM file's content, `None`
    /// for the platform's roots.
    Tls {
        /// Trusted CA certificates (PEM).
        ca: Option<Vec<u8>>,
    },
    /// RA-TLS (`ra-tls://` references).
    RaTls {
        /// Trusted CA certificates (PEM) for the server.
        ca: Option<Vec<u8>>,
        /// Where each handshake's token comes from.
        token_source: TokenSource,
    },
}

impl Transport {
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Transport::Plain => Scheme::Http,
            Transport::Tls { .. } => Scheme::Https,
            Transport::RaTls { .. } => Scheme::RaTls,
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// RA-TLS client-certificate options.
    pub ra_tls: RaTlsOptions,
    /// Bound on establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on each read.
    pub read_timeout: Duration,
    /// Attempts after the first one, on connection errors, 5xx and 429
    /// answers and cut transfers.
    pub retries: u32,
    /// Whether http and https go through `HTTPS_PROXY`/`HTTP_PROXY`
    /// (minus `NO_PROXY`) when set. Never for ra-tls, whose handshake must
    /// reach the server itself.
    pub proxy_from_env: bool,
    /// Where registry credentials come from (default: none, so only
    /// anonymous tokens).
    pub auth: AuthOptions,
    /// Speak only HTTP/2 (for a server known to): concurrent requests
    /// then share one connection, and wait for it while it is made
    /// rather than each opening (and attesting) one of their own.
    pub http2_only: bool,
    /// `https://`: the client certificate to present (a server with
    /// `--client-ca`); see [`client_identity`].
    pub client_identity: Option<Arc<rustls::sign::CertifiedKey>>,
}

/// A client certificate chain and its private key, from PEM files.
pub fn client_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::sign::CertifiedKey>, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &std::path::Path, why: String| TlsError::ClientIdentity {
        path: path.to_path_buf(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no PEM certificate".into()).into());
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let signing = crate::ratls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| bad(key, e.to_string()))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| bad(key, format!("does not match {}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

/// Presents one fixed client certificate.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ra_tls: RaTlsOptions::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 3,
            proxy_from_env: true,
            auth: AuthOptions::default(),
            http2_only: false,
            client_identity: None,
        }
    }
}

/// An HTTP client for one transport. Cheap to clone; connections pooled.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) scheme: Scheme,
    pub(crate) resolver: Option<Arc<CertResolver>>,
    pub(crate) retries: u32,
    pub(crate) auth: Arc<Authenticator>,
}

/// The wait before attempt `attempt` (1-based): 200 ms, 400 ms, … capped.
pub(crate) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

impl Http {
    pub(crate) fn new(transport: Transport, options: &HttpOptions) -> Result<Self, Error> {
        let scheme = transport.scheme();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ir-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout);
        if options.http2_only {
            builder = builder.http2_prior_knowledge();
        }
        builder = builder.http2_max_frame_size(H2_MAX_FRAME);
        if scheme == Scheme::RaTls || !options.proxy_from_env {
            builder = builder.no_proxy();
        }
        builder = if scheme == Scheme::RaTls {
            // The attested connection is to this host only.
            builder.redirect(reqwest::redirect::Policy::none())
        } else {
            builder.redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first().map(|u| u.scheme().to_string());
                if attempt.previous().len() > 5 {
                    attempt.error("too many redirects")
                } else if first.as_deref() != Some(attempt.url().scheme()) {
                    attempt.error("redirect changes the scheme")
                } else {
                    attempt.follow()
                }
            }))
        };
        let mut resolver = None;
        match transport {
            Transport::Plain => {}
            Transport::Tls { ca } => {
                let identity = options.client_identity.clone().map(|k| {
                    Arc::new(FixedClientCert(k)) as Arc<dyn rustls::client::ResolvesClientCert>
                });
                builder = builder.tls_backend_preconfigured(tls_config(ca.as_deref(), identity)?);
            }
            Transport::RaTls { ca, token_source } => {
                let r = Arc::new(CertResolver::new(token_source, options.ra_tls.clone()));
                builder =
                    builder.tls_backend_preconfigured(tls_config(ca.as_deref(), Some(r.clone()))?);
                resolver = Some(r);
            }
        }
        let client = builder.build().map_err(|source| TlsError::Client {
            chain: chain(&source),
            source,
        })?;
        Ok(Self {
            client,
            scheme,
            resolver,
            retries: options.retries,
            auth: Arc::new(Authenticator::new(&options.auth)?),
        })
    }

    /// GET `url` (from byte `from` on, when not 0), retrying connection
    /// errors and 5xx/429 answers with backoff. A success is 200, or 206
    /// for a range; anything else is [`Error::Status`] with the OCI error.
    pub(crate) async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        from: u64,
    ) -> Result<reqwest::Response, Error> {
        let target = reqwest::Url::parse(url).ok().map(|u| Target::of(&u));
        let mut attempt = 0u32;
        let mut challenges = 0u32;
        loop {
            attempt += 1;
            let mut req = self.client.get(url);
            if let Some(a) = target.as_ref().and_then(|t| self.auth.cached(t)) {
                req = req.header(header::AUTHORIZATION, a);
            }
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if from > 0 {
                req = req.header(header::RANGE, format!("bytes={from}-"));
            }
            tracing::debug!(url, from, attempt, "GET");
            let presented = self.resolver.as_ref().map(|r| r.presented());
            let retry_in = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    tracing::debug!(
                        url,
                        status = status.as_u16(),
                        content_type = ?resp.headers().get(header::CONTENT_TYPE),
                        content_length = ?resp.content_length(),
                        digest = ?resp.headers().get("docker-content-digest"),
                        "response"
                    );
                    let ok = status == reqwest::StatusCode::OK
                        || (from > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT);
                    if ok {
                        return Ok(resp);
                    }
                    // A challenge is answered (a token, Basic credentials)
                    // and the request sent again, twice at most.
                    if status == reqwest::StatusCode::UNAUTHORIZED && challenges < MAX_CHALLENGES {
                        if let Some(t) = &target {
                            challenges += 1;
                            if self
                                .auth
                                .answer(&self.client, self.scheme, t, resp.headers())
                                .await?
                            {
                                attempt -= 1;
                                continue;
                            }
                        }
                    }
                    let transient = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    if !transient || attempt > self.retries {
                        return Err(Error::Status {
                            url: url.to_string(),
                            status: status.as_u16(),
                            message: oci_error(resp).await,
                        });
                    }
                    retry_after(&resp).unwrap_or_else(|| backoff(attempt))
                }
                Err(e) => {
                    let err = self.attempt_error(url, e, presented);
                    // A refused attestation will be refused again.
                    if attempt > self.retries
                        || matches!(
                            err,
                            Error::Attestation { .. } | Error::AttestationRefused { .. }
                        )
                    {
                        return Err(err);
                    }
                    tracing::debug!(url, error = %err, "retrying");
                    backoff(attempt)
                }
            };
            tokio::time::sleep(retry_in.min(MAX_BACKOFF)).await;
        }
    }

    /// The error of one attempt: as [`Http::transport_error`], and a
    /// connection the server closed right after a handshake in which this
    /// attempt presented an attested certificate (`presented` is the
    /// resolver's count before the attempt) is a refused attestation.
    pub(crate) fn attempt_error(
        &self,
        url: &str,
        e: reqwest::Error,
        presented: Option<u64>,
    ) -> Error {
        let handshaken = match (&self.resolver, presented) {
            (Some(r), Some(before)) => r.presented() > before,
            _ => false,
        };
        if handshaken && refused_after_handshake(&e) {
            return Error::AttestationRefused {
                url: url.to_string(),
                source: e,
            };
        }
        self.transport_error(url, e)
    }

    pub(crate) fn transport_error(&self, url: &str, e: reqwest::Error) -> Error {
        let reason = chain(&e);
        if let Some(why) = self.resolver.as_ref().and_then(|r| r.take_error()) {
            return Error::Attestation {
                url: url.to_string(),
                reason: format!("client certificate not sent ({why}); {reason}"),
                source: e,
            };
        }
        let reason = match self.scheme {
            Scheme::Https | Scheme::RaTls if answered_plain_http(&e) => format!(
                "the server answered plain HTTP, not TLS: use an http:// reference, or check the port ({reason})"
            ),
            _ => reason,
        };
        Error::Transport {
            url: url.to_string(),
            reason,
            source: Some(e),
        }
    }
}

/// Whether the server ended the connection before an answer: a TLS alert
/// it sent, or the connection closed or reset. A TLS error of the
/// client's own (the server's certificate refused) is not that. rustls
/// errors reach here boxed inside io and hyper errors, so they are told
/// by their text, which rustls keeps stable.
fn refused_after_handshake(e: &reqwest::Error) -> bool {
    let text = chain(e);
    if text.contains("received fatal alert") {
        return true;
    }
    if text.contains("invalid peer certificate") || text.contains("corrupt message") {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe
            ) {
                return true;
            }
        }
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// Whether rustls read a record that is not TLS: the first bytes of a
/// plain HTTP answer (`HTTP/1.1 400`) on a TLS connection.
fn answered_plain_http(e: &reqwest::Error) -> bool {
    chain(e).contains("received corrupt message of type InvalidContentType")
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// `: CODE: message` from an OCI error body, if there is one.
pub(crate) async fn oci_error(mut resp: reqwest::Response) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        code: String,
        message: Option<String>,
    }
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            return String::new();
        }
    }
    let Ok(b) = serde_json::from_slice::<Body>(&body) else {
        return String::new();
    };
    match b.errors.first() {
        Some(OciError {
            code,
            message: Some(m),
        }) => format!(": {code}: {}", m.replace('\n', " ")),
        Some(OciError { code, .. }) => format!(": {code}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
