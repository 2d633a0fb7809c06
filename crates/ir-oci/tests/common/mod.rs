//! Writes OCI image layouts, valid and broken, into a temporary directory,
//! so that each loader rule is a short test.
//!
//! ```ignore
//! let root = Root::new();
//! let app = root.layout("app");
//! let image = app.image(b"layer bytes");     // config + layer + manifest
//! app.set_index(&[image.tagged("latest")]);  // index.json
//! app.corrupt_flip(&image.layers[0]);        // same size, wrong digest
//! let reg = root.load();
//! ```
#![allow(dead_code)] // each test file uses a different part of the helper

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ir_oci::media_type::{OCI_INDEX, OCI_MANIFEST};
use ir_oci::{Algorithm, Digest, LoadOptions, Registry, Rule};
use serde_json::{json, Value};

/// OCI gzip layer media type.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI uncompressed layer media type.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI image config media type.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema 2 layer media type.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A descriptor as JSON, with accessors for what tests need.
#[derive(Debug, Clone, PartialEq)]
pub struct Desc(pub Value);

impl Desc {
    /// The descriptor's digest, parsed.
    pub fn digest(&self) -> Digest {
        Digest::parse(self.0["digest"].as_str().expect("digest")).expect("valid digest")
    }
    /// The descriptor's size.
    pub fn size(&self) -> u64 {
        self.0["size"].as_u64().expect("size")
    }
    /// The descriptor's media type.
    pub fn media_type(&self) -> &str {
        self.0["mediaType"].as_str().expect("mediaType")
    }
    /// Path of the blob relative to the application: `blobs/<alg>/<hex>`.
    pub fn file(&self) -> PathBuf {
        PathBuf::from(self.digest().blob_path())
    }
    /// A copy with `key` set to `value`.
    pub fn with(&self, key: &str, value: Value) -> Desc {
        let mut v = self.0.clone();
        v[key] = value;
        Desc(v)
    }
    /// A copy carrying an `org.opencontainers.image.ref.name` annotation.
    pub fn tagged(&self, ref_name: &str) -> Desc {
        let mut v = self.0.clone();
        v["annotations"]["org.opencontainers.image.ref.name"] = json!(ref_name);
        Desc(v)
    }
    /// A copy with a `platform`.
    pub fn platform(&self, os: &str, arch: &str) -> Desc {
        self.with("platform", json!({"os": os, "architecture": arch}))
    }
}

/// An image written by [`Layout::image`]: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// Descriptor of the manifest.
    pub manifest: Desc,
    /// Descriptor of the config.
    pub config: Desc,
    /// Descriptors of the layers.
    pub layers: Vec<Desc>,
}

impl Image {
    /// The manifest's descriptor with a tag.
    pub fn tagged(&self, tag: &str) -> Desc {
        self.manifest.tagged(tag)
    }
}

/// A registry root in a fresh temporary directory. The root is a
/// subdirectory of the temporary directory, so that tests can put files
/// "outside" the registry beside it (see [`Root::outside`]).
pub struct Root {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    /// An empty root.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        Root { tmp, root }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A path beside the root, not inside it.
    pub fn outside(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A new sha256 layout at `root/<name>` (`name` may contain `/`), with
    /// `oci-layout` and `blobs/sha256/` but no `index.json` yet.
    pub fn layout(&self, name: &str) -> Layout {
        self.layout_with(name, Algorithm::Sha256)
    }

    /// Like [`Root::layout`], with blobs addressed by `alg`.
    pub fn layout_with(&self, name: &str, alg: Algorithm) -> Layout {
        let dir = self.root.join(name);
        fs::create_dir_all(dir.join("blobs").join(alg.as_str())).unwrap();
        let layout = Layout { dir, alg };
        layout.write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        layout
    }

    /// A complete valid application `name` with one image tagged `latest`.
    pub fn good(&self, name: &str) -> Layout {
        let app = self.layout(name);
        let image = app.image(format!("layer of {name}").as_bytes());
        app.set_index(&[image.tagged("latest")]);
        app
    }

    /// Loads the root with default options; panics on a root error.
    pub fn load(&self) -> Registry {
        self.load_with(&LoadOptions::default())
    }

    /// Loads the root with `options`.
    pub fn load_with(&self, options: &LoadOptions) -> Registry {
        ir_oci::load(&self.root, options).expect("root loads")
    }
}

/// One OCI image layout being written.
pub struct Layout {
    /// The application directory.
    pub dir: PathBuf,
    /// Algorithm used for blobs written by [`Layout::blob`].
    pub alg: Algorithm,
}

impl Layout {
    /// Writes `bytes` to `rel` (relative to the application), creating
    /// directories, replacing whatever was there.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) {
        let path = self.dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        fs::write(&path, bytes).unwrap();
    }

