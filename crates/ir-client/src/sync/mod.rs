//! `ir-client sync`: fills a root of OCI layouts (what `ir-server -r`
//! serves) from registries, one layout per repository, named as the
//! repository (`team/app` -> `ROOT/team/app/`).
//!
//! Per repository: the tags are listed and resolved (every platform of
//! an index unless one is asked for), each image judged by the signature
//! policy when one is given, and what refers to each image collected:
//! cosign tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and referrers (the
//! referrers API, else its tag schema `sha256-<hex>`), with their own
//! signatures. When the result is what the layout already holds, nothing
//! is written. Otherwise a staging layout is written beside the old one
//! (`.sync-staging-<name>-<random>`, a name the server never serves; it
//! holds no layout marker until complete), blobs already anywhere in the
//! root copied (reflinked where the file system can) or hard-linked
//! rather than downloaded,
//! verified with [`ir_oci::load`] (the server's own loader), and swapped
//! in with one `renameat2(RENAME_EXCHANGE)`: a reload sees the old layout
//! or the new one. A failed or interrupted sync leaves the old layout in
//! place; the next run reuses the blobs the interrupted one finished.

pub mod config;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use ir_oci::{Digest, RepoName, Tag, REF_NAME};
use oci_spec::image::Descriptor;
use serde_json::{json, Value};

pub use crate::error::SyncError;
use crate::layout::{LayoutWriter, OCI_INDEX};
use crate::location::ImageLocation;
use crate::progress::Progress;
use crate::pull::{digest_of, parse_manifest, Client, Content, Fetched};
use crate::signatures::SignaturePolicy;
use crate::Error;

/// Prefix of staging layouts (a leading dot: not a repository name, so
/// the server never serves one).
pub const STAGING_PREFIX: &str = ".sync-staging-";
/// Random characters ending a staging directory's name.
const STAGING_RANDOM: usize = 6;
/// The lock file that keeps two syncs of one root apart.
pub const LOCK_FILE: &str = ".sync.lock";
/// Suffixes of cosign's tags for a digest (`sha256-<hex>.<suffix>`).
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];
/// Most referrers copied per manifest.
const MAX_REFERRERS: usize = 256;
/// Referrers of referrers followed this deep (a signature on an SBOM).
const MAX_REFERRER_DEPTH: usize = 2;
/// Most tags copied from one repository.
pub const MAX_TAGS: usize = 10_000;
/// Largest `index.json` of an existing layout read.
const MAX_INDEX_JSON: u64 = 16 * 1024 * 1024;
/// Most manifests one repository's copy holds.
const MAX_MANIFESTS: usize = 100_000;
/// Most bytes of manifests one repository's copy holds (they are held in
/// memory until written).
const MAX_MANIFEST_BYTES: usize = 512 * 1024 * 1024;
/// Most blob files indexed in the root for reuse.
const MAX_INDEXED_BLOBS: usize = 2_000_000;
/// Deepest directory nesting searched for layouts in the root.
const MAX_ROOT_DEPTH: usize = 8;

fn fs_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| {
        SyncError::Fs {
            path: path.to_path_buf(),
            why: e.to_string(),
        }
        .into()
    }
}

/// Which tags of a repository are copied.
#[derive(Debug, Clone)]
pub enum TagFilter {
    /// Every tag (but cosign's and the referrers tag schema's, which come
    /// with the image they refer to).
    All,
    /// These tags.
    Only(Vec<Tag>),
    /// The tags matching this regular expression (anchor it yourself).
    Regex(regex::Regex),
}

/// One repository to copy.
#[derive(Debug, Clone)]
pub struct Source {
    /// The registry and repository (the tag part is not used).
    pub location: ImageLocation,
    /// The tags.
    pub filter: TagFilter,
}

