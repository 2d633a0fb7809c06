//! Readiness: the small handle that the API port and the metrics listener
//! share to answer `/healthz` and `/readyz` (ready once the first load
//! finished; not ready again once shutdown was requested).

use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;

/// Liveness path on the main port (outside `/v2/`, so it cannot collide).
pub const HEALTH_PATH: &str = "/healthz";
/// Readiness path on the main port: 200 once the first load finished.
pub const READY_PATH: &str = "/readyz";

/// A condition that takes a ready server out of rotation, with its reason
/// (e.g. receipts that cannot be written).
pub struct Degraded(Box<dyn Fn() -> Option<&'static str> + Send + Sync>);

impl std::fmt::Debug for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Degraded(..)")
    }
}

/// Whether the server is ready, and whether it is shutting down.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once the first load finished; until then the API answers 503.
    pub ready: AtomicBool,
    /// Set once shutdown was requested: `/readyz` answers 503 so that
    /// balancers take the replica out while its last requests finish.
    pub draining: AtomicBool,
    /// Asked at each `/readyz` once ready.
    degraded: std::sync::OnceLock<Degraded>,
}

impl Readiness {
    /// Ready at once (`true`) or once [`Readiness::set_ready`] is called.
    pub fn new(ready: bool) -> Self {
        Readiness {
            ready: AtomicBool::new(ready),
            draining: AtomicBool::new(false),
            degraded: std::sync::OnceLock::new(),
        }
    }

    /// Adds the condition `/readyz` also asks (`Some(reason)`: not ready).
    pub fn set_degraded(&self, check: impl Fn() -> Option<&'static str> + Send + Sync + 'static) {
        let _ = self.degraded.set(Degraded(Box::new(check)));
    }

    /// Marks the first load as finished.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// True once the first load finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks shutdown as requested (see [`Readiness::draining`]).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once shutdown was requested.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The answer to a probe path (`/healthz`, `/readyz`) as status and
    /// text, or `None` for any other path. The one definition of both
    /// probes, served on the API port and on the metrics listener.
    pub fn probe(&self, path: &str) -> Option<(StatusCode, &'static str)> {
        match path {
            HEALTH_PATH => Some((StatusCode::OK, "ok\n")),
            READY_PATH if self.is_draining() => {
                Some((StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"))
            }
            READY_PATH if self.is_ready() => match self.degraded.get().and_then(|d| d.0()) {
                Some(reason) => Some((StatusCode::SERVICE_UNAVAILABLE, reason)),
                None => Some((StatusCode::OK, "ok\n")),
            },
            READY_PATH => Some((StatusCode::SERVICE_UNAVAILABLE, "not ready\n")),
            _ => None,
        }
    }
}
