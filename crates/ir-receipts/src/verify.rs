//! Reading a journal back: every line in chain order, every link, every
//! checkpoint signature; what each identity received.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use crate::entry::{checkpoint_message, line_hash, ChainHash, Kind, Line};
use crate::journal::journal_files;
use crate::{CheckpointVerifier, Identity, ReceiptsError};

/// Longest line read; longer ones are findings, not allocations.
const MAX_LINE: usize = 64 * 1024;

/// Where a line is: its file, its line number (from 1), its `seq` if it
/// could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The file's name within the journal directory.
    pub file: String,
    /// The line number, from 1.
    pub line: usize,
    /// The line's `seq`, when it parsed.
    pub seq: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

/// A journal's last line, as an auditor keeps it elsewhere to show later
/// that nothing was cut from the end: `SEQ:sha256:HEX`, the `seq` and
/// the SHA-256 of the line's bytes (what the next line's `prev` holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The line's `seq`.
    pub seq: u64,
    /// `sha256:<hex>` of the line.
    pub hash: String,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{text:?}: expected SEQ:sha256:<64 hex digits>, as `verify` prints it");
        let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        let hex = hash.strip_prefix("sha256:").ok_or_else(bad)?;
        let well_formed =
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(bad());
        }
        Ok(Self {
            seq,
            hash: hash.to_string(),
        })
    }
}

/// What is wrong at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// The line is not a receipt line.
    Unparseable(String),
    /// The `seq` is not the one that follows: records were removed
    /// (`found` > `expected`) or reordered.
    Sequence {
        /// The `seq` the chain expected here.
        expected: u64,
        /// The `seq` this line has.
        found: u64,
    },
    /// The previous line's bytes do not hash to this line's `prev`: the
    /// previous line (named) was edited, or a line between was removed.
    Link {
        /// The line whose bytes changed.
        previous: Position,
    },
    /// A checkpoint's signature does not verify: the lines it covers since
    /// the previous checkpoint were rewritten.
    Signature {
        /// The first `seq` it covers since the previous checkpoint.
        from_seq: u64,
    },
    /// A checkpoint signed by another key.
    UnknownKey(String),
    /// The journal ends before the head kept elsewhere (`--expect-head`):
    /// the lines after this one, up to the head's `seq` at least, were
    /// removed.
    Cut {
        /// The head that should be there.
        head: Head,
    },
    /// The line at the head's `seq` is not the one the head kept
    /// elsewhere names: it, or a line before it, was changed.
    HeadChanged {
        /// The head that should be there.
        head: Head,
    },
    /// The file ends in a line without a newline (the writer stopped
    /// mid-line); the chain goes on from the line before.
    Torn,
}

impl FindingKind {
    /// Whether this shows a change after writing (not a crash).
    pub fn is_tampering(&self) -> bool {
        !matches!(self, Self::Torn)
    }
}

/// One thing wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where.
    pub position: Position,
    /// What.
    pub kind: FindingKind,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = &self.position;
        match &self.kind {
            FindingKind::Unparseable(why) => write!(f, "{at}: not a receipt line: {why}"),
            FindingKind::Sequence { expected, found } if found > expected => write!(
                f,
                "{at}: seq {found} where {expected} was expected: records {expected}..{} \
                 removed or moved",
                found - 1
            ),
            FindingKind::Sequence { expected, found } => write!(
                f,
                "{at}: seq {found} where {expected} was expected: records reordered"
            ),
            FindingKind::Link { previous } => write!(
                f,
                "{at}: the line before, {previous}, is not the one this line follows: \
                 it was edited, or a line was removed before it"
            ),
            FindingKind::Signature { from_seq } => write!(
                f,
                "{at}: checkpoint signature does not verify: records {from_seq}..{} were \
                 rewritten",
                at.seq.unwrap_or(0).saturating_sub(1)
            ),
            FindingKind::UnknownKey(key_id) => {
                write!(f, "{at}: checkpoint signed by another key ({key_id})")
            }
            FindingKind::Torn => write!(f, "{at}: incomplete last line (the writer stopped)"),
            FindingKind::Cut { head } => write!(
                f,
                "{at}: the journal ends here without line seq {}, the head kept \
                 elsewhere: lines were removed",
                head.seq
            ),
            FindingKind::HeadChanged { head } => write!(
                f,
                "{at}: this line is not {head}, the head kept elsewhere: it, or a line \
                 before it, was changed"
            ),
        }
    }
}

