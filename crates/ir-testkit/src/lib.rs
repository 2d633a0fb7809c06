//! Writes OCI image layouts for tests: content-addressed blobs, image
//! manifests, indexes, artifacts with subjects, and tags, in a few lines
//! each. Everything returns descriptors as `serde_json::Value`, so a test
//! can tamper with any field before writing it.
#![deny(missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use ir_oci::media_type::{OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use ir_oci::{Algorithm, Digest};
use serde_json::{json, Value};

/// Media type of a gzip layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A layout being written under `dir`.
pub struct Layout {
    dir: PathBuf,
    algorithm: Algorithm,
    manifests: Vec<Value>,
}

impl Layout {
    /// Creates `root/name` with `oci-layout` and `blobs/`, hashing with SHA-256.
    pub fn new(root: &Path, name: &str) -> Self {
        Self::with_algorithm(root, name, Algorithm::Sha256)
    }

    /// Like [`Layout::new`] with another digest algorithm.
    pub fn with_algorithm(root: &Path, name: &str, algorithm: Algorithm) -> Self {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("blobs").join(algorithm.as_str())).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            algorithm,
            manifests: Vec::new(),
        }
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the blob a descriptor points at.
    pub fn path_of(&self, descriptor: &Value) -> PathBuf {
        let d = Digest::parse(descriptor["digest"].as_str().unwrap()).unwrap();
        self.dir.join(d.blob_path())
    }

    /// Writes `bytes` as a blob; returns its descriptor with `media_type`.
    pub fn blob(&mut self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = Digest::of_bytes(self.algorithm, bytes);
        let path = self.dir.join(digest.blob_path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest.as_str(), "size": bytes.len()})
    }

    /// Writes a JSON document as a blob (compact serialisation).
    pub fn json(&mut self, media_type: &str, doc: &Value) -> Value {
        self.blob(media_type, &serde_json::to_vec(doc).unwrap())
    }

    /// An image: a config and one gzip-typed layer per entry of `layers`;
    /// returns the manifest's descriptor.
    pub fn image(&mut self, layers: &[&[u8]]) -> Value {
        let layers: Vec<Value> = layers.iter().map(|l| self.blob(LAYER_GZIP, l)).collect();
        let config = self.json(
            CONFIG,
            &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        );
        self.manifest(config, layers, None)
    }

    /// An image manifest with the given config and layers (and subject).
    pub fn manifest(&mut self, config: Value, layers: Vec<Value>, subject: Option<Value>) -> Value {
        let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
        if let Some(s) = subject {
            m["subject"] = s;
        }
        self.json(OCI_MANIFEST, &m)
    }

    /// An artifact of `artifact_type` carrying `payload`, referring to
    /// `subject`, with an empty config, as OCI 1.1 recommends.
    pub fn artifact(&mut self, subject: &Value, artifact_type: &str, payload: &[u8]) -> Value {
        let empty = self.blob(OCI_EMPTY, b"{}");
        let layer = self.blob("application/json", payload);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty,
            "layers": [layer],
            "subject": subject,
            "annotations": {"org.example.kind": artifact_type},
        });
        self.json(OCI_MANIFEST, &m)
    }

    /// An image index over `manifests`.
    pub fn index(&mut self, manifests: &[Value]) -> Value {
        self.json(
            OCI_INDEX,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
    }

    /// Lists `descriptor` in `index.json` under `tag`.
    pub fn tag(&mut self, descriptor: &Value, tag: &str) -> &mut Self {
        let mut d = descriptor.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(d);
        self
    }

    /// Lists `descriptor` in `index.json` without a tag.
    pub fn untagged(&mut self, descriptor: &Value) -> &mut Self {
        self.manifests.push(descriptor.clone());
        self
    }

    /// Writes `index.json`.
    pub fn write_index(&self) {
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
}
