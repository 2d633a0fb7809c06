//! Our verifier against an independent signer: keys generated in cosign's
//! own encrypted format and signatures made by sigstore-rs (through
//! `ir-sign`), in each of cosign's three forms and each key type.

use ir_sign::keys::{generate, load_signer, KeyType};
use ir_sign::Mode;
use ir_testkit::Root;
use ir_trust::Verdict;

use crate::util::*;

const PASSWORD: &[u8] = b"correct horse";

/// A root with `app:1`, signed by a fresh key of `key_type` in `mode` for
/// `reference`; the public key's path.
fn signed_root(
    key_type: KeyType,
    mode: Mode,
    reference: &str,
) -> (Root, std::path::PathBuf, String) {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"independently signed");
    app.set_index(&[image.tagged("1")]);
    let pair = generate(key_type, PASSWORD).unwrap();
    let signer = load_signer(pair.private_pem.as_bytes(), PASSWORD).unwrap();
    let layout = ir_sign::layout::Layout::open(&app.dir).unwrap();
    ir_sign::sign::sign(
        &layout,
        signer,
        image.manifest.digest_str(),
        reference,
        mode,
    )
    .unwrap();
    let key = root.path().parent().unwrap().join("cosign.pub");
    std::fs::write(&key, &pair.public_pem).unwrap();
    (root, key, image.manifest.digest_str().to_owned())
}

#[test]
fn sigstore_rs_signatures_are_accepted_in_every_form_and_key_type() {
    for key_type in [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa,
    ] {
        for mode in [Mode::Tag, Mode::Referrers] {
            let (root, key, _) = signed_root(key_type, mode, &format!("{HOST}/app:1"));
            let (_, j) = judge(&root, &signed_by(&key, None));
            match verdict(&j, "app", "1") {
                Verdict::Accepted { signers } => assert_eq!(signers.len(), 1),
                v => panic!("{key_type:?} {mode}: {v:?}"),
            }
        }
        // A bundle as cosign v3 writes it names no image: it verifies but
        // signs no identity, under any signedIdentity.
        let (root, key, _) = signed_root(key_type, Mode::Bundle, &format!("{HOST}/app:1"));
        for identity in [None, Some(serde_json::json!({"type": "matchRepository"}))] {
            let (_, j) = judge(&root, &signed_by(&key, identity));
            assert_eq!(reason(&j, "app", "1"), "wrong_identity", "{key_type:?}");
        }
    }
}

#[test]
fn sigstore_rs_signatures_are_refused_for_the_right_reasons() {
    // Another repository's name (cosign writes what it is told).
    let (root, key, _) = signed_root(KeyType::EcdsaP256, Mode::Tag, &format!("{HOST}/other:1"));
    let (_, j) = judge(&root, &signed_by(&key, None));
    assert_eq!(reason(&j, "app", "1"), "wrong_identity");

    // A key the policy does not list.
    let (root, _, _) = signed_root(
        KeyType::EcdsaP256,
        Mode::Referrers,
        &format!("{HOST}/app:1"),
    );
    let dir = root.outside("other-key");
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other.pub");
    std::fs::write(
        &other,
        generate(KeyType::EcdsaP256, PASSWORD).unwrap().public_pem,
    )
    .unwrap();
    let (_, j) = judge(&root, &signed_by(&other, None));
    assert_eq!(reason(&j, "app", "1"), "untrusted_key");

    // cosign's usual repository-only reference: refused by the default
    // identity (a name-only reference never matches), accepted by
    // matchRepository.
    let (root, key, _) = signed_root(KeyType::EcdsaP256, Mode::Referrers, &format!("{HOST}/app"));
    let (_, j) = judge(&root, &signed_by(&key, None));
    assert_eq!(reason(&j, "app", "1"), "wrong_identity");
    let (_, j) = judge(
        &root,
        &signed_by(&key, Some(serde_json::json!({"type": "matchRepository"}))),
    );
    assert!(verdict(&j, "app", "1").is_accepted());
}

#[test]
fn a_flipped_bit_in_a_sigstore_rs_signature_is_refused() {
    let (root, key, digest) = signed_root(KeyType::EcdsaP256, Mode::Tag, &format!("{HOST}/app:1"));
    // Flip one bit of the DER signature inside the .sig manifest's
    // annotation and write the manifest back under its new digest.
    let app = root.path().join("app");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.join("index.json")).unwrap()).unwrap();
    let sig_tag = ir_sign::signature_tag(&digest);
    let mut index = index;
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == sig_tag.as_str())
        .unwrap();
    let old = entry["digest"].as_str().unwrap().to_owned();
    let path = app
        .join("blobs/sha256")
        .join(old.trim_start_matches("sha256:"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let annotation =
        &mut manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64.decode(annotation.as_str().unwrap()).unwrap();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    *annotation = b64.encode(&sig).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let hex = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &bytes,
    ));
    std::fs::write(app.join("blobs/sha256").join(&hex), &bytes).unwrap();
    std::fs::remove_file(&path).unwrap();
    entry["digest"] = format!("sha256:{hex}").into();
    entry["size"] = bytes.len().into();
    std::fs::write(app.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let (_, j) = judge(&root, &signed_by(&key, None));
    assert_eq!(reason(&j, "app", "1"), "untrusted_key");
}
