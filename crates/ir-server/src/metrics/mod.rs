//! Prometheus metrics, served on a separate listener (`--metrics-addr`)
//! together with `/healthz` and `/readyz`.
//!
//! Built on [`prometheus_client`] (the Prometheus project's own Rust
//! client; OpenMetrics text). The metrics live in one [`Metrics`], created
//! by the application when `--metrics-addr` is given and handed to what
//! records (the API state, the transports, the catalog, the reloader);
//! without it they hold `None` and record nothing, so a server without
//! `--metrics-addr` pays nothing measurable.
//!
//! The request path takes no lock: label sets are resolved once into
//! lock-free cells (a counter per endpoint × method × common status), and
//! the latency histogram is the atomic [`AtomicHistogram`]. Gauges that
//! describe the served snapshot (applications, readiness) are computed
//! when scraped.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ir_server_http_requests_total` | counter | `endpoint`, `method`, `status` |
//! | `ir_server_http_response_body_bytes_total` | counter | `endpoint` |
//! | `ir_server_http_request_duration_seconds` | histogram | `endpoint` |
//! | `ir_server_open_connections` | gauge | |
//! | `ir_server_connections_total` | counter | |
//! | `ir_server_applications` | gauge | `state` (`served`, `rejected`, `kept`) |
//! | `ir_server_orphan_files` | gauge | |
//! | `ir_server_blob_seal_memory_bytes` | gauge | (chunk seals held or being built) |
//! | `ir_server_blob_cache_bytes` | gauge | (verified blob copies in memory, held or being filled) |
//! | `ir_server_ready` | gauge | (0 while loading and once shutting down) |
//! | `ir_server_verified_blobs_total` | counter | |
//! | `ir_server_verified_bytes_total` | counter | |
//! | `ir_server_reused_blobs_total` | counter | |
//! | `ir_server_verification_duration_seconds` | histogram | |
//! | `ir_server_reload_duration_seconds` | histogram | |
//! | `ir_server_reloads_total` | counter | `outcome` (`ok`, `failed`) |
//! | `ir_server_input_reloads_total` | counter | `input` (`--htpasswd`, `--access-map`, `--token-key`, `--token-jwks`), `outcome` (`ok`, `failed`): SIGHUP rereads |
//! | `ir_server_ratls_attestations_total` | counter | `outcome`, `reason` |
//! | `ir_server_application_downloads_total` | counter | `application`, `kind` (`manifest`, `blob`): GETs answered 200 or 206; one series per application served |
//! | `ir_server_load_applications` | gauge | `state` (`found`, `checked`): progress of the running (or last) first load |
//! | `ir_server_load_bytes` | gauge | `state` (`found`, `checked`): large-blob bytes of that load |
//! | `ir_server_build_info` | info | `version` |
//! | `process_*` | | CPU seconds, resident and virtual memory, open and maximum file descriptors, threads, start time (Linux, read from `/proc` when scraped) |

pub mod audit;
pub mod histogram;
pub mod listener;
pub mod process;
pub mod status;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use self::histogram::AtomicHistogram;
use crate::api::readiness::Readiness;
use crate::api::route::Endpoint;
use crate::delivery::Body;
use crate::snapshot::catalog::{Catalog, DownloadCounters, DownloadCounting};

/// Methods with their own label value; anything else is `OTHER`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];
/// Statuses the server commonly answers, resolved to lock-free cells;
/// others go through the family's lookup.
const STATUSES: [u16; 10] = [200, 206, 304, 400, 404, 405, 416, 429, 500, 503];

