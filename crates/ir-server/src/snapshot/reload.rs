//! The one road every load takes, the first and each reload: read the
//! root (a reload recognises unchanged blobs by their file identity and
//! does not hash them again), judge it by the signature policy, record the
//! outcome (`/status`, metrics), remember the signatures, and swap the
//! served snapshot atomically. Requests in flight finish on the snapshot
//! they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ir_oci::{report, LoadError, LoadOptions, LoadProgress, Registry};
use ir_trust::enforce::Judgement;
use tokio::sync::{mpsc, Mutex};

use crate::metrics::status::{LoadKind, LoadRecord, ServerStatus};
use crate::metrics::{Metrics, ReloadTimer};
use crate::snapshot::catalog::{Catalog, SharedCatalog};
use crate::snapshot::policy_gate::Gate;

/// Loads and reloads the catalog from the root; one load at a time.
pub struct Reloader {
    catalog: SharedCatalog,
    root: PathBuf,
    options: LoadOptions,
    running: Mutex<()>,
    status: Option<Arc<ServerStatus>>,
    trust: Option<Arc<Gate>>,
    metrics: Option<Arc<Metrics>>,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Applications served now.
    pub served: usize,
    /// Served now, not before.
    pub added: usize,
    /// Served before, not now.
    pub removed: usize,
    /// Served before and now, with different content.
    pub changed: usize,
    /// Kept at their last good version (their new version was rejected).
    pub kept: usize,
    /// Rejected (including the kept ones).
    pub rejected: usize,
    /// Bytes hashed by this reload.
    pub bytes_hashed: u64,
    /// Blobs recognised as unchanged.
    pub blobs_reused: usize,
}

/// Why a load did not end in a new snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The root could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The load's task failed.
    #[error("loading failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One load's result: the next snapshot, the policy's verdicts, and the
/// bytes hashed.
pub struct Loaded {
    /// The snapshot to serve next.
    pub catalog: Catalog,
    /// The verdicts of the signature policy (none without one).
    pub judgements: Vec<Judgement>,
    /// Bytes hashed by this load.
    pub bytes_hashed: u64,
}

/// The road itself, on the calling thread: reads `root` (for a reload,
/// reusing `previous`'s verification), judges it by `gate` (read again
/// for a reload), records what was verified and refused in `metrics`,
/// remembers the signatures, and builds the snapshot that succeeds
/// `previous`. `--check` takes it too, from an empty catalog.
pub fn load_judged(
    root: &Path,
    options: &LoadOptions,
    kind: LoadKind,
    previous: &Catalog,
    gate: Option<&Gate>,
    metrics: Option<&Metrics>,
) -> Result<Loaded, LoadError> {
    let reuse = (kind == LoadKind::Reload).then(|| previous.registry());
    let loaded = ir_oci::load_incremental(root, options, reuse)?;
    if let Some(m) = metrics {
        m.verified(&loaded);
    }
    let bytes_hashed = loaded.bytes_verified();
    let Some(gate) = gate else {
        return Ok(Loaded {
            catalog: previous.succeeded_by(loaded),
            judgements: Vec::new(),
            bytes_hashed,
        });
    };
    if kind == LoadKind::Reload {
        // The policy and its keys are read again with the content; the
        // applications kept at their last good version are judged again
        // too, so that a withdrawn key withdraws them as well.
        gate.refresh();
    }
    let judged = gate.apply(loaded);
    let mut judgements = judged.judgements;
    let (catalog, kept) = previous
        .succeeded_by(judged.registry)
        .with_views(Some((gate.host().to_owned(), judged.views)))
        .with_loaded(judged.loaded)
        .judged_again(gate);
    judgements.extend(kept);
    if let Some(m) = metrics {
        m.images_refused(&Gate::refusals_by_reason(&judgements));
    }
    gate.remember();
    Ok(Loaded {
        catalog,
        judgements,
        bytes_hashed,
    })
}

/// Logs what the first load found beyond the applications it serves.
pub fn log_first_load(root: &Path, registry: &Registry) {
    if !registry.orphans.is_empty() {
        tracing::info!(
            "{} orphan files under blobs/ are not reachable and will not be served",
            registry.orphans.len()
        );
        for o in &registry.orphans {
            tracing::debug!("orphan: {}/{}", o.application, o.file.display());
        }
    }
    for (path, why) in &registry.ignored {
        tracing::debug!("ignored {}: {why}", path.display());
    }
    if registry.applications.is_empty() {
        tracing::warn!(root = %root.display(), "no application verified: nothing will be served");
    }
    tracing::info!("{}", report::summary_line(registry));
}

impl Reloader {
    /// A reloader for `root` that swaps `catalog`.
    pub fn new(catalog: SharedCatalog, root: PathBuf, options: LoadOptions) -> Self {
        Reloader {
            catalog,
            root,
            options,
            running: Mutex::new(()),
            status: None,
            trust: None,
            metrics: None,
        }
    }

    /// Records verification, refusals and reloads in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Applies the signature policy of `gate` (read again at each reload)
    /// to every reloaded registry.
    pub fn with_trust(mut self, gate: Option<Arc<Gate>>) -> Self {
        self.trust = gate;
        self
    }

