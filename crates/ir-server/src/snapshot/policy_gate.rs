//! The signature policy in force (`--policy`, `--notation-trust-policy`,
//! `--notation-trust-store`, `--registry-host`): read at start (an error
//! stops the server), read again at every reload (an error keeps the
//! previous policy in force), and applied to every loaded registry before
//! it is served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use ir_oci::{Application, Registry, RepoName};
use ir_trust::enforce::Judgement;
use ir_trust::{Memo, Reason, Trust};

/// Why the signature policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `--policy`, or notation's trust policy or store, is unusable.
    #[error(transparent)]
    Files(#[from] ir_trust::TrustFilesError),
    /// One notation flag without the other.
    #[error("--notation-trust-policy and --notation-trust-store go together")]
    NotationIncomplete,
    /// `--registry-host` is not a host.
    #[error("--registry-host {0:?} is not HOST[:PORT]")]
    Host(String),
    /// `--signature-cache` under the root: whoever writes the root would
    /// write what the server trusts.
    #[error("--signature-cache {cache}: inside the root {root}, which is not trusted; keep it elsewhere (e.g. /var/lib/ir-server)")]
    CacheInRoot {
        /// The cache file.
        cache: String,
        /// The root.
        root: String,
    },
}

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    policy: Option<PathBuf>,
    notation: Option<(PathBuf, PathBuf)>,
    /// The name clients use for this server (`HOST[:PORT]`).
    pub host: String,
    /// `--signature-cache`: where verified signatures are remembered.
    pub memo: Option<PathBuf>,
}

impl TrustConfig {
    /// A containers policy file (and notation's trust policy and store)
    /// judging images named under `host`.
    pub fn new(policy: Option<PathBuf>, notation: Option<(PathBuf, PathBuf)>, host: &str) -> Self {
        TrustConfig {
            policy,
            notation,
            host: host.to_owned(),
            memo: None,
        }
    }

    /// Reads the policy files and keys.
    pub fn read(&self) -> Result<Trust, TrustError> {
        let files = ir_trust::TrustFiles {
            policy: self.policy.clone(),
            notation: self.notation.clone().map(|(trust_policy, trust_store)| {
                ir_trust::NotationFiles {
                    trust_policy,
                    trust_store,
                }
            }),
        };
        Ok(files.load()?)
    }
}

/// `--signature-cache`, or an empty memo (every signature is verified)
/// when it cannot be used.
fn read_memo(file: &std::path::Path) -> Memo {
    match Memo::load(file) {
        Ok(memo) => {
            tracing::info!(
                "signature cache {}: {} signature artifact(s) remembered",
                file.display(),
                memo.len()
            );
            memo
        }
        Err(e) => {
            tracing::warn!("signature cache not used, every signature is verified: {e}");
            Memo::new()
        }
    }
}

/// The applications as the policy judges them under other registry hosts
/// (RA-TLS realms' `policy-scope`), by host.
pub type Views = HashMap<String, BTreeMap<RepoName, Arc<Application>>>;

/// A registry after the policy: what is served by default, the views of
/// the other policy scopes, and the verdicts.
pub struct Judged {
    /// The registry judged under `--registry-host`.
    pub registry: Registry,
    /// The applications judged under each realm's policy scope.
    pub views: Views,
    /// The verdicts under `--registry-host`.
    pub judgements: Vec<Judgement>,
    /// The applications as loaded, before the policy: what an application
    /// kept at its last good version is judged again from, under every
    /// scope (a realm's view is never judged from the host's filtered
    /// copy).
    pub loaded: BTreeMap<RepoName, Arc<Application>>,
}

/// The policy in force and where to read it again.
#[derive(Debug)]
pub struct Gate {
    config: TrustConfig,
    current: Mutex<Arc<Trust>>,
    /// What judging learned of each signature artifact (see
    /// [`ir_trust::memo`]), kept across reloads and, with
    /// `--signature-cache`, across restarts.
    memo: OnceLock<Memo>,
    /// The thread reading `--signature-cache` at start.
    pending: Mutex<Option<std::thread::JoinHandle<Memo>>>,
    /// Registry hosts that RA-TLS realms are judged under, besides ours.
    scopes: Mutex<BTreeSet<String>>,
    /// `sha256:` of the policy file in force (read with it), for receipts.
    digest: Mutex<Option<Arc<str>>>,
}

