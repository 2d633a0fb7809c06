//! An async client for Veraison's challenge-response API:
//!
//! 1. `POST {url}/challenge-response/v1/newSession?nonce=<padded base64url>`
//!    with `Accept: application/vnd.veraison.challenge-response-session+json`
//!    → `201 Created`, a `Location` (resolved against
//!    `{url}/challenge-response/v1/`, and required to stay on the same
//!    origin and inside that API path) and a JSON session whose `nonce`,
//!    when present, must echo ours;
//! 2. `POST` the raw token to the session with
//!    `Content-Type: application/eat-collection; profile="http://arm.com/CCA-SSD/1.0.0"`
//!    → `200 OK` and a session whose `status` is `complete` and whose
//!    `result` is the EAR (asynchronous `processing` sessions are not
//!    polled: they are an error);
//! 3. `DELETE` the session, also when step 2 failed or timed out.
//!
//! The whole exchange (steps 1–2) is bounded by [`VeraisonConfig::timeout`];
//! the DELETE has its own short bound ([`VeraisonConfig::delete_timeout`]),
//! and its failure is only logged. Responses are read with a size limit,
//! redirects are not followed, proxies from the environment are not used.
//! TLS is rustls (aws-lc-rs) with the platform's roots plus an optional
//! extra CA. Plain `http://` is only accepted to a loopback address
//! (`localhost`, `127.0.0.0/8`, `::1`): anywhere else the EAR and the
//! session could be rewritten on the path, so it is a configuration error.
//!
//! [`VeraisonClient::appraise_token`] is what a relying party calls: the
//! exchange, the EAR's checks, and the check that the EAR is about the
//! token sent ([`Ear::check_evidence`]).

use crate::ear::{nonce_to_b64url, Ear, EarError, EarVerifier};
use crate::keys::b64url_decode_lenient;
use reqwest::{header, StatusCode, Url};
use std::time::{Duration, SystemTime};

/// The session media type (Accept header of both calls).
pub const SESSION_MEDIA_TYPE: &str = "application/vnd.veraison.challenge-response-session+json";
/// The evidence media type (Content-Type of the token upload).
pub const EVIDENCE_MEDIA_TYPE: &str =
    "application/eat-collection; profile=\"http://arm.com/CCA-SSD/1.0.0\"";
/// Largest response body read from Veraison.
pub const MAX_RESPONSE_SIZE: usize = 256 * 1024;
/// Default bound on the whole exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on the session DELETE.
pub const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of a [`VeraisonClient`].
#[derive(Debug, Clone)]
pub struct VeraisonConfig {
    /// Base URL (`-u`), e.g. `https://veraison:8443`; the API lives under
    /// `{base}/challenge-response/v1/`.
    pub base_url: String,
    /// Bound on the whole exchange (new session + evidence).
    pub timeout: Duration,
    /// Bound on the session DELETE that follows (on a task of its own,
    /// outside the exchange's bound).
    pub delete_timeout: Duration,
    /// An extra trusted CA certificate (PEM), e.g. for a Veraison with its
    /// own CA.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl VeraisonConfig {
    /// Defaults for `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: DEFAULT_TIMEOUT,
            delete_timeout: DEFAULT_DELETE_TIMEOUT,
            extra_root_pem: None,
        }
    }
}

/// Which call of the exchange an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST newSession`.
    NewSession,
    /// `POST` of the token.
    Evidence,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::NewSession => "newSession",
            Step::Evidence => "evidence upload",
        })
    }
}

/// Why a Veraison appraisal failed.
#[derive(Debug, thiserror::Error)]
pub enum VeraisonError {
    /// The client could not be configured.
    #[error("Veraison client configuration: {0}")]
    Config(String),
    /// Veraison could not be reached.
    #[error("Veraison unreachable ({step}): {reason}")]
    Unreachable {
        /// The call.
        step: Step,
        /// The transport error.
        reason: String,
    },
    /// The exchange did not finish in time.
    #[error("Veraison timed out after {0:?}")]
    Timeout(Duration),
    /// A call answered with an unexpected HTTP status.
    #[error("Veraison {step}: HTTP status {status}, expected {expected}")]
    HttpStatus {
        /// The call.
        step: Step,
        /// The status received.
        status: u16,
        /// The status expected.
        expected: u16,
    },
    /// A call answered something that does not follow the protocol.
    #[error("Veraison {step}: {reason}")]
    Protocol {
        /// The call.
        step: Step,
        /// What was wrong.
        reason: String,
    },
    /// The session did not complete (e.g. `failed`).
    #[error("Veraison session status is {status:?}, not complete")]
    SessionNotComplete {
        /// The session status.
        status: String,
    },
    /// The EAR was rejected.
    #[error("Veraison result: {0}")]
    Ear(#[from] EarError),
}

/// An async Veraison challenge-response client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VeraisonClient {
    http: reqwest::Client,
    api: Url,
    config: VeraisonConfig,
}

