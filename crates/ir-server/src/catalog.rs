//! The served snapshot: an immutable verified [`Registry`] behind an
//! `ArcSwap`, so that request handlers read it without locks and a reload
//! can replace it atomically while requests in flight finish on the old one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ir_oci::{Application, Registry, RepoName};

/// What the HTTP layer serves from.
#[derive(Debug, Default)]
pub struct Catalog {
    registry: Registry,
    /// Applications served at their last good version because their
    /// current version failed verification.
    kept: Vec<RepoName>,
}

impl Catalog {
    /// Wraps a loaded registry.
    pub fn new(registry: Registry) -> Self {
        Catalog {
            registry,
            kept: Vec::new(),
        }
    }

    /// The next snapshot after a reload: `registry` as loaded, plus the
    /// previous version of every application that `registry` rejected but
    /// `self` served, so that a broken update never takes an application
    /// down. An application whose directory is gone is not kept.
    pub fn succeeded_by(&self, mut registry: Registry) -> Catalog {
        let mut kept = Vec::new();
        for rejection in &registry.rejected {
            let Ok(name) = RepoName::parse(&rejection.application) else {
                continue;
            };
            if let Some(old) = self.registry.applications.get(&name) {
                if old.dir.is_dir() && !registry.applications.contains_key(&name) {
                    tracing::warn!("{name}: keeping the last good version in service: {rejection}");
                    kept.push(name);
                }
            }
        }
        for name in &kept {
            let old = self.registry.applications[name].clone();
            registry.applications.insert(name.clone(), old);
        }
        Catalog { registry, kept }
    }

    /// An application by name.
    pub fn application(&self, name: &RepoName) -> Option<&Arc<Application>> {
        self.registry.applications.get(name)
    }

    /// All served application names, in byte order.
    pub fn names(&self) -> impl Iterator<Item = &RepoName> {
        self.registry.applications.keys()
    }

    /// The loaded registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Applications kept at their last good version.
    pub fn kept(&self) -> &[RepoName] {
        &self.kept
    }
}

/// The swappable handle shared by every connection.
pub type SharedCatalog = Arc<ArcSwap<Catalog>>;

/// A handle holding `catalog`.
pub fn shared(catalog: Catalog) -> SharedCatalog {
    Arc::new(ArcSwap::from_pointee(catalog))
}