impl Gate {
    /// Reads the policy; an error here is a start-up error.
    pub fn new(config: TrustConfig) -> Result<Self, TrustError> {
        let digest = config
            .policy
            .as_deref()
            .and_then(crate::audit::trust_digest::digest_of);
        let trust = config.read()?;
        if let Some(p) = &trust.policy {
            for t in p.ignored_transports() {
                tracing::info!(
                    "signature policy: transport {t:?} does not apply to a registry and is ignored"
                );
            }
        }
        // Read beside the content's load (which waits on the disk), and
        // joined when the first judgement needs it.
        let file = config.memo.clone();
        let pending = std::thread::Builder::new()
            .name("signature-cache".into())
            .spawn(move || file.as_deref().map(read_memo).unwrap_or_default())
            .ok();
        Ok(Gate {
            config,
            current: Mutex::new(Arc::new(trust)),
            memo: OnceLock::new(),
            pending: Mutex::new(pending),
            scopes: Mutex::default(),
            digest: Mutex::new(digest.map(Arc::from)),
        })
    }

    /// The memo, once read.
    fn memo(&self) -> &Memo {
        self.memo.get_or_init(|| {
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            pending
                .and_then(|thread| thread.join().ok())
                .unwrap_or_default()
        })
    }

    /// Reads the policy again (at a reload). A policy that cannot be used
    /// leaves the previous one in force, minus every key whose file no
    /// longer holds it: a key taken away stops accepting now.
    pub fn refresh(&self) {
        let digest = self
            .config
            .policy
            .as_deref()
            .and_then(crate::audit::trust_digest::digest_of);
        match self.config.read() {
            Ok(t) => {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
                *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = digest.map(Arc::from);
            }
            Err(e) => {
                tracing::error!(
                    "signature policy not reloaded, the previous one stays in force: {e}"
                );
                if let Some(policy) = &self.trust().policy {
                    for (fingerprint, why) in policy.revoke_unloadable_keys() {
                        tracing::error!(
                            "signature policy: key {fingerprint} no longer trusted: {why}"
                        );
                    }
                }
            }
        }
    }