impl VeraisonClient {
    /// Builds a client.
    pub fn new(config: VeraisonConfig) -> Result<Self, VeraisonError> {
        let mut base = config.base_url.trim_end_matches('/').to_string();
        base.push_str("/challenge-response/v1/");
        let api = Url::parse(&base)
            .map_err(|e| VeraisonError::Config(format!("base URL {:?}: {e}", config.base_url)))?;
        match api.scheme() {
            "https" => {}
            "http" if is_loopback(&api) => {}
            "http" => {
                return Err(VeraisonError::Config(format!(
                    "base URL {:?}: plain http is only allowed to a loopback address; use https (and --veraison-ca for a private CA)",
                    config.base_url
                )))
            }
            _ => {
                return Err(VeraisonError::Config(format!(
                    "base URL {:?} is not http or https",
                    config.base_url
                )))
            }
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout);
        if let Some(pem) = &config.extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| VeraisonError::Config(format!("CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| VeraisonError::Config(e.to_string()))?;
        Ok(Self { http, api, config })
    }

    /// The API root (`{base}/challenge-response/v1/`).
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// The bound on one exchange ([`VeraisonConfig::timeout`]).
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Runs the exchange for `token` with `nonce` (the 64-byte realm
    /// challenge) and returns the EAR JWT, unverified. The session is
    /// deleted in every case where it was created, by its guard, on a task
    /// of its own bounded by [`VeraisonConfig::delete_timeout`]: the DELETE
    /// takes nothing from the appraisal's time (an affirmed appraisal near
    /// the deadline is not lost to the cleanup), and dropping this future
    /// at any point (the handshake timed out or was cancelled) still
    /// deletes the session.
    pub async fn appraise(&self, token: &[u8], nonce: &[u8]) -> Result<String, VeraisonError> {
        let mut session = SessionGuard {
            client: self.clone(),
            url: None,
        };
        let result = tokio::time::timeout(
            self.config.timeout,
            self.exchange(token, nonce, &mut session.url),
        )
        .await;
        drop(session);
        match result {
            Ok(r) => r,
            Err(_) => Err(VeraisonError::Timeout(self.config.timeout)),
        }
    }

    /// Appraises a parsed token: [`verify`](Self::verify) with the realm
    /// challenge as the nonce, then [`Ear::check_evidence`] (the EAR must
    /// be about this very token).
    pub async fn appraise_token(
        &self,
        token_bytes: &[u8],
        token: &crate::token::CcaToken,
        verifier: &EarVerifier,
    ) -> Result<Ear, VeraisonError> {
        let ear = self
            .verify(token_bytes, &token.realm.claims.challenge, verifier)
            .await?;
        ear.check_evidence(token)?;
        Ok(ear)
    }

    /// [`appraise`](Self::appraise), then verifies the EAR with `verifier`
    /// (signature, nonce, freshness, submods). This does not check that
    /// the EAR is about `token` (see [`appraise_token`](Self::appraise_token)).
    pub async fn verify(
        &self,
        token: &[u8],
        nonce: &[u8],
        verifier: &EarVerifier,
    ) -> Result<Ear, VeraisonError> {
        let jwt = self.appraise(token, nonce).await?;
        Ok(verifier.verify(&jwt, nonce, SystemTime::now())?)
    }

    async fn exchange(
        &self,
        token: &[u8],
        nonce: &[u8],
        session: &mut Option<Url>,
    ) -> Result<String, VeraisonError> {
        // 1. New session.
        let step = Step::NewSession;
        let nonce_b64 = nonce_to_b64url(nonce);
        let url = self
            .api
            .join(&format!("newSession?nonce={nonce_b64}"))
            .map_err(|e| VeraisonError::Config(e.to_string()))?;
        let resp = self
            .http
            .post(url)
            .header(header::ACCEPT, SESSION_MEDIA_TYPE)
            .header(header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| transport(step, e, self.config.timeout))?;
        expect_status(step, resp.status(), StatusCode::CREATED)?;
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| protocol(step, "no Location header"))?
            .to_string();
        let session_url = self
            .api
            .join(&location)
            .map_err(|e| protocol(step, format!("bad Location {location:?}: {e}")))?;
        if session_url.origin() != self.api.origin() {
            return Err(protocol(
                step,
                format!("Location {location:?} leaves the Veraison origin"),
            ));
        }
        // The session must be a resource of the API (dot segments are
        // resolved by `join`, so `../` cannot climb out after this check).
        if !session_url.path().starts_with(self.api.path())
            || session_url.path().len() == self.api.path().len()
        {
            return Err(protocol(
                step,
                format!("Location {location:?} is outside {}", self.api.path()),
            ));
        }
        *session = Some(session_url.clone());
        let body = read_json(step, resp, self.config.timeout).await?;
        if let Some(echo) = body.get("nonce") {
            let echo = echo
                .as_str()
                .ok_or_else(|| protocol(step, "nonce is not a string"))?;
            if b64url_decode_lenient(echo).as_deref() != Some(nonce) {
                return Err(protocol(
                    step,
                    format!("session nonce {echo:?} is not the nonce sent"),
                ));
            }
        }
        if let Some(status) = body.get("status").and_then(|s| s.as_str()) {
            if status != "waiting" {
                return Err(protocol(
                    step,
                    format!("new session status is {status:?}, expected \"waiting\""),
                ));
            }
        }

        // 2. Evidence.
        let step = Step::Evidence;
        let resp = self
            .http
            .post(session_url)
            .header(header::ACCEPT, SESSION_MEDIA_TYPE)
            .header(header::CONTENT_TYPE, EVIDENCE_MEDIA_TYPE)
            .body(token.to_vec())
            .send()
            .await
            .map_err(|e| transport(step, e, self.config.timeout))?;
        expect_status(step, resp.status(), StatusCode::OK)?;
        let body = read_json(step, resp, self.config.timeout).await?;
        let status = body
            .get("status")
            .and_then(|s| s.as_str())
            .ok_or_else(|| protocol(step, "no session status"))?;
        if status != "complete" {
            return Err(VeraisonError::SessionNotComplete {
                status: status.to_string(),
            });
        }
        let ear = body
            .get("result")
            .and_then(|r| r.as_str())
            .ok_or_else(|| protocol(step, "complete session without a result string"))?;
        Ok(ear.to_string())
    }

    async fn delete(&self, url: Url) {
        let call = self
            .http
            .delete(url.clone())
            .header(header::ACCEPT, SESSION_MEDIA_TYPE)
            // Its own budget, not the exchange's (the client's default).
            .timeout(self.config.delete_timeout)
            .send();
        match tokio::time::timeout(self.config.delete_timeout, call).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                tracing::debug!(session = %url, "Veraison session deleted");
            }
            Ok(Ok(resp)) => {
                tracing::warn!(session = %url, status = resp.status().as_u16(), "Veraison session DELETE refused")
            }
            Ok(Err(e)) => {
                tracing::warn!(session = %url, error = %e, "Veraison session DELETE failed")
            }
            Err(_) => tracing::warn!(session = %url, "Veraison session DELETE timed out"),
        }
    }
}

