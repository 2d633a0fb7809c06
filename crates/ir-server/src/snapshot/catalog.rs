//! The served snapshot: an immutable verified [`Registry`] behind an
//! `ArcSwap`, so that request handlers read it without locks and a reload
//! can replace it atomically while requests in flight finish on the old one.

use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};

use arc_swap::ArcSwap;
use ir_oci::{Application, Registry, RepoName};

use prometheus_client::metrics::counter::Counter;

use crate::delivery::blob_cache::BlobCache;
use crate::delivery::seal_cache::Seals;
use crate::snapshot::policy_gate::{Gate, Views};

/// The download counters of one application.
#[derive(Debug, Clone, Default)]
pub struct DownloadCounters {
    /// Manifests (and indexes) sent.
    pub manifests: Counter,
    /// Blobs sent, whole or in ranges.
    pub blobs: Counter,
}

/// Where a catalog gets the download counters of its applications (the
/// metrics, when they are on). Resolved once per snapshot, so a request
/// only bumps an atomic.
pub trait DownloadCounting: Send + Sync {
    /// The counters of `application`, created if new.
    fn counters_of(&self, application: &str) -> DownloadCounters;
    /// Drops the counters of an application no longer served.
    fn forget(&self, application: &str);
}

/// What the HTTP layer serves from.
#[derive(Debug, Default)]
pub struct Catalog {
    registry: Registry,
    /// With a signature policy: the registry host `registry` was judged
    /// under, and the applications as judged under the other policy scopes
    /// of RA-TLS realms. `None`: no policy (a scope changes nothing).
    views: Option<(String, Arc<Views>)>,
    /// Applications served at their last good version because their
    /// current version failed verification.
    kept: Vec<RepoName>,
    /// With a signature policy: the applications as loaded, before the
    /// policy took anything out (what a kept application is judged again
    /// from).
    loaded: BTreeMap<RepoName, Arc<Application>>,
    /// Chunk seals of the blobs served so far from this snapshot.
    seals: Arc<Seals>,
    /// Verified copies of large blobs in memory, shared with the snapshots
    /// before and after this one.
    blob_cache: Arc<BlobCache>,
    /// Download counters of each served application (empty without
    /// metrics), resolved once per snapshot.
    downloads: HashMap<RepoName, DownloadCounters>,
    /// Where they come from, passed on to the next snapshot.
    counting: Option<Arc<dyn DownloadCounting>>,
}

impl std::fmt::Debug for dyn DownloadCounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownloadCounting")
    }
}

/// The download counters of the applications of `registry`.
fn download_counters(
    registry: &Registry,
    counting: Option<&Arc<dyn DownloadCounting>>,
) -> HashMap<RepoName, DownloadCounters> {
    match counting {
        Some(c) => registry
            .applications
            .keys()
            .map(|name| (name.clone(), c.counters_of(name.as_str())))
            .collect(),
        None => HashMap::new(),
    }
}

impl Catalog {
    /// Wraps a loaded registry, with the default seal budget and no blob
    /// cache (the binary sizes its cache from `--blob-cache`).
    pub fn new(registry: Registry) -> Self {
        Catalog::with_seal_budget(registry, crate::delivery::seal_cache::DEFAULT_BUDGET)
    }

    /// Wraps a loaded registry, keeping at most `seal_budget` bytes of
    /// chunk seals (0: none).
    pub fn with_seal_budget(registry: Registry, seal_budget: u64) -> Self {
        Catalog {
            downloads: HashMap::new(),
            counting: None,
            registry,
            views: None,
            kept: Vec::new(),
            loaded: BTreeMap::new(),
            seals: Arc::new(Seals::new(seal_budget)),
            blob_cache: BlobCache::new(0),
        }
    }

    /// The same snapshot, counting downloads per application with
    /// `counting` (and so will the snapshots that succeed it).
    pub fn counting_downloads(mut self, counting: Arc<dyn DownloadCounting>) -> Self {
        self.downloads = download_counters(&self.registry, Some(&counting));
        self.counting = Some(counting);
        self
    }

    /// The same snapshot with the applications kept at their last good
    /// version judged again by `gate`'s policy (they were judged by the
    /// policy in force when they were loaded).
    pub fn judged_again(mut self, gate: &Gate) -> (Self, Vec<ir_trust::enforce::Judgement>) {
        if self.kept.is_empty() {
            return (self, Vec::new());
        }
        let before = self.views.take();
        // Judged from the last good version as loaded: the served copy is
        // what the host's policy left of it, which another scope's policy
        // may judge differently.
        let kept = Registry {
            applications: self
                .kept
                .iter()
                .filter_map(|n| {
                    self.loaded
                        .get(n)
                        .or_else(|| self.registry.applications.get(n))
                        .map(|a| (n.clone(), a.clone()))
                })
                .collect(),
            ..Registry::default()
        };
        let judged = gate.apply(kept);
        self.registry
            .applications
            .extend(judged.registry.applications);
        self.loaded.extend(judged.loaded);
        if let Some((host, views)) = before {
            let mut views = Arc::unwrap_or_clone(views);
            for (scope, apps) in judged.views {
                views.entry(scope).or_default().extend(apps);
            }
            self.views = Some((host, Arc::new(views)));
        }
        (self, judged.judgements)
    }