    /// `sha256:` of the policy file in force (`None`: no `--policy`).
    pub fn policy_digest(&self) -> Option<Arc<str>> {
        self.digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The policy in force.
    pub fn trust(&self) -> Arc<Trust> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The name clients use for this server.
    pub fn host(&self) -> &str {
        &self.config.host
    }

    /// Sets the policy scopes of the RA-TLS realms; true when they
    /// changed (the content must then be judged again).
    pub fn set_scopes(&self, scopes: impl IntoIterator<Item = String>) -> bool {
        let new: BTreeSet<String> = scopes.into_iter().filter(|s| s != self.host()).collect();
        let mut current = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *current != new;
        *current = new;
        changed
    }

    /// `registry` minus what the policy refuses (logging one line per
    /// refused tag), and the views of the realms' policy scopes.
    pub fn apply(&self, registry: Registry) -> Judged {
        let trust = self.trust();
        let memo = self.memo();
        let started = std::time::Instant::now();
        memo.next_generation();
        let scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // One budget of signature bytes for every scope of this load.
        let budget = ir_trust::budget::Budget::per_load();
        let loaded = registry.applications.clone();
        let mut views = Views::new();
        for scope in scopes {
            let unfiltered = Registry {
                applications: registry.applications.clone(),
                ..Registry::default()
            };
            let (view, judgements) =
                ir_trust::enforce::enforce_within(&trust, memo, &scope, unfiltered, &budget);
            let refused: usize = judgements.iter().map(|j| j.refused().count()).sum();
            tracing::info!("signature policy scope {scope}: {refused} tag(s) refused");
            views.insert(scope, view.applications);
        }
        let (registry, judgements) =
            ir_trust::enforce::enforce_within(&trust, memo, self.host(), registry, &budget);
        log(&judgements, started.elapsed());
        Judged {
            registry,
            views,
            judgements,
            loaded,
        }
    }

    /// Ends one load's judgements: what no judgement of this load or the
    /// one before used is forgotten, and `--signature-cache` is written
    /// when it changed (an error is logged; the server goes on).
    pub fn remember(&self) {
        let memo = self.memo();
        memo.forget_unused();
        if let Some(file) = &self.config.memo {
            match memo.save(file) {
                Ok(true) => tracing::info!(
                    "signature cache {}: {} signature artifact(s) written",
                    file.display(),
                    memo.len()
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!("signature cache not written: {e}"),
            }
        }
    }

    /// The tags refused in `judgements` (one load's), by reason: every
    /// reason, 0 included (the refusal metrics).
    pub fn refusals_by_reason(judgements: &[Judgement]) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&'static str, u64)> =
            Reason::ALL.iter().map(|r| (r.code(), 0)).collect();
        for j in judgements {
            for (_, refusal) in j.refused() {
                if let Some(c) = counts
                    .iter_mut()
                    .find(|(code, _)| *code == refusal.reason.code())
                {
                    c.1 += 1;
                }
            }
        }
        counts
    }
}

/// One line per refused tag, one per application with withdrawn content.
fn log(judgements: &[Judgement], took: std::time::Duration) {
    let (mut accepted, mut refused) = (0usize, 0usize);
    for j in judgements {
        for (tag, refusal) in j.refused() {
            refused += 1;
            tracing::warn!("{}:{tag}: not served: {refusal}", j.application);
        }
        accepted += j.tags.len() - j.refused().count();
        if j.manifests_withdrawn > 0 {
            tracing::info!(
                "{}: {} manifest(s) and {} blob(s) withdrawn: only images the signature policy refuses reach them",
                j.application,
                j.manifests_withdrawn,
                j.blobs_withdrawn
            );
        }
    }
    tracing::info!(
        "signature policy: {accepted} tag(s) accepted, {refused} refused, in {:.2}s",
        took.as_secs_f64()
    );
}

/// Says at start what the policy is, or that there is none.
pub fn announce(gate: Option<&Gate>) {
    match gate {
        None => tracing::warn!(
            "no signature policy in force (--policy): every verified image is served, whoever signed it"
        ),
        Some(g) => {
            let t = g.trust();
            let keys = t.policy.as_ref().map_or(0, |p| p.key_count());
            tracing::info!(
                "signature policy in force for images named {}/APPLICATION: containers policy {}, notation {}, {keys} key(s)",
                g.host(),
                if t.policy.is_some() { "yes" } else { "no" },
                if t.notation.is_some() { "yes" } else { "no" },
            );
        }
    }
}

/// Adds each tag's verdict to a `--check --format json` report (refused
/// tags are not in the served model, so they are added here).
pub fn annotate(report: &mut ir_oci::report::CheckReport, judgements: &[Judgement]) {
    use ir_oci::report::{SignatureReport, TagReport};
    use ir_trust::Verdict;
    for j in judgements {
        let Some(app) = report
            .applications
            .iter_mut()
            .find(|a| a.status == "served" && a.name == j.application.as_str())
        else {
            continue;
        };
        for (tag, (digest, verdict)) in &j.tags {
            let signature = match verdict {
                Verdict::Accepted { signers } => SignatureReport {
                    verdict: "accepted",
                    signers: signers.clone(),
                    requirement: None,
                    reason: None,
                    detail: None,
                },
                Verdict::Refused(r) => SignatureReport {
                    verdict: "refused",
                    signers: Vec::new(),
                    requirement: Some(r.requirement.clone()),
                    reason: Some(r.reason.code().to_owned()),
                    detail: Some(r.detail.clone()),
                },
            };
            match app.tags.iter_mut().find(|t| t.tag == tag.as_str()) {
                Some(t) => t.signature = Some(signature),
                None => app.tags.push(TagReport {
                    tag: tag.to_string(),
                    digest: digest.to_string(),
                    signature: Some(signature),
                }),
            }
        }
        app.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    }
}

/// The `--check` text lines of the verdicts: one per judged tag.
pub fn text_report(judgements: &[Judgement]) -> String {
    use ir_trust::Verdict;
    let mut out = String::new();
    for j in judgements {
        for (tag, (_, verdict)) in &j.tags {
            let line = match verdict {
                Verdict::Accepted { signers } if signers.is_empty() => {
                    format!(
                        "accepted  {}:{tag} (the policy requires no signature)\n",
                        j.application
                    )
                }
                Verdict::Accepted { signers } => format!(
                    "accepted  {}:{tag} signed by {}\n",
                    j.application,
                    signers.join(", ")
                ),
                Verdict::Refused(r) => format!("refused   {}:{tag}: {r}\n", j.application),
            };
            out.push_str(&line);
        }
    }
    out
}

/// True when some tag was refused.
pub fn any_refused(judgements: &[Judgement]) -> bool {
    judgements.iter().any(|j| j.refused().next().is_some())
}
