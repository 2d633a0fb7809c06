//! The journal as an auditor sees it: written by the server's writer,
//! then changed the ways someone with write access to the disk would,
//! and read back by `verify`, which must name each change by position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ir_receipts::{
    verify, verify_against, CheckpointSigner, CheckpointVerifier, Delivery, FindingKind, Head,
    Identity, Journal, JournalOptions, Sink,
};

fn realm(n: u8) -> Identity {
    Identity::Realm {
        rim: format!("{n:02x}").repeat(32),
        rems: std::array::from_fn(|i| format!("{:02x}", i).repeat(32)),
        personalization: "00".repeat(64),
        platform_instance_id_sha256: "ab".repeat(32),
    }
}

fn delivery(i: u64, identity: Identity) -> Delivery {
    Delivery {
        application: format!("app{}", i % 3),
        tag: Some(format!("v{i}")),
        digest: format!("sha256:{:064x}", i),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        identity: std::sync::Arc::new(identity),
        policy_scope: Some("prod".into()),
        policy_digest: Some(format!("sha256:{}", "cd".repeat(32)).into()),
        reference_values_digest: None,
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: CheckpointVerifier,
}

/// A journal with `records` deliveries, a checkpoint every `every`.
fn journal(records: u64, every: u64, max_file_bytes: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("receipts");
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let options = JournalOptions {
        checkpoint_every: every,
        max_file_bytes,
        server: "ir-server test".into(),
    };
    let mut journal = Journal::open(&dir, signer, options).unwrap();
    for i in 0..records {
        let who = if i % 2 == 0 {
            realm(1)
        } else {
            Identity::User {
                name: "alice".into(),
            }
        };
        journal.append(&delivery(i, who)).unwrap();
    }
    journal.checkpoint().unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        key,
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_untouched_journal_verifies_and_lists_what_each_identity_received() {
    let f = journal(10, 4, 1 << 20);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(v.is_intact(), "{:?}", v.findings);
    assert!(v.findings.is_empty());
    assert_eq!(v.deliveries, 10);
    assert_eq!(v.unsigned, 0);
    assert_eq!(v.checkpoints, 3, "after 4, 8 and the final 2");
    let realm_got = &v.received[&realm(1)];
    assert_eq!(realm_got.len(), 5);
    assert_eq!(realm_got[0].digest, format!("sha256:{:064x}", 0));
    assert_eq!(realm_got[0].tag.as_deref(), Some("v0"));
    let alice = Identity::User {
        name: "alice".into(),
    };
    assert_eq!(v.received[&alice].len(), 5);
}

#[test]
fn an_edited_record_is_named_by_its_position() {
    let f = journal(6, 100, 1 << 20);
    let file = &files(&f.dir)[0];
    let mut l = lines(file);
    // The second delivery (line 1 is `start`, and each identity's first
    // delivery follows its `context` line).
    let at = l.iter().position(|x| x.contains("\"v1\"")).unwrap();
    l[at] = l[at].replace(&format!("{:064x}", 1), &format!("{:064x}", 99));
    write_lines(file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    let link = v
        .findings
        .iter()
        .find_map(|x| match &x.kind {
            FindingKind::Link { previous } => Some(previous.clone()),
            _ => None,
        })
        .expect("a broken link");
    assert_eq!(link.line, at + 1, "{:?}", v.findings);
    assert_eq!(link.seq, Some(at as u64 + 1));
    let text = v.findings[0].to_string();
    assert!(text.contains(&format!(":{0} (seq {0})", at + 1)), "{text}");
}

#[test]
fn a_removed_record_is_named_by_the_seq_that_is_missing() {
    let f = journal(6, 100, 1 << 20);
    let file = &files(&f.dir)[0];
    let mut l = lines(file);
    l.remove(3); // seq 4
    write_lines(file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    assert_eq!(
        v.findings[0].kind,
        FindingKind::Sequence {
            expected: 4,
            found: 5
        },
        "{:?}",
        v.findings
    );
    assert!(v.findings[0].to_string().contains("records 4..4 removed"));
}

#[test]
fn reordered_records_are_named() {
    let f = journal(6, 100, 1 << 20);
    let file = &files(&f.dir)[0];
    let mut l = lines(file);
    l.swap(2, 3);
    write_lines(file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    let at: Vec<_> = v.findings.iter().map(|x| x.position.line).collect();
    assert!(at.contains(&3) && at.contains(&4), "{:?}", v.findings);
    assert!(v
        .findings
        .iter()
        .any(|x| x.to_string().contains("reordered")));
}

#[test]
fn a_chain_rewritten_consistently_fails_the_checkpoint_signature() {
    let f = journal(5, 100, 1 << 20);
    let file = &files(&f.dir)[0];
    let mut l = lines(file);
    // Edit the first delivery, then re-link every later line, as someone
    // who knows the format (but not the key) would.
    let at = l.iter().position(|x| x.contains("\"v0\"")).unwrap();
    l[at] = l[at].replace("\"v0\"", "\"v9\"");
    for i in at + 1..l.len() {
        let prev = format!("sha256:{}", sha256_hex(l[i - 1].as_bytes()));
        let mut value: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
        value["prev"] = prev.into();
        l[i] = serde_json::to_string(&value).unwrap();
    }
    write_lines(file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    assert!(
        matches!(v.findings[..], [ref x] if matches!(x.kind, FindingKind::Signature { from_seq: 1 })),
        "{:?}",
        v.findings
    );
}

#[test]
fn a_delivery_moved_to_another_identity_is_named() {
    let f = journal(4, 100, 1 << 20);
    let file = &files(&f.dir)[0];
    let mut l = lines(file);
    let context_of = |who: &str| {
        let at = l.iter().position(|x| x.contains(who)).unwrap();
        format!("\"context\":{}", at + 1)
    };
    let (realm_context, alice_context) = (context_of("\"rim\""), context_of("\"alice\""));
    // Hand alice's second delivery (v3) to the realm.
    let at = l.iter().position(|x| x.contains("\"v3\"")).unwrap();
    assert!(l[at].contains(&alice_context), "{}", l[at]);
    l[at] = l[at].replace(&alice_context, &realm_context);
    write_lines(file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    let named = v
        .findings
        .iter()
        .any(|x| matches!(&x.kind, FindingKind::Link { previous } if previous.line == at + 1));
    assert!(named, "{:?}", v.findings);
}

#[test]
fn each_file_names_an_identity_once_and_deliveries_refer_to_it() {
    let f = journal(20, 100, 1 << 20);
    let l = lines(&files(&f.dir)[0]);
    let rim = format!("{:02x}", 1).repeat(32);
    assert_eq!(l.iter().filter(|x| x.contains(&rim)).count(), 1);
    assert_eq!(l.iter().filter(|x| x.contains("\"alice\"")).count(), 1);
    let longest = l
        .iter()
        .filter(|x| x.contains("\"type\":\"delivery\""))
        .map(String::len)
        .max()
        .unwrap();
    assert!(longest < 400, "a delivery line is {longest} bytes");
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.received[&realm(1)].len(), 10);
}

#[test]
fn a_journal_signed_by_another_key_is_refused() {
    let f = journal(3, 100, 1 << 20);
    let other = CheckpointSigner::generate();
    let other = CheckpointVerifier::from_pem(other.public_key_pem().as_bytes()).unwrap();
    let v = verify(&f.dir, &other).unwrap();
    assert!(!v.is_intact());
    assert!(matches!(v.findings[0].kind, FindingKind::UnknownKey(_)));
    let _ = f.key;
}

#[test]
fn the_chain_continues_across_files_and_restarts() {
    let f = journal(40, 5, 2048);
    assert!(files(&f.dir).len() > 3, "rotated by size");
    // A restart: the new run goes on from the last line.
    let signer = CheckpointSigner::generate();
    let pem = signer.public_key_pem();
    let mut again = Journal::open(&f.dir, signer, JournalOptions::default()).unwrap();
    again.append(&delivery(100, realm(2))).unwrap();
    again.checkpoint().unwrap();
    // Signed by another key after the restart: the old key's checkpoints
    // verify, the new one's do not; the chain itself is whole.
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(v
        .findings
        .iter()
        .all(|x| matches!(x.kind, FindingKind::UnknownKey(_))));
    assert_eq!(v.deliveries, 41);
    let v = verify(
        &f.dir,
        &CheckpointVerifier::from_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(v
        .findings
        .iter()
        .all(|x| matches!(x.kind, FindingKind::UnknownKey(_))));
}

#[test]
fn a_removed_file_is_named() {
    let f = journal(40, 5, 2048);
    let all = files(&f.dir);
    std::fs::remove_file(&all[1]).unwrap();
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(!v.is_intact());
    let first = &v.findings[0];
    assert_eq!(
        first.position.file,
        all[2].file_name().unwrap().to_str().unwrap()
    );
    assert!(matches!(first.kind, FindingKind::Sequence { .. }));
}

#[test]
fn a_torn_last_line_is_noted_not_called_tampering_and_the_writer_goes_on() {
    let f = journal(3, 100, 1 << 20);
    let file = files(&f.dir)[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"type\":\"deliv");
    std::fs::write(&file, &bytes).unwrap();
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let mut again = Journal::open(&f.dir, signer, JournalOptions::default()).unwrap();
    again.append(&delivery(7, realm(1))).unwrap();
    again.checkpoint().unwrap();
    let v = verify(&f.dir, &key).unwrap();
    let kinds: Vec<_> = v.findings.iter().map(|x| x.kind.clone()).collect();
    assert!(kinds.contains(&FindingKind::Torn), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, FindingKind::Torn | FindingKind::UnknownKey(_))),
        "{kinds:?}"
    );
    assert_eq!(v.deliveries, 4);
}

#[test]
fn records_after_the_last_checkpoint_are_counted_as_unsigned() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let mut journal = Journal::open(tmp.path(), signer, JournalOptions::default()).unwrap();
    journal.append(&delivery(1, realm(1))).unwrap();
    journal.append(&delivery(2, realm(1))).unwrap();
    drop(journal); // a crash: no final checkpoint
    let v = verify(tmp.path(), &key).unwrap();
    assert!(v.is_intact());
    assert_eq!(v.unsigned, 2);
}

#[test]
fn a_directory_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Journal::open(
        tmp.path(),
        CheckpointSigner::generate(),
        JournalOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("chmod 700"), "{err}");
}

#[test]
fn the_sink_writes_everything_queued_and_signs_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let journal = Journal::open(tmp.path(), signer, JournalOptions::default()).unwrap();
    let sink = Sink::spawn(journal, 10_000, Duration::from_secs(60));
    for i in 0..500 {
        sink.record(&delivery(i, realm(3)));
    }
    sink.close();
    let stats = sink.stats();
    let written = stats.written.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(written + dropped, 500);
    assert_eq!(dropped, 0);
    let v = verify(tmp.path(), &key).unwrap();
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.deliveries, 500);
    assert_eq!(v.unsigned, 0);
}

#[test]
fn a_full_queue_drops_with_a_count_and_never_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = Journal::open(
        tmp.path(),
        CheckpointSigner::generate(),
        JournalOptions::default(),
    )
    .unwrap();
    let sink = Sink::spawn(journal, 1, Duration::from_secs(60));
    for i in 0..20_000 {
        sink.record(&delivery(i, realm(3)));
    }
    let stats = sink.stats();
    sink.close();
    let written = stats.written.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(written + dropped, 20_000);
    assert!(
        dropped > 0,
        "a queue of one cannot keep up with 20,000 at once"
    );
}

