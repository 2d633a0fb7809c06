//! Who got what: signed delivery receipts (the journal is `ir-receipts`)
//! and delivery/refusal events posted to an operator's endpoint.
//!
//! - [`Audit`]: what the API and the transports call when a manifest is
//!   served or a pull refused; it never waits on a disk or a network;
//! - [`receipts_command`]: `ir-server receipts verify DIR --key PUB`;
//! - [`events`]: CloudEvents, batched, retried, bounded.

pub mod events;
pub mod identity;
pub mod receipts_command;
pub mod trust_digest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ir_receipts::{CheckpointSigner, DeliveryRef, Head, Identity, Journal, JournalOptions, Sink};

use events::{Event, Events, EventsConfig};

/// `--receipts` and its options, validated.
#[derive(Debug, Clone)]
pub struct ReceiptsConfig {
    /// The journal directory.
    pub dir: PathBuf,
    /// The checkpoint signing key (PEM, P-256).
    pub key: PathBuf,
    /// A checkpoint after at most this many records.
    pub checkpoint_every: u64,
    /// A new file past this size, in bytes.
    pub max_file_bytes: u64,
}

/// What is audited, validated once from the flags.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// `--receipts DIR --receipts-key FILE`.
    pub receipts: Option<ReceiptsConfig>,
    /// `--events-url URL`.
    pub events: Option<reqwest::Url>,
}

impl AuditConfig {
    /// Whether anything is audited.
    pub fn is_on(&self) -> bool {
        self.receipts.is_some() || self.events.is_some()
    }
}

/// Why auditing cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The journal or its key cannot be opened.
    #[error("--receipts: {0}")]
    Receipts(#[from] ir_receipts::ReceiptsError),
    /// The events client cannot be built.
    #[error("{0}")]
    Events(String),
}

/// Where the digest of the signature policy in force comes from.
pub type PolicyDigest = Box<dyn Fn() -> Option<Arc<str>> + Send + Sync>;