impl Source {
    /// Merges sources naming the same repository (tag lists joined; "all
    /// tags" wins); two registries feeding one local name is an error.
    pub fn merge(sources: Vec<Source>) -> Result<Vec<Source>, SyncError> {
        let mut out: Vec<Source> = Vec::new();
        for s in sources {
            match out.iter_mut().find(|o| o.location.name == s.location.name) {
                None => out.push(s),
                Some(o) if o.location.base_url() != s.location.base_url() => {
                    return Err(SyncError::Usage(format!(
                        "repository {} comes from both {} and {}",
                        s.location.name,
                        o.location.base_url(),
                        s.location.base_url()
                    )))
                }
                Some(o) => match (&mut o.filter, s.filter) {
                    (TagFilter::Only(a), TagFilter::Only(b)) => {
                        for t in b {
                            if !a.contains(&t) {
                                a.push(t);
                            }
                        }
                    }
                    (TagFilter::All, _) => {}
                    (f, TagFilter::All) => *f = TagFilter::All,
                    _ => {
                        return Err(SyncError::Usage(format!(
                            "repository {} is named twice with a tag regular expression",
                            s.location.name
                        )))
                    }
                },
            }
        }
        Ok(out)
    }
}

/// Settings of a sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The root of layouts written.
    pub root: PathBuf,
    /// Remove tags that are no longer upstream (or no longer selected).
    pub prune: bool,
    /// Judge every image by this policy; refused images are not written.
    pub signature_policy: Option<SignaturePolicy>,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    /// Reuse the root's blobs by hard link rather than by copy. Saves
    /// disk, but a link changes the served file's ctime: a running server
    /// withdraws that blob until its next reload.
    pub hard_links: bool,
}

/// What a sync did to one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoReport {
    /// The repository (and the layout's path under the root).
    pub repository: String,
    /// Where it came from.
    pub source: String,
    /// `unchanged`, `added` (a new layout), `updated` or `failed`.
    pub status: String,
    /// Tags that are new.
    pub tags_added: Vec<String>,
    /// Tags that now point elsewhere.
    pub tags_updated: Vec<String>,
    /// Tags removed (`--prune`).
    pub tags_removed: Vec<String>,
    /// Tags refused by the signature policy (not written), with why.
    pub refused: Vec<String>,
    /// Bytes downloaded (blobs and manifests).
    pub bytes_downloaded: u64,
    /// Blobs downloaded.
    pub blobs_downloaded: usize,
    /// Blobs taken from the root (hard links) instead of downloaded.
    pub blobs_reused: usize,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure's exit status.
    #[serde(skip)]
    pub exit_code: u8,
}

/// A manifest to write.
#[derive(Debug, Clone)]
struct PlannedManifest {
    bytes: Vec<u8>,
}

/// What the new layout will hold.
#[derive(Debug, Default)]
struct Plan {
    /// Tag -> descriptor (media type, digest, size, platform).
    tags: BTreeMap<String, Descriptor>,
    /// Untagged entries (referrers), by digest.
    untagged: BTreeMap<Digest, Descriptor>,
    manifests: BTreeMap<Digest, PlannedManifest>,
    manifest_bytes: usize,
    blobs: BTreeMap<Digest, u64>,
}

impl Plan {
    fn add_fetched(&mut self, f: &Fetched) -> Result<(), Error> {
        if self.manifests.len() >= MAX_MANIFESTS
            || self.manifest_bytes + f.bytes.len() > MAX_MANIFEST_BYTES
        {
            return Err(SyncError::Usage(format!(
                "more than {MAX_MANIFESTS} manifests or {MAX_MANIFEST_BYTES} bytes of them in one repository"
            ))
            .into());
        }
        self.add_manifest(&f.digest, &f.bytes, &f.content)
    }

    fn add_manifest(
        &mut self,
        digest: &Digest,
        bytes: &[u8],
        content: &Content,
    ) -> Result<(), Error> {
        if let Content::Manifest(m) = content {
            for (i, d) in std::iter::once(m.config()).chain(m.layers()).enumerate() {
                let bd = digest_of(d, &format!("{digest} descriptor {i}"))?;
                self.blobs.insert(bd, d.size());
            }
        }
        if !self.manifests.contains_key(digest) {
            self.manifest_bytes += bytes.len();
        }
        self.manifests.insert(
            digest.clone(),
            PlannedManifest {
                bytes: bytes.to_vec(),
            },
        );
        Ok(())
    }

