//! Shared helpers: a scratch copy of the example registry's `hello` layout and a key pair.

use std::path::{Path, PathBuf};

use ir_sign::keys::{self, KeyType};
use ir_sign::layout::Layout;
use sigstore::crypto::SigStoreSigner;

/// The reference the tests sign for.
pub const REFERENCE: &str = "registry.example:5000/hello:latest";
/// The password of the tests' keys.
pub const PASSWORD: &[u8] = b"correct horse";

/// A scratch layout (a copy of `registry/hello`) in a temporary directory.
pub struct Scratch {
    /// Holds the directory until the test ends.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry/hello");
        copy_dir(&source, &dir.path().join("layout"));
        Scratch { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    pub fn layout(&self) -> Layout {
        Layout::open(&self.path()).unwrap()
    }

    /// The digest the `latest` tag names.
    pub fn latest(&self) -> String {
        self.layout()
            .resolve_tag("latest")
            .unwrap()
            .digest()
            .to_string()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh key pair: (signer, public key PEM).
pub fn key_pair(key_type: KeyType) -> (SigStoreSigner, Vec<u8>) {
    let pair = keys::generate(key_type, PASSWORD).unwrap();
    let signer = keys::load_signer(pair.private_pem.as_bytes(), PASSWORD).unwrap();
    (signer, pair.public_pem.into_bytes())
}