    /// Absolute path of `rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    /// Absolute path of a descriptor's blob.
    pub fn blob_path(&self, d: &Desc) -> PathBuf {
        self.dir.join(d.file())
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let digest = Digest::of_bytes(self.alg, bytes);
        self.write(digest.blob_path(), bytes);
        Desc(json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": bytes.len(),
        }))
    }

    /// Stores a JSON document as a blob (compact serialisation).
    pub fn json(&self, media_type: &str, value: &Value) -> Desc {
        self.blob(media_type, &serde_json::to_vec(value).unwrap())
    }

    /// A minimal OCI image config for linux/amd64.
    pub fn config(&self) -> Desc {
        self.json(
            CONFIG,
            &json!({
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }),
        )
    }

    /// Stores an OCI image manifest over `config` and `layers`.
    pub fn manifest(&self, config: &Desc, layers: &[Desc]) -> Desc {
        self.json(
            OCI_MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.0,
                "layers": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
            }),
        )
    }

    /// Stores an OCI image index over `manifests`.
    pub fn index(&self, manifests: &[Desc]) -> Desc {
        self.json(
            OCI_INDEX,
            &json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": manifests.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            }),
        )
    }

    /// Config, one layer holding `layer` (opaque bytes, typed as a gzip
    /// layer: the loader does not decompress), and a manifest.
    pub fn image(&self, layer: &[u8]) -> Image {
        let config = self.config();
        let layer = self.blob(LAYER_GZIP, layer);
        let manifest = self.manifest(&config, std::slice::from_ref(&layer));
        Image {
            manifest,
            config,
            layers: vec![layer],
        }
    }

    /// Writes `index.json` listing `manifests`.
    pub fn set_index(&self, manifests: &[Desc]) {
        self.set_index_json(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        }));
    }

    /// Writes `index.json` verbatim from a JSON value.
    pub fn set_index_json(&self, value: &Value) {
        self.write("index.json", &serde_json::to_vec_pretty(value).unwrap());
    }

    // ---- corruptions -------------------------------------------------

    /// Replaces a blob's content with `bytes` (keeping its name).
    pub fn overwrite(&self, d: &Desc, bytes: &[u8]) {
        self.write(d.file(), bytes);
    }

    /// Flips the last byte of a blob: same size, wrong digest.
    pub fn corrupt_flip(&self, d: &Desc) {
        let mut bytes = fs::read(self.blob_path(d)).unwrap();
        let last = bytes.last_mut().expect("non-empty blob");
        *last ^= 0x01;
        self.overwrite(d, &bytes);
    }

    /// Appends a byte to a blob: bigger than its descriptor says.
    pub fn corrupt_grow(&self, d: &Desc) {
        let mut bytes = fs::read(self.blob_path(d)).unwrap();
        bytes.push(b'\n');
        self.overwrite(d, &bytes);
    }

    /// Drops the last byte of a blob: smaller than its descriptor says.
    pub fn corrupt_shrink(&self, d: &Desc) {
        let mut bytes = fs::read(self.blob_path(d)).unwrap();
        bytes.pop();
        self.overwrite(d, &bytes);
    }

    /// Removes `rel` (a file or a symlink).
    pub fn remove(&self, rel: impl AsRef<Path>) {
        fs::remove_file(self.dir.join(rel)).unwrap();
    }

    /// Replaces `rel` with a symbolic link to `target`.
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) {
        let path = self.dir.join(rel);
        if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            let _ = fs::remove_file(&path);
        }
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// Gives `rel` a second name at `other` (a hard link; link count 2).
    pub fn hardlink(&self, rel: impl AsRef<Path>, other: impl AsRef<Path>) {
        fs::hard_link(self.dir.join(rel), other).unwrap();
    }

    /// Replaces `rel` with a FIFO (named pipe).
    pub fn fifo(&self, rel: impl AsRef<Path>) {
        let path = self.dir.join(rel);
        let _ = fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    }

    /// Replaces `rel` with an empty directory.
    pub fn make_dir(&self, rel: impl AsRef<Path>) {
        let path = self.dir.join(rel);
        let _ = fs::remove_file(&path);
        fs::create_dir_all(path).unwrap();
    }

    /// Sets the permission bits of `rel`.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) {
        fs::set_permissions(self.dir.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
}

// ---- assertions -------------------------------------------------------

/// Asserts that `app` is served.
#[track_caller]
pub fn assert_served(reg: &Registry, app: &str) {
    assert!(
        reg.applications.keys().any(|n| n.as_str() == app),
        "{app} is not served; rejected: {:#?}",
        reg.rejected
    );
}

/// Asserts that exactly one application was rejected, that it is `app`,
/// for `file` (relative to the application), and returns its rule.
#[track_caller]
pub fn rejection(reg: &Registry, app: &str, file: impl AsRef<Path>) -> Rule {
    assert_eq!(
        reg.rejected.len(),
        1,
        "expected one rejection, got {:#?}",
        reg.rejected
    );
    let r = &reg.rejected[0];
    assert_eq!(r.application, app, "{r}");
    assert_eq!(r.file, file.as_ref(), "{r}");
    assert!(
        !reg.applications.keys().any(|n| n.as_str() == app),
        "{app} is rejected but served"
    );
    r.rule.clone()
}

/// Asserts `bad` was rejected for `file` with exactly `rule`, and that the
/// application `good` in the same root is still served.
#[track_caller]
pub fn assert_rejected(reg: &Registry, bad: &str, file: impl AsRef<Path>, rule: Rule) {
    assert_eq!(rejection(reg, bad, file), rule);
    assert_served(reg, "good");
}

/// Asserts nothing was rejected.
#[track_caller]
pub fn assert_clean(reg: &Registry) {
    assert!(reg.rejected.is_empty(), "rejected: {:#?}", reg.rejected);
}