    /// `index.json` entries as (tag or "", digest) pairs, for comparison.
    fn entries(&self) -> BTreeSet<(String, String)> {
        self.tags
            .iter()
            .map(|(t, d)| (t.clone(), d.digest().to_string()))
            .chain(self.untagged.keys().map(|d| (String::new(), d.to_string())))
            .collect()
    }

    fn index_json(&self) -> Vec<u8> {
        let mut manifests = Vec::new();
        let plain = |d: &Descriptor| {
            let mut d = d.clone();
            d.set_annotations(None);
            serde_json::to_value(&d).expect("a descriptor serializes")
        };
        for (tag, d) in &self.tags {
            let mut v = plain(d);
            v["annotations"] = json!({ REF_NAME: tag });
            manifests.push(v);
        }
        for d in self.untagged.values() {
            manifests.push(plain(d));
        }
        serde_json::to_vec_pretty(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .expect("JSON serializes")
    }
}

/// Whether a tag is one of cosign's (`sha256-<hex>.sig`) or the referrers
/// tag schema's (`sha256-<hex>`): these come with their image.
pub fn is_artifact_tag(tag: &str) -> bool {
    let stem = COSIGN_SUFFIXES
        .iter()
        .find_map(|s| tag.strip_suffix(&format!(".{s}")))
        .unwrap_or(tag);
    stem.split_once('-')
        .is_some_and(|(alg, hex)| Digest::parse_parts(alg, hex).is_ok())
}

fn fallback_tag(d: &Digest) -> String {
    format!("{}-{}", d.algorithm(), d.hex())
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Status { status: 404, .. })
}

