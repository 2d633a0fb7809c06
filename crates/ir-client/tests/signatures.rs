//! `--policy`: pulls judged by the server's signature policy format before
//! anything is written.

use std::sync::Arc;

use ir_client::{Client, ClientOptions, Error, Transport};
use ir_server::transport::plain::Plain;
use ir_testkit::cosign::{cosign_referrer, cosign_sign, Key};
use ir_testkit::Root;

use crate::util::{files, serve, signature_policy as policy};

#[tokio::test]
async fn only_images_the_policy_accepts_are_written() {
    const HOST: &str = "registry.test";
    let key = Key::p256();
    let root = Root::new();
    let app = root.layout("app");
    let tagged = app.image(b"signed with a .sig tag");
    let referred = app.image(b"signed with a referrer");
    let unsigned = app.image(b"unsigned");
    let sig = cosign_sign(&app, &tagged.manifest, &format!("{HOST}/app:tagged"), &key);
    let referrer = cosign_referrer(
        &app,
        &referred.manifest,
        &format!("{HOST}/app:referred"),
        &key,
    );
    app.set_index(&[
        tagged.tagged("tagged"),
        referred.tagged("referred"),
        unsigned.tagged("unsigned"),
        sig,
        referrer,
    ]);
    let key_path = key.write_public(root.path().parent().unwrap(), "cosign.pub");
    let server = serve(root.path(), Arc::new(Plain)).await;
    let client = Client::with_options(
        Transport::Plain,
        ClientOptions {
            signature_policy: Some(policy(&key_path, HOST)),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let base = format!("http://{}/app", server.addr);

    for tag in ["tagged", "referred"] {
        let report = client
            .pull(&format!("{base}:{tag}"), out.path())
            .await
            .unwrap();
        assert_eq!(report.signers.len(), 1, "{tag}");
        assert!(report.signers[0].starts_with("sha256:"));
    }
    let before = files(out.path());
    let e = client
        .pull(&format!("{base}:unsigned"), out.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    assert_eq!(e.exit_code(), 6);
    assert!(e.to_string().contains("registry.test/app:unsigned"), "{e}");
    assert!(e.to_string().contains("no_signature"), "{e}");
    assert_eq!(files(out.path()), before, "nothing written");

    // Judged under the reference's own host when no name is given: the
    // policy's scope is for registry.test only, so the default rejects.
    let mut p = policy(&key_path, HOST);
    p.registry_host = None;
    let strict = Client::with_options(
        Transport::Plain,
        ClientOptions {
            signature_policy: Some(p),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let e = strict
        .pull(&format!("{base}:tagged"), out.path())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("rejected"), "{e}");
    server.stop().await;
}
