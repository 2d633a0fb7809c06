//! Bounds on what judging reads (issue 30): a budget of signature bytes
//! per application and per load, each artifact read once when a new key
//! needs its bytes, and repeated layers read once.

use std::cell::Cell;

use ir_oci::{Digest, LoadOptions, RepoName};
use ir_testkit::Root;
use ir_trust::budget::Budget;
use ir_trust::enforce::ApplicationSource;
use ir_trust::{ArtifactSource, Evidence, Memo, Subject, Verdict};

use crate::util::*;

#[test]
fn signature_reads_past_the_budget_are_refused_with_the_budget_as_reason() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let mut index = Vec::new();
    let mut payload_size = 0;
    for n in 1..=6 {
        let image = app.image(format!("layer {n}").as_bytes());
        let p = payload(image.manifest.digest_str(), &format!("{HOST}/app:{n}"));
        payload_size = p.len() as u64;
        let layer = signature_layer(&app, &p, &key.sign(&p));
        index.push(image.tagged(&n.to_string()));
        index.push(sig_tag(&app, &image.manifest, &[layer]));
    }
    app.set_index(&index);
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let trust = trust_of(&root, &signed_by(&pubkey, None));
    // Room for two payloads and a half.
    let budget = Budget::new("this load", payload_size * 5 / 2);
    let (served, j) =
        ir_trust::enforce::enforce_within(&trust, &Memo::new(), HOST, registry, &budget);
    let served = &served.applications[&RepoName::parse("app").unwrap()];
    let tags: Vec<&str> = served
        .tags
        .keys()
        .map(|t| t.as_str())
        .filter(|t| !t.ends_with(".sig"))
        .collect();
    assert_eq!(tags, ["1", "2"], "only what the budget let be read");
    for n in 3..=6 {
        let Verdict::Refused(r) = verdict(&j, "app", &n.to_string()) else {
            panic!("{n} accepted");
        };
        assert!(r.detail.contains("signature budget"), "{n}: {r}");
    }
}

/// Counts blob reads.
struct Counting<'a> {
    inner: ApplicationSource<'a>,
    reads: Cell<usize>,
}

impl ArtifactSource for Counting<'_> {
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
        self.reads.set(self.reads.get() + 1);
        self.inner.blob(digest, limit)
    }
}

#[test]
fn a_new_key_reads_each_artifact_once_and_a_repeated_layer_is_read_once() {
    let root = Root::new();
    let outside = root.path().parent().unwrap();
    let (old, new) = (Key::p256(), Key::p256());
    let old_pub = old.write_public(outside, "old.pub");
    let new_pub = new.write_public(outside, "new.pub");
    let app = root.layout("app");
    let image = app.image(b"x");
    // Eight signatures by eight other keys, then one listed eight times.
    let mut layers = Vec::new();
    for _ in 0..8 {
        let p = payload(image.manifest.digest_str(), &format!("{HOST}/app:1"));
        layers.push(signature_layer(&app, &p, &Key::p256().sign(&p)));
    }
    let p = payload(image.manifest.digest_str(), &format!("{HOST}/app:1"));
    let repeated = signature_layer(&app, &p, &Key::p256().sign(&p));
    layers.extend(std::iter::repeat_n(repeated, 8));
    app.set_index(&[image.tagged("1"), sig_tag(&app, &image.manifest, &layers)]);
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let application = &registry.applications[&RepoName::parse("app").unwrap()];
    let m = &application.manifests[&Digest::parse(image.manifest.digest_str()).unwrap()];
    let digest = Digest::parse(image.manifest.digest_str()).unwrap();
    let subject = Subject {
        digest: &digest,
        media_type: &m.media_type,
        size: m.bytes.len() as u64,
    };
    let reference = ir_trust::DockerReference::parse(&format!("{HOST}/app:1")).unwrap();
    let memo = Memo::new();
    let judge = |key: &std::path::Path| {
        let source = Counting {
            inner: ApplicationSource::new(application),
            reads: Cell::new(0),
        };
        let trust = trust_of(&root, &signed_by(key, None));
        let mut evidence = Evidence::with_memo(&memo);
        let verdict = trust.judge(&reference, &subject, &source, &mut evidence);
        (verdict, source.reads.get())
    };
    let (verdict, reads) = judge(&old_pub);
    assert!(!verdict.is_accepted());
    assert_eq!(reads, 9, "nine distinct layers, each read once");
    // Recalled from the memo; the new key needs the bytes: one read of
    // the artifact, not one per layer (81).
    let (verdict, reads) = judge(&new_pub);
    assert!(!verdict.is_accepted());
    assert_eq!(reads, 9, "the artifact read once for the new key");
    // Both keys known: nothing read.
    assert_eq!(judge(&old_pub).1, 0);
}