#[test]
fn a_large_batch_reaches_the_file_as_it_fills_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let options = JournalOptions {
        checkpoint_every: 1_000_000,
        ..JournalOptions::default()
    };
    let mut journal = Journal::open(tmp.path(), signer, options).unwrap();
    let file = files(tmp.path()).pop().unwrap();
    let start_line = std::fs::metadata(&file).unwrap().len();
    let now = std::time::SystemTime::now();
    let batch: Vec<Delivery> = (0..2_000).map(|i| delivery(i, realm(4))).collect();
    for d in &batch {
        journal.append_at(d.into(), now).unwrap();
    }
    // Written as the pending lines passed 256 KiB, before any flush: the
    // buffer does not grow with the batch.
    let before_flush = std::fs::metadata(&file).unwrap().len() - start_line;
    assert!(
        before_flush >= 256 * 1024,
        "{before_flush} bytes written before the flush"
    );
    journal.flush().unwrap();
    journal.checkpoint().unwrap();
    let v = verify(tmp.path(), &key).unwrap();
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.deliveries, 2_000);
    assert_eq!(v.unsigned, 0);
}

/// A journal whose writer stopped cleanly (the closing checkpoint), with
/// `records` deliveries and a checkpoint every `every`.
fn closed_journal(records: u64, every: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("receipts");
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let options = JournalOptions {
        checkpoint_every: every,
        ..JournalOptions::default()
    };
    let sink = Sink::spawn(
        Journal::open(&dir, signer, options).unwrap(),
        10_000,
        Duration::from_secs(60),
    );
    for i in 0..records {
        sink.record(&delivery(i, realm(5)));
    }
    sink.close();
    Fixture {
        _tmp: tmp,
        dir,
        key,
    }
}

