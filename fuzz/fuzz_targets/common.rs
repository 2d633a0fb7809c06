#![allow(dead_code)] // each target uses a part of it
//! A scratch registry root shared by the layout targets: one application
//! `app` whose `index.json` or manifest the fuzzer writes, beside a fixed,
//! valid application `good` that must be served whatever `app` holds.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The fixed blobs every scratch layout holds, so that inputs naming them
/// (see the seeds) get past the presence and digest checks.
pub const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
pub const LAYER: &[u8] = b"fuzz layer";

pub struct Scratch {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub app: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_blob(app: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    std::fs::write(app.join("blobs/sha256").join(&hex), bytes).unwrap();
    hex
}

fn desc(media_type: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"sha256:{}","size":{}}}"#,
        sha256_hex(bytes),
        bytes.len()
    )
}

/// A valid image manifest over [`CONFIG`] and [`LAYER`].
pub fn good_manifest() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc("application/vnd.oci.image.config.v1+json", CONFIG),
        desc("application/vnd.oci.image.layer.v1.tar+gzip", LAYER)
    )
}

fn make_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    write_blob(dir, CONFIG);
    write_blob(dir, LAYER);
    let m = good_manifest();
    write_blob(dir, m.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
        desc(OCI_MANIFEST, m.as_bytes()).replace(
            '}',
            r#","annotations":{"org.opencontainers.image.ref.name":"latest"}}"#
        )
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
}

pub fn scratch() -> &'static std::sync::Mutex<Scratch> {
    static S: OnceLock<std::sync::Mutex<Scratch>> = OnceLock::new();
    S.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        make_layout(&root.join("good"));
        let app = root.join("app");
        make_layout(&app);
        std::sync::Mutex::new(Scratch {
            _tmp: tmp,
            root,
            app,
        })
    })
}

/// Removes every blob of `app` that is not one of the fixed ones.
pub fn reset(app: &Path) {
    let keep = [
        sha256_hex(CONFIG),
        sha256_hex(LAYER),
        sha256_hex(good_manifest().as_bytes()),
    ];
    for e in std::fs::read_dir(app.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub fn write_extra_blob(app: &Path, bytes: &[u8]) -> String {
    write_blob(app, bytes)
}

pub fn options() -> ir_oci::LoadOptions {
    ir_oci::LoadOptions {
        threads: Some(1),
        ..ir_oci::LoadOptions::default()
    }
}

/// Loads the scratch root and checks what must hold whatever `app` is:
/// `good` is served; `app` is either served or rejected (never both);
/// every manifest served is byte-for-byte the file under its digest, and
/// every served blob's file hashes to its digest.
pub fn load_and_check(s: &Scratch) {
    let reg = ir_oci::load(&s.root, &options()).expect("root loads");
    assert!(
        reg.applications.keys().any(|n| n.as_str() == "good"),
        "good not served: {:?}",
        reg.rejected
    );
    let app_served = reg.applications.keys().any(|n| n.as_str() == "app");
    let app_rejected = reg.rejected.iter().any(|r| r.application == "app");
    assert!(
        app_served != app_rejected,
        "served {app_served} rejected {app_rejected}"
    );
    for (name, app) in &reg.applications {
        for (digest, m) in &app.manifests {
            let on_disk = std::fs::read(app.dir.join(digest.blob_path())).unwrap();
            assert_eq!(&on_disk[..], &m.bytes[..], "{name} {digest}");
            assert_eq!(
                ir_oci::Digest::of_bytes(digest.algorithm(), &on_disk),
                *digest
            );
        }
        for (digest, _) in &app.blobs {
            let on_disk = std::fs::read(app.dir.join(digest.blob_path())).unwrap();
            assert_eq!(
                ir_oci::Digest::of_bytes(digest.algorithm(), &on_disk),
                *digest
            );
        }
        for (tag, digest) in &app.tags {
            assert!(app.manifests.contains_key(digest), "{name}:{tag}");
        }
    }
}
