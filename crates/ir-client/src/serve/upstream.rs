//! The upstream registry: a pool of clients (each its own attested
//! connection), and the memory of a refused attestation.

use crate::pull::Client;
use crate::Error;
use reqwest::header;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why an upstream request gave nothing usable.
#[derive(Debug, Clone)]
pub(crate) enum UpstreamError {
    /// The attestation was refused (or no token could be made): 503.
    Attestation(String),
    /// The registry answered this status with this OCI error (`: CODE: message`).
    Status { status: u16, message: String },
    /// Anything else (transport, protocol): 502.
    Failed(String),
}

/// The pool.
pub(crate) struct Upstream {
    slots: Vec<Client>,
    next: AtomicUsize,
    /// `scheme://host:port` on the wire.
    pub(crate) base: String,
    refused: Mutex<Option<(Instant, String)>>,
    refusal_memory: Duration,
}

impl Upstream {
    pub(crate) fn new(slots: Vec<Client>, base: String, refusal_memory: Duration) -> Self {
        assert!(!slots.is_empty());
        Self {
            slots,
            next: AtomicUsize::new(0),
            base,
            refused: Mutex::new(None),
            refusal_memory,
        }
    }

    /// A client of the pool, round robin, and its index.
    pub(crate) fn pick(&self) -> (usize, &Client) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        (i, &self.slots[i])
    }

    /// The first client (for policy judgements).
    pub(crate) fn any(&self) -> &Client {
        self.pick().1
    }

    /// A name for slot `i`'s current connection: `c<slot>` and, over
    /// RA-TLS, `.<attestations so far>`.
    pub(crate) fn connection(&self, i: usize) -> String {
        match self.slots[i].resolver() {
            Some(r) => format!("c{i}.{}", r.presented()),
            None => format!("c{i}"),
        }
    }

    /// Attestations presented so far, all slots.
    pub(crate) fn attestations(&self) -> u64 {
        self.slots
            .iter()
            .filter_map(|c| c.resolver().map(|r| r.presented()))
            .sum()
    }

    /// The remembered refusal, if still fresh.
    pub(crate) fn refusal(&self) -> Option<String> {
        let r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        match &*r {
            Some((at, why)) if at.elapsed() < self.refusal_memory => Some(format!(
                "{why} (not attempted again for {}s)",
                self.refusal_memory
                    .saturating_sub(at.elapsed())
                    .as_secs()
                    .max(1)
            )),
            _ => None,
        }
    }

    fn remember(&self, why: &str) {
        let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = matches!(&*r, Some((at, _)) if at.elapsed() < self.refusal_memory);
        if !fresh {
            tracing::error!(
                upstream = %self.base,
                "upstream attestation failed, not attempted again for {}s: {why}",
                self.refusal_memory.as_secs()
            );
            *r = Some((Instant::now(), why.to_string()));
        }
    }

    pub(crate) fn classify(&self, e: Error) -> UpstreamError {
        match e {
            Error::Attestation { .. } | Error::AttestationRefused { .. } | Error::Token(_) => {
                let why = e.to_string();
                self.remember(&why);
                UpstreamError::Attestation(why)
            }
            Error::Status {
                status, message, ..
            } => UpstreamError::Status { status, message },
            other => UpstreamError::Failed(other.to_string().replace('\n', " ")),
        }
    }

    /// GET `path` (`/v2/...`, built from validated parts) on a pooled
    /// connection, retried as ir-client retries; the answer and the
    /// connection's name.
    pub(crate) async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(reqwest::Response, String), UpstreamError> {
        if let Some(why) = self.refusal() {
            return Err(UpstreamError::Attestation(why));
        }
        let (i, c) = self.pick();
        let url = format!("{}{path}", self.base);
        match c.http.get(&url, accept, 0).await {
            Ok(r) => Ok((r, self.connection(i))),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// HEAD `path`: the answer's headers, retried like [`Upstream::get`].
    pub(crate) async fn head(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(reqwest::Response, String), UpstreamError> {
        if let Some(why) = self.refusal() {
            return Err(UpstreamError::Attestation(why));
        }
        let (i, c) = self.pick();
        let url = format!("{}{path}", self.base);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = c.http.client.head(&url);
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            let presented = c.resolver().map(|r| r.presented());
            let err = match req.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                    return Ok((resp, self.connection(i)))
                }
                Ok(resp) => {
                    let status = resp.status();
                    if !(status.is_server_error() || status.as_u16() == 429)
                        || attempt > c.http.retries
                    {
                        return Err(UpstreamError::Status {
                            status: status.as_u16(),
                            message: String::new(),
                        });
                    }
                    None
                }
                Err(e) => Some(c.http.attempt_error(&url, e, presented)),
            };
            if let Some(e) = err {
                let fatal = matches!(
                    e,
                    Error::Attestation { .. } | Error::AttestationRefused { .. }
                );
                if fatal || attempt > c.http.retries {
                    return Err(self.classify(e));
                }
            }
            tokio::time::sleep(crate::http::backoff(attempt)).await;
        }
    }
}