/// One manifest an identity received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// When.
    pub time: String,
    /// The application.
    pub application: String,
    /// The tag, if asked by tag.
    pub tag: Option<String>,
    /// The manifest digest.
    pub digest: String,
    /// Where the record is.
    pub position: Position,
}

/// The result of reading a journal.
#[derive(Debug, Default)]
pub struct Verification {
    /// Files read.
    pub files: usize,
    /// Delivery records read.
    pub deliveries: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Delivery records after the last verified checkpoint: chained, but
    /// not yet covered by a signature.
    pub unsigned: u64,
    /// What is wrong, in chain order.
    pub findings: Vec<Finding>,
    /// What each identity received, in chain order.
    pub received: BTreeMap<Identity, Vec<Received>>,
    /// The last line read: keep it elsewhere, and a later `verify` with it
    /// shows that nothing was cut from the end.
    pub head: Option<Head>,
    /// The journal ends in the closing checkpoint the server writes as it
    /// stops. If not, the server is still writing it, stopped abruptly, or
    /// the lines after the head were removed: only a head kept elsewhere
    /// tells which.
    pub closed: bool,
}

impl Verification {
    /// No line was changed, removed or reordered after it was written.
    pub fn is_intact(&self) -> bool {
        !self.findings.iter().any(|f| f.kind.is_tampering())
    }
}

/// The walk's state: what the next line must be.
struct Chain<'k> {
    key: &'k CheckpointVerifier,
    expected_seq: Option<u64>,
    expected_prev: String,
    previous: Option<Position>,
    /// First `seq` after the last verified checkpoint.
    signed_up_to: u64,
    /// The current file's `context` lines: who, by `seq`.
    contexts: HashMap<u64, Identity>,
    /// The head kept elsewhere, and where its `seq` was found.
    expected_head: Option<&'k Head>,
    head_found: bool,
    last_position: Option<Position>,
    out: Verification,
}

/// Reads every journal file of `dir` in order and checks the chain and
/// each checkpoint with `key`.
pub fn verify(dir: &Path, key: &CheckpointVerifier) -> Result<Verification, ReceiptsError> {
    verify_against(dir, key, None)
}

