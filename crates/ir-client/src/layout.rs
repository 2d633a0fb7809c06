//! Writing an OCI image layout: `oci-layout`, `index.json` and
//! `blobs/<alg>/<hex>`. A blob is written to a temporary file beside its
//! final place, hashed and counted as it arrives, and renamed into place
//! only when its digest and size are right; a failing blob leaves nothing
//! behind. `index.json` is replaced atomically too.

use crate::{Error, LayoutError};
use ir_oci::Digest;
use oci_spec::image::Descriptor;
use serde_json::{json, Value};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The annotation that carries a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub use ir_oci::media_type::OCI_INDEX;
/// Largest `index.json` read back from an existing layout.
const MAX_INDEX_JSON: u64 = 16 * 1024 * 1024;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// An OCI image layout directory being written.
#[derive(Debug, Clone)]
pub struct LayoutWriter {
    root: PathBuf,
}

impl LayoutWriter {
    /// Opens (creating it if needed) a layout at `root`. An existing
    /// `oci-layout` file must say version 1.0.0.
    pub fn open(root: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let marker = root.join("oci-layout");
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let v: Value =
                    serde_json::from_slice(&bytes).map_err(|source| LayoutError::NotJson {
                        path: marker.clone(),
                        source,
                    })?;
                if v["imageLayoutVersion"] != "1.0.0" {
                    return Err(LayoutError::Version { path: marker }.into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(root, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
            Err(e) => return Err(io(&marker)(e)),
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_path())
    }

    /// Whether the blob is already present with the right size and
    /// content (it is re-hashed: a damaged blob is downloaded again).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        let path = self.blob_path(digest);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return false;
        };
        if !meta.is_file() || meta.len() != size {
            return false;
        }
        let Ok(mut file) = std::fs::File::open(&path) else {
            return false;
        };
        let mut hasher = digest.algorithm().hasher();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => return false,
            }
        }
        hasher.finish() == *digest
    }

    /// Starts writing a blob that must have `digest` and `size`.
    pub fn begin_blob(&self, digest: &Digest, size: u64) -> Result<BlobWriter, Error> {
        let path = self.blob_path(digest);
        let dir = path.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let file = tempfile::Builder::new()
            .prefix(".ir-client-")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        Ok(BlobWriter {
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
            hasher: digest.algorithm().hasher(),
            expected: digest.clone(),
            size,
            written: 0,
            path,
        })
    }

    /// Writes a complete blob held in memory (after checking it).
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        let mut w = self.begin_blob(digest, bytes.len() as u64)?;
        w.write(bytes)?;
        w.finish()
    }

    /// Points the tag `ref_name` at `descriptor` in `index.json`: entries
    /// with the same tag are replaced, other entries are kept.
    pub fn set_tag(&self, descriptor: &Descriptor, ref_name: Option<&str>) -> Result<(), Error> {
        let mut descriptor = descriptor.clone();
        descriptor.set_annotations(None);
        let descriptor = serde_json::to_value(&descriptor).expect("a descriptor serializes");
        let path = self.root.join("index.json");
        let mut index = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_INDEX_JSON => {
                return Err(LayoutError::TooLarge { path }.into())
            }
            Ok(_) => {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                serde_json::from_slice::<Value>(&bytes).map_err(|source| LayoutError::NotJson {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(LayoutError::NoManifests { path }.into());
        };
        let mut entry = descriptor.clone();
        match ref_name {
            Some(tag) => {
                manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
                entry["annotations"][REF_NAME] = json!(tag);
            }
            None => manifests.retain(|m| {
                m["annotations"][REF_NAME].is_string() || m["digest"] != descriptor["digest"]
            }),
        }
        manifests.push(entry);
        let text = serde_json::to_vec_pretty(&index).expect("JSON serializes");
        write_atomic(&self.root, &path, &text)
    }
}

/// A blob being written; see [`LayoutWriter::begin_blob`]. Dropping it
/// without [`finish`](Self::finish) removes the temporary file.
pub struct BlobWriter {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: ir_oci::digest::Hasher,
    expected: Digest,
    size: u64,
    written: u64,
    path: PathBuf,
}

impl BlobWriter {
    /// Appends bytes; fails as soon as more than the expected size arrives.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.written += bytes.len() as u64;
        if self.written > self.size {
            return Err(Error::Size {
                digest: self.expected.clone(),
                expected: self.size,
                found: format!("more than {}", self.size),
            });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(io(&self.path))
    }

    /// Drops what was written, to start again from byte 0.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.file.flush().map_err(io(&self.path))?;
        let f = self.file.get_mut().as_file_mut();
        f.set_len(0).map_err(io(&self.path))?;
        f.rewind().map_err(io(&self.path))?;
        self.hasher = self.expected.algorithm().hasher();
        self.written = 0;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks size and digest, then renames the blob into place.
    pub fn finish(self) -> Result<(), Error> {
        if self.written != self.size {
            return Err(Error::Size {
                digest: self.expected.clone(),
                expected: self.size,
                found: self.written.to_string(),
            });
        }
        let found = self.hasher.finish();
        if found != self.expected {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: self.expected.clone(),
                found,
            });
        }
        let path = self.path;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io(&path)(e.into_error()))?;
        file.as_file().sync_all().map_err(io(&path))?;
        file.persist(&path).map_err(|e| io(&path)(e.error))?;
        Ok(())
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".ir-client-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir_oci::Algorithm;

    #[test]
    fn bad_blobs_leave_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let layout = LayoutWriter::open(dir.path()).unwrap();
        let d = Digest::of_bytes(Algorithm::Sha256, b"hello");

        // Wrong content, right size.
        let mut w = layout.begin_blob(&d, 5).unwrap();
        w.write(b"hellO").unwrap();
        assert!(matches!(w.finish(), Err(Error::DigestMismatch { .. })));
        // Too long, too short.
        let mut w = layout.begin_blob(&d, 5).unwrap();
        assert!(matches!(w.write(b"hello!"), Err(Error::Size { .. })));
        drop(w);
        let mut w = layout.begin_blob(&d, 5).unwrap();
        w.write(b"hell").unwrap();
        assert!(matches!(w.finish(), Err(Error::Size { .. })));
        let blob_dir = dir.path().join("blobs/sha256");
        assert_eq!(std::fs::read_dir(&blob_dir).unwrap().count(), 0);

        layout.put_blob(&d, b"hello").unwrap();
        assert!(layout.has_blob(&d, 5));
        assert_eq!(std::fs::read(layout.blob_path(&d)).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(&blob_dir).unwrap().count(), 1);
    }

    #[test]
    fn tags_replace_entries() {
        let dir = tempfile::TempDir::new().unwrap();
        let layout = LayoutWriter::open(dir.path()).unwrap();
        let desc = |c: &[u8]| {
            let d = Digest::of_bytes(Algorithm::Sha256, c).to_string();
            Descriptor::new("m".into(), 1, oci_spec::image::Digest::try_from(d).unwrap())
        };
        let (a, b) = (desc(b"a"), desc(b"b"));
        layout.set_tag(&a, Some("v1")).unwrap();
        layout.set_tag(&a, Some("v2")).unwrap();
        layout.set_tag(&b, Some("v1")).unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["annotations"][REF_NAME], "v2");
        assert_eq!(entries[1]["digest"], b.digest().to_string());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        LayoutWriter::open(dir.path()).unwrap();
    }
}
