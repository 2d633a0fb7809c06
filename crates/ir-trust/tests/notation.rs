//! Notation signatures attached as referrers, judged with notation's trust
//! policy and store (envelopes and PKI from ir-notation's generators).

use ir_notation::test_util as generate;
use ir_notation::Target;
use ir_testkit::Root;
use ir_trust::{NotationTrust, Trust, Verdict};
use serde_json::json;

use crate::util::{judge_with, reason, verdict, HOST};

fn target(d: &ir_testkit::Desc) -> Target {
    Target {
        media_type: d.media_type().to_owned(),
        digest: d.digest_str().to_owned(),
        size: d.size(),
    }
}

#[test]
fn notation_signed_images_are_accepted_and_others_refused() {
    let root = Root::new();
    let app = root.layout("app");
    let signed = app.image(b"signed");
    let unsigned = app.image(b"unsigned");
    let misdirected = app.image(b"misdirected");
    let s = generate::signer("signer", generate::Leaf::Good);
    let envelope =
        |t: &Target| generate::jws(&s, &generate::payload(t), &generate::Headers::default());
    let attach = |subject: &ir_testkit::Desc, env: Vec<u8>| {
        let layer = app.blob("application/jose+json", &env);
        app.artifact(
            "application/vnd.cncf.notary.signature",
            &[layer],
            json!({"subject": subject.0}),
        )
    };
    let good = attach(&signed.manifest, envelope(&target(&signed.manifest)));
    // A genuine signature of another manifest, attached to this one.
    let wrong = attach(&misdirected.manifest, envelope(&target(&signed.manifest)));
    app.set_index(&[
        signed.tagged("signed"),
        unsigned.tagged("unsigned"),
        misdirected.tagged("misdirected"),
        good,
        wrong,
    ]);
    let (_store_dir, store) = generate::store("roots", &[&s.root_der]);
    let trust = Trust {
        policy: None,
        notation: Some(NotationTrust {
            policy: generate::policy("strict", &format!("\"{HOST}/app\""), generate::IDENTITY),
            store,
        }),
    };
    let (_, j) = judge_with(&root, &trust);
    match verdict(&j, "app", "signed") {
        Verdict::Accepted { signers } => assert!(signers[0].contains("CN=signer"), "{signers:?}"),
        v => panic!("{v:?}"),
    }
    assert_eq!(reason(&j, "app", "unsigned"), "no_signature");
    assert_eq!(reason(&j, "app", "misdirected"), "wrong_digest");

    // An identity the policy does not trust.
    let (_d, store) = generate::store("roots", &[&s.root_der]);
    let other = Trust {
        policy: None,
        notation: Some(NotationTrust {
            policy: generate::policy(
                "strict",
                &format!("\"{HOST}/app\""),
                r#""x509.subject: C=US, ST=WA, O=Example, CN=someone else""#,
            ),
            store,
        }),
    };
    let (_, j) = judge_with(&root, &other);
    assert_eq!(reason(&j, "app", "signed"), "wrong_identity");
}