/// [`verify`], and that the journal still holds `head` (kept elsewhere
/// from an earlier `verify`, or from the server's checkpoint events): a
/// journal cut at its end is named.
pub fn verify_against(
    dir: &Path,
    key: &CheckpointVerifier,
    head: Option<&Head>,
) -> Result<Verification, ReceiptsError> {
    let mut chain = Chain {
        key,
        expected_seq: Some(1),
        expected_prev: ChainHash::genesis().as_str().to_string(),
        previous: None,
        signed_up_to: 1,
        contexts: HashMap::new(),
        expected_head: head,
        head_found: false,
        last_position: None,
        out: Verification::default(),
    };
    for path in journal_files(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| ReceiptsError::io(&path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        chain.out.files += 1;
        chain.file(&name, &bytes);
    }
    if let Some(head) = head.filter(|_| !chain.head_found) {
        let position = chain.last_position.clone().unwrap_or(Position {
            file: String::new(),
            line: 0,
            seq: None,
        });
        let head = head.clone();
        chain.finding(position, FindingKind::Cut { head });
    }
    Ok(chain.out)
}

impl Chain<'_> {
    fn file(&mut self, name: &str, bytes: &[u8]) {
        // A delivery names a context line of its own file.
        self.contexts.clear();
        for (index, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let mut position = Position {
                file: name.to_string(),
                line: index + 1,
                seq: None,
            };
            self.out.closed = false;
            let Some(line) = raw.strip_suffix(b"\n") else {
                // Only the last piece of a file lacks a newline.
                self.finding(position, FindingKind::Torn);
                continue;
            };
            let parsed = if line.len() > MAX_LINE {
                Err(format!("longer than {MAX_LINE} bytes"))
            } else {
                serde_json::from_slice::<Line>(line).map_err(|e| e.to_string())
            };
            match parsed {
                Ok(parsed) => {
                    position.seq = Some(parsed.seq);
                    self.line(&position, &parsed);
                }
                Err(why) => {
                    self.finding(position.clone(), FindingKind::Unparseable(why));
                    self.expected_seq = None;
                }
            }
            self.expected_prev = line_hash(line);
            if let Some(seq) = position.seq {
                self.check_head(&position, seq);
            }
            self.last_position = Some(position.clone());
            self.previous = Some(position);
        }
    }

    fn line(&mut self, at: &Position, line: &Line) {
        let in_sequence = match self.expected_seq {
            Some(expected) if expected != line.seq => {
                self.finding(
                    at.clone(),
                    FindingKind::Sequence {
                        expected,
                        found: line.seq,
                    },
                );
                false
            }
            _ => true,
        };
        self.expected_seq = line.seq.checked_add(1);
        if in_sequence && line.prev != self.expected_prev {
            let previous = self.previous.clone().unwrap_or(Position {
                file: at.file.clone(),
                line: 0,
                seq: None,
            });
            self.finding(at.clone(), FindingKind::Link { previous });
        }
        match line.kind {
            Kind::Start => {}
            Kind::Context => self.context(at, line),
            Kind::Delivery => self.delivery(at, line),
            Kind::Checkpoint => self.checkpoint(at, line),
        }
    }

    fn context(&mut self, at: &Position, line: &Line) {
        match &line.context {
            Some(context) => {
                let identity = Identity::clone(&context.identity);
                self.contexts.insert(line.seq, identity);
            }
            None => {
                let why = "a context line without its context".to_string();
                self.finding(at.clone(), FindingKind::Unparseable(why));
            }
        }
    }

    fn delivery(&mut self, at: &Position, line: &Line) {
        let Some(delivery) = &line.delivery else {
            let why = "a delivery line without its delivery".to_string();
            self.finding(at.clone(), FindingKind::Unparseable(why));
            return;
        };
        self.out.deliveries += 1;
        self.out.unsigned += 1;
        let Some(identity) = self.contexts.get(&delivery.context) else {
            let why = format!(
                "names context {}, which is not a context line before it in this file",
                delivery.context
            );
            self.finding(at.clone(), FindingKind::Unparseable(why));
            return;
        };
        self.out
            .received
            .entry(identity.clone())
            .or_default()
            .push(Received {
                time: line.time.to_string(),
                application: delivery.application.to_string(),
                tag: delivery.tag.as_deref().map(str::to_string),
                digest: delivery.digest.to_string(),
                position: at.clone(),
            });
    }

    fn checkpoint(&mut self, at: &Position, line: &Line) {
        let key_id = line.key_id.as_deref().unwrap_or("");
        if key_id != self.key.key_id() {
            self.finding(at.clone(), FindingKind::UnknownKey(key_id.to_string()));
            return;
        }
        let closing = line.closing == Some(true);
        let message = checkpoint_message(line.seq, &line.time, &line.prev, closing);
        let signature = line.signature.as_deref().unwrap_or("");
        if self.key.verifies(&message, signature) {
            self.out.checkpoints += 1;
            self.out.unsigned = 0;
            self.out.closed = closing;
        } else {
            let from_seq = self.signed_up_to;
            self.finding(at.clone(), FindingKind::Signature { from_seq });
        }
        self.signed_up_to = line.seq + 1;
    }

    /// Records the line just read as the head, and checks it against the
    /// head kept elsewhere when it has that `seq`.
    fn check_head(&mut self, at: &Position, seq: u64) {
        let head = Head {
            seq,
            hash: self.expected_prev.clone(),
        };
        if let Some(expected) = self
            .expected_head
            .filter(|h| h.seq == seq && !self.head_found)
        {
            self.head_found = true;
            if *expected != head {
                let head = expected.clone();
                self.finding(at.clone(), FindingKind::HeadChanged { head });
            }
        }
        self.out.head = Some(head);
    }

    fn finding(&mut self, position: Position, kind: FindingKind) {
        self.out.findings.push(Finding { position, kind });
    }
}
