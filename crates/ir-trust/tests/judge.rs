//! Verdicts on layouts with cosign-shaped signatures: every reason, every
//! place a signature can be, and what is withdrawn.

use ir_oci::Digest;
use ir_testkit::Root;
use ir_trust::Verdict;
use serde_json::json;

use crate::util::*;

fn digest(d: &ir_testkit::Desc) -> Digest {
    Digest::parse(d.digest_str()).unwrap()
}

#[test]
fn signed_image_is_accepted_and_names_its_key() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"layer");
    let key = Key::p256();
    let sig = cosign_sign(&app, &image.manifest, &format!("{HOST}/app:1"), &key);
    app.set_index(&[image.tagged("1"), sig.clone()]);
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    match verdict(&j, "app", "1") {
        Verdict::Accepted { signers } => {
            assert_eq!(signers.len(), 1);
            assert!(signers[0].starts_with("sha256:"));
        }
        v => panic!("{v:?}"),
    }
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(served.manifests.contains_key(&digest(&image.manifest)));
    assert!(
        served.manifests.contains_key(&digest(&sig)),
        "the .sig is served"
    );
    assert!(served.blobs.contains_key(&digest(&image.layers[0])));
    assert_eq!(served.tags.len(), 2);
}

#[test]
fn every_refusal_has_its_reason() {
    let root = Root::new();
    let key = Key::p256();
    let other_key = Key::p256();
    let dir = root.path().parent().unwrap();
    let pubkey = key.write_public(dir, "k.pub");
    let reference = |app: &str| format!("{HOST}/{app}:1");

    // Unsigned.
    let unsigned = root.layout("unsigned");
    let i = unsigned.image(b"u");
    unsigned.set_index(&[i.tagged("1")]);

    // One bit flipped in the DER signature's value (still well-formed).
    let flipped = root.layout("flipped");
    let i = flipped.image(b"f");
    let p = payload(i.manifest.digest_str(), &reference("flipped"));
    let mut s = key.sign(&p);
    let last = s.len() - 1;
    s[last] ^= 1;
    let layer = signature_layer(&flipped, &p, &s);
    flipped.set_index(&[i.tagged("1"), sig_tag(&flipped, &i.manifest, &[layer])]);

    // A signature that is not a signature value at all.
    let garbage = root.layout("garbage");
    let i = garbage.image(b"g");
    let p = payload(i.manifest.digest_str(), &reference("garbage"));
    let layer = signature_layer(&garbage, &p, b"not a signature");
    garbage.set_index(&[i.tagged("1"), sig_tag(&garbage, &i.manifest, &[layer])]);

    // A valid signature of another manifest, put under this one's tag.
    let wrong = root.layout("wrongdigest");
    let i = wrong.image(b"w");
    let other = wrong.image(b"other");
    let p = payload(other.manifest.digest_str(), &reference("wrongdigest"));
    let layer = signature_layer(&wrong, &p, &key.sign(&p));
    wrong.set_index(&[i.tagged("1"), sig_tag(&wrong, &i.manifest, &[layer])]);

    // Signed by a key the policy does not list.
    let untrusted = root.layout("untrusted");
    let i = untrusted.image(b"k");
    let sig = cosign_sign(&untrusted, &i.manifest, &reference("untrusted"), &other_key);
    untrusted.set_index(&[i.tagged("1"), sig]);

    // Signed for another repository.
    let identity = root.layout("identity");
    let i = identity.image(b"i");
    let sig = cosign_sign(&identity, &i.manifest, &format!("{HOST}/other:1"), &key);
    identity.set_index(&[i.tagged("1"), sig]);

    // A payload that is not cosign's.
    let badpayload = root.layout("badpayload");
    let i = badpayload.image(b"b");
    let p = br#"{"critical":{}}"#.to_vec();
    let layer = signature_layer(&badpayload, &p, &key.sign(&p));
    badpayload.set_index(&[i.tagged("1"), sig_tag(&badpayload, &i.manifest, &[layer])]);

    let (_, j) = judge(&root, &signed_by(&pubkey, None));
    assert_eq!(reason(&j, "unsigned", "1"), "no_signature");
    assert_eq!(reason(&j, "flipped", "1"), "untrusted_key");
    assert_eq!(reason(&j, "garbage", "1"), "bad_signature");
    assert_eq!(reason(&j, "wrongdigest", "1"), "wrong_digest");
    assert_eq!(reason(&j, "untrusted", "1"), "untrusted_key");
    assert_eq!(reason(&j, "identity", "1"), "wrong_identity");
    assert_eq!(reason(&j, "badpayload", "1"), "bad_signature");
    let Verdict::Refused(r) = verdict(&j, "identity", "1") else {
        unreachable!()
    };
    assert!(r.requirement.contains("sigstoreSigned"), "{r}");
    assert!(r.detail.contains("registry.test/other:1"), "{r}");
}

