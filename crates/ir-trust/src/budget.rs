//! How many bytes of signature material a judgement may read: per
//! application and per load, so that a root writer cannot make the server
//! read (and hold) without end, e.g. many images whose signatures all
//! point at one large bundle. Past a budget, every further read is refused
//! with the budget as its reason, and the signatures it would have read do
//! not count (fail closed).

use std::sync::atomic::{AtomicU64, Ordering};

use ir_oci::Digest;

use crate::signatures::ArtifactSource;

/// Bytes of signature blobs read for one application per judgement.
pub const PER_APPLICATION: u64 = 128 << 20;
/// Bytes of signature blobs read for every application of one load (every
/// policy scope included).
pub const PER_LOAD: u64 = 2 << 30;

/// A number of bytes that reads draw from. Safe to share between threads.
#[derive(Debug)]
pub struct Budget {
    what: String,
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes; `what` names it in refusals (`the load`,
    /// `application a/b`).
    pub fn new(what: impl Into<String>, limit: u64) -> Self {
        Budget {
            what: what.into(),
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The default budget of one load.
    pub fn per_load() -> Self {
        Budget::new("this load", PER_LOAD)
    }

    /// Bytes drawn so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn refusal(&self) -> String {
        format!(
            "signature budget of {} MiB for {} spent: not read (too much signature material)",
            self.limit >> 20,
            self.what
        )
    }

    /// Refuses when nothing is left.
    fn check(&self) -> Result<(), String> {
        if self.used() >= self.limit {
            Err(self.refusal())
        } else {
            Ok(())
        }
    }

    /// Draws `n` bytes, or refuses (and spends what is left).
    fn draw(&self, n: u64) -> Result<(), String> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.store(self.limit, Ordering::Relaxed);
            Err(self.refusal())
        } else {
            Ok(())
        }
    }
}

/// An [`ArtifactSource`] whose blob reads draw from budgets: none is read
/// once one is spent, and one that overdraws is refused.
pub struct Budgeted<'a> {
    inner: &'a dyn ArtifactSource,
    budgets: [&'a Budget; 2],
}

impl<'a> Budgeted<'a> {
    /// `inner`, drawing from both `application` and `load`.
    pub fn new(inner: &'a dyn ArtifactSource, application: &'a Budget, load: &'a Budget) -> Self {
        Budgeted {
            inner,
            budgets: [application, load],
        }
    }
}

impl ArtifactSource for Budgeted<'_> {
    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])> {
        self.inner.manifest(digest)
    }

    fn tagged(&self, tag: &str) -> Option<Digest> {
        self.inner.tagged(tag)
    }

    fn cosign_signature(&self, digest: &Digest) -> Option<Digest> {
        self.inner.cosign_signature(digest)
    }

    fn referrers(&self, digest: &Digest) -> Vec<Digest> {
        self.inner.referrers(digest)
    }

    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        for b in self.budgets {
            b.check()?;
        }
        let bytes = self.inner.blob(digest, limit)?;
        for b in self.budgets {
            b.draw(bytes.len() as u64)?;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_past_its_limit_and_stays_spent() {
        let b = Budget::new("application a", 10);
        assert!(b.draw(6).is_ok());
        let err = b.draw(6).unwrap_err();
        assert!(err.contains("application a"), "{err}");
        assert!(b.check().is_err());
    }
}