    /// The same snapshot, serving large blobs from `cache` once they are
    /// in it.
    pub fn with_blob_cache(mut self, cache: Arc<BlobCache>) -> Self {
        self.blob_cache = cache;
        self
    }

    /// The next snapshot after a reload: `registry` as loaded, plus the
    /// previous version of every application that `registry` rejected but
    /// `self` served, so that a broken update never takes an application
    /// down. An application whose directory is gone is not kept. Seals are
    /// not carried over (files may have changed); the budget is. The blob
    /// cache is, minus the blobs no application serves any more.
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
        let mut loaded = BTreeMap::new();
        for name in &kept {
            let old = self.registry.applications[name].clone();
            registry.applications.insert(name.clone(), old);
            if let Some(as_loaded) = self.loaded.get(name) {
                loaded.insert(name.clone(), as_loaded.clone());
            }
        }
        let cached = self.blob_cache.digests();
        if !cached.is_empty() {
            // At most one pass over the new registry's blobs: each
            // application walks the smaller of its blobs and the copies.
            let mut unserved: std::collections::HashSet<_> = cached.into_iter().collect();
            for app in registry.applications.values() {
                if unserved.is_empty() {
                    break;
                }
                if app.blobs.len() < unserved.len() {
                    for d in app.blobs.keys() {
                        unserved.remove(d);
                    }
                } else {
                    unserved.retain(|d| !app.blobs.contains_key(d));
                }
            }
            self.blob_cache.retain(|d| !unserved.contains(d));
        }
        if let Some(c) = &self.counting {
            for gone in self
                .registry
                .applications
                .keys()
                .filter(|n| !registry.applications.contains_key(*n))
            {
                c.forget(gone.as_str());
            }
        }
        Catalog {
            downloads: download_counters(&registry, self.counting.as_ref()),
            counting: self.counting.clone(),
            registry,
            views: None,
            kept,
            loaded,
            seals: Arc::new(Seals::new(self.seals.budget())),
            blob_cache: self.blob_cache.clone(),
        }
    }

    /// The same snapshot with the signature policy's views: `host` is
    /// the registry host the snapshot was judged under, `views` the
    /// applications judged under other hosts (`None`: no policy).
    pub fn with_views(mut self, views: Option<(String, Views)>) -> Self {
        self.views = views.map(|(host, v)| (host, Arc::new(v)));
        self
    }

    /// The same snapshot, remembering the applications as loaded before
    /// the signature policy (`Judged::loaded`), added to those of the
    /// applications kept at their last good version.
    pub fn with_loaded(mut self, loaded: BTreeMap<RepoName, Arc<Application>>) -> Self {
        self.loaded.extend(loaded);
        self
    }

    /// An application by name.
    pub fn application(&self, name: &RepoName) -> Option<&Arc<Application>> {
        self.registry.applications.get(name)
    }

    /// An application by name as a client held to the signature policy
    /// scope `scope` sees it (an RA-TLS realm's `policy-scope`). A scope
    /// with no view (the realm's entry was added since the last load) sees
    /// nothing: fail closed until the next load.
    pub fn application_in(
        &self,
        scope: Option<&str>,
        name: &RepoName,
    ) -> Option<&Arc<Application>> {
        match (scope, &self.views) {
            (Some(scope), Some((host, views))) if scope != host => {
                views.get(scope).and_then(|v| v.get(name))
            }
            _ => self.application(name),
        }
    }

    /// Whether `name` at `reference` (a tag or digest) was loaded and
    /// verified but is not served to `scope` because the signature policy
    /// refused it (for refusal events; never for what is served).
    pub fn withheld_by_policy(
        &self,
        scope: Option<&str>,
        name: &RepoName,
        reference: &str,
    ) -> bool {
        let Some(loaded) = self.loaded.get(name) else {
            return false;
        };
        let has = |app: &Application| match ir_oci::Reference::parse(reference) {
            Ok(ir_oci::Reference::Tag(t)) => app.tags.contains_key(&t),
            Ok(ir_oci::Reference::Digest(d)) => app.manifests.contains_key(&d),
            Err(_) => false,
        };
        has(loaded) && !self.application_in(scope, name).is_some_and(|a| has(a))
    }

    /// All served application names, in byte order.
    pub fn names(&self) -> impl Iterator<Item = &RepoName> {
        self.registry.applications.keys()
    }

    /// The loaded registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The chunk seals of this snapshot.
    pub fn seals(&self) -> &Arc<Seals> {
        &self.seals
    }

    /// The verified copies of large blobs in memory.
    pub fn blob_cache(&self) -> &Arc<BlobCache> {
        &self.blob_cache
    }

    /// Counts a manifest (`blob == false`) or blob sent from `name`.
    pub fn count_download(&self, name: &RepoName, blob: bool) {
        if let Some(c) = self.downloads.get(name) {
            if blob {
                c.blobs.inc();
            } else {
                c.manifests.inc();
            }
        }
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
