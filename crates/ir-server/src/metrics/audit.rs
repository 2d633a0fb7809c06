//! Receipts' and events' counters, read from the audit at each scrape
//! (the audit keeps them as atomics; it does not know about metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::audit::Audit;

/// The audit's metrics and where they are read.
#[derive(Debug)]
pub struct AuditMetrics {
    registry: Registry,
    audit: Arc<Audit>,
    /// Counters with the value last read, to add only what is new.
    counters: [(Counter, AtomicU64); 6],
    healthy: Gauge,
}

impl AuditMetrics {
    /// Metrics of `audit`.
    pub fn new(audit: Arc<Audit>) -> Self {
        let mut registry = Registry::with_prefix("ir_server");
        let counters: [(Counter, AtomicU64); 6] = Default::default();
        let described = [
            (
                "receipts_written",
                "delivery receipts written to the journal",
            ),
            (
                "receipts_dropped",
                "delivery receipts dropped: the journal writer was behind",
            ),
            (
                "receipts_write_errors",
                "journal writes that failed (e.g. a full disk)",
            ),
            ("events_sent", "events the --events-url endpoint accepted"),
            (
                "events_retried",
                "event batches posted again after a failure",
            ),
            (
                "events_dropped",
                "events dropped: queue full or out of attempts",
            ),
        ];
        for ((name, help), (counter, _)) in described.into_iter().zip(&counters) {
            registry.register(name, help, counter.clone());
        }
        let healthy = Gauge::default();
        registry.register(
            "receipts_healthy",
            "1 while the receipts journal keeps up and can be written",
            healthy.clone(),
        );
        Self {
            registry,
            audit,
            counters,
            healthy,
        }
    }

    /// Reads the audit and appends the metrics to `out`.
    pub fn encode(&self, out: &mut String) {
        let c = self.audit.counters();
        let now = [
            c.receipts_written,
            c.receipts_dropped,
            c.receipts_write_errors,
            c.events_sent,
            c.events_retried,
            c.events_dropped,
        ];
        for ((counter, seen), value) in self.counters.iter().zip(now) {
            let before = seen.swap(value, Ordering::Relaxed);
            counter.inc_by(value.saturating_sub(before));
        }
        self.healthy.set(i64::from(self.audit.healthy()));
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditConfig, ReceiptsConfig};

    #[test]
    fn the_journal_counters_are_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        let config = AuditConfig {
            receipts: Some(ReceiptsConfig {
                dir: dir.path().join("journal"),
                key,
                checkpoint_every: 10,
                max_file_bytes: 1 << 20,
            }),
            events: None,
        };
        let audit = Arc::new(Audit::start(&config).unwrap());
        let identity = Arc::new(ir_receipts::Identity::User { name: "u".into() });
        let peer = "127.0.0.1:1".parse().unwrap();
        audit.delivered(
            peer,
            Some(&identity),
            None,
            "app",
            Some("1"),
            "sha256:00",
            "t",
        );
        audit.delivered(peer, None, None, "app", Some("1"), "sha256:00", "t");
        let metrics = AuditMetrics::new(audit.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut out = String::new();
            metrics.encode(&mut out);
            if out.contains("ir_server_receipts_written_total 1") {
                assert!(out.contains("ir_server_receipts_healthy 1"), "{out}");
                assert!(out.contains("ir_server_events_dropped_total 0"), "{out}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{out}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