/// The tags and untagged entries of an existing layout's `index.json`
/// (empty when there is none).
fn existing_entries(dir: &Path) -> Result<Option<BTreeSet<(String, String)>>, Error> {
    let path = dir.join("index.json");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_INDEX_JSON) {
        return Err(SyncError::Fs {
            path,
            why: format!("larger than {MAX_INDEX_JSON} bytes"),
        }
        .into());
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_err(&path)(e)),
    };
    let v: Value = ir_oci::json::from_slice(&bytes).map_err(|e| SyncError::Fs {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let mut out = BTreeSet::new();
    for m in v["manifests"].as_array().into_iter().flatten() {
        let tag = m["annotations"][REF_NAME].as_str().unwrap_or("");
        if let Some(d) = m["digest"].as_str() {
            out.insert((tag.to_string(), d.to_string()));
        }
    }
    Ok(Some(out))
}

/// Every blob file of the layouts in the root, by digest (the files a
/// sync hard-links instead of downloading). Dot-directories (staging,
/// other tools') are skipped; symbolic links are not followed.
fn index_root(root: &Path) -> HashMap<Digest, PathBuf> {
    let mut out = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if dir.join("oci-layout").is_file() {
            index_blobs(&dir, &mut out);
            continue;
        }
        if depth >= MAX_ROOT_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten().take(100_000) {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

fn index_blobs(layout: &Path, out: &mut HashMap<Digest, PathBuf>) {
    let blobs = layout.join("blobs");
    // Symbolic links are not followed (the loader refuses them too).
    if !std::fs::symlink_metadata(&blobs).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let Ok(algs) = std::fs::read_dir(blobs) else {
        return;
    };
    for alg in algs.flatten() {
        if !alg.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(alg.path()) else {
            continue;
        };
        for f in files.flatten() {
            if out.len() >= MAX_INDEXED_BLOBS {
                return;
            }
            if !f.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Ok(d) = Digest::parse_parts(&alg_name, &f.file_name().to_string_lossy()) {
                out.entry(d).or_insert_with(|| f.path());
            }
        }
    }
}

/// Every file under a staging layout's `blobs/<alg>/`, with its digest
/// when its name is one.
fn staged_files(staging: &Path) -> Vec<(PathBuf, Option<Digest>)> {
    let mut out = Vec::new();
    let Ok(algs) = std::fs::read_dir(staging.join("blobs")) else {
        return out;
    };
    for alg in algs.flatten() {
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(alg.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let d = Digest::parse_parts(&alg_name, &f.file_name().to_string_lossy()).ok();
            out.push((f.path(), d));
        }
    }
    out
}

/// Whether every manifest and blob of the plan is in the layout at
/// `dir` with its size (a cheap check that an unchanged layout is whole).
fn holds_all(dir: &Path, plan: &Plan) -> bool {
    let size_ok = |d: &Digest, size: u64| {
        std::fs::symlink_metadata(dir.join(d.blob_path()))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    };
    plan.blobs.iter().all(|(d, size)| size_ok(d, *size))
        && plan
            .manifests
            .iter()
            .all(|(d, m)| size_ok(d, m.bytes.len() as u64))
}

/// Holds the root's lock for the life of a sync.
pub struct RootLock {
    _file: std::fs::File,
}

impl RootLock {
    /// Creates the root if needed and takes its lock (fails at once when
    /// another sync holds it).
    pub fn take(root: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(root).map_err(fs_err(root))?;
        let path = root.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(fs_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| SyncError::Locked { path })?;
        Ok(Self { _file: file })
    }
}

/// Syncs repositories into a root.
pub struct Syncer {
    options: SyncOptions,
    blobs: HashMap<Digest, PathBuf>,
    progress: Arc<dyn Progress>,
}

impl Syncer {
    /// A syncer for `options.root` (the root's blobs are indexed now;
    /// take its [`RootLock`] first).
    pub fn new(options: SyncOptions, progress: Arc<dyn Progress>) -> Result<Self, Error> {
        std::fs::create_dir_all(&options.root).map_err(fs_err(&options.root))?;
        let blobs = index_root(&options.root);
        Ok(Self {
            options,
            blobs,
            progress,
        })
    }

    /// Syncs one repository with `client` (whose transport fits the
    /// source); a failure is in the report, the old layout left as it was.
    pub async fn sync(&mut self, client: &Client, source: &Source) -> RepoReport {
        let mut report = RepoReport {
            repository: source.location.name.to_string(),
            source: format!("{}/{}", source.location.base_url(), source.location.name),
            ..RepoReport::default()
        };
        if let Err(e) = self.sync_into(client, source, &mut report).await {
            report.status = "failed".into();
            report.exit_code = e.exit_code();
            report.error = Some(e.to_string().replace('\n', " "));
        }
        report
    }

    async fn sync_into(
        &mut self,
        client: &Client,
        source: &Source,
        report: &mut RepoReport,
    ) -> Result<(), Error> {
        let repo = &source.location;
        let name = &repo.name;
        let target = self.options.root.join(name.as_str());
        // A layout is not looked into for others: no ancestor under the
        // root may be one.
        let mut ancestor = target.parent();
        while let Some(a) = ancestor.filter(|a| *a != self.options.root) {
            if a.join("oci-layout").exists() {
                return Err(SyncError::Fs {
                    path: a.to_path_buf(),
                    why: format!("is an OCI layout: {name} cannot be written inside it"),
                }
                .into());
            }
            ancestor = a.parent();
        }
        if target.exists() && !target.join("oci-layout").is_file() {
            return Err(SyncError::Fs {
                path: target,
                why: "exists and is not an OCI layout; not replaced".into(),
            }
            .into());
        }
        let tags = self.select_tags(client, source).await?;
        let mut plan = Plan::default();
        for tag in &tags {
            let at = ImageLocation {
                reference: ir_oci::Reference::Tag(tag.clone()),
                ..repo.clone()
            };
            let resolved = match client.resolve(&at).await {
                Ok(r) => r,
                // A listed tag gone by the time it is fetched (or one the
                // registry lists but withholds): gone upstream.
                Err(e) if is_not_found(&e) && !matches!(source.filter, TagFilter::Only(_)) => {
                    tracing::warn!(%at, error = %e, "listed but not found: skipped");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(policy) = &self.options.signature_policy {
                let named = resolved.index.as_ref().unwrap_or(&resolved.top);
                if let Err(e) = client.judge(&at, named, policy).await {
                    match e {
                        Error::Refused { .. } => {
                            tracing::warn!(%at, error = %e, "not synced");
                            report.refused.push(format!("{tag}: {e}"));
                            continue;
                        }
                        other => return Err(other),
                    }
                }
            }
            for m in resolved.manifests.iter() {
                plan.add_fetched(m)?;
            }
            let mut subjects: Vec<Digest> = resolved
                .manifests
                .iter()
                .map(|m| m.digest.clone())
                .collect();
            if let Some(index) = &resolved.index {
                // A narrowed index: its signatures name the index, which
                // is not copied; its platform manifest's are.
                subjects.retain(|d| *d != index.digest);
            }
            for d in subjects {
                self.artifacts(client, repo, &d, &mut plan, 0).await?;
            }
            plan.tags
                .insert(tag.as_str().to_string(), resolved.top.descriptor.clone());
        }
        let old = existing_entries(&target)?;
        if !self.options.prune && old.is_some() {
            self.carry_over(&target, name, &mut plan)?;
        }
        if plan.tags.is_empty() {
            // Nothing to serve (every tag refused, or none selected):
            // nothing is written, an old layout is left as it is.
            report.status = "unchanged".into();
            return Ok(());
        }
        let new_entries = plan.entries();
        self.describe_changes(old.as_ref(), &new_entries, report);
        if old.as_ref() == Some(&new_entries) {
            if holds_all(&target, &plan) {
                report.status = "unchanged".into();
                return Ok(());
            }
            // The same tags, but files are missing: written again.
            tracing::warn!(%name, "the layout lacks files it lists: repaired");
        }
        let staging = self.staging_dir(&target, name)?;
        self.write_staging(client, repo, &staging, &plan, report)
            .await?;
        self.verify(&staging, name, &plan)?;
        swap_in(&staging, &target)?;
        report.status = if old.is_some() { "updated" } else { "added" }.into();
        // The new blobs are reusable by the next repositories.
        index_blobs(&target, &mut self.blobs);
        Ok(())
    }

    async fn select_tags(&self, client: &Client, source: &Source) -> Result<Vec<Tag>, Error> {
        let listed = || async {
            let tags = client.tags(&source.location).await?;
            Ok::<_, Error>(
                tags.into_iter()
                    .filter(|t| !is_artifact_tag(t))
                    .filter_map(|t| Tag::parse(&t).ok())
                    .collect::<Vec<_>>(),
            )
        };
        let tags = match &source.filter {
            TagFilter::Only(tags) => tags.clone(),
            TagFilter::All => listed().await?,
            TagFilter::Regex(re) => listed()
                .await?
                .into_iter()
                .filter(|t| re.is_match(t.as_str()))
                .collect(),
        };
        if tags.len() > MAX_TAGS {
            return Err(SyncError::Usage(format!(
                "{}: {} tags, more than {MAX_TAGS}; select some (a tag list or images-by-tag-regex)",
                source.location,
                tags.len()
            ))
            .into());
        }
        Ok(tags)
    }

    /// Cosign tags and referrers of `digest`, into the plan, with their
    /// own referrers down to [`MAX_REFERRER_DEPTH`].
    async fn artifacts(
        &self,
        client: &Client,
        repo: &ImageLocation,
        digest: &Digest,
        plan: &mut Plan,
        depth: usize,
    ) -> Result<(), Error> {
        if depth >= MAX_REFERRER_DEPTH {
            return Ok(());
        }
        for suffix in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(digest));
            match client.fetch_manifest(repo, &tag, None).await {
                Ok(f) => {
                    plan.add_fetched(&f)?;
                    plan.tags.insert(tag, f.descriptor.clone());
                    Box::pin(self.artifacts(client, repo, &f.digest, plan, depth + 1)).await?;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let referrers = client.referrers_of(repo, digest).await?;
        for r in referrers.iter().take(MAX_REFERRERS) {
            let rd = digest_of(r, "referrer")?;
            if plan.manifests.contains_key(&rd) {
                continue;
            }
            let f = client
                .fetch_manifest(repo, &rd.to_string(), Some((rd.clone(), Some(r.size()))))
                .await?;
            if let Content::Index(index) = &f.content {
                for (i, c) in index.manifests().iter().enumerate().take(MAX_REFERRERS) {
                    let cd = digest_of(c, &format!("{rd} entry {i}"))?;
                    let child = client
                        .fetch_manifest(repo, &cd.to_string(), Some((cd.clone(), Some(c.size()))))
                        .await?;
                    plan.add_fetched(&child)?;
                }
            }
            plan.add_fetched(&f)?;
            let mut desc = f.descriptor.clone();
            desc.set_artifact_type(r.artifact_type().clone());
            plan.untagged.insert(rd.clone(), desc);
            Box::pin(self.artifacts(client, repo, &rd, plan, depth + 1)).await?;
        }
        Ok(())
    }

    /// Without `--prune`: tags of the old layout not in the plan keep
    /// their old content (with their signatures and referrers), read
    /// through the server's loader.
    fn carry_over(&self, target: &Path, name: &RepoName, plan: &mut Plan) -> Result<(), Error> {
        let Some(old_tags) = existing_entries(target)? else {
            return Ok(());
        };
        let missing: Vec<String> = old_tags
            .iter()
            .filter(|(t, _)| !t.is_empty() && !is_artifact_tag(t) && !plan.tags.contains_key(t))
            .map(|(t, _)| t.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let options = ir_oci::LoadOptions {
            root_name: Some(name.to_string()),
            ..ir_oci::LoadOptions::default()
        };
        let registry = ir_oci::load(target, &options).map_err(|e| SyncError::Fs {
            path: target.to_path_buf(),
            why: e.to_string(),
        })?;
        let Some(app) = registry.applications.get(name) else {
            tracing::warn!(%name, "the old layout does not verify: its tags are not kept");
            return Ok(());
        };
        for tag in missing {
            let Some(digest) = Tag::parse(&tag)
                .ok()
                .and_then(|t| app.tags.get(&t).cloned())
            else {
                continue;
            };
            let Some(m) = app.manifests.get(&digest) else {
                continue;
            };
            let desc = descriptor(&digest, &m.media_type, m.bytes.len() as u64)?;
            plan.tags.insert(tag, desc);
            let mut stack = vec![digest];
            let mut seen = BTreeSet::new();
            while let Some(d) = stack.pop() {
                if !seen.insert(d.clone()) || seen.len() > MAX_MANIFESTS {
                    continue;
                }
                let Some(m) = app.manifests.get(&d) else {
                    continue;
                };
                let (_, content) = parse_manifest(&d, &m.bytes, Some(&m.media_type))?;
                if let Content::Index(index) = &content {
                    for c in index.manifests() {
                        stack.push(digest_of(c, "index entry")?);
                    }
                }
                plan.add_manifest(&d, &m.bytes, &content)?;
                for r in app.referrers.get(&d).into_iter().flatten() {
                    if let Some(rm) = app.manifests.get(r) {
                        plan.untagged.insert(
                            r.clone(),
                            descriptor(r, &rm.media_type, rm.bytes.len() as u64)?,
                        );
                        stack.push(r.clone());
                    }
                }
                for suffix in COSIGN_SUFFIXES {
                    let t = format!("{}.{suffix}", fallback_tag(&d));
                    if let Some(sd) = Tag::parse(&t).ok().and_then(|t| app.tags.get(&t).cloned()) {
                        if let Some(sm) = app.manifests.get(&sd) {
                            plan.tags
                                .insert(t, descriptor(&sd, &sm.media_type, sm.bytes.len() as u64)?);
                            stack.push(sd);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn describe_changes(
        &self,
        old: Option<&BTreeSet<(String, String)>>,
        new: &BTreeSet<(String, String)>,
        report: &mut RepoReport,
    ) {
        let tags_of = |set: &BTreeSet<(String, String)>| -> BTreeMap<String, String> {
            set.iter()
                .filter(|(t, _)| !t.is_empty() && !is_artifact_tag(t))
                .cloned()
                .collect()
        };
        let empty = BTreeSet::new();
        let old_tags = tags_of(old.unwrap_or(&empty));
        let new_tags = tags_of(new);
        for (t, d) in &new_tags {
            match old_tags.get(t) {
                None => report.tags_added.push(t.clone()),
                Some(od) if od != d => report.tags_updated.push(t.clone()),
                Some(_) => {}
            }
        }
        for t in old_tags.keys() {
            if !new_tags.contains_key(t) {
                report.tags_removed.push(t.clone());
            }
        }
    }

    /// A fresh staging directory beside `target`, reusing the blobs of an
    /// interrupted sync's staging directory for the same repository.
    fn staging_dir(&self, target: &Path, name: &RepoName) -> Result<PathBuf, Error> {
        let parent = target.parent().expect("a repository has a parent");
        std::fs::create_dir_all(parent).map_err(fs_err(parent))?;
        let leaf = name.as_str().rsplit('/').next().unwrap_or(name.as_str());
        let prefix = format!("{STAGING_PREFIX}{leaf}-");
        let mut stale = Vec::new();
        for e in std::fs::read_dir(parent).map_err(fs_err(parent))?.flatten() {
            // `.sync-staging-<leaf>-` then tempfile's 6 random characters
            // (so `app` does not take `app-x`'s).
            let file_name = e.file_name();
            let n = file_name.to_string_lossy();
            let ours = n.strip_prefix(&prefix).is_some_and(|rest| {
                rest.len() == STAGING_RANDOM && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if ours && e.file_type().is_ok_and(|t| t.is_dir()) {
                stale.push(e.path());
            }
        }
        if let Some(first) = stale.pop() {
            for other in stale {
                let _ = std::fs::remove_dir_all(other);
            }
            let index = first.join("index.json");
            let _ = std::fs::remove_file(index);
            return Ok(first);
        }
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(STAGING_RANDOM)
            .tempdir_in(parent)
            .map_err(fs_err(parent))?;
        Ok(dir.keep())
    }

    async fn write_staging(
        &self,
        client: &Client,
        repo: &ImageLocation,
        staging: &Path,
        plan: &Plan,
        report: &mut RepoReport,
    ) -> Result<(), Error> {
        let layout = LayoutWriter::open(staging)?;
        // No layout marker until the copy is complete: until then the
        // server's discovery sees a directory holding no layout.
        let marker = staging.join("oci-layout");
        std::fs::remove_file(&marker).map_err(fs_err(&marker))?;
        // Remove what the plan does not hold (from an interrupted run).
        let wanted: BTreeSet<&Digest> = plan.blobs.keys().chain(plan.manifests.keys()).collect();
        let mut present = BTreeSet::new();
        for (path, digest) in staged_files(staging) {
            match digest {
                Some(d) if wanted.contains(&d) => {
                    present.insert(d);
                }
                // Not planned, or a temporary file of a killed run.
                _ => std::fs::remove_file(&path).map_err(fs_err(&path))?,
            }
        }
        // Take what the root already has (each is hashed again below
        // before it counts as present).
        for d in wanted.iter().filter(|d| !present.contains(**d)) {
            if let Some(src) = self.blobs.get(*d) {
                let dst = layout.blob_path(d);
                std::fs::create_dir_all(dst.parent().expect("blob path has a parent"))
                    .map_err(fs_err(&dst))?;
                if reuse(src, &dst, self.options.hard_links) {
                    report.blobs_reused += 1;
                }
            }
        }
        let fetches: Vec<_> = plan
            .blobs
            .iter()
            .map(|(d, size)| client.blob_into(repo, &layout, d, *size, &*self.progress))
            .collect();
        // Every download runs to its end even when one fails: what
        // completed stays in the staging layout for the next run.
        let done: Vec<Result<Option<u64>, Error>> = stream::iter(fetches)
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut first_error = None;
        for d in done {
            match d {
                Ok(Some(bytes)) => {
                    report.blobs_downloaded += 1;
                    report.bytes_downloaded += bytes;
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for (d, m) in &plan.manifests {
            if !layout.has_blob(d, m.bytes.len() as u64) {
                layout.put_blob(d, &m.bytes)?;
                report.bytes_downloaded += m.bytes.len() as u64;
            }
        }
        std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(fs_err(&marker))?;
        let index = staging.join("index.json");
        let mut tmp = tempfile::NamedTempFile::new_in(staging).map_err(fs_err(staging))?;
        std::io::Write::write_all(&mut tmp, &plan.index_json()).map_err(fs_err(&index))?;
        tmp.as_file().sync_all().map_err(fs_err(&index))?;
        tmp.persist(&index).map_err(|e| fs_err(&index)(e.error))?;
        Ok(())
    }

    /// The staged layout through the server's loader: served whole, with
    /// the planned tags, or the sync fails.
    fn verify(&self, staging: &Path, name: &RepoName, plan: &Plan) -> Result<(), Error> {
        let fail = |why: String| SyncError::Verify {
            name: name.to_string(),
            staging: staging.to_path_buf(),
            why,
        };
        let options = ir_oci::LoadOptions {
            root_name: Some(name.to_string()),
            ..ir_oci::LoadOptions::default()
        };
        let registry = ir_oci::load(staging, &options).map_err(|e| fail(e.to_string()))?;
        if let Some(r) = registry.rejected.first() {
            // Remove it: the next run starts over rather than trip on it.
            let _ = std::fs::remove_dir_all(staging);
            return Err(fail(r.to_string()).into());
        }
        let Some(app) = registry.applications.get(name) else {
            return Err(fail("not loaded".into()).into());
        };
        if app.tags.len() != plan.tags.len() {
            return Err(fail(format!(
                "{} tags loaded, {} written",
                app.tags.len(),
                plan.tags.len()
            ))
            .into());
        }
        Ok(())
    }
}

/// Puts a copy of `src` (a blob of the root) at `dst`: a hard link, or a
/// copy (`copy_file_range`: a reflink where the file system shares
/// extents), which leaves the served file as it was.
fn reuse(src: &Path, dst: &Path, hard_link: bool) -> bool {
    if hard_link && std::fs::hard_link(src, dst).is_ok() {
        return true;
    }
    let Some(dir) = dst.parent() else {
        return false;
    };
    let Ok(tmp) = tempfile::Builder::new()
        .prefix(".ir-client-")
        .tempfile_in(dir)
    else {
        return false;
    };
    std::fs::copy(src, tmp.path()).is_ok() && tmp.persist(dst).is_ok()
}

fn descriptor(digest: &Digest, media_type: &str, size: u64) -> Result<Descriptor, Error> {
    let d = oci_spec::image::Digest::try_from(digest.to_string()).map_err(|source| {
        crate::ManifestError::Descriptor {
            digest: digest.clone(),
            source,
        }
    })?;
    Ok(Descriptor::new(media_type.into(), size, d))
}

/// Puts `staging` at `target` in one step: an exchange of the two
/// directories when `target` exists (then the old one is removed), else
/// a rename that refuses to replace anything.
fn swap_in(staging: &Path, target: &Path) -> Result<(), Error> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    if target.exists() {
        renameat_with(CWD, staging, CWD, target, RenameFlags::EXCHANGE).map_err(|e| {
            SyncError::Fs {
                path: target.to_path_buf(),
                why: format!("exchanging with {}: {e}", staging.display()),
            }
        })?;
        // `staging` now holds the old layout.
        std::fs::remove_dir_all(staging).map_err(fs_err(staging))?;
    } else {
        renameat_with(CWD, staging, CWD, target, RenameFlags::NOREPLACE).map_err(|e| {
            SyncError::Fs {
                path: target.to_path_buf(),
                why: format!("renaming {} into place: {e}", staging.display()),
            }
        })?;
    }
    Ok(())
}

/// Sends `SIGHUP` to a server (its `--reload-pid`) so it reloads the root.
pub fn signal_reload(pid: i32) -> Result<(), SyncError> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| SyncError::Usage(format!("--reload-pid {pid}: not a process id")))?;
    rustix::process::kill_process(p, rustix::process::Signal::HUP).map_err(|e| SyncError::Fs {
        path: PathBuf::from(format!("/proc/{pid}")),
        why: format!("sending SIGHUP: {e}"),
    })
}

/// Parses an interval: a number with `s`, `m` or `h` (`5m`).
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1u64),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is not an interval (like 30s, 5m, 1h)"))
}