/// The head of the journal in `dir` as an auditor computes it: the last
/// line's `seq` and SHA-256.
fn last_line_head(dir: &Path) -> Head {
    let last = lines(files(dir).last().unwrap()).pop().unwrap();
    let seq = serde_json::from_str::<serde_json::Value>(&last).unwrap()["seq"]
        .as_u64()
        .unwrap();
    format!("{seq}:sha256:{}", sha256_hex(last.as_bytes()))
        .parse()
        .unwrap()
}

#[test]
fn a_journal_closed_by_its_writer_says_so_and_names_its_head() {
    let f = closed_journal(25, 10);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(v.is_intact() && v.findings.is_empty(), "{:?}", v.findings);
    assert!(v.closed);
    assert_eq!(v.head, Some(last_line_head(&f.dir)));
    let last = lines(files(&f.dir).last().unwrap()).pop().unwrap();
    assert!(
        last.contains("\"type\":\"checkpoint\"") && last.contains("\"closing\":true"),
        "{last}"
    );
    // A journal only checkpointed (the server was killed) is not closed.
    let open = journal(5, 2, 1 << 20);
    let v = verify(&open.dir, &open.key).unwrap();
    assert!(v.is_intact() && !v.closed);
}

#[test]
fn a_journal_cut_at_its_end_is_named_against_a_head_kept_elsewhere() {
    let f = closed_journal(25, 10);
    let head = verify(&f.dir, &f.key).unwrap().head.unwrap();
    // Someone who can write the disk removes the last records and the
    // closing checkpoint, back to the checkpoint after record 20: the
    // chain alone still verifies...
    let file = files(&f.dir).pop().unwrap();
    let mut l = lines(&file);
    let keep = l
        .iter()
        .rposition(|x| x.contains("\"type\":\"checkpoint\"") && !x.contains("closing"))
        .unwrap();
    l.truncate(keep + 1);
    write_lines(&file, &l);
    let v = verify(&f.dir, &f.key).unwrap();
    assert!(v.is_intact(), "{:?}", v.findings);
    assert!(!v.closed, "but it no longer ends in the closing checkpoint");
    // ...and against the head kept elsewhere the cut is named, at the
    // line where the journal now ends.
    let v = verify_against(&f.dir, &f.key, Some(&head)).unwrap();
    assert!(!v.is_intact());
    let cut = &v.findings[0];
    assert!(
        matches!(&cut.kind, FindingKind::Cut { head: h } if *h == head),
        "{cut:?}"
    );
    assert_eq!(cut.position.line, keep + 1);
    assert!(
        cut.to_string()
            .contains(&format!("without line seq {}", head.seq)),
        "{cut}"
    );
    // An intact journal passes against its own head, and against an
    // older head it still holds.
    let g = closed_journal(5, 2);
    let head = verify(&g.dir, &g.key).unwrap().head.unwrap();
    assert!(verify_against(&g.dir, &g.key, Some(&head))
        .unwrap()
        .findings
        .is_empty());
    let older: Head = format!("1:{}", {
        let first = lines(&files(&g.dir)[0]).remove(0);
        format!("sha256:{}", sha256_hex(first.as_bytes()))
    })
    .parse()
    .unwrap();
    assert!(verify_against(&g.dir, &g.key, Some(&older))
        .unwrap()
        .findings
        .is_empty());
}

