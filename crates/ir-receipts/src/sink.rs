//! Handing records to the journal without waiting for the disk or waking
//! anyone: a request appends to a bounded in-memory batch (one uncontended
//! lock, and no allocation once the batch buffers have grown: the text is
//! copied into one shared buffer, the identity and digests are `Arc`s),
//! and one writer thread swaps the batch for its emptied one every few
//! milliseconds and appends it. A full batch drops the record and counts it; a failed write
//! counts and logs; either marks the journal unhealthy until the next
//! checkpoint is written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::entry::Recipient;
use crate::{DeliveryRef, Head, Journal};

/// How often the writer takes the waiting records.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// What the writer has done; read by metrics and health.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Deliveries written.
    pub written: AtomicU64,
    /// Deliveries dropped because too many were waiting.
    pub dropped: AtomicU64,
    /// Writes (records or checkpoints) that failed.
    pub write_errors: AtomicU64,
    unhealthy: AtomicBool,
}

impl SinkStats {
    /// False from a drop or a failed write until a checkpoint is written.
    pub fn healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }
}

/// Records waiting for the writer, and whether it should stop.
#[derive(Debug, Default)]
struct Waiting {
    batch: Batch,
    closing: bool,
}

/// Queued records: their text fields one after the other in `text`,
/// their recipients once each in `recipients` (a request then clones no
/// `Arc` that another core must later drop: records of the same client
/// follow one another).
#[derive(Debug, Default)]
struct Batch {
    text: String,
    records: Vec<Queued>,
    recipients: Vec<Recipient>,
}

/// How many of the latest recipients a record is compared with before
/// its own is added.
const RECENT_RECIPIENTS: usize = 8;

/// One queued record; its text is `text[start..]` up to the next one's.
#[derive(Debug)]
struct Queued {
    at: SystemTime,
    /// Where the application, tag, digest and media type end in `text`.
    ends: [usize; 4],
    tagged: bool,
    /// Its index in `recipients`.
    recipient: usize,
}

impl Batch {
    fn push(&mut self, at: SystemTime, d: &DeliveryRef<'_>) {
        let mut ends = [0; 4];
        for (end, field) in
            ends.iter_mut()
                .zip([d.application, d.tag.unwrap_or(""), d.digest, d.media_type])
        {
            self.text.push_str(field);
            *end = self.text.len();
        }
        let known = self.recipients.len().saturating_sub(RECENT_RECIPIENTS);
        let recipient = match self.recipients[known..].iter().rposition(|r| r.received(d)) {
            Some(i) => known + i,
            None => {
                self.recipients.push(Recipient::of(d));
                self.recipients.len() - 1
            }
        };
        self.records.push(Queued {
            at,
            ends,
            tagged: d.tag.is_some(),
            recipient,
        });
    }

    /// Each record, as the journal takes it.
    fn each(&self, mut f: impl FnMut(SystemTime, DeliveryRef<'_>)) {
        let mut start = 0;
        for q in &self.records {
            let [application, tag, digest, media_type] = q.ends.map(|end| {
                let field = &self.text[start..end];
                start = end;
                field
            });
            let recipient = &self.recipients[q.recipient];
            f(
                q.at,
                DeliveryRef {
                    application,
                    tag: q.tagged.then_some(tag),
                    digest,
                    media_type,
                    identity: &recipient.identity,
                    policy_scope: recipient.policy_scope.as_ref(),
                    policy_digest: recipient.policy_digest.as_ref(),
                    reference_values_digest: recipient.reference_values_digest.as_ref(),
                },
            );
        }
    }

    /// Empties the batch, keeping its buffers for the next one, but not
    /// more than a busy one needs: a burst does not pin its memory.
    fn clear(&mut self) {
        const KEEP_RECORDS: usize = 4096;
        let (records, text) = (self.records.len(), self.text.len());
        self.text.clear();
        self.records.clear();
        self.recipients.clear();
        if records <= KEEP_RECORDS && self.records.capacity() > 2 * KEEP_RECORDS {
            self.records.shrink_to(KEEP_RECORDS);
            self.recipients.shrink_to(KEEP_RECORDS);
            self.text.shrink_to(text.max(KEEP_RECORDS * 256));
        }
    }
}

#[derive(Debug)]
struct Shared {
    waiting: Mutex<Waiting>,
    /// Signalled only to stop the writer (never per record).
    wake: Condvar,
    capacity: usize,
    stats: Arc<SinkStats>,
}

/// The server's handle on the journal.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Starts the writer thread: up to `capacity` records wait; with
    /// nothing new for `idle_checkpoint`, unsigned records are signed.
    pub fn spawn(journal: Journal, capacity: usize, idle_checkpoint: Duration) -> Self {
        Self::spawn_reporting(journal, capacity, idle_checkpoint, |_, _| {})
    }

