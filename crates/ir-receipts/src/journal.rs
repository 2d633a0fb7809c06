//! Appending to the journal: one line per record, a checkpoint every
//! `checkpoint_every` records, at each file's end and at close; a new
//! file when the current one passes `max_file_bytes`, and at each start.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::entry::{
    checkpoint_message, encode_delivery, line_digest, now_rfc3339, rfc3339, ChainHash, Context,
    Kind, Line, Recipient,
};
use crate::{CheckpointSigner, Delivery, DeliveryRef, Head, ReceiptsError};

/// Longest tail read to find the last line of an existing journal.
const MAX_LINE: u64 = 64 * 1024;
/// Checkpoints due by count sync the file at most this often; those at
/// close, after an idle minute and at a file's end always do. A crash
/// loses at most this much, and `verify` counts it as unsigned.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Contexts remembered per file; one not among them is written again
/// (harmless: a delivery names whichever it follows).
const CONTEXTS_PER_FILE: usize = 64;
/// Pending lines are written once they reach this size: the buffer is
/// reused while still in cache, however large the writer's batch.
const PENDING_WRITE: usize = 256 * 1024;

/// How the journal is written.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A checkpoint after at most this many records.
    pub checkpoint_every: u64,
    /// A new file once the current one is this large.
    pub max_file_bytes: u64,
    /// Written in each `start` line: the server's name and version.
    pub server: String,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            max_file_bytes: 64 << 20,
            server: String::new(),
        }
    }
}

/// The journal's writer. Not thread-safe by design: one [`crate::Sink`]
/// thread owns it.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    signer: CheckpointSigner,
    /// The file being appended to; `None`: the next line opens a new one.
    file: Option<File>,
    file_bytes: u64,
    /// The last line written: its `seq` and hash (`sha256:<hex>`).
    seq: u64,
    prev: ChainHash,
    /// Lines encoded but not yet written: one `write` per batch, or per
    /// [`PENDING_WRITE`] bytes of a large one.
    pending: Vec<u8>,
    /// Each pending line's end in `pending`, `seq`, hash and kind.
    pending_lines: Vec<(usize, u64, [u8; 32], Kind)>,
    /// The contexts written in the current file, most recent last.
    contexts: Vec<WrittenContext>,
    /// When the file was last synced.
    last_sync: Instant,
    /// The last line written whole: what a failed write falls back to.
    durable: (u64, ChainHash),
    /// Deliveries written whole since the journal was opened.
    delivered: u64,
    /// The last line synced to the disk.
    synced: (u64, ChainHash),
    /// The last second formatted, and its text.
    last_time: (u64, String),
    /// Deliveries since the last checkpoint.
    unsigned: u64,
    /// Any line (a `start` too) written since the last checkpoint.
    unsigned_lines: bool,
}

/// A `context` line of the current file and what it says.
#[derive(Debug)]
struct WrittenContext {
    seq: u64,
    recipient: Recipient,
}

/// `receipts-<first seq, 20 digits>.jsonl`: names sort in chain order.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("receipts-{first_seq:020}.jsonl")
}

