//! Digests of the trust inputs in force (policy, reference values),
//! recorded with each receipt. A leaf: the policy gate uses it too.

use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};

/// `sha256:` of a trust input: a file's bytes, or a directory's regular
/// files (names and bytes, in name order, not recursing). `None` when it
/// cannot be read now: the record then says nothing rather than a guess.
pub fn digest_of(path: &Path) -> Option<String> {
    /// Trust inputs are small; anything larger is not digested.
    const MAX: u64 = 64 << 20;
    let meta = std::fs::metadata(path).ok()?;
    let mut hasher = Context::new(&SHA256);
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .collect();
        names.sort();
        let mut total = 0u64;
        for name in names.iter().take(10_000) {
            let bytes = std::fs::read(path.join(name)).ok()?;
            total += bytes.len() as u64;
            if total > MAX {
                return None;
            }
            hasher.update(&(name.len() as u64).to_be_bytes());
            hasher.update(name.as_encoded_bytes());
            hasher.update(&(bytes.len() as u64).to_be_bytes());
            hasher.update(&bytes);
        }
    } else {
        if meta.len() > MAX {
            return None;
        }
        hasher.update(&std::fs::read(path).ok()?);
    }
    Some(format!("sha256:{}", hex::encode(hasher.finish())))
}