#[test]
fn refused_images_take_their_exclusive_blobs_with_them() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let good = app.image_with_layers(&[b"shared", b"good only"]);
    let bad = app.image_with_layers(&[b"shared", b"bad only"]);
    let sig = cosign_sign(&app, &good.manifest, &format!("{HOST}/app:good"), &key);
    app.set_index(&[good.tagged("good"), bad.tagged("bad"), sig]);
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    assert_eq!(reason(&j, "app", "bad"), "no_signature");
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(served.tags.keys().all(|t| t.as_str() != "bad"));
    assert!(!served.manifests.contains_key(&digest(&bad.manifest)));
    assert!(!served.blobs.contains_key(&digest(&bad.layers[1])));
    assert!(served.blobs.contains_key(&digest(&bad.layers[0])), "shared");
    assert!(served.blobs.contains_key(&digest(&good.layers[1])));
    let judgement = j.iter().find(|j| j.application.as_str() == "app").unwrap();
    assert_eq!(judgement.manifests_withdrawn, 1);
    assert!(judgement.blobs_withdrawn >= 1);
}

#[test]
fn referrers_and_bundles_are_signatures_too() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let a = app.image(b"a");
    let b = app.image(b"b");
    let c = app.image(b"c");
    let ra = cosign_referrer(&app, &a.manifest, &format!("{HOST}/app:a"), &key);
    let rb = bundle_referrer(
        &app,
        &b.manifest,
        b.manifest.digest_str(),
        &format!("{HOST}/app:b"),
        &key,
    );
    // A bundle whose statement names another digest.
    let rc = bundle_referrer(
        &app,
        &c.manifest,
        a.manifest.digest_str(),
        &format!("{HOST}/app:c"),
        &key,
    );
    app.set_index(&[
        a.tagged("a"),
        b.tagged("b"),
        c.tagged("c"),
        ra.clone(),
        rb.clone(),
        rc,
    ]);
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    assert!(verdict(&j, "app", "a").is_accepted());
    assert!(verdict(&j, "app", "b").is_accepted());
    assert_eq!(reason(&j, "app", "c"), "wrong_digest");
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(served.manifests.contains_key(&digest(&ra)));
    assert!(served.referrers[&digest(&a.manifest)].contains(&digest(&ra)));
    assert!(served.referrers[&digest(&b.manifest)].contains(&digest(&rb)));
    assert!(
        !served.referrers.contains_key(&digest(&c.manifest)),
        "refused subject"
    );
}

#[test]
fn a_signed_index_covers_its_children() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let amd = app.image(b"amd64");
    let arm = app.image(b"arm64");
    let index = app.index(&[
        amd.manifest.platform("linux", "amd64"),
        arm.manifest.platform("linux", "arm64"),
    ]);
    let sig = cosign_sign(&app, &index, &format!("{HOST}/app:multi"), &key);
    app.set_index(&[index.tagged("multi"), sig]);
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    assert!(verdict(&j, "app", "multi").is_accepted());
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    for d in [&amd.manifest, &arm.manifest, &amd.layers[0], &arm.layers[0]] {
        let d = digest(d);
        assert!(
            served.manifests.contains_key(&d) || served.blobs.contains_key(&d),
            "{d}"
        );
    }
}

#[test]
fn other_key_types() {
    for key in [Key::p384(), Key::ed25519()] {
        let root = Root::new();
        let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
        let app = root.layout("app");
        let i = app.image(b"x");
        let sig = cosign_sign(&app, &i.manifest, &format!("{HOST}/app:1"), &key);
        app.set_index(&[i.tagged("1"), sig]);
        let (_, j) = judge(&root, &signed_by(&pubkey, None));
        assert!(verdict(&j, "app", "1").is_accepted());
    }
}

