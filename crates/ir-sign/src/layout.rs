//! An OCI image layout directory: index.json, tags, and content-addressed
//! blobs under `blobs/sha256/`. Reads are bounded and digest-checked;
//! index.json is replaced atomically (written beside it, then renamed).

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use sha2::{Digest as _, Sha256};

use crate::error::io;
use crate::{Error, REF_NAME_ANNOTATION};

/// Largest blob this tool reads (manifests, payloads and bundles are small).
pub const MAX_BLOB_BYTES: u64 = 4 << 20;
/// Most manifests index.json may list.
pub const MAX_INDEX_ENTRIES: usize = 10_000;

/// An OCI image layout on disk.
pub struct Layout {
    dir: PathBuf,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex of a `sha256:<64 lowercase hex>` digest, or an error.
pub fn sha256_hex(digest: &str) -> Result<&str, Error> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(Error::Invalid(format!("not a sha256 digest: {digest:?}"))),
    }
}

impl Layout {
    /// Opens an existing layout (it must have `oci-layout` and `index.json`).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        for name in ["oci-layout", "index.json"] {
            if !dir.join(name).is_file() {
                return Err(Error::Layout(format!("{}: no {name}", dir.display())));
            }
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// The layout's index.json.
    pub fn index(&self) -> Result<ImageIndex, Error> {
        let path = self.dir.join("index.json");
        let bytes = read_bounded(&path)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Layout(format!("index.json: {e}")))?;
        if index.manifests().len() > MAX_INDEX_ENTRIES {
            return Err(Error::Layout(format!(
                "index.json lists more than {MAX_INDEX_ENTRIES} manifests"
            )));
        }
        Ok(index)
    }

    /// The descriptor that `tag` names in index.json.
    pub fn resolve_tag(&self, tag: &str) -> Result<Descriptor, Error> {
        self.index()?
            .manifests()
            .iter()
            .find(|d| tag_of(d) == Some(tag))
            .cloned()
            .ok_or_else(|| Error::TagNotFound(tag.to_string()))
    }

    /// The blob `digest`, read whole (at most [`MAX_BLOB_BYTES`]) and checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let hex = sha256_hex(digest)?;
        let bytes = read_bounded(&self.dir.join("blobs/sha256").join(hex))?;
        if sha256_digest(&bytes) != digest {
            return Err(Error::Layout(format!(
                "blob {digest} does not match its digest"
            )));
        }
        Ok(bytes)
    }

    /// Writes `bytes` as a blob (if not already there) and returns its descriptor.
    pub fn write_blob(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, Error> {
        let digest = sha256_digest(bytes);
        let dir = self.dir.join("blobs/sha256");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(&digest["sha256:".len()..]);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        let digest = digest
            .parse::<oci_spec::image::Digest>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// Adds `manifest` to index.json. With `tag`, the entry carries it and any
    /// other entry with the same tag loses it (is removed), as a tag names one manifest.
    pub fn add_to_index(&self, mut manifest: Descriptor, tag: Option<&str>) -> Result<(), Error> {
        let mut index = self.index()?;
        let mut entries: Vec<Descriptor> = index.manifests().clone();
        if let Some(tag) = tag {
            entries.retain(|d| tag_of(d) != Some(tag));
            let mut annotations = manifest.annotations().clone().unwrap_or_default();
            annotations.insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
            manifest.set_annotations(Some(annotations));
        } else if entries
            .iter()
            .any(|d| d.digest() == manifest.digest() && tag_of(d).is_none())
        {
            return Ok(());
        }
        entries.push(manifest);
        index.set_manifests(entries);
        let bytes = serde_json::to_vec(&index)?;
        write_atomically(&self.dir.join("index.json"), &bytes)
    }
}

/// The tag (`org.opencontainers.image.ref.name`) of an index.json entry.
pub fn tag_of(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, Error> {
    let file = fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_BLOB_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > MAX_BLOB_BYTES {
        return Err(Error::Layout(format!(
            "{}: larger than {MAX_BLOB_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` to a temporary file in the same directory, syncs it and
/// renames it over `path`, so readers see the old or the new file, whole.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ir-sign.{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}
