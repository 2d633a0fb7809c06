//! Writes OCI image layouts, valid and broken, for ir-server's tests: a
//! registry root in a temporary directory, content-addressed blobs, image
//! configs, manifests, indexes, artifacts with subjects, tags, and the
//! corruptions that each loader rule must catch.
//!
//! ```
//! use ir_testkit::{Root, LAYER_GZIP};
//!
//! let root = Root::new();
//! let app = root.layout("team/app");
//! let image = app.image(b"layer bytes"); // config + layer + manifest
//! let index = app.index(&[image.manifest.platform("linux", "amd64")]);
//! app.set_index(&[image.tagged("latest"), index.tagged("multi")]);
//! app.corrupt_flip(&image.layers[0]); // same size, wrong digest
//! assert!(app.blob_path(&image.layers[0]).starts_with(root.path()));
//! # let _ = LAYER_GZIP;
//! ```
//!
//! Descriptors are JSON ([`Desc`] derefs to `serde_json::Value`), so a test
//! can tamper with any field before listing it. This crate deliberately does
//! not depend on `ir-oci` (it hashes with `sha2` itself), so that `ir-oci`
//! can use it as a dev-dependency; loading a [`Root`] and asserting on the
//! result belongs to the tests of the crate that does the loading.
//!
//! [`veraison_mock`] is a Veraison-compatible verifier for RA-TLS tests,
//! with knobs for statuses, latency and failures.
#![deny(missing_docs)]

pub mod cosign;
pub mod keyless;
pub mod veraison_mock;

use std::fs;
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI empty descriptor media type (the `{}` config of artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
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

/// The annotation on `index.json` descriptors that carries a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A digest algorithm for the blobs a [`Layout`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alg {
    /// `sha256`, the default.
    #[default]
    Sha256,
    /// `sha512`.
    Sha512,
}

impl Alg {
    /// The algorithm's name in digests and under `blobs/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Sha256 => "sha256",
            Alg::Sha512 => "sha512",
        }
    }

    /// The digest of `bytes`, as `<algorithm>:<lowercase hex>`.
    pub fn digest(self, bytes: &[u8]) -> String {
        let hex = match self {
            Alg::Sha256 => hex::encode(Sha256::digest(bytes)),
            Alg::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        format!("{}:{hex}", self.as_str())
    }
}

/// A descriptor as JSON, with accessors for what tests need. It derefs to
/// the JSON value, so `desc["digest"]` works.
#[derive(Debug, Clone, PartialEq)]
pub struct Desc(pub Value);

impl Deref for Desc {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl From<Desc> for Value {
    fn from(d: Desc) -> Value {
        d.0
    }
}

impl Desc {
    /// The descriptor's digest, as written (`<algorithm>:<hex>`).
    pub fn digest_str(&self) -> &str {
        self.0["digest"].as_str().expect("digest")
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
        let (alg, hex) = self
            .digest_str()
            .split_once(':')
            .expect("digest has an algorithm");
        Path::new("blobs").join(alg).join(hex)
    }

    /// A copy with `key` set to `value`.
    pub fn with(&self, key: &str, value: Value) -> Desc {
        let mut v = self.0.clone();
        v[key] = value;
        Desc(v)
    }

    /// A copy carrying an `org.opencontainers.image.ref.name` annotation
    /// (other annotations are kept).
    pub fn tagged(&self, ref_name: &str) -> Desc {
        let mut v = self.0.clone();
        v["annotations"][REF_NAME] = json!(ref_name);
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

/// A registry root in a fresh temporary directory, removed on drop. The
/// root is a subdirectory of the temporary directory, so that tests can put
/// files "outside" the registry beside it (see [`Root::outside`]).
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
        self.layout_with(name, Alg::Sha256)
    }

