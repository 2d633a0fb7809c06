//! Live reload of content: rescan the root, verify what is new or changed
//! (unchanged blobs are recognised by their file identity and not hashed
//! again), and swap the served snapshot atomically. Requests in flight
//! finish on the snapshot they started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ir_oci::{LoadError, LoadOptions};
use tokio::sync::{mpsc, Mutex};

use crate::metrics::status::{LoadKind, LoadRecord, ServerStatus};
use crate::snapshot::catalog::{Catalog, SharedCatalog};
use crate::snapshot::policy_gate::Gate;

/// Reloads the catalog from the root; one reload at a time.
pub struct Reloader {
    catalog: SharedCatalog,
    root: PathBuf,
    options: LoadOptions,
    running: Mutex<()>,
    status: Option<Arc<ServerStatus>>,
    trust: Option<Arc<Gate>>,
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
        }
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

    /// Rescans and swaps (see [`Reloader::swap`]), recording the outcome.
    pub async fn reload(&self) -> Result<ReloadSummary, LoadError> {
        let started = Instant::now();
        let result = self.swap().await;
        if let Some(status) = &self.status {
            status.record_load(LoadRecord {
                kind: LoadKind::Reload,
                finished: std::time::SystemTime::now(),
                elapsed: started.elapsed(),
                error: result.as_ref().err().map(|e| e.to_string()),
            });
        }
        result
    }

    /// Rescans and swaps. On a root that cannot be read, nothing changes.
    async fn swap(&self) -> Result<ReloadSummary, LoadError> {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let timer = crate::metrics::ReloadTimer::start();
        let old = self.catalog.load_full();
        let (root, options, previous) = (self.root.clone(), self.options.clone(), old.clone());
        let gate = self.trust.clone();
        let new = tokio::task::spawn_blocking(move || {
            let loaded = ir_oci::load_incremental(&root, &options, Some(previous.registry()))?;
            crate::metrics::verified(&loaded);
            let hashed = loaded.bytes_verified();
            let Some(gate) = gate else {
                return Ok((previous.succeeded_by(loaded), hashed));
            };
            // The policy and its keys are read again with the content; the
            // applications kept at their last good version are judged
            // again too, so that a withdrawn key withdraws them as well.
            gate.refresh();
            let judged = gate.apply(loaded);
            let mut judgements = judged.judgements;
            let (next, kept) = previous
                .succeeded_by(judged.registry)
                .with_views(Some((gate.host().to_owned(), judged.views)))
                .with_loaded(judged.loaded)
                .judged_again(&gate);
            judgements.extend(kept);
            gate.record(&judgements);
            gate.remember();
            Ok::<_, LoadError>((next, hashed))
        })
        .await
        .map_err(|e| LoadError::Threads(e.to_string()))??;
        let (new, hashed) = new;
        let summary = summarise(&old, &new, hashed);
        self.catalog.store(Arc::new(new));
        drop(old);
        // The previous version is freed once its last request ends; what
        // the load itself freed can go back now.
        tokio::task::spawn_blocking(crate::process::memory::release_freed);
        timer.succeeded();
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