#[test]
fn the_writer_reports_each_synced_head_and_last_the_closing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate();
    let key = CheckpointVerifier::from_pem(signer.public_key_pem().as_bytes()).unwrap();
    let reported = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reported.clone();
    let sink = Sink::spawn_reporting(
        Journal::open(tmp.path(), signer, JournalOptions::default()).unwrap(),
        10_000,
        Duration::from_secs(60),
        move |head: &Head, closing| seen.lock().unwrap().push((head.clone(), closing)),
    );
    for i in 0..30 {
        sink.record(&delivery(i, realm(6)));
    }
    sink.close();
    let reported = reported.lock().unwrap().clone();
    let v = verify(tmp.path(), &key).unwrap();
    assert!(v.closed);
    let (last, closing) = reported.last().expect("the closing head is reported");
    assert!(closing);
    assert_eq!(Some(last), v.head.as_ref());
    for (head, _) in &reported {
        let v = verify_against(tmp.path(), &key, Some(head)).unwrap();
        assert!(v.findings.is_empty(), "{head}: {:?}", v.findings);
    }
}

#[test]
fn a_changed_line_at_the_kept_head_is_named() {
    let f = closed_journal(3, 100);
    let mut head = verify(&f.dir, &f.key).unwrap().head.unwrap();
    head.hash = format!("sha256:{}", "0".repeat(64));
    let v = verify_against(&f.dir, &f.key, Some(&head)).unwrap();
    assert!(!v.is_intact());
    let finding = &v.findings[0];
    assert!(
        matches!(finding.kind, FindingKind::HeadChanged { .. }),
        "{finding:?}"
    );
    assert_eq!(finding.position.seq, Some(head.seq));
}

