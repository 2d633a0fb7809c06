//! The served snapshot: an immutable verified [`Registry`] behind an
//! `ArcSwap`, so that request handlers read it without locks and a reload
//! can replace it atomically while requests in flight finish on the old one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ir_oci::{Application, Registry, RepoName};

/// What the HTTP layer serves from.
#[derive(Debug)]
pub struct Catalog {
    registry: Registry,
}

impl Catalog {
    /// Wraps a loaded registry.
    pub fn new(registry: Registry) -> Self {
        Catalog { registry }
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
}

/// The swappable handle shared by every connection.
pub type SharedCatalog = Arc<ArcSwap<Catalog>>;

/// A handle holding `catalog`.
pub fn shared(catalog: Catalog) -> SharedCatalog {
    Arc::new(ArcSwap::from_pointee(catalog))
}