#[test]
fn any_one_good_signature_among_bad_ones_is_enough_and_many_are_bounded() {
    let root = Root::new();
    let key = Key::p256();
    let other = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let i = app.image(b"x");
    let reference = format!("{HOST}/app:1");
    let p = payload(i.manifest.digest_str(), &reference);
    let bad = signature_layer(&app, &p, &other.sign(&p));
    let good = signature_layer(&app, &p, &key.sign(&p));
    app.set_index(&[
        i.tagged("1"),
        sig_tag(&app, &i.manifest, &[bad.clone(), good.clone()]),
    ]);
    let (_, j) = judge(&root, &signed_by(&pubkey, None));
    assert!(verdict(&j, "app", "1").is_accepted());

    // 40 bad signatures before the good one: only the first 32 are read.
    let mut layers = vec![bad; 40];
    layers.push(good);
    app.set_index(&[i.tagged("1"), sig_tag(&app, &i.manifest, &layers)]);
    let (_, j) = judge(&root, &signed_by(&pubkey, None));
    assert_eq!(reason(&j, "app", "1"), "untrusted_key");
}

#[test]
fn accept_anything_and_reject() {
    let root = Root::new();
    root.good("open");
    root.good("closed");
    let policy = json!({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {format!("{HOST}/closed"): [{"type": "reject"}]}},
    });
    let (registry, j) = judge(&root, &policy);
    assert_eq!(
        verdict(&j, "open", "latest"),
        &Verdict::Accepted { signers: vec![] }
    );
    assert_eq!(reason(&j, "closed", "latest"), "rejected");
    let closed = &registry.applications[&ir_oci::RepoName::parse("closed").unwrap()];
    assert!(closed.tags.is_empty() && closed.blobs.is_empty());
}

#[test]
fn signed_identity_forms_against_real_signatures() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("team/app");
    let i = app.image(b"x");
    // Signed as "upstream.example/team/app:1", served as HOST/team/app:1 and :2.
    let sig = cosign_sign(&app, &i.manifest, "upstream.example/team/app:1", &key);
    app.set_index(&[i.tagged("1"), i.tagged("2"), sig]);
    let cases = [
        (json!({"type": "matchRepoDigestOrExact"}), false, false),
        (json!({"type": "matchExact"}), false, false),
        (json!({"type": "matchRepository"}), false, false),
        (
            json!({"type": "exactReference", "dockerReference": "upstream.example/team/app:1"}),
            true,
            true,
        ),
        (
            json!({"type": "exactReference", "dockerReference": "upstream.example/team/app:2"}),
            false,
            false,
        ),
        (
            json!({"type": "exactRepository", "dockerRepository": "upstream.example/team/app"}),
            true,
            true,
        ),
        (
            json!({"type": "remapIdentity", "prefix": HOST, "signedPrefix": "upstream.example"}),
            true,
            false,
        ),
        (
            json!({"type": "remapIdentity", "prefix": format!("{HOST}/team"), "signedPrefix": "upstream.example/team"}),
            true,
            false,
        ),
        (
            json!({"type": "remapIdentity", "prefix": format!("{HOST}/tea"), "signedPrefix": "upstream.example/tea"}),
            false,
            false,
        ),
    ];
    for (identity, tag1, tag2) in cases {
        let (_, j) = judge(&root, &signed_by(&pubkey, Some(identity.clone())));
        assert_eq!(
            verdict(&j, "team/app", "1").is_accepted(),
            tag1,
            "{identity} :1"
        );
        assert_eq!(
            verdict(&j, "team/app", "2").is_accepted(),
            tag2,
            "{identity} :2"
        );
        if !tag1 {
            assert_eq!(reason(&j, "team/app", "1"), "wrong_identity", "{identity}");
        }
    }
}

#[test]
fn a_signature_tag_cannot_smuggle_large_blobs() {
    // A ".sig" manifest whose "payload" layer is larger than any payload:
    // not a signature artifact, so it needs a verdict of its own (and gets
    // none), and its large layer is not served.
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let i = app.image(b"x");
    let big = app.blob(SIMPLE_SIGNING, &vec![b' '; 100 * 1024]);
    let sig = sig_tag(&app, &i.manifest, std::slice::from_ref(&big));
    app.set_index(&[i.tagged("1"), sig.clone()]);
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    assert_eq!(reason(&j, "app", "1"), "no_signature");
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(!served.manifests.contains_key(&digest(&sig)));
    assert!(!served.blobs.contains_key(&digest(&big)));
}

#[test]
fn a_payload_replaced_by_a_symlink_after_the_load_is_not_read() {
    let root = Root::new();
    let key = Key::p256();
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let app = root.layout("app");
    let i = app.image(b"x");
    let p = payload(i.manifest.digest_str(), &format!("{HOST}/app:1"));
    let layer = signature_layer(&app, &p, &key.sign(&p));
    app.set_index(&[
        i.tagged("1"),
        sig_tag(&app, &i.manifest, std::slice::from_ref(&layer)),
    ]);
    let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    // After verification, the payload becomes a link to an endless device.
    let path = app.blob_path(&layer);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let trust = trust_of(&root, &signed_by(&pubkey, None));
    let memo = ir_trust::Memo::new();
    let (_, j) = ir_trust::enforce::enforce(&trust, &memo, HOST, registry);
    assert_eq!(reason(&j, "app", "1"), "bad_signature");
    // Unreadable now is not a property of the artifact: not remembered.
    assert!(memo.is_empty(), "{memo:?}");
}