/// The journal's files, in chain order.
pub(crate) fn journal_files(dir: &Path) -> Result<Vec<PathBuf>, ReceiptsError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ReceiptsError::io(dir, e))? {
        let entry = entry.map_err(|e| ReceiptsError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_journal = name
            .strip_prefix("receipts-")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .is_some_and(|seq| seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()));
        if is_journal {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl Journal {
    /// Opens `dir` (created 0700 if missing; refused if group or others
    /// may write it), continues the chain of what is there, and writes a
    /// `start` line in a new file.
    pub fn open(
        dir: &Path,
        signer: CheckpointSigner,
        options: JournalOptions,
    ) -> Result<Self, ReceiptsError> {
        prepare_dir(dir)?;
        let (seq, prev) = match journal_files(dir)?.last() {
            Some(last) => last_line(last)?,
            None => (0, ChainHash::genesis()),
        };
        let mut journal = Self {
            dir: dir.to_owned(),
            options,
            signer,
            file: None,
            file_bytes: 0,
            durable: (seq, prev),
            seq,
            prev,
            pending: Vec::new(),
            pending_lines: Vec::new(),
            contexts: Vec::new(),
            last_sync: Instant::now(),
            delivered: 0,
            synced: (seq, prev),
            last_time: (0, String::new()),
            unsigned: 0,
            unsigned_lines: false,
        };
        let server = journal.options.server.clone();
        journal.write(Kind::Start, Payload::Server(&server))?;
        journal.flush()?;
        Ok(journal)
    }

    /// Appends one delivery made now (written at once), then a checkpoint
    /// when one is due.
    pub fn append(&mut self, delivery: &Delivery) -> Result<(), ReceiptsError> {
        self.append_at(delivery.into(), std::time::SystemTime::now())?;
        self.flush()
    }

    /// Deliveries written whole since the journal was opened.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The last line synced to the disk: what an auditor keeps elsewhere
    /// to show later that the journal was not cut
    /// ([`crate::verify_against`]); a power cut cannot lose it.
    pub fn head(&self) -> Head {
        Head {
            seq: self.synced.0,
            hash: self.synced.1.as_str().to_string(),
        }
    }

    /// Adds one delivery made at `at` to the lines [`Journal::flush`]
    /// writes; they are written at once when a checkpoint is due or 256 KiB
    /// are pending.
    pub fn append_at(
        &mut self,
        delivery: DeliveryRef<'_>,
        at: std::time::SystemTime,
    ) -> Result<(), ReceiptsError> {
        let time = self.time_of(at);
        let context = match self
            .contexts
            .iter()
            .rev()
            .find(|c| c.recipient.received(&delivery))
        {
            Some(written) => written.seq,
            None => self.write_context(&delivery, &time)?,
        };
        self.write_at(Kind::Delivery, Payload::Delivery(&delivery, context), &time)?;
        self.last_time.1 = time;
        self.unsigned += 1;
        if self.unsigned >= self.options.checkpoint_every.max(1)
            || self.file_bytes + self.pending.len() as u64 >= self.options.max_file_bytes
        {
            self.checkpoint_then(false, false)?;
        } else if self.pending.len() >= PENDING_WRITE {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the `context` line `delivery` follows; returns its `seq`.
    fn write_context(
        &mut self,
        delivery: &DeliveryRef<'_>,
        time: &str,
    ) -> Result<u64, ReceiptsError> {
        self.write_at(Kind::Context, Payload::Context(delivery), time)?;
        if self.contexts.len() >= CONTEXTS_PER_FILE {
            self.contexts.remove(0);
        }
        self.contexts.push(WrittenContext {
            seq: self.seq,
            recipient: Recipient::of(delivery),
        });
        Ok(self.seq)
    }

    /// Signs the chain up to here (if anything is unsigned), syncs the
    /// file, and starts a new file if this one is full.
    pub fn checkpoint(&mut self) -> Result<(), ReceiptsError> {
        self.checkpoint_then(true, false)
    }

    /// Writes the closing checkpoint (signed as such, even right after
    /// another checkpoint) and syncs the file: the last line of a journal
    /// whose writer stopped cleanly. Appending after it starts a new run.
    pub fn close(&mut self) -> Result<(), ReceiptsError> {
        self.unsigned_lines = true;
        self.checkpoint_then(true, true)
    }

    /// A checkpoint (the closing one if `closing`); the file is synced
    /// when `sync`, when it is full, or when it was last synced
    /// [`SYNC_EVERY`] ago.
    fn checkpoint_then(&mut self, sync: bool, closing: bool) -> Result<(), ReceiptsError> {
        if self.unsigned_lines {
            let payload = if closing {
                Payload::Closing
            } else {
                Payload::None
            };
            self.write(Kind::Checkpoint, payload)?;
            self.flush()?;
            self.unsigned = 0;
            self.unsigned_lines = false;
            let full = self.file_bytes >= self.options.max_file_bytes;
            if sync || full || self.last_sync.elapsed() >= SYNC_EVERY {
                if let Some(file) = &self.file {
                    if let Err(e) = file.sync_data() {
                        self.new_file();
                        return Err(ReceiptsError::io(&self.dir, e));
                    }
                    self.last_sync = Instant::now();
                    self.synced = self.durable;
                }
            }
        }
        if self.file_bytes >= self.options.max_file_bytes {
            self.new_file();
        }
        Ok(())
    }

    /// The next line opens a new file, whose deliveries name contexts
    /// written in it.
    fn new_file(&mut self) {
        self.file = None;
        self.contexts.clear();
    }

    /// Deliveries written since the last checkpoint.
    pub fn unsigned(&self) -> u64 {
        self.unsigned
    }

    /// Encodes one line made now.
    fn write(&mut self, kind: Kind, payload: Payload<'_>) -> Result<(), ReceiptsError> {
        self.write_at(kind, payload, &now_rfc3339())
    }

    /// Encodes one line into the pending batch and moves the chain on.
    fn write_at(
        &mut self,
        kind: Kind,
        payload: Payload<'_>,
        time: &str,
    ) -> Result<(), ReceiptsError> {
        let seq = self.seq + 1;
        let start = self.pending.len();
        if let Payload::Delivery(d, context) = payload {
            encode_delivery(&mut self.pending, seq, time, &self.prev, d, context);
        } else {
            self.encode_other(seq, kind, payload, time);
        }
        let digest = line_digest(&self.pending[start..]);
        self.pending.push(b'\n');
        self.pending_lines
            .push((self.pending.len(), seq, digest, kind));
        self.seq = seq;
        self.prev = ChainHash::of(&digest);
        self.unsigned_lines = kind != Kind::Checkpoint;
        Ok(())
    }

    /// Encodes a line other than a delivery (rare: serde_json will do).
    fn encode_other(&mut self, seq: u64, kind: Kind, payload: Payload<'_>, time: &str) {
        let closing = matches!(payload, Payload::Closing);
        let signature = (kind == Kind::Checkpoint).then(|| {
            self.signer
                .sign(&checkpoint_message(seq, time, self.prev.as_str(), closing))
        });
        let line = Line {
            seq,
            kind,
            time: time.into(),
            prev: self.prev.as_str().into(),
            context: match payload {
                Payload::Context(d) => Some(Context::of(d)),
                _ => None,
            },
            delivery: None,
            server: match payload {
                Payload::Server(server) => Some(server.into()),
                _ => None,
            },
            key_id: signature.is_some().then(|| self.signer.key_id().into()),
            signature,
            closing: closing.then_some(true),
        };
        serde_json::to_writer(&mut self.pending, &line).expect("a line serializes");
    }

    /// Writes the pending lines with as few `write`s as the system allows.
    /// If one fails, the lines written whole stay (the file may end in a
    /// torn line), the next line goes to a new file, and the chain goes on
    /// from the last line written whole; the others are lost (an error).
    pub fn flush(&mut self) -> Result<(), ReceiptsError> {
        let Some(&(_, first_seq, _, _)) = self.pending_lines.first() else {
            return Ok(());
        };
        let mut created = None;
        if self.file.is_none() {
            let path = self.dir.join(file_name(first_seq));
            let opened = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            match opened {
                Ok(file) => {
                    self.file = Some(file);
                    self.file_bytes = 0;
                    created = Some(path);
                }
                Err(e) => {
                    self.lose_pending(0);
                    return Err(ReceiptsError::io(&path, e));
                }
            }
        }
        let first_end = self.pending_lines[0].0;
        let file = self.file.as_mut().expect("opened above");
        let mut written = 0;
        while written < self.pending.len() {
            let error = match file.write(&self.pending[written..]) {
                Ok(0) => std::io::Error::from(std::io::ErrorKind::WriteZero),
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.lose_pending(written);
            // A file made for this batch that got no whole line (a full
            // disk) holds nothing to keep, and its name is the next one's.
            if let Some(path) = created.filter(|_| written < first_end) {
                let _ = std::fs::remove_file(path);
            }
            return Err(ReceiptsError::io(&self.dir, error));
        }
        self.file_bytes += written as u64;
        self.keep_whole(written);
        Ok(())
    }

    /// After a failed write of which `written` bytes reached the file:
    /// keep what was written whole, continue in a new file.
    fn lose_pending(&mut self, written: usize) {
        self.file_bytes += written as u64;
        self.keep_whole(written);
        self.new_file();
        (self.seq, self.prev) = self.durable;
        // Whatever is lost, the next checkpoint signs what is there.
        self.unsigned_lines = true;
    }

    /// Moves the pending lines that end within `written` to `durable`,
    /// and forgets the rest of the batch.
    fn keep_whole(&mut self, written: usize) {
        let mut last_whole = None;
        for (end, seq, digest, kind) in self.pending_lines.drain(..) {
            if end > written {
                break;
            }
            last_whole = Some((seq, digest));
            if kind == Kind::Delivery {
                self.delivered += 1;
            }
        }
        if let Some((seq, digest)) = last_whole {
            self.durable = (seq, ChainHash::of(&digest));
        }
        self.pending.clear();
    }

    /// `at` as written in a line; the same second is formatted once
    /// (the caller puts the text back in `last_time.1`).
    fn time_of(&mut self, at: std::time::SystemTime) -> String {
        let second = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_time.0 != second || self.last_time.1.is_empty() {
            self.last_time = (second, rfc3339(at));
        }
        std::mem::take(&mut self.last_time.1)
    }
}

/// What a line carries besides its place in the chain.
#[derive(Clone, Copy)]
enum Payload<'a> {
    None,
    /// The closing checkpoint's mark.
    Closing,
    Server(&'a str),
    Context(&'a DeliveryRef<'a>),
    /// The delivery and the `seq` of its context line.
    Delivery(&'a DeliveryRef<'a>, u64),
}

fn prepare_dir(dir: &Path) -> Result<(), ReceiptsError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ReceiptsError::io(dir, e)),
        Err(e) => Err(ReceiptsError::io(dir, e)),
        Ok(meta) if !meta.is_dir() => Err(ReceiptsError::Directory {
            path: dir.to_owned(),
            reason: "not a directory (symbolic links are not followed)".into(),
        }),
        Ok(meta) if meta.permissions().mode() & 0o022 != 0 => Err(ReceiptsError::Directory {
            path: dir.to_owned(),
            reason: format!(
                "mode {:o}: group or others may write it; receipts need a directory only \
                 the server writes (chmod 700)",
                meta.permissions().mode() & 0o7777
            ),
        }),
        Ok(_) => Ok(()),
    }
}

/// The `seq` and hash of the last complete line of `path`. A torn last
/// line (no newline: the writer stopped mid-line) is skipped: the chain
/// goes on from the line before it, and `verify` notes the torn one.
fn last_line(path: &Path) -> Result<(u64, ChainHash), ReceiptsError> {
    let mut file = File::open(path).map_err(|e| ReceiptsError::io(path, e))?;
    let len = file
        .metadata()
        .map_err(|e| ReceiptsError::io(path, e))?
        .len();
    let start = len.saturating_sub(2 * MAX_LINE);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| ReceiptsError::io(path, e))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(|e| ReceiptsError::io(path, e))?;
    let complete = match tail.iter().rposition(|&b| b == b'\n') {
        Some(end) => &tail[..end],
        None => &[][..],
    };
    let line_start = complete
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let resume = |line: usize, reason: String| ReceiptsError::Resume {
        path: path.to_owned(),
        line,
        reason,
    };
    if line_start == 0 && start > 0 {
        return Err(resume(0, format!("last line longer than {MAX_LINE} bytes")));
    }
    let bytes = &complete[line_start..];
    if bytes.is_empty() {
        return Err(resume(
            0,
            "no complete line: remove the file if it is empty".into(),
        ));
    }
    let line_no = if start == 0 {
        complete.iter().filter(|&&b| b == b'\n').count() + 1
    } else {
        0
    };
    let line: Line = serde_json::from_slice(bytes)
        .map_err(|e| resume(line_no, format!("not a receipt line: {e}")))?;
    Ok((line.seq, ChainHash::of(&line_digest(bytes))))
}