    /// Also records each reload's time and outcome in `status` (`/status`).
    pub fn recording_to(mut self, status: Arc<ServerStatus>) -> Self {
        self.status = Some(status);
        self
    }

    /// The first load, reporting its progress to `progress`: the catalog
    /// in place (empty) is succeeded by what the root holds.
    pub async fn load_first(
        &self,
        progress: Arc<LoadProgress>,
    ) -> Result<ReloadSummary, SwapError> {
        tracing::info!(root = %self.root.display(), "loading registry");
        let started = Instant::now();
        let options = LoadOptions {
            progress: Some(progress.clone()),
            ..self.options.clone()
        };
        let result = self.swap(LoadKind::Start, options).await;
        if let Some(m) = &self.metrics {
            m.load_progress(&progress.snapshot());
        }
        self.record(LoadKind::Start, started, result.as_ref().err());
        result
    }

    /// Rescans and swaps, recording the outcome (a failure leaves the
    /// served snapshot as it was).
    pub async fn reload(&self) -> Result<ReloadSummary, LoadError> {
        let started = Instant::now();
        let timer = ReloadTimer::start(self.metrics.clone());
        let result = self.swap(LoadKind::Reload, self.options.clone()).await;
        self.record(LoadKind::Reload, started, result.as_ref().err());
        let summary = result.map_err(|e| match e {
            SwapError::Load(e) => e,
            SwapError::Task(e) => LoadError::Threads(e.to_string()),
        })?;
        timer.succeeded();
        Ok(summary)
    }

    fn record(&self, kind: LoadKind, started: Instant, error: Option<&SwapError>) {
        if let Some(status) = &self.status {
            status.record_load(LoadRecord {
                kind,
                finished: std::time::SystemTime::now(),
                elapsed: started.elapsed(),
                error: error.map(|e| match e {
                    SwapError::Load(e) => e.to_string(),
                    SwapError::Task(e) => e.to_string(),
                }),
            });
        }
    }

    /// Loads through [`load_judged`] and swaps. On a root that cannot be
    /// read, nothing changes.
    async fn swap(&self, kind: LoadKind, options: LoadOptions) -> Result<ReloadSummary, SwapError> {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let old = self.catalog.load_full();
        let (root, previous) = (self.root.clone(), old.clone());
        let (gate, metrics) = (self.trust.clone(), self.metrics.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = load_judged(
                &root,
                &options,
                kind,
                &previous,
                gate.as_deref(),
                metrics.as_deref(),
            );
            if kind == LoadKind::Start {
                crate::process::memory::release_freed();
            }
            loaded
        })
        .await??;
        let summary = summarise(&old, &loaded.catalog, loaded.bytes_hashed);
        if kind == LoadKind::Start {
            log_first_load(&self.root, loaded.catalog.registry());
        }
        self.catalog.store(Arc::new(loaded.catalog));
        drop(old);
        if kind == LoadKind::Start {
            return Ok(summary);
        }
        // The previous version is freed once its last request ends; what
        // the load itself freed can go back now.
        tokio::task::spawn_blocking(crate::process::memory::release_freed);
        tracing::info!(
            "reload: {} applications served (+{} added, -{} removed, ~{} changed), {} kept at their last good version, {} rejected, {} hashed, {} blobs unchanged, in {:.2}s",
            summary.served,
            summary.added,
            summary.removed,
            summary.changed,
            summary.kept,
            summary.rejected,
            ir_oci::report::human_bytes(summary.bytes_hashed),
            summary.blobs_reused,
            started.elapsed().as_secs_f64()
        );
        Ok(summary)
    }

    /// Reloads on every message of `triggers`, coalescing bursts: after a
    /// trigger it waits until `quiet` passes without another (at most
    /// `quiet` × 10), so a copy of many files causes one reload.
    pub async fn run(self: Arc<Self>, mut triggers: mpsc::Receiver<()>, quiet: Duration) {
        while triggers.recv().await.is_some() {
            let deadline = Instant::now() + quiet * 10;
            while Instant::now() < deadline {
                match tokio::time::timeout(quiet, triggers.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
            if let Err(e) = self.reload().await {
                tracing::error!("reload failed, still serving the previous content: {e}");
            }
        }
    }
}

fn summarise(old: &Catalog, new: &Catalog, bytes_hashed: u64) -> ReloadSummary {
    let (before, after) = (&old.registry().applications, &new.registry().applications);
    let changed = after
        .iter()
        .filter(|(name, app)| {
            before.get(*name).is_some_and(|prev| {
                !Arc::ptr_eq(prev, app)
                    && (prev.tags != app.tags || prev.manifests.len() != app.manifests.len() || {
                        prev.manifests
                            .keys()
                            .any(|d| !app.manifests.contains_key(d))
                    })
            })
        })
        .count();
    ReloadSummary {
        served: after.len(),
        added: after.keys().filter(|n| !before.contains_key(*n)).count(),
        removed: before.keys().filter(|n| !after.contains_key(*n)).count(),
        changed,
        kept: new.kept().len(),
        rejected: new.registry().rejected.len(),
        bytes_hashed,
        blobs_reused: new.registry().blobs_reused,
    }
}