/// Distinct (outcome, reason) pairs kept for attestations; further reasons
/// are counted as `other`, so a caller passing free text cannot blow up
/// the number of series.
pub const MAX_ATTESTATION_SERIES: usize = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InputLabels {
    input: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DownloadLabels {
    application: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestationLabels {
    outcome: String,
    reason: String,
}

type HistogramFamily = Family<EndpointLabels, AtomicHistogram, fn() -> AtomicHistogram>;

fn latency_histogram() -> AtomicHistogram {
    AtomicHistogram::new(histogram::LATENCY_BUCKETS)
}

/// Every metric of the server, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_cells: Box<[OnceLock<Counter>]>,
    body_bytes: Family<EndpointLabels, Counter>,
    body_bytes_cells: [OnceLock<Counter>; 7],
    latency: HistogramFamily,
    latency_cells: [OnceLock<AtomicHistogram>; 7],
    open_connections: Gauge,
    connections: Counter,
    applications: Family<StateLabels, Gauge>,
    orphans: Gauge,
    seal_memory: Gauge,
    blob_cache: Gauge,
    ready: Gauge,
    verified_blobs: Counter,
    verified_bytes: Counter,
    reused_blobs: Counter,
    verification_duration: Histogram,
    reload_duration: Histogram,
    reloads: Family<OutcomeLabels, Counter>,
    input_reloads: Family<InputLabels, Counter>,
    attestations: Family<AttestationLabels, Counter>,
    attestation_series: Mutex<HashSet<(String, String)>>,
    downloads: Family<DownloadLabels, Counter>,
    load_applications: Family<StateLabels, Gauge>,
    load_bytes: Family<StateLabels, Gauge>,
    images_refused: Family<ReasonLabels, Gauge>,
    process: process::ProcessMetrics,
    /// Receipts and events, when on.
    audit: OnceLock<audit::AuditMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics with its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ir_server");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by endpoint kind, method and status",
            requests.clone(),
        );
        let body_bytes = Family::<EndpointLabels, Counter>::default();
        registry.register_with_unit(
            "http_response_body",
            "Bytes of response bodies served (as committed by Content-Length; 0 for HEAD and 304)",
            Unit::Bytes,
            body_bytes.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from receiving a request to its response head (bodies stream afterwards)",
            Unit::Seconds,
            latency.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open on the API port (including those in their TLS handshake)",
            open_connections.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "connections",
            "Connections accepted on the API port",
            connections.clone(),
        );
        let applications = Family::<StateLabels, Gauge>::default();
        registry.register(
            "applications",
            "Applications served (kept ones included), rejected by the last load, and kept at their last good version",
            applications.clone(),
        );
        let orphans = Gauge::default();
        registry.register(
            "orphan_files",
            "Files under blobs/ that nothing reaches (never served), as of the last load",
            orphans.clone(),
        );
        let seal_memory = Gauge::default();
        registry.register_with_unit(
            "blob_seal_memory",
            "Memory held by chunk seals of downloaded blobs, and reserved by seals being built (bounded by --seal-memory)",
            Unit::Bytes,
            seal_memory.clone(),
        );
        let blob_cache = Gauge::default();
        registry.register_with_unit(
            "blob_cache",
            "Memory held by verified copies of large blobs, and reserved by copies being filled (bounded by --blob-cache)",
            Unit::Bytes,
            blob_cache.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 once the first load finished, else 0",
            ready.clone(),
        );
        let verified_blobs = Counter::default();
        registry.register(
            "verified_blobs",
            "Blobs (manifests, indexes, configs, layers) of verified applications hashed by loads and reloads",
            verified_blobs.clone(),
        );
        let verified_bytes = Counter::default();
        registry.register_with_unit(
            "verified",
            "Bytes of verified applications hashed by loads and reloads",
            Unit::Bytes,
            verified_bytes.clone(),
        );
        let reused_blobs = Counter::default();
        registry.register(
            "reused_blobs",
            "Blobs recognised as unchanged by a reload and not hashed again",
            reused_blobs.clone(),
        );
        let verification_duration = Histogram::new(exponential_buckets(0.01, 4.0, 9));
        registry.register_with_unit(
            "verification_duration",
            "Wall time of scanning and verifying the root (first load and reloads)",
            Unit::Seconds,
            verification_duration.clone(),
        );
        let reload_duration = Histogram::new(exponential_buckets(0.01, 4.0, 9));
        registry.register_with_unit(
            "reload_duration",
            "Wall time of reloads (SIGHUP or --watch), failed ones included",
            Unit::Seconds,
            reload_duration.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads by outcome: ok (snapshot swapped) or failed (root unreadable; previous content kept)",
            reloads.clone(),
        );
        let input_reloads = Family::<InputLabels, Counter>::default();
        registry.register(
            "input_reloads",
            "SIGHUP rereads of the authentication and access files by input and outcome: ok (in force) or failed (the previous one stays)",
            input_reloads.clone(),
        );
        let attestations = Family::<AttestationLabels, Counter>::default();
        registry.register(
            "ratls_attestations",
            "RA-TLS client attestations by outcome and reason",
            attestations.clone(),
        );
        let downloads = Family::<DownloadLabels, Counter>::default();
        registry.register(
            "application_downloads",
            "Manifest and blob GETs answered 200 or 206, per application served",
            downloads.clone(),
        );
        let load_applications = Family::<StateLabels, Gauge>::default();
        registry.register(
            "load_applications",
            "Applications found and checked so far by the first load (reported every few seconds while it runs)",
            load_applications.clone(),
        );
        let load_bytes = Family::<StateLabels, Gauge>::default();
        registry.register_with_unit(
            "load",
            "Bytes of large blobs found and checked so far by the first load",
            Unit::Bytes,
            load_bytes.clone(),
        );
        let images_refused = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "images_refused",
            "Tags not served because the signature policy refuses their image, by reason, as of the last load",
            images_refused.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let cells = Endpoint::ALL.len() * (METHODS.len() + 1) * STATUSES.len();
        Metrics {
            registry,
            requests,
            request_cells: (0..cells).map(|_| OnceLock::new()).collect(),
            body_bytes,
            body_bytes_cells: Default::default(),
            latency,
            latency_cells: Default::default(),
            open_connections,
            connections,
            applications,
            orphans,
            seal_memory,
            blob_cache,
            ready,
            verified_blobs,
            verified_bytes,
            reused_blobs,
            verification_duration,
            reload_duration,
            reloads,
            input_reloads,
            attestations,
            attestation_series: Mutex::new(HashSet::new()),
            downloads,
            load_applications,
            load_bytes,
            images_refused,
            process: process::ProcessMetrics::new(),
            audit: OnceLock::new(),
        }
    }

    /// The download counters of `application`, created if new. The
    /// catalog resolves them once per snapshot, so a request only bumps
    /// an atomic (no label look-up, no allocation).
    pub fn downloads_of(&self, application: &str) -> DownloadCounters {
        let counter = |kind| {
            self.downloads
                .get_or_create(&DownloadLabels {
                    application: application.to_string(),
                    kind,
                })
                .clone()
        };
        DownloadCounters {
            manifests: counter("manifest"),
            blobs: counter("blob"),
        }
    }

    /// Drops the series of an application no longer served, so that the
    /// label set stays bounded by the applications that exist.
    pub fn forget_application(&self, application: &str) {
        for kind in ["manifest", "blob"] {
            self.downloads.remove(&DownloadLabels {
                application: application.to_string(),
                kind,
            });
        }
    }

    /// Records one answered request.
    pub fn request(
        &self,
        endpoint: Endpoint,
        method: &Method,
        status: u16,
        body_bytes: u64,
        elapsed: Duration,
    ) {
        let m = METHODS
            .iter()
            .position(|x| x == method)
            .unwrap_or(METHODS.len());
        let labels = || RequestLabels {
            endpoint: endpoint.as_str(),
            method: METHODS.get(m).map_or("OTHER", |x| x.as_str()),
            status,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(s) => {
                let i = (endpoint.index() * (METHODS.len() + 1) + m) * STATUSES.len() + s;
                self.request_cells[i]
                    .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                    .inc();
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
        let e = endpoint.index();
        let labels = || EndpointLabels {
            endpoint: endpoint.as_str(),
        };
        if body_bytes > 0 {
            self.body_bytes_cells[e]
                .get_or_init(|| self.body_bytes.get_or_create(&labels()).clone())
                .inc_by(body_bytes);
        }
        self.latency_cells[e]
            .get_or_init(|| self.latency.get_or_create(&labels()).clone())
            .observe(elapsed);
    }

    /// Counts a newly accepted connection; it counts as open until the
    /// returned guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections.inc();
        self.open_connections.inc();
        ConnectionGuard {
            gauge: self.open_connections.clone(),
        }
    }

    /// Records a finished load or reload's verification: what it hashed and
    /// how long it took.
    pub fn verified(&self, registry: &ir_oci::Registry) {
        let blobs: usize = registry
            .applications
            .values()
            .map(|a| a.blobs.len() + a.manifests.len())
            .sum();
        self.verified_blobs
            .inc_by(blobs.saturating_sub(registry.blobs_reused) as u64);
        self.reused_blobs.inc_by(registry.blobs_reused as u64);
        self.verified_bytes.inc_by(registry.bytes_verified());
        self.verification_duration
            .observe(registry.elapsed.as_secs_f64());
    }

    /// Records the end of a reload.
    pub fn reload_finished(&self, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
        self.reload_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a reread of an input file (`--htpasswd`, `--access-map`, ...).
    pub fn input_reloaded(&self, input: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.input_reloads
            .get_or_create(&InputLabels { input, outcome })
            .inc();
    }

    /// Counts one RA-TLS attestation of a client.
    ///
    /// `outcome` is `accepted` or `refused`; `reason` is a short fixed
    /// token, never free text or an error message: `ok` for accepted
    /// realms, and for refusals the attestor's reasons (`no_certificate`,
    /// `token_parse`, `challenge_mismatch`, `rim_mismatch`,
    /// `veraison_unreachable`, `veraison_timeout`, …). At most
    /// [`MAX_ATTESTATION_SERIES`] distinct pairs are kept; later new
    /// reasons count as `other`.
    pub fn attestation(&self, outcome: &str, reason: &str) {
        let mut key = (outcome.to_string(), reason.to_string());
        {
            let mut seen = self
                .attestation_series
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !seen.contains(&key) {
                if seen.len() >= MAX_ATTESTATION_SERIES {
                    key.1 = "other".to_string();
                }
                seen.insert(key.clone());
            }
        }
        let (outcome, reason) = key;
        self.attestations
            .get_or_create(&AttestationLabels { outcome, reason })
            .inc();
    }

    /// Sets the gauges that describe the served snapshot `catalog` and
    /// `readiness` (a draining replica is not ready).
    pub fn observe_state(&self, catalog: &Catalog, readiness: &Readiness) {
        let registry = catalog.registry();
        for (name, n) in [
            ("served", registry.applications.len()),
            ("rejected", registry.rejected.len()),
            ("kept", catalog.kept().len()),
        ] {
            self.applications
                .get_or_create(&StateLabels { state: name })
                .set(n as i64);
        }
        self.orphans.set(registry.orphans.len() as i64);
        self.seal_memory
            .set(i64::try_from(catalog.seals().used()).unwrap_or(i64::MAX));
        self.blob_cache
            .set(i64::try_from(catalog.blob_cache().used()).unwrap_or(i64::MAX));
        self.ready
            .set(i64::from(readiness.is_ready() && !readiness.is_draining()));
    }

    /// Also reports the receipts' and events' counters of `audit`.
    pub fn observe_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit::AuditMetrics::new(audit));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        self.process.encode(&mut out);
        if let Some(audit) = self.audit.get() {
            audit.encode(&mut out);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// Keeps a connection counted in `ir_server_open_connections`.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// Records an answered request (the hook in [`crate::api::handle`]):
    /// its endpoint kind, method, status, body size (from the body's exact
    /// size, so 0 for HEAD and 304) and latency.
    pub fn record_request(
        &self,
        endpoint: Endpoint,
        method: &Method,
        response: &http::Response<Body>,
        started: Instant,
    ) {
        let bytes = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        self.request(
            endpoint,
            method,
            response.status().as_u16(),
            bytes,
            started.elapsed(),
        );
    }

    /// Sets the number of tags the signature policy refuses, by reason
    /// (every reason is reported, 0 included, once a policy is in force).
    pub fn images_refused(&self, by_reason: &[(&'static str, u64)]) {
        for (reason, n) in by_reason {
            self.images_refused
                .get_or_create(&ReasonLabels { reason })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Records how far the first load has got (see
    /// [`crate::snapshot::load_progress`]).
    pub fn load_progress(&self, p: &ir_oci::ProgressSnapshot) {
        let set = |family: &Family<StateLabels, Gauge>, state, v: u64| {
            family
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.load_applications, "found", p.applications_total);
        set(&self.load_applications, "checked", p.applications_done);
        set(&self.load_bytes, "found", p.bytes_total);
        set(&self.load_bytes, "checked", p.bytes_done);
    }
}

impl DownloadCounting for Metrics {
    fn counters_of(&self, application: &str) -> DownloadCounters {
        self.downloads_of(application)
    }

    fn forget(&self, application: &str) {
        self.forget_application(application);
    }
}

/// Times a reload: dropped without [`ReloadTimer::succeeded`], the reload
/// counts as failed, so every early return of a reload is recorded.
#[derive(Debug)]
pub struct ReloadTimer {
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    done: bool,
}

impl ReloadTimer {
    /// Starts timing a reload, recorded in `metrics` (if any).
    pub fn start(metrics: Option<Arc<Metrics>>) -> Self {
        ReloadTimer {
            metrics,
            started: Instant::now(),
            done: false,
        }
    }

    /// The reload swapped in a new snapshot.
    pub fn succeeded(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, ok: bool) {
        if !self.done {
            self.done = true;
            if let Some(m) = &self.metrics {
                m.reload_finished(ok, self.started.elapsed());
            }
        }
    }
}

impl Drop for ReloadTimer {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn requests_are_counted_by_labels() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.request(
                Endpoint::Manifest,
                &Method::GET,
                200,
                100,
                Duration::from_millis(1),
            );
        }
        m.request(Endpoint::Blob, &Method::HEAD, 200, 0, Duration::ZERO);
        m.request(
            Endpoint::Other,
            &Method::from_bytes(b"BREW").unwrap(),
            418,
            5,
            Duration::ZERO,
        );
        let text = m.encode();
        assert!(text.contains(
            "ir_server_http_requests_total{endpoint=\"manifest\",method=\"GET\",status=\"200\"} 3\n"
        ));
        assert!(text.contains(
            "ir_server_http_requests_total{endpoint=\"blob\",method=\"HEAD\",status=\"200\"} 1\n"
        ));
        assert!(text.contains(
            "ir_server_http_requests_total{endpoint=\"other\",method=\"OTHER\",status=\"418\"} 1\n"
        ));
        assert!(
            text.contains("ir_server_http_response_body_bytes_total{endpoint=\"manifest\"} 300\n")
        );
        assert!(line(
            &text,
            "ir_server_http_response_body_bytes_total{endpoint=\"blob\"}"
        )
        .is_none());
        assert!(text
            .contains("ir_server_http_request_duration_seconds_count{endpoint=\"manifest\"} 3\n"));
        assert!(text.contains("ir_server_build_info{version="));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn connections_and_reloads() {
        let m = Metrics::new();
        let a = m.connection_opened();
        let b = m.connection_opened();
        drop(a);
        assert!(m.encode().contains("ir_server_open_connections 1\n"));
        drop(b);
        let text = m.encode();
        assert!(text.contains("ir_server_open_connections 0\n"));
        assert!(text.contains("ir_server_connections_total 2\n"));
        m.reload_finished(true, Duration::from_millis(20));
        m.reload_finished(false, Duration::from_millis(20));
        let text = m.encode();
        assert!(text.contains("ir_server_reloads_total{outcome=\"ok\"} 1\n"));
        assert!(text.contains("ir_server_reloads_total{outcome=\"failed\"} 1\n"));
        assert!(text.contains("ir_server_reload_duration_seconds_count 2\n"));
    }

    #[test]
    fn attestation_series_are_bounded() {
        let m = Metrics::new();
        m.attestation("accepted", "ok");
        m.attestation("accepted", "ok");
        for i in 0..(MAX_ATTESTATION_SERIES + 10) {
            m.attestation("rejected", &format!("reason {i}"));
        }
        let text = m.encode();
        assert!(text.contains(
            "ir_server_ratls_attestations_total{outcome=\"accepted\",reason=\"ok\"} 2\n"
        ));
        let series = text
            .lines()
            .filter(|l| l.starts_with("ir_server_ratls_attestations_total{"))
            .count();
        assert_eq!(series, MAX_ATTESTATION_SERIES + 1, "{text}");
        assert!(text.contains(
            "ir_server_ratls_attestations_total{outcome=\"rejected\",reason=\"other\"} 11\n"
        ));
    }
}