#[test]
fn the_closing_mark_is_signed() {
    // The last line of `f`'s last file, changed by `edit`: the journal is
    // not closed and a checkpoint signature fails.
    fn edit_last_line(f: &Fixture, edit: impl FnOnce(&str) -> String) {
        let file = files(&f.dir).pop().unwrap();
        let mut l = lines(&file);
        let last = l.pop().unwrap();
        l.push(edit(&last));
        write_lines(&file, &l);
        let v = verify(&f.dir, &f.key).unwrap();
        assert!(!v.closed);
        assert!(v
            .findings
            .iter()
            .any(|x| matches!(x.kind, FindingKind::Signature { .. })));
    }
    // Taken off the closing checkpoint: its signature no longer verifies.
    edit_last_line(&closed_journal(3, 100), |line| {
        line.replace(",\"closing\":true", "")
    });
    // Put on an ordinary checkpoint: neither.
    edit_last_line(&journal(4, 2, 1 << 20), |line| {
        let marked = line.replacen('}', ",\"closing\":true}", 1);
        assert!(marked.ends_with("true}"), "{marked}");
        marked
    });
}

#[test]
fn a_head_is_read_only_in_the_form_verify_prints() {
    let good = format!("12:sha256:{}", "ab".repeat(32));
    assert_eq!(good.parse::<Head>().unwrap().to_string(), good);
    for bad in [
        "",
        "12",
        "x:sha256:00",
        &format!("12:sha512:{}", "ab".repeat(32)),
        &format!("12:sha256:{}", "AB".repeat(32)),
        &format!("12:sha256:{}", "ab".repeat(31)),
        &format!("-1:sha256:{}", "ab".repeat(32)),
    ] {
        assert!(bad.parse::<Head>().is_err(), "{bad:?}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
