//! The signature-policy fixture of `signatures` and `fail_closed`: a root
//! with a signed and an unsigned image, a policy that requires the signing
//! key, and the server serving the root as the binary does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ir_oci::LoadOptions;
use ir_server::snapshot::catalog::Catalog;
use ir_server::snapshot::policy_gate::Gate;
use ir_server::snapshot::reload::Reloader;
use ir_testkit::cosign::{cosign_sign, Key};
use ir_testkit::{Desc, Image, Layout, Root};
use serde_json::json;

use super::TestServer;

/// The registry host the policies and signatures name.
pub const HOST: &str = "registry.test";

/// Writes a policy that rejects everything but images of HOST signed by
/// one of `keys` (`keyPath` for one key, `keyPaths` for more).
pub fn write_policy(path: &Path, keys: &[&Path]) {
    let req = match keys {
        [one] => json!({"type": "sigstoreSigned", "keyPath": one}),
        _ => json!({"type": "sigstoreSigned", "keyPaths": keys}),
    };
    let policy = json!({"default": [{"type": "reject"}], "transports": {"docker": {HOST: [req]}}});
    std::fs::write(path, serde_json::to_vec(&policy).unwrap()).unwrap();
}

/// Writes a policy with two scopes: HOST (production realms) requires
/// `key`, `test.registry` (test realms) accepts anything.
pub fn write_scoped_policy(path: &Path, key: &Path) {
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            HOST: [{"type": "sigstoreSigned", "keyPath": key}],
            "test.registry": [{"type": "insecureAcceptAnything"}],
        }},
    });
    std::fs::write(path, serde_json::to_vec(&policy).unwrap()).unwrap();
}

/// A root with `signed:1` (signed by `key`, its `.sig` tag beside it) and
/// `unsigned:1`, each with a layer of its own; the policy requiring `key`
/// for HOST, and the public key's file, outside the root.
pub struct Fixture {
    pub root: Root,
    pub signed: Image,
    pub sig: Desc,
    pub unsigned_app: Layout,
    pub unsigned: Image,
    pub policy: PathBuf,
    pub key_path: PathBuf,
}

pub fn fixture(key: &Key) -> Fixture {
    let root = Root::new();
    let signed_app = root.layout("signed");
    let signed = signed_app.image(b"signed layer");
    let sig = cosign_sign(
        &signed_app,
        &signed.manifest,
        &format!("{HOST}/signed:1"),
        key,
    );
    signed_app.set_index(&[signed.tagged("1"), sig.clone()]);
    let unsigned_app = root.layout("unsigned");
    let unsigned = unsigned_app.image(b"unsigned layer");
    unsigned_app.set_index(&[unsigned.tagged("1")]);
    let dir = root.outside("trust");
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = key.write_public(&dir, "cosign.pub");
    let policy = dir.join("policy.json");
    write_policy(&policy, &[&key_path]);
    Fixture {
        root,
        signed,
        sig,
        unsigned_app,
        unsigned,
        policy,
        key_path,
    }
}

/// Serves `root` judged by `gate` as the binary does (views and the
/// applications as loaded), over plain HTTP.
pub async fn serve(root: &Root, gate: &Gate) -> TestServer {
    let registry = ir_oci::load(root.path(), &LoadOptions::default()).unwrap();
    let judged = gate.apply(registry);
    let catalog = Catalog::new(judged.registry)
        .with_views(Some((gate.host().to_owned(), judged.views)))
        .with_loaded(judged.loaded);
    TestServer::serve_catalog(
        catalog,
        Arc::new(ir_server::transport::plain::Plain),
        super::options(Default::default()),
        "http",
    )
    .await
}

/// The reloader of `server` for `root`, judging with `gate`.
pub fn reloader(server: &TestServer, root: &Root, gate: &Arc<Gate>) -> Reloader {
    Reloader::new(
        server.state.catalog.clone(),
        root.path().to_path_buf(),
        LoadOptions::default(),
    )
    .with_trust(Some(gate.clone()))
}