    /// Like [`Root::layout`], with blobs addressed by `alg`.
    pub fn layout_with(&self, name: &str, alg: Alg) -> Layout {
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
}

/// One OCI image layout being written. Every method writes at once; there
/// is no state to flush.
pub struct Layout {
    /// The application directory.
    pub dir: PathBuf,
    /// Algorithm used for blobs written by [`Layout::blob`].
    pub alg: Alg,
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
        let d = Desc(json!({
            "mediaType": media_type,
            "digest": self.alg.digest(bytes),
            "size": bytes.len(),
        }));
        self.write(d.file(), bytes);
        d
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
                "layers": values(layers),
            }),
        )
    }

    /// Stores an OCI image index over `manifests`.
    pub fn index(&self, manifests: &[Desc]) -> Desc {
        self.json(OCI_INDEX, &index_doc(manifests))
    }

    /// Config, one layer holding `layer` (opaque bytes, typed as a gzip
    /// layer: the loader does not decompress), and a manifest.
    pub fn image(&self, layer: &[u8]) -> Image {
        self.image_with_layers(&[layer])
    }

    /// Like [`Layout::image`] with one gzip-typed layer per entry of
    /// `layers`, in order.
    pub fn image_with_layers(&self, layers: &[&[u8]]) -> Image {
        let config = self.config();
        let layers: Vec<Desc> = layers.iter().map(|l| self.blob(LAYER_GZIP, l)).collect();
        let manifest = self.manifest(&config, &layers);
        Image {
            manifest,
            config,
            layers,
        }
    }

    /// Stores an OCI 1.1 artifact manifest of `artifact_type` over `layers`,
    /// with the empty `{}` config (written too). `extra` is a JSON object
    /// whose fields are added to the manifest: `subject`, `annotations`...
    pub fn artifact(&self, artifact_type: &str, layers: &[Desc], extra: Value) -> Desc {
        let empty = self.blob(OCI_EMPTY, b"{}");
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.0,
            "layers": values(layers),
        });
        let Value::Object(extra) = extra else {
            panic!("extra must be a JSON object, not {extra}");
        };
        for (key, value) in extra {
            m[key] = value;
        }
        self.json(OCI_MANIFEST, &m)
    }

    /// Writes `index.json` listing `manifests`.
    pub fn set_index(&self, manifests: &[Desc]) {
        self.set_index_json(&index_doc(manifests));
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

    /// Reads a blob, lets `change` alter its bytes, and writes them back.
    fn rewrite(&self, d: &Desc, change: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(self.blob_path(d)).unwrap();
        change(&mut bytes);
        self.overwrite(d, &bytes);
    }

    /// Flips the last byte of a blob: same size, wrong digest.
    pub fn corrupt_flip(&self, d: &Desc) {
        self.rewrite(d, |b| *b.last_mut().expect("non-empty blob") ^= 0x01);
    }

    /// Appends a byte to a blob: bigger than its descriptor says.
    pub fn corrupt_grow(&self, d: &Desc) {
        self.rewrite(d, |b| b.push(b'\n'));
    }

    /// Drops the last byte of a blob: smaller than its descriptor says.
    pub fn corrupt_shrink(&self, d: &Desc) {
        self.rewrite(d, |b| {
            b.pop();
        });
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

/// The JSON values of `descs`, for a `layers` or `manifests` array.
fn values(descs: &[Desc]) -> Vec<Value> {
    descs.iter().map(|d| d.0.clone()).collect()
}

/// An OCI image index document over `manifests`.
fn index_doc(manifests: &[Desc]) -> Value {
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": values(manifests)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        assert_eq!(
            Alg::Sha256.digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(Alg::Sha512
            .digest(b"")
            .starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(Alg::Sha512.digest(b"").len(), "sha512:".len() + 128);
    }

    #[test]
    fn blobs_are_content_addressed_under_their_algorithm() {
        let root = Root::new();
        for alg in [Alg::Sha256, Alg::Sha512] {
            let app = root.layout_with(alg.as_str(), alg);
            let d = app.blob(LAYER_TAR, b"bytes");
            assert_eq!(d.digest_str(), alg.digest(b"bytes"));
            assert_eq!(d.size(), 5);
            assert_eq!(d.media_type(), LAYER_TAR);
            assert!(d.file().starts_with(Path::new("blobs").join(alg.as_str())));
            assert_eq!(fs::read(app.blob_path(&d)).unwrap(), b"bytes");
        }
    }

    #[test]
    fn image_index_and_tags_are_written() {
        let root = Root::new();
        let app = root.layout("ns/app");
        let image = app.image_with_layers(&[b"one", b"two"]);
        assert_eq!(image.layers.len(), 2);
        let sbom = app.artifact(
            "application/vnd.example.sbom",
            &[app.blob("application/json", b"{}")],
            json!({"subject": image.manifest.0, "annotations": {"k": "v"}}),
        );
        let m: Value = serde_json::from_slice(&fs::read(app.blob_path(&sbom)).unwrap()).unwrap();
        assert_eq!(m["subject"], image.manifest.0);
        assert_eq!(m["config"]["mediaType"], OCI_EMPTY);
        assert_eq!(m["annotations"]["k"], "v");
        app.set_index(&[image.tagged("latest"), sbom]);
        let index: Value =
            serde_json::from_slice(&fs::read(app.path("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "latest");
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert!(root.path().join("ns/app/oci-layout").is_file());
    }

    #[test]
    fn corruptions_change_what_they_say() {
        let root = Root::new();
        let app = root.good("good");
        let d = app.blob(LAYER_GZIP, b"abc");
        app.corrupt_flip(&d);
        assert_eq!(fs::read(app.blob_path(&d)).unwrap(), b"abb");
        app.corrupt_grow(&d);
        assert_eq!(fs::read(app.blob_path(&d)).unwrap(), b"abb\n");
        app.corrupt_shrink(&d);
        app.corrupt_shrink(&d);
        assert_eq!(fs::read(app.blob_path(&d)).unwrap(), b"ab");
        assert!(!root.outside("x").starts_with(root.path()));
    }
}
