//! Orphans: files under `blobs/` that no descriptor reaches (counted and
//! listed, never served).

use std::path::{Path, PathBuf};

use super::listing::Listing;
use super::options::LoadOptions;
use super::walk::Structure;
use crate::digest::{Algorithm, Digest};
use crate::model::Orphan;

/// Lists `blobs/<alg>/` and reports files no descriptor reaches.
/// The files under `blobs/` that no descriptor reaches, from the listing
/// made at the start of the application's load, or by listing the
/// directories again where that listing is not whole.
pub(super) fn find_orphans(s: &Structure, listing: &Listing, options: &LoadOptions) -> Vec<Orphan> {
    let mut orphans = Vec::new();
    let mut push = |file: PathBuf| {
        orphans.push(Orphan {
            application: s.rel.clone(),
            file,
        })
    };
    let reached = |alg: &str, hex: &str| {
        Digest::parse(&format!("{alg}:{hex}"))
            .map(|d| s.blobs.contains_key(&d) || s.manifests.contains_key(&d))
            .unwrap_or(false)
    };
    if listing.is_complete() {
        for stray in listing.strays() {
            push(Path::new("blobs").join(stray));
        }
        for alg in listing.algorithms() {
            for e in &alg.entries {
                let hex = e.os_name().to_string_lossy();
                if !reached(alg.algorithm.as_str(), &hex) {
                    push(PathBuf::from(format!("blobs/{}/{hex}", alg.algorithm)));
                }
            }
        }
    } else {
        list_orphans(&s.dir.join("blobs"), options, reached, &mut push);
    }
    orphans.sort_by(|a, b| a.file.cmp(&b.file));
    orphans
}

/// Lists `blobs` (following a symbolic link, as `read_dir` does) for the
/// files that `reached` does not know.
pub(super) fn list_orphans(
    blobs_dir: &Path,
    options: &LoadOptions,
    reached: impl Fn(&str, &str) -> bool,
    push: &mut impl FnMut(PathBuf),
) {
    let Ok(algs) = std::fs::read_dir(blobs_dir) else {
        return;
    };
    for alg in algs.take(options.max_dir_entries).flatten() {
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        let is_dir = alg.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || !Algorithm::ALL.iter().any(|a| a.as_str() == alg_name) {
            push(PathBuf::from(format!("blobs/{alg_name}")));
            continue;
        }
        let Ok(files) = std::fs::read_dir(alg.path()) else {
            continue;
        };
        for f in files.take(options.max_dir_entries).flatten() {
            let hex = f.file_name().to_string_lossy().into_owned();
            if !reached(&alg_name, &hex) {
                push(PathBuf::from(format!("blobs/{alg_name}/{hex}")));
            }
        }
    }
}
