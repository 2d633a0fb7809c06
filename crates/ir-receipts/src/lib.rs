//! Signed delivery receipts: which identity received which manifest,
//! under which policy, in a journal nobody can later edit unnoticed.
//!
//! The journal is a directory of JSON-lines files. Every line names the
//! SHA-256 of the line before it (`prev`), so the lines form one chain
//! across files and restarts; every so often, at each file's end and at
//! shutdown, a checkpoint line signs (ES256) the chain up to it, the last
//! one marked `closing`. [`verify`] reads a journal back with the public
//! key and names, by file and line, every record removed, reordered or
//! edited, and what each identity received; [`verify_against`] also
//! checks a [`Head`] kept elsewhere, so a journal cut at its end is named.
//!
//! Pure: no HTTP, no async. The server hands records to a [`Sink`], whose
//! writer thread appends them, so a response never waits on the disk.

mod entry;
mod error;
mod journal;
mod key;
mod sink;
mod verify;

pub use entry::{Delivery, DeliveryRef, Identity};
pub use error::ReceiptsError;
pub use journal::{Journal, JournalOptions};
pub use key::{CheckpointSigner, CheckpointVerifier};
pub use sink::{Sink, SinkStats};
pub use verify::{
    verify, verify_against, Finding, FindingKind, Head, Position, Received, Verification,
};
