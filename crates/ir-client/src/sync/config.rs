//! What to sync: references from the command line, or a YAML file in the
//! shape `skopeo sync --src yaml` reads (registry -> `images` /
//! `images-by-tag-regex`).

use std::collections::BTreeMap;
use std::path::Path;

use ir_oci::{Reference, Tag};
use serde::Deserialize;

use super::{Source, SyncError, TagFilter};
use crate::location::ImageLocation;

/// Largest sync file read.
const MAX_FILE: u64 = 1024 * 1024;
/// Most repositories one sync file or command line names.
pub const MAX_SOURCES: usize = 10_000;

/// One registry of a sync file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistryEntry {
    /// Repository -> tags (an empty list: every tag).
    #[serde(default)]
    images: BTreeMap<String, Vec<String>>,
    /// Repository -> a regular expression the tags must match.
    #[serde(default)]
    images_by_tag_regex: BTreeMap<String, String>,
    /// Accepted only as `true` (use an `http://` key for plain HTTP).
    tls_verify: Option<bool>,
    /// Refused: credentials belong in an auth file.
    credentials: Option<serde::de::IgnoredAny>,
    /// Refused: use `--ca`.
    cert_dir: Option<serde::de::IgnoredAny>,
}

fn bad(file: &Path, why: String) -> SyncError {
    SyncError::File {
        path: file.to_path_buf(),
        why,
    }
}

/// Reads a sync file. A registry key is `host[:port]` (https), or
/// `http://host[:port]` / `https://…` / `ra-tls://…` to choose the
/// transport.
pub fn read_file(file: &Path) -> Result<Vec<Source>, SyncError> {
    let meta = std::fs::metadata(file).map_err(|e| bad(file, e.to_string()))?;
    if meta.len() > MAX_FILE {
        return Err(bad(file, format!("larger than {MAX_FILE} bytes")));
    }
    let text = std::fs::read_to_string(file).map_err(|e| bad(file, e.to_string()))?;
    parse(file, &text)
}

/// Parses a sync file's text (`file` names it in errors).
pub fn parse(file: &Path, text: &str) -> Result<Vec<Source>, SyncError> {
    // serde-saphyr refuses duplicate keys by default and bounds the
    // document (depth, nodes, aliases).
    let entries: BTreeMap<String, RegistryEntry> =
        serde_saphyr::from_str(text).map_err(|e| bad(file, e.to_string().replace('\n', " ")))?;
    let mut out = Vec::new();
    for (registry, entry) in entries {
        if entry.credentials.is_some() {
            return Err(bad(file, format!("{registry}: `credentials` are not read from the sync file; put them in an auth file (--authfile, REGISTRY_AUTH_FILE) or a credential helper")));
        }
        if entry.cert_dir.is_some() {
            return Err(bad(
                file,
                format!("{registry}: `cert-dir` is not supported; give the CA with --ca"),
            ));
        }
        if entry.tls_verify == Some(false) {
            return Err(bad(file, format!("{registry}: `tls-verify: false` is not supported; TLS is always verified (write the key as http://{registry} for a plain-HTTP registry)")));
        }
        let base = if registry.contains("://") {
            registry.trim_end_matches('/').to_string()
        } else {
            format!("https://{registry}")
        };
        for (repo, tags) in entry.images {
            let location = repository(file, &base, &repo)?;
            let filter = if tags.is_empty() {
                TagFilter::All
            } else {
                let mut parsed = Vec::new();
                for t in tags {
                    parsed.push(Tag::parse(&t).map_err(|e| {
                        bad(
                            file,
                            format!("{registry}: {repo}: tag {t:?}: {e} (sync copies tags, not digests)"),
                        )
                    })?);
                }
                TagFilter::Only(parsed)
            };
            out.push(Source { location, filter });
        }
        for (repo, pattern) in entry.images_by_tag_regex {
            let location = repository(file, &base, &repo)?;
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    bad(
                        file,
                        format!("{registry}: {repo}: regular expression {pattern:?}: {e}"),
                    )
                })?;
            out.push(Source {
                location,
                filter: TagFilter::Regex(re),
            });
        }
        if out.len() > MAX_SOURCES {
            return Err(bad(file, format!("more than {MAX_SOURCES} repositories")));
        }
    }
    if out.is_empty() {
        return Err(bad(file, "names no repository".into()));
    }
    Ok(out)
}

fn repository(file: &Path, base: &str, repo: &str) -> Result<ImageLocation, SyncError> {
    if repo.contains([':', '@']) {
        return Err(bad(
            file,
            format!("{base}: {repo:?}: name the repository only; list its tags under it"),
        ));
    }
    ImageLocation::parse(&format!("{base}/{repo}")).map_err(|e| bad(file, e.to_string()))
}

/// A source from a command-line reference: `scheme://host/repo` (every
/// tag) or `scheme://host/repo:tag`.
pub fn from_reference(text: &str) -> Result<Source, crate::Error> {
    let location = ImageLocation::parse(text)?;
    if matches!(location.reference, Reference::Digest(_)) {
        return Err(SyncError::Usage(format!(
            "{text}: sync copies tags; name a repository (every tag) or repository:tag"
        ))
        .into());
    }
    let after_host = text.split_once("://").map_or(text, |(_, r)| r);
    let path = after_host.split_once('/').map_or("", |(_, p)| p);
    let last = path.rsplit('/').next().unwrap_or("");
    let filter = if last.contains(':') {
        TagFilter::Only(location.tag().into_iter().cloned().collect())
    } else {
        TagFilter::All
    };
    Ok(Source { location, filter })
}
