//! `ir-server receipts verify DIR --key PUB`: reads a receipts journal
//! back, checks every link and checkpoint, names each change by file and
//! line, and prints what each identity received, and the journal's head
//! to keep elsewhere (`--expect-head` later shows nothing was cut from
//! the end). Exit 0: intact; 1: a record was removed, reordered or
//! edited, a checkpoint does not verify, or the kept head is missing;
//! 2: the journal or key cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ir_receipts::{verify_against, CheckpointVerifier, Head, Verification};

/// The first argument that selects this subcommand (`ir-server receipts …`).
pub const SUBCOMMAND: &str = "receipts";

/// `ir-server receipts`: work with a `--receipts` journal.
#[derive(Debug, Parser)]
#[command(name = "ir-server receipts", version)]
pub struct ReceiptsArgs {
    #[command(subcommand)]
    command: ReceiptsCommand,
}

#[derive(Debug, Subcommand)]
enum ReceiptsCommand {
    /// Check a journal's chain and signatures; list what each identity received.
    Verify {
        /// The journal directory (`--receipts DIR` of the server).
        dir: PathBuf,
        /// The checkpoint public key (PEM), the pair of `--receipts-key`.
        #[arg(long)]
        key: PathBuf,
        /// Output: text, or one JSON document.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// A head an earlier `verify` printed (SEQ:sha256:HEX), kept off
        /// this machine: the journal must still hold that line unchanged,
        /// so a journal cut at its end is named.
        #[arg(long, value_name = "SEQ:sha256:HEX")]
        expect_head: Option<Head>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs the subcommand with `args` (the words after `receipts`).
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = ReceiptsArgs::parse_from(std::iter::once(SUBCOMMAND.into()).chain(args));
    let ReceiptsCommand::Verify {
        dir,
        key,
        format,
        expect_head,
    } = args.command;
    let verified = CheckpointVerifier::from_pem_file(&key)
        .and_then(|key| verify_against(&dir, &key, expect_head.as_ref()));
    let verification = match verified {
        Ok(v) => v,
        Err(e) => {
            eprintln!("receipts: {e}");
            return ExitCode::from(2);
        }
    };
    match format {
        Format::Text => print!("{}", text(&dir, &verification)),
        Format::Json => println!("{}", json(&verification)),
    }
    if verification.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The report for people: the verdict, each finding, then per identity.
pub fn text(dir: &std::path::Path, v: &Verification) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = if v.is_intact() { "intact" } else { "CHANGED" };
    let _ = writeln!(
        out,
        "{}: {verdict}: {} deliveries in {} files, {} checkpoints verified, {} deliveries \
         after the last checkpoint",
        dir.display(),
        v.deliveries,
        v.files,
        v.checkpoints,
        v.unsigned
    );
    for finding in &v.findings {
        let _ = writeln!(out, "  {finding}");
    }
    if let Some(head) = &v.head {
        let state = if v.closed {
            "closed: it ends in the checkpoint written as the server stopped"
        } else {
            "open: still being written, or the server stopped abruptly, or lines after \
             it were removed; a head kept elsewhere tells which: --expect-head"
        };
        let _ = writeln!(out, "head {head} ({state})");
    }
    for (identity, received) in &v.received {
        let _ = writeln!(out, "{identity}");
        for r in received {
            let tag = r
                .tag
                .as_deref()
                .map(|t| format!(":{t}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {} {}{tag} {}", r.time, r.application, r.digest);
        }
    }
    out
}

/// The report for programs.
pub fn json(v: &Verification) -> serde_json::Value {
    let received: Vec<_> = v
        .received
        .iter()
        .map(|(identity, received)| {
            serde_json::json!({
                "identity": identity,
                "received": received.iter().map(|r| serde_json::json!({
                    "time": r.time,
                    "application": r.application,
                    "tag": r.tag,
                    "digest": r.digest,
                    "file": r.position.file,
                    "line": r.position.line,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "intact": v.is_intact(),
        "files": v.files,
        "deliveries": v.deliveries,
        "checkpoints": v.checkpoints,
        "unsigned": v.unsigned,
        "head": v.head.as_ref().map(ToString::to_string),
        "closed": v.closed,
        "findings": v.findings.iter().map(|f| serde_json::json!({
            "file": f.position.file,
            "line": f.position.line,
            "seq": f.position.seq,
            "tampering": f.kind.is_tampering(),
            "message": f.to_string(),
        })).collect::<Vec<_>>(),
        "received": received,
    })
}