/// The running audit: receipts journal and events sender.
pub struct Audit {
    receipts: Option<Sink>,
    events: Option<Events>,
    events_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `sha256:` of the RA-TLS reference values in force.
    reference_values: ArcSwap<Option<Arc<str>>>,
    /// The signature policy's digest, asked at each record.
    policy: std::sync::OnceLock<PolicyDigest>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("receipts", &self.receipts.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// Signs unsigned receipts after this long without a new one.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(60);
/// Receipts waiting for the writer at most.
const RECEIPTS_QUEUE: usize = 65_536;

impl Audit {
    /// Opens the journal (writing its `start` line) and starts the events
    /// sender (on the current tokio runtime).
    pub fn start(config: &AuditConfig) -> Result<Self, AuditError> {
        let (events, events_task) = match &config.events {
            Some(url) => {
                let source = format!("ir-server/{}", host_name());
                let (events, task) = Events::spawn(EventsConfig::new(url.clone(), source))
                    .map_err(AuditError::Events)?;
                (Some(events), Some(task))
            }
            None => (None, None),
        };
        let receipts = match &config.receipts {
            Some(r) => {
                let signer = CheckpointSigner::from_pem_file(&r.key)?;
                let options = JournalOptions {
                    checkpoint_every: r.checkpoint_every,
                    max_file_bytes: r.max_file_bytes,
                    server: format!("ir-server {}", env!("CARGO_PKG_VERSION")),
                };
                let journal = Journal::open(&r.dir, signer, options)?;
                tracing::info!(dir = %r.dir.display(), "receipts: journal open");
                // Each synced head goes to the events endpoint too: kept
                // off this machine, it shows later that the journal was
                // not cut at its end (`receipts verify --expect-head`).
                let events = events.clone();
                Some(Sink::spawn_reporting(
                    journal,
                    RECEIPTS_QUEUE,
                    IDLE_CHECKPOINT,
                    move |head: &Head, closing| {
                        if let Some(events) = &events {
                            events.post(Event {
                                kind: events::CHECKPOINT,
                                subject: None,
                                data: serde_json::json!({
                                    "head": head.to_string(),
                                    "seq": head.seq,
                                    "closing": closing,
                                }),
                            });
                        }
                    },
                ))
            }
            None => None,
        };
        Ok(Self {
            receipts,
            events,
            events_task: std::sync::Mutex::new(events_task),
            reference_values: ArcSwap::default(),
            policy: std::sync::OnceLock::new(),
        })
    }

    /// Records the digest of the reference values now in force (at start
    /// and after each reload that took effect).
    pub fn set_reference_values(&self, digest: Option<String>) {
        self.reference_values
            .store(Arc::new(digest.map(Into::into)));
    }

    /// Where the signature policy's digest is read (the policy gate).
    pub fn set_policy_digest(&self, source: PolicyDigest) {
        let _ = self.policy.set(source);
    }

    /// A manifest was served (GET, 200) to `identity` (if the connection or
    /// request has one) from `peer`.
    #[allow(clippy::too_many_arguments)]
    pub fn delivered(
        &self,
        peer: SocketAddr,
        identity: Option<&Arc<Identity>>,
        policy_scope: Option<Arc<str>>,
        application: &str,
        tag: Option<&str>,
        digest: &str,
        media_type: &str,
    ) {
        if let Some(events) = &self.events {
            events.post(Event {
                kind: events::DELIVERY,
                subject: Some(application.to_string()),
                data: serde_json::json!({
                    "peer": peer.to_string(),
                    "identity": identity,
                    "application": application,
                    "tag": tag,
                    "digest": digest,
                    "media_type": media_type,
                }),
            });
        }
        let (Some(receipts), Some(identity)) = (&self.receipts, identity) else {
            return;
        };
        let reference_values = self.reference_values.load();
        let policy_digest = self.policy.get().and_then(|digest| digest());
        receipts.record(DeliveryRef {
            application,
            tag,
            digest,
            media_type,
            identity,
            policy_scope: policy_scope.as_ref(),
            policy_digest: policy_digest.as_ref(),
            reference_values_digest: reference_values.as_ref().as_ref(),
        });
    }

    /// A pull was refused: `stage` is `authentication`, `attestation` or
    /// `policy`.
    pub fn refused(&self, peer: SocketAddr, stage: &str, reason: &str, application: Option<&str>) {
        if let Some(events) = &self.events {
            events.post(Event {
                kind: events::REFUSAL,
                subject: application.map(str::to_string),
                data: serde_json::json!({
                    "peer": peer.to_string(),
                    "stage": stage,
                    "reason": reason,
                    "application": application,
                }),
            });
        }
    }

    /// False while the journal cannot keep up or cannot be written.
    pub fn healthy(&self) -> bool {
        self.receipts.as_ref().is_none_or(|r| r.stats().healthy())
    }

    /// Receipts' and events' counters, for metrics.
    pub fn counters(&self) -> AuditCounters {
        use std::sync::atomic::Ordering::Relaxed;
        let mut c = AuditCounters::default();
        if let Some(r) = &self.receipts {
            let s = r.stats();
            c.receipts_written = s.written.load(Relaxed);
            c.receipts_dropped = s.dropped.load(Relaxed);
            c.receipts_write_errors = s.write_errors.load(Relaxed);
        }
        if let Some(e) = &self.events {
            let s = e.stats();
            c.events_sent = s.sent.load(Relaxed);
            c.events_retried = s.retried.load(Relaxed);
            c.events_dropped = s.dropped.load(Relaxed);
        }
        c
    }

    /// At shutdown: writes the queued receipts and the closing checkpoint,
    /// then posts the queued events, the closing head among them (each
    /// batch once, for at most 10 s).
    pub async fn close(self: Arc<Self>) {
        let audit = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(r) = &audit.receipts {
                r.close();
            }
        })
        .await;
        if let Some(events) = &self.events {
            events.close();
        }
        let task = self.events_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// The audit counters at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditCounters {
    /// Receipts written.
    pub receipts_written: u64,
    /// Receipts dropped (the writer was behind).
    pub receipts_dropped: u64,
    /// Journal writes that failed (a full disk).
    pub receipts_write_errors: u64,
    /// Events the endpoint accepted.
    pub events_sent: u64,
    /// Event POSTs repeated.
    pub events_retried: u64,
    /// Events dropped.
    pub events_dropped: u64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.len() < 256)
        .unwrap_or_else(|| "unknown".into())
}