    /// [`Sink::spawn`], and each time a checkpoint has synced the file,
    /// the writer calls `on_checkpoint` with the journal's new head and
    /// whether it is the closing checkpoint, to keep the head off this
    /// machine (it must not wait).
    pub fn spawn_reporting(
        journal: Journal,
        capacity: usize,
        idle_checkpoint: Duration,
        on_checkpoint: impl Fn(&Head, bool) + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            wake: Condvar::new(),
            capacity: capacity.max(1),
            stats: Arc::default(),
        });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("receipts".into())
            .spawn(move || write_loop(journal, &for_writer, idle_checkpoint, on_checkpoint))
            .expect("spawning the receipts writer");
        Self {
            shared,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues one record made now; never waits on the disk.
    pub fn record<'a>(&self, delivery: impl Into<DeliveryRef<'a>>) {
        let delivery = delivery.into();
        let at = SystemTime::now();
        let queued = {
            let mut w = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if w.batch.records.len() < self.shared.capacity && !w.closing {
                w.batch.push(at, &delivery);
                true
            } else {
                false
            }
        };
        if !queued {
            let stats = &self.shared.stats;
            let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed);
            stats.unhealthy.store(true, Ordering::Relaxed);
            if dropped.is_power_of_two() || dropped == 0 {
                tracing::error!(
                    dropped = dropped + 1,
                    "receipts: the journal writer is behind, a delivery record was dropped"
                );
            }
        }
    }

    /// What the writer has done.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.shared.stats.clone()
    }

    /// Writes what is waiting and the closing checkpoint, and stops the
    /// writer.
    pub fn close(&self) {
        let writer = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(writer) = writer {
            self.shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .closing = true;
            self.shared.wake.notify_one();
            let _ = writer.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(
    mut journal: Journal,
    shared: &Shared,
    idle_checkpoint: Duration,
    on_checkpoint: impl Fn(&Head, bool),
) {
    let stats = &shared.stats;
    let mut last_record = Instant::now();
    let mut reported = journal.head().seq;
    let mut report = |journal: &Journal, closing: bool| {
        let head = journal.head();
        if head.seq > reported {
            reported = head.seq;
            on_checkpoint(&head, closing);
        }
    };
    // Swapped with the waiting one: both keep their capacity.
    let mut batch = Batch::default();
    loop {
        let closing = {
            let w = shared.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let (mut w, _) = shared
                .wake
                .wait_timeout_while(w, DRAIN_EVERY, |w| !w.closing)
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut w.batch, &mut batch);
            w.closing
        };
        if !batch.records.is_empty() {
            last_record = Instant::now();
        }
        batch.each(|at, delivery| {
            if let Err(e) = journal.append_at(delivery, at) {
                failed(stats, &e);
            }
        });
        batch.clear();
        match journal.flush() {
            // Healthy again once a checkpoint (here, every N records) is written.
            Ok(()) if journal.unsigned() == 0 => stats.unhealthy.store(false, Ordering::Relaxed),
            Ok(()) => {}
            Err(e) => failed(stats, &e),
        }
        stats.written.store(journal.delivered(), Ordering::Relaxed);
        if closing {
            let closed = journal.close();
            if let Err(e) = &closed {
                failed(stats, e);
            }
            report(&journal, closed.is_ok());
            return;
        }
        if journal.unsigned() > 0 && last_record.elapsed() >= idle_checkpoint {
            checkpoint(&mut journal, stats);
        }
        report(&journal, false);
    }
}

fn checkpoint(journal: &mut Journal, stats: &SinkStats) {
    match journal.checkpoint() {
        Ok(()) => stats.unhealthy.store(false, Ordering::Relaxed),
        Err(e) => failed(stats, &e),
    }
}

fn failed(stats: &SinkStats, error: &crate::ReceiptsError) {
    let errors = stats.write_errors.fetch_add(1, Ordering::Relaxed);
    stats.unhealthy.store(true, Ordering::Relaxed);
    if errors.is_power_of_two() || errors == 0 {
        tracing::error!(
            errors = errors + 1,
            "receipts: writing the journal failed: {error}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn push(batch: &mut Batch, n: usize, identity: &Arc<Identity>) {
        for i in 0..n {
            let tag = format!("v{i}");
            batch.push(
                SystemTime::UNIX_EPOCH,
                &DeliveryRef {
                    application: "app",
                    tag: (i % 2 == 0).then_some(tag.as_str()),
                    digest: "sha256:00",
                    media_type: "application/vnd.oci.image.manifest.v1+json",
                    identity,
                    policy_scope: None,
                    policy_digest: None,
                    reference_values_digest: None,
                },
            );
        }
    }

    #[test]
    fn a_batch_gives_back_each_record_as_queued() {
        let identity = Arc::new(Identity::User { name: "u".into() });
        let mut batch = Batch::default();
        push(&mut batch, 3, &identity);
        let mut seen = Vec::new();
        batch.each(|_, d| {
            seen.push((
                d.application.to_string(),
                d.tag.map(str::to_string),
                d.digest.to_string(),
            ))
        });
        assert_eq!(
            seen,
            [
                ("app".into(), Some("v0".into()), "sha256:00".into()),
                ("app".into(), None, "sha256:00".into()),
                ("app".into(), Some("v2".into()), "sha256:00".into()),
            ]
        );
    }

    #[test]
    fn a_batch_holds_each_recipient_once_and_gives_each_record_its_own() {
        let alice = Arc::new(Identity::User { name: "a".into() });
        let bob = Arc::new(Identity::User { name: "b".into() });
        let mut batch = Batch::default();
        for i in 0..100 {
            push(&mut batch, 1, if i % 3 == 0 { &alice } else { &bob });
        }
        // Equal but not the same Arc: still one recipient.
        push(
            &mut batch,
            1,
            &Arc::new(Identity::User { name: "a".into() }),
        );
        assert_eq!(batch.recipients.len(), 2);
        assert_eq!(
            Arc::strong_count(&alice),
            2,
            "one clone, not one per record"
        );
        let mut names = Vec::new();
        batch.each(|_, d| names.push(d.identity.to_string()));
        let expected: Vec<String> = (0..101)
            .map(|i| {
                if i % 3 == 0 || i == 100 {
                    "user a"
                } else {
                    "user b"
                }
                .into()
            })
            .collect();
        assert_eq!(names, expected);
        batch.clear();
        assert_eq!(Arc::strong_count(&alice), 1);
    }

    #[test]
    fn a_burst_does_not_pin_its_memory() {
        let identity = Arc::new(Identity::User { name: "u".into() });
        let mut batch = Batch::default();
        push(&mut batch, 50_000, &identity);
        batch.clear();
        assert!(batch.records.capacity() >= 50_000, "kept for a busy writer");
        push(&mut batch, 10, &identity);
        batch.clear();
        assert!(batch.records.capacity() <= 4096);
        assert!(batch.text.capacity() <= 4096 * 256);
        assert_eq!(Arc::strong_count(&identity), 1, "no record left behind");
    }
}
