//! The operator's view of the server (`GET /status` on the metrics
//! listener): each application served, kept at its last good version, or
//! rejected with the rule and the file; the time and outcome of the last
//! load; the last reread of each authentication and access file;
//! readiness; and the platform check in force for RA-TLS.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::api::readiness::Readiness;
use crate::snapshot::catalog::SharedCatalog;

/// Path of the status document on the metrics listener.
pub const STATUS_PATH: &str = "/status";

/// What the listener reports besides the metrics: the served snapshot,
/// readiness (its `/readyz`), and the loads and platform check (`/status`).
#[derive(Clone)]
pub struct Observed {
    /// The served snapshot.
    pub catalog: SharedCatalog,
    /// Ready once the first load finished; draining once shutting down.
    pub readiness: Arc<Readiness>,
    /// Loads, and the RA-TLS platform check.
    pub status: Arc<ServerStatus>,
}

/// Which load a [`LoadRecord`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// The load at start-up.
    Start,
    /// A reload (SIGHUP or `--watch`).
    Reload,
}

/// The outcome of one load.
#[derive(Debug, Clone)]
pub struct LoadRecord {
    /// Start-up or reload.
    pub kind: LoadKind,
    /// When it finished.
    pub finished: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
    /// `None` if a snapshot was swapped in; else why not (the root could
    /// not be read; the previous content stays).
    pub error: Option<String>,
}

/// The outcome of the last reread of one input file (`--htpasswd`,
/// `--access-map`, `--token-key`, `--token-jwks`) on SIGHUP.
#[derive(Debug, Clone)]
pub struct InputRecord {
    /// The flag that names the file.
    pub input: &'static str,
    /// The file.
    pub file: String,
    /// When it finished.
    pub finished: SystemTime,
    /// `None` when the file read is in force; else why not (the previous
    /// one stays).
    pub error: Option<String>,
}

/// What the status document reports beyond the served snapshot.
#[derive(Debug, Default)]
pub struct ServerStatus {
    last_load: Mutex<Option<LoadRecord>>,
    inputs: Mutex<Vec<InputRecord>>,
    ratls_platform: OnceLock<String>,
}

impl ServerStatus {
    /// Records a finished load.
    pub fn record_load(&self, record: LoadRecord) {
        *self.last_load.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    /// The last finished load, if any.
    pub fn last_load(&self) -> Option<LoadRecord> {
        self.last_load
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the reread of an input file, replacing its previous record.
    pub fn record_input(&self, record: InputRecord) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        inputs.retain(|r| r.input != record.input);
        inputs.push(record);
    }

    /// The last reread of each input file, if any.
    pub fn inputs(&self) -> Vec<InputRecord> {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records how RA-TLS checks platforms (set once, at start-up).
    pub fn set_ratls_platform(&self, description: String) {
        let _ = self.ratls_platform.set(description);
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The status document of what `observed` holds.
pub fn document(observed: &Observed) -> Value {
    let catalog = observed.catalog.load();
    let registry = catalog.registry();
    let kept = catalog.kept();
    let reason_of = |name: &str| {
        registry
            .rejected
            .iter()
            .find(|r| r.application == name)
            .map(|r| (r.rule.to_string(), r.file.display().to_string()))
    };
    let mut applications: Vec<Value> = registry
        .applications
        .iter()
        .map(|(name, app)| {
            let mut entry = json!({
                "name": name.as_str(),
                "state": "served",
                "tags": app.tags.len(),
                "manifests": app.manifests.len(),
            });
            if kept.contains(name) {
                entry["state"] = json!("kept");
                if let Some((reason, file)) = reason_of(name.as_str()) {
                    entry["reason"] = json!(reason);
                    entry["file"] = json!(file);
                }
            }
            entry
        })
        .collect();
    applications.extend(
        registry
            .rejected
            .iter()
            .filter(|r| !kept.iter().any(|k| k.as_str() == r.application))
            .map(|r| {
                json!({
                    "name": r.application,
                    "state": "rejected",
                    "reason": r.rule.to_string(),
                    "file": r.file.display().to_string(),
                })
            }),
    );
    let last_load = observed.status.last_load().map(|l| {
        json!({
            "kind": match l.kind { LoadKind::Start => "start", LoadKind::Reload => "reload" },
            "finished_unix": unix_seconds(l.finished),
            "seconds": l.elapsed.as_secs_f64(),
            "outcome": if l.error.is_none() { "ok" } else { "failed" },
            "error": l.error,
        })
    });
    let inputs: Vec<Value> = observed
        .status
        .inputs()
        .into_iter()
        .map(|r| {
            json!({
                "input": r.input,
                "file": r.file,
                "finished_unix": unix_seconds(r.finished),
                "outcome": if r.error.is_none() { "ok" } else { "failed" },
                "error": r.error,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": observed.readiness.is_ready(),
        "draining": observed.readiness.is_draining(),
        "last_load": last_load,
        "input_reloads": inputs,
        "ratls_platform_check": observed.status.ratls_platform.get(),
        "served": registry.applications.len(),
        "kept": kept.len(),
        "rejected": registry.rejected.len() - kept.len().min(registry.rejected.len()),
        "orphan_files": registry.orphans.len(),
        "applications": applications,
    })
}
