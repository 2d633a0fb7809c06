//! Discovery: the applications (directories holding `oci-layout`) and
//! namespaces under the root, or the root itself when it is a layout.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::options::{rejection, LoadError, LoadOptions};
use crate::rule::{Rejection, Rule};

/// A directory that looks like an application: it holds `oci-layout`.
pub(super) struct Candidate {
    pub(super) rel: String,
    pub(super) dir: PathBuf,
    /// The directory's inode number: the order applications are read in.
    pub(super) ino: u64,
}

/// What discovery found under one directory.
#[derive(Default)]
pub(super) struct Found {
    pub(super) candidates: Vec<Candidate>,
    pub(super) rejected: Vec<Rejection>,
    pub(super) ignored: Vec<(PathBuf, String)>,
}

impl Found {
    pub(super) fn append(&mut self, mut other: Found) {
        self.candidates.append(&mut other.candidates);
        self.rejected.append(&mut other.rejected);
        self.ignored.append(&mut other.ignored);
    }
}

/// A root that is itself an OCI layout: one application, named by
/// `options.root_name` or else by the root directory's own name (so that
/// a producer can check the one layout it just wrote).
pub(super) fn single_layout(
    root: &Path,
    meta: &std::fs::Metadata,
    options: &LoadOptions,
) -> Result<Found, LoadError> {
    let rel = match &options.root_name {
        Some(name) => name.clone(),
        None => {
            let full = root.canonicalize().map_err(|e| LoadError::Root {
                path: root.to_path_buf(),
                reason: e.to_string(),
            })?;
            match full.file_name() {
                Some(n) => n.to_string_lossy().into_owned(),
                None => {
                    return Err(LoadError::Root {
                        path: root.to_path_buf(),
                        reason:
                            "is an OCI layout without a directory name to serve it as; give one"
                                .into(),
                    })
                }
            }
        }
    };
    Ok(Found {
        candidates: vec![Candidate {
            rel,
            dir: root.to_path_buf(),
            ino: meta.ino(),
        }],
        ..Found::default()
    })
}

/// An entry of a directory under the root, as its directory entry
/// describes it.
pub(super) struct DirEntry {
    pub(super) name: std::ffi::OsString,
    /// The type the entry records (`Unknown` on file systems that record
    /// none: then it is asked with `lstat`).
    pub(super) file_type: rustix::fs::FileType,
    pub(super) ino: u64,
}

/// Lists `dir` and examines its entries in parallel (a directory needs a
/// look inside, which with a cold cache means waiting on the disk),
/// keeping the sorted order of names in what it returns.
pub(super) fn discover(dir: &Path, prefix: &str, depth: usize, options: &LoadOptions) -> Found {
    let mut found = Found::default();
    let mut entries: Vec<DirEntry> = Vec::new();
    let listed = super::listing::list_dir(dir, options.max_dir_entries, |name, ino, file_type| {
        entries.push(DirEntry {
            name: std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned(),
            file_type,
            ino,
        })
    });
    if let Err(e) = listed {
        found.ignored.push((
            dir.to_path_buf(),
            format!("cannot be listed: {}", std::io::Error::from(e)),
        ));
        if entries.is_empty() {
            return found;
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let each: Vec<Found> = entries
        .par_iter()
        .map(|entry| examine(dir, prefix, entry, depth, options))
        .collect();
    for f in each {
        found.append(f);
    }
    found
}

/// Classifies one entry of a directory under the root: an application, a
/// namespace holding some, or something ignored.
pub(super) fn examine(
    dir: &Path,
    prefix: &str,
    entry: &DirEntry,
    depth: usize,
    options: &LoadOptions,
) -> Found {
    use rustix::fs::FileType;
    let mut found = Found::default();
    let path = dir.join(&entry.name);
    let rel = match entry.name.to_str() {
        Some(n) => format!("{prefix}{n}"),
        None => format!("{prefix}{}", entry.name.to_string_lossy()),
    };
    let (file_type, ino) = match entry.file_type {
        FileType::Unknown => match std::fs::symlink_metadata(&path) {
            Ok(m) => (FileType::from_raw_mode(m.mode()), m.ino()),
            Err(e) => {
                found.ignored.push((path, format!("cannot be read: {e}")));
                return found;
            }
        },
        known => (known, entry.ino),
    };
    if file_type == FileType::Symlink {
        found.rejected.push(rejection(&rel, "", Rule::Symlink));
        return found;
    }
    if file_type != FileType::Directory {
        found.ignored.push((path, "not a directory".into()));
        return found;
    }
    if is_layout_marker(&path.join("oci-layout")) || is_layout_marker(&path.join("index.json")) {
        found.candidates.push(Candidate {
            rel,
            dir: path,
            ino,
        });
        return found;
    }
    if depth + 1 < options.max_namespace_depth {
        let inner = discover(&path, &format!("{rel}/"), depth + 1, options);
        if !inner.candidates.is_empty() {
            found.append(inner);
            return found;
        }
        // A namespace with no layout: keep what was said about its
        // contents, and say why the directory itself is skipped.
        found.append(inner);
    }
    found.ignored.push((
        path,
        "holds no OCI image layout (no oci-layout file)".into(),
    ));
    found
}

/// A directory is an application (and checked as one, so that a missing
/// `oci-layout` is a rejection rather than a silently ignored directory) when
/// it holds `oci-layout` or `index.json` as anything but a directory. A
/// directory of that name is a namespaced application instead: both are
/// valid repository name components.
pub(super) fn is_layout_marker(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir())
}