#[test]
fn a_memo_recalls_verdicts_and_tries_a_new_key_on_the_signature_bytes() {
    let root = Root::new();
    let outside = root.path().parent().unwrap();
    let (key, other) = (Key::p256(), Key::p256());
    let pubkey = key.write_public(outside, "k.pub");
    let other_pub = other.write_public(outside, "other.pub");
    let app = root.layout("app");
    let i = app.image(b"x");
    let sig = cosign_sign(&app, &i.manifest, &format!("{HOST}/app:1"), &key);
    app.set_index(&[i.tagged("1"), sig]);
    let trust = |pubkey: &std::path::Path| trust_of(&root, &signed_by(pubkey, None));
    let load = || ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
    // Judged under another key first: the memo records that it fails.
    let memo = ir_trust::Memo::new();
    let (_, j) = ir_trust::enforce::enforce(&trust(&other_pub), &memo, HOST, load());
    assert_eq!(reason(&j, "app", "1"), "untrusted_key");
    let file = root.outside("memo.json");
    memo.save(&file).unwrap();
    // Then under the signing key, from the file: that key was never
    // tried, so the signature is read and verified now, and recorded.
    let read = ir_trust::Memo::load(&file).unwrap();
    let (_, j) = ir_trust::enforce::enforce(&trust(&pubkey), &read, HOST, load());
    assert!(verdict(&j, "app", "1").is_accepted(), "{j:?}");
    assert!(read.save(&file).unwrap(), "the new key's result is new");
    // A memo cannot make a bad signature good: the other key still fails.
    let (_, j) = ir_trust::enforce::enforce(&trust(&other_pub), &read, HOST, load());
    assert_eq!(reason(&j, "app", "1"), "untrusted_key");
}

#[test]
fn served_tags_and_artifacts_are_exactly_what_was_accepted() {
    let root = Root::new();
    let app = root.layout("app");
    let key = Key::p256();
    let image = app.image(b"v1");
    let sig = cosign_sign(&app, &image.manifest, &format!("{HOST}/app:1"), &key);
    let refused = app.image(b"refused");
    // A cosign-shaped signature of the refused image under the signed
    // image's `.sig` tag name cannot be: that tag is taken. A referrer of
    // the signed image whose payload signs the refused one can be tried.
    let p = payload(refused.manifest.digest_str(), &format!("{HOST}/app:1"));
    let layer = signature_layer(&app, &p, &key.sign(&p));
    let wrong = app.artifact(
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        std::slice::from_ref(&layer),
        json!({"subject": image.manifest.0}),
    );
    // A bundle-typed manifest listing the refused image's layer in `blobs`.
    let smuggler = app.artifact(
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        &[],
        json!({"subject": image.manifest.0, "blobs": [refused.layers[0].0]}),
    );
    app.set_index(&[
        image.tagged("1"),
        image.tagged("evil"),
        sig.clone(),
        refused.tagged("r"),
        wrong.clone(),
        smuggler.clone(),
    ]);
    let pubkey = key.write_public(root.path().parent().unwrap(), "k.pub");
    let (registry, j) = judge(&root, &signed_by(&pubkey, None));
    assert!(verdict(&j, "app", "1").is_accepted());
    assert!(matches!(
        verdict(&j, "app", "evil"),
        Verdict::Refused(r) if r.reason == ir_trust::Reason::WrongIdentity
    ));
    let served = &registry.applications[&ir_oci::RepoName::parse("app").unwrap()];
    let tags: Vec<&str> = served.tags.keys().map(|t| t.as_str()).collect();
    let sig_tag = format!("{}.sig", image.manifest.digest_str().replace(':', "-"));
    assert_eq!(tags, vec!["1", sig_tag.as_str()]);
    assert!(served.manifests.contains_key(&digest(&sig)));
    for withheld in [&refused.manifest, &wrong, &smuggler] {
        assert!(!served.manifests.contains_key(&digest(withheld)));
    }
    assert!(!served.blobs.contains_key(&digest(&refused.layers[0])));
    assert!(!served.blobs.contains_key(&digest(&layer)));
    assert_eq!(j[0].signature_artifacts, 1);
}
