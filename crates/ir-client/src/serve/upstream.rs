//! The upstream registry: a pool of clients (each its own attested
//! connection), and the memory of a refused attestation.
//!
//! A slot whose connection is not known to work (none yet, or its last
//! request failed) lets one request at a time make it, so that a burst of
//! local requests attests once per slot, and a refusal met by one is seen
//! by the others before they try. Retries are made here, not in the
//! clients, for the same reason.

use crate::pull::Client;
use crate::Error;
use reqwest::header;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Attestation(why) | UpstreamError::Failed(why) => f.write_str(why),
            UpstreamError::Status { status, message } => write!(f, "HTTP {status}{message}"),
        }
    }
}

impl UpstreamError {
    fn transient(&self) -> bool {
        match self {
            UpstreamError::Failed(_) => true,
            UpstreamError::Status { status, .. } => *status >= 500 || *status == 429,
            UpstreamError::Attestation(_) => false,
        }
    }
}

/// One client of the pool.
struct Slot {
    client: Client,
    /// Its connection answered the last request.
    warm: AtomicBool,
    /// Held by the request making a cold slot's connection.
    gate: tokio::sync::Mutex<()>,
}

/// The pool.
pub(crate) struct Upstream {
    slots: Vec<Slot>,
    next: AtomicUsize,
    /// `scheme://host:port` on the wire.
    pub(crate) base: String,
    refused: Mutex<Option<(Instant, String)>>,
    refusal_memory: Duration,
    /// Attempts after the first (the clients themselves make one each).
    retries: u32,
}

impl Upstream {
    pub(crate) fn new(
        clients: Vec<Client>,
        base: String,
        refusal_memory: Duration,
        retries: u32,
    ) -> Self {
        assert!(!clients.is_empty());
        Self {
            slots: clients
                .into_iter()
                .map(|client| Slot {
                    client,
                    warm: AtomicBool::new(false),
                    gate: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            base,
            refused: Mutex::new(None),
            refusal_memory,
            retries,
        }
    }

    /// A slot of the pool, round robin, and its index.
    fn pick(&self) -> (usize, &Slot) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        (i, &self.slots[i])
    }

    /// A client of the pool (for policy judgements).
    pub(crate) fn any(&self) -> &Client {
        &self.pick().1.client
    }

    /// A name for slot `i`'s current connection: `c<slot>` and, over
    /// RA-TLS, `.<attestations so far>`.
    pub(crate) fn connection(&self, i: usize) -> String {
        match self.slots[i].client.resolver() {
            Some(r) => format!("c{i}.{}", r.presented()),
            None => format!("c{i}"),
        }
    }

    /// Attestations presented so far, all slots.
    pub(crate) fn attestations(&self) -> u64 {
        self.slots
            .iter()
            .filter_map(|s| s.client.resolver().map(|r| r.presented()))
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

    /// One attempt on a slot: through its gate while it is cold, never
    /// while a refusal is remembered.
    async fn attempt<'a, T, F, Fut>(&'a self, f: F) -> Result<(T, String), UpstreamError>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (i, slot) = self.pick();
        let _gate = if slot.warm.load(Ordering::Acquire) {
            None
        } else {
            Some(slot.gate.lock().await)
        };
        if let Some(why) = self.refusal() {
            return Err(UpstreamError::Attestation(why));
        }
        match f(&slot.client).await {
            Ok(t) => {
                slot.warm.store(true, Ordering::Release);
                Ok((t, self.connection(i)))
            }
            Err(e) => {
                // A status is an answer: the connection works.
                let answered = matches!(e, Error::Status { .. });
                slot.warm.store(answered, Ordering::Release);
                Err(self.classify(e))
            }
        }
    }

    /// [`Upstream::attempt`], retried on transient failures with backoff.
    async fn retried<'a, T, F, Fut>(
        &'a self,
        what: &str,
        f: F,
    ) -> Result<(T, String), UpstreamError>
    where
        F: Fn(&'a Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.attempt(&f).await {
                Err(e) if e.transient() && attempt <= self.retries => {
                    tracing::debug!(what, error = %e, attempt, "retrying upstream");
                    tokio::time::sleep(crate::http::backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// GET `path` (`/v2/...`, built from validated parts): the answer and
    /// the connection's name.
    pub(crate) async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(reqwest::Response, String), UpstreamError> {
        let url = format!("{}{path}", self.base);
        self.retried(path, |c: &Client| c.http.get(&url, accept, 0))
            .await
    }

    /// GET `path` from byte `from` on, to resume a cut transfer: the
    /// answer and how many of its first bytes to skip (a registry that
    /// ignores the range sends the whole blob again).
    pub(crate) async fn resume(
        &self,
        path: &str,
        from: u64,
    ) -> Result<(reqwest::Response, u64), String> {
        let url = format!("{}{path}", self.base);
        let (resp, conn) = self
            .retried(path, |c: &Client| c.http.get(&url, None, from))
            .await
            .map_err(|e| e.to_string())?;
        if from == 0 || resp.status() == reqwest::StatusCode::OK {
            return Ok((resp, from));
        }
        let start = resp
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(from) {
            return Err(format!(
                "asked for bytes {from}- on {conn}, got Content-Range from {start:?}"
            ));
        }
        Ok((resp, 0))
    }

    /// HEAD `path`: the answer's headers.
    pub(crate) async fn head(
        &self,
        path: &str,
    ) -> Result<(reqwest::Response, String), UpstreamError> {
        let url = format!("{}{path}", self.base);
        self.retried(path, |c: &Client| {
            let url = url.clone();
            async move {
                let presented = c.resolver().map(|r| r.presented());
                match c.http.client.head(&url).send().await {
                    Ok(resp) if resp.status() == reqwest::StatusCode::OK => Ok(resp),
                    Ok(resp) => Err(Error::Status {
                        url,
                        status: resp.status().as_u16(),
                        message: String::new(),
                    }),
                    Err(e) => Err(c.http.attempt_error(&url, e, presented)),
                }
            }
        })
        .await
    }
}