/// Whether the URL's host is a loopback address (or `localhost`).
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A created session not yet deleted. Dropped (the appraisal ended, or was
/// cancelled mid-way), it deletes the session on a detached task bounded
/// by the delete timeout, so no handshake waits for the cleanup and a
/// cancelled one does not leave sessions behind in Veraison.
struct SessionGuard {
    client: VeraisonClient,
    url: Option<Url>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let client = self.client.clone();
                // `delete` is bounded by `delete_timeout`: the task ends.
                runtime.spawn(async move { client.delete(url).await });
            }
            Err(_) => tracing::warn!(session = %url, "Veraison session left open: no runtime"),
        }
    }
}

fn protocol(step: Step, reason: impl Into<String>) -> VeraisonError {
    VeraisonError::Protocol {
        step,
        reason: reason.into(),
    }
}

fn transport(step: Step, e: reqwest::Error, timeout: Duration) -> VeraisonError {
    if e.is_timeout() {
        VeraisonError::Timeout(timeout)
    } else if e.is_connect() {
        VeraisonError::Unreachable {
            step,
            reason: e.to_string(),
        }
    } else {
        VeraisonError::Protocol {
            step,
            reason: e.to_string(),
        }
    }
}

fn expect_status(step: Step, got: StatusCode, want: StatusCode) -> Result<(), VeraisonError> {
    if got != want {
        return Err(VeraisonError::HttpStatus {
            step,
            status: got.as_u16(),
            expected: want.as_u16(),
        });
    }
    Ok(())
}

async fn read_json(
    step: Step,
    mut resp: reqwest::Response,
    timeout: Duration,
) -> Result<serde_json::Value, VeraisonError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_SIZE as u64)
    {
        return Err(protocol(
            step,
            format!("response larger than {MAX_RESPONSE_SIZE} bytes"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport(step, e, timeout))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_SIZE {
            return Err(protocol(
                step,
                format!("response larger than {MAX_RESPONSE_SIZE} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| protocol(step, format!("response is not JSON: {e}")))
}
