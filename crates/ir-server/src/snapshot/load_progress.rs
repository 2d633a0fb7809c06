//! Loading made visible while it runs: every few seconds a log line
//! (applications and bytes checked of those found), the
//! `ir_server_load_*` gauges, and systemd's `STATUS=` with
//! `EXTEND_TIMEOUT_USEC=` so that a large registry that keeps progressing
//! is not killed by the unit's start timeout, while a load that stops
//! progressing still is.

use std::sync::Arc;
use std::time::Duration;

use ir_oci::{report::human_bytes, LoadProgress, ProgressSnapshot};

use crate::metrics::Metrics;

/// How often progress is reported.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// How far each report extends systemd's start timeout: a few intervals,
/// so one slow tick does not end the start, and a stalled load fails
/// within about this long after its last progress.
const EXTEND: Duration = Duration::from_secs(60);

/// The one-line description of `s` (log line and systemd status).
pub fn describe(s: &ProgressSnapshot) -> String {
    let mut line = format!(
        "loading: {} of {} applications checked",
        s.applications_done, s.applications_total
    );
    if s.bytes_total > 0 {
        line.push_str(&format!(
            ", {} of {} of large blobs",
            human_bytes(s.bytes_done),
            human_bytes(s.bytes_total)
        ));
    }
    line
}

/// Reports `progress` every [`INTERVAL`] (also to `metrics`) until the task is dropped or
/// aborted (the caller aborts it once the load ends).
pub async fn report(progress: Arc<LoadProgress>, metrics: Option<Arc<Metrics>>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    let mut last = ProgressSnapshot::default();
    loop {
        tick.tick().await;
        let now = progress.snapshot();
        let line = describe(&now);
        tracing::info!("{line}");
        if let Some(m) = &metrics {
            m.load_progress(&now);
        }
        let mut message = format!("STATUS={line}");
        if now != last {
            message.push_str(&format!("\nEXTEND_TIMEOUT_USEC={}", EXTEND.as_micros()));
        }
        crate::process::sd_notify::notify(&message);
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_applications_and_bytes() {
        let mut s = ProgressSnapshot {
            applications_total: 10,
            applications_done: 4,
            ..Default::default()
        };
        assert_eq!(describe(&s), "loading: 4 of 10 applications checked");
        s.bytes_total = 3 << 20;
        s.bytes_done = 1 << 20;
        assert!(describe(&s).ends_with("of large blobs"), "{}", describe(&s));
    }
}
