//! Handing records to the journal without waiting for the disk: a bounded
//! queue drained by one writer thread. A full queue drops the record and
//! counts it; a failed write counts and logs; either marks the journal
//! unhealthy until the next checkpoint is written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Delivery, Journal};

/// What the writer has done; read by metrics and health.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Deliveries written.
    pub written: AtomicU64,
    /// Deliveries dropped because the queue was full.
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

enum Message {
    Record(Box<Delivery>),
    Close,
}

/// The server's handle on the journal.
#[derive(Debug)]
pub struct Sink {
    queue: SyncSender<Message>,
    stats: Arc<SinkStats>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Starts the writer thread: up to `capacity` records wait; with
    /// nothing new for `idle_checkpoint`, unsigned records are signed.
    pub fn spawn(journal: Journal, capacity: usize, idle_checkpoint: Duration) -> Self {
        let (queue, inbox) = mpsc::sync_channel(capacity.max(1));
        let stats = Arc::new(SinkStats::default());
        let writer_stats = stats.clone();
        let writer = std::thread::Builder::new()
            .name("receipts".into())
            .spawn(move || write_loop(journal, &inbox, &writer_stats, idle_checkpoint))
            .expect("spawning the receipts writer");
        Self {
            queue,
            stats,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues one record; never waits.
    pub fn record(&self, delivery: Delivery) {
        match self.queue.try_send(Message::Record(Box::new(delivery))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.unhealthy.store(true, Ordering::Relaxed);
                if dropped.is_power_of_two() || dropped == 0 {
                    tracing::error!(
                        dropped = dropped + 1,
                        "receipts: the journal writer is behind, a delivery record was dropped"
                    );
                }
            }
        }
    }

    /// What the writer has done.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Writes what is queued, a final checkpoint, and stops the writer.
    pub fn close(&self) {
        let writer = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(writer) = writer {
            // Blocking send: shutdown waits for the queue to drain.
            let _ = self.queue.send(Message::Close);
            let _ = writer.join();
        }
    }
}

fn write_loop(
    mut journal: Journal,
    inbox: &mpsc::Receiver<Message>,
    stats: &SinkStats,
    idle_checkpoint: Duration,
) {
    loop {
        match inbox.recv_timeout(idle_checkpoint) {
            Ok(Message::Record(delivery)) => match journal.append(*delivery) {
                Ok(()) => {
                    stats.written.fetch_add(1, Ordering::Relaxed);
                    if journal.unsigned() == 0 {
                        stats.unhealthy.store(false, Ordering::Relaxed);
                    }
                }
                Err(e) => failed(stats, &e),
            },
            Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => {
                checkpoint(&mut journal, stats);
                return;
            }
            Err(RecvTimeoutError::Timeout) => checkpoint(&mut journal, stats),
        }
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
