//! The walk of one layout: `oci-layout`, `index.json`, and every
//! descriptor they reach (nested indexes, manifests, configs, layers,
//! subjects), with every document read, hashed and parsed once, and the
//! bound on the memory that large documents take meanwhile
//! ([`BigDocuments`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, OciLayout};

use super::discovery::Candidate;
use super::fsx;
use super::options::{rejection, LoadOptions, MAX_SAFE_SIZE};
use super::prefetch::Prefetched;
use crate::digest::{Algorithm, Digest};
use crate::media_type::{self, ContentKind};
use crate::model::{Application, Blob, DigestMap, Manifest, Referring};
use crate::name::{RepoName, Tag, REF_NAME};
use crate::rule::{Rejection, Rule};

/// Where a blob was first referenced, for its size.
pub(super) struct PendingBlob {
    pub(super) size: u64,
}

/// An application whose documents verified; blobs still to hash.
pub(super) struct Structure {
    pub(super) name: RepoName,
    pub(super) rel: String,
    pub(super) dir: PathBuf,
    pub(super) tags: BTreeMap<Tag, Digest>,
    pub(super) manifests: HashMap<Digest, Manifest>,
    pub(super) blobs: HashMap<Digest, PendingBlob>,
    pub(super) bytes_verified: u64,
}

impl Structure {
    pub(super) fn into_application(self, blobs: DigestMap<Blob>) -> Application {
        let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for (digest, m) in &self.manifests {
            if let Some(subject) = m.subject() {
                referrers
                    .entry(subject.clone())
                    .or_default()
                    .push(digest.clone());
            }
        }
        for list in referrers.values_mut() {
            list.sort();
        }
        Application {
            name: self.name,
            dir: self.dir,
            tags: self.tags,
            manifests: self.manifests.into_iter().collect(),
            blobs,
            referrers,
            bytes_verified: self.bytes_verified,
        }
    }
}

/// A rule broken in a file, before the application is known to the caller.
pub(super) type Broken = (PathBuf, Rule);

// Boxed: a rejection is much larger than the usual outcome.
pub(super) fn read_structure(
    candidate: &Candidate,
    options: &LoadOptions,
    big_documents: &BigDocuments,
    pre: &mut Prefetched,
) -> Result<Structure, Box<Rejection>> {
    let to_rejection = |(file, rule): Broken| Box::new(rejection(&candidate.rel, file, rule));
    let name = RepoName::parse(&candidate.rel)
        .map_err(|e| to_rejection((PathBuf::new(), Rule::InvalidName(e))))?;
    let mut walker = Walker {
        dir: &candidate.dir,
        options,
        manifests: HashMap::new(),
        blobs: HashMap::new(),
        descriptors: 0,
        bytes_verified: 0,
        checked_alg_dirs: HashSet::new(),
        interned: HashSet::new(),
        big_documents,
        permit: None,
        held: 0,
        pre,
    };
    let tags = walker.walk_layout().map_err(to_rejection)?;
    Ok(Structure {
        name,
        rel: candidate.rel.clone(),
        dir: candidate.dir.clone(),
        tags,
        manifests: walker.manifests,
        blobs: walker.blobs,
        bytes_verified: walker.bytes_verified,
    })
}

pub(super) struct Walker<'a> {
    pub(super) dir: &'a Path,
    pub(super) options: &'a LoadOptions,
    pub(super) manifests: HashMap<Digest, Manifest>,
    pub(super) blobs: HashMap<Digest, PendingBlob>,
    pub(super) descriptors: usize,
    pub(super) bytes_verified: u64,
    pub(super) checked_alg_dirs: HashSet<Algorithm>,
    // Media and artifact types repeat across an application's manifests;
    // each distinct one is stored once.
    pub(super) interned: HashSet<Arc<str>>,
    pub(super) big_documents: &'a BigDocuments,
    pub(super) permit: Option<Permit<'a>>,
    // Bytes of the documents being walked (index.json and the chain of
    // nested documents down to the current one).
    pub(super) held: u64,
    // What the read-ahead read of this application.
    pub(super) pre: &'a mut Prefetched,
}

pub(super) fn invalid(what: &'static str, e: impl std::fmt::Display) -> Rule {
    let mut detail = e.to_string();
    if detail.len() > 200 {
        let mut end = 200;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    Rule::InvalidJson { what, detail }
}

impl<'a> Walker<'a> {
    /// Accounts for a document of `size` bytes about to be read, waiting
    /// for a permit first if the application would then hold more than
    /// [`SMALL_DOCUMENTS`].
    pub(super) fn admit(&mut self, size: u64) {
        self.held += size;
        if self.permit.is_none() && self.held > SMALL_DOCUMENTS {
            self.permit = Some(self.big_documents.acquire());
        }
    }

    pub(super) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(known) = self.interned.get(s) {
            return known.clone();
        }
        let new: Arc<str> = s.into();
        self.interned.insert(new.clone());
        new
    }

    pub(super) fn walk_layout(&mut self) -> Result<BTreeMap<Tag, Digest>, Broken> {
        fn at(f: &str) -> impl Fn(Rule) -> Broken + '_ {
            move |rule| (PathBuf::from(f), rule)
        }
        // Opened as a real directory for the listing: no need to ask again.
        if self.pre.listing().app_dir().is_none() {
            fsx::require_real_dir(self.dir).map_err(at(""))?;
        }

        let layout = fsx::read_limited(&self.dir.join("oci-layout"), 64 << 10, self.pre)
            .map_err(at("oci-layout"))?;
        let layout: OciLayout = require_utf8("oci-layout", &layout)
            .and_then(|text| serde_json::from_str(text).map_err(|e| invalid("oci-layout", e)))
            .map_err(at("oci-layout"))?;
        if layout.image_layout_version() != "1.0.0" {
            return Err(at("oci-layout")(Rule::LayoutVersion(
                layout.image_layout_version().clone(),
            )));
        }

        let (file, meta) = fsx::open_regular_from(&self.dir.join("index.json"), self.pre)
            .map_err(at("index.json"))?;
        // Held for the whole walk: its descriptors are walked from it.
        self.admit(meta.len().min(self.options.max_index_json));
        let bytes = fsx::read_open_limited(file, &meta, self.options.max_index_json)
            .map_err(at("index.json"))?;
        // index.json itself must be an OCI index.
        let index: ImageIndex =
            parse_document(&bytes, media_type::OCI_INDEX).map_err(at("index.json"))?;

        let index_path = PathBuf::from("index.json");
        let mut tags = BTreeMap::new();
        for d in index.manifests() {
            self.visit_listed(d, &index_path, 1)?;
            if let Some(value) = d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
                let tag = Tag::from_ref_name(value)
                    .map_err(|e| (index_path.clone(), Rule::InvalidTag(e)))?;
                let digest = Digest::parse(d.digest().as_ref()).expect("validated by visit_listed");
                if tags.insert(tag.clone(), digest).is_some() {
                    return Err((index_path, Rule::DuplicateTag(tag.to_string())));
                }
            }
        }
        if let Some(subject) = index.subject() {
            self.visit_subject(subject, &index_path, 1)?;
        }
        Ok(tags)
    }

    /// Validates a descriptor's fields; returns its digest and size.
    pub(super) fn check_descriptor(
        &mut self,
        d: &Descriptor,
        from: &Path,
    ) -> Result<(Digest, u64), Broken> {
        let broken = |rule| (from.to_path_buf(), rule);
        self.descriptors += 1;
        if self.descriptors > self.options.max_descriptors {
            return Err(broken(Rule::TooManyDescriptors(
                self.options.max_descriptors,
            )));
        }
        let media_type = d.media_type().to_string();
        if !media_type::is_valid(&media_type) {
            return Err(broken(Rule::InvalidMediaType(media_type)));
        }
        let digest = Digest::parse(d.digest().as_ref()).map_err(|e| broken(Rule::Digest(e)))?;
        if d.size() > MAX_SAFE_SIZE {
            return Err(broken(Rule::SizeOutOfRange(d.size())));
        }
        let listed = |a: Algorithm| {
            let listing = self.pre.listing();
            listing.algorithms().iter().any(|d| d.algorithm == a)
        };
        // Listed means opened as real directories, `blobs` and this one.
        if self.checked_alg_dirs.insert(digest.algorithm()) && !listed(digest.algorithm()) {
            for dir in ["blobs".to_string(), format!("blobs/{}", digest.algorithm())] {
                if let Err(rule) = fsx::require_real_dir(&self.dir.join(&dir)) {
                    // A missing directory is reported against the blob.
                    if rule != Rule::Missing {
                        return Err((PathBuf::from(dir), rule));
                    }
                }
            }
        }
        Ok((digest, d.size()))
    }

    /// A descriptor in an index's `manifests`: must be a manifest or index.
    pub(super) fn visit_listed(
        &mut self,
        d: &Descriptor,
        from: &Path,
        depth: usize,
    ) -> Result<(), Broken> {
        let media_type = d.media_type().to_string();
        let (digest, size) = self.check_descriptor(d, from)?;
        match media_type::kind_of(&media_type) {
            ContentKind::Blob => Err((from.to_path_buf(), Rule::NotAManifest(media_type))),
            kind => self.visit_document(kind, &media_type, digest, size, depth),
        }
    }

    /// A `subject`: verified like any other content when present on disk;
    /// when absent, it is only a pointer (referrers may precede subjects).
    pub(super) fn visit_subject(
        &mut self,
        d: &Descriptor,
        from: &Path,
        depth: usize,
    ) -> Result<(), Broken> {
        let media_type = d.media_type().to_string();
        let (digest, size) = self.check_descriptor(d, from)?;
        let path = self.dir.join(digest.blob_path());
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        match media_type::kind_of(&media_type) {
            ContentKind::Blob => self.add_blob(digest, size, from),
            kind => self.visit_document(kind, &media_type, digest, size, depth),
        }
    }

    pub(super) fn add_blob(
        &mut self,
        digest: Digest,
        size: u64,
        from: &Path,
    ) -> Result<(), Broken> {
        let pending = self
            .blobs
            .entry(digest.clone())
            .or_insert(PendingBlob { size });
        if pending.size != size {
            let first = pending.size;
            return Err((
                from.to_path_buf(),
                Rule::ConflictingSizes {
                    digest,
                    first,
                    second: size,
                },
            ));
        }
        Ok(())
    }

    pub(super) fn visit_document(
        &mut self,
        kind: ContentKind,
        media_type: &str,
        digest: Digest,
        size: u64,
        depth: usize,
    ) -> Result<(), Broken> {
        if let Some(seen) = self.manifests.get(&digest) {
            if seen.bytes.len() as u64 != size {
                return Err((
                    PathBuf::from(digest.blob_path()),
                    Rule::SizeMismatch {
                        expected: size,
                        actual: seen.bytes.len() as u64,
                    },
                ));
            }
            return Ok(());
        }
        // `max_depth` bounds where indexes may sit; the manifests the
        // deepest index lists are one level further down. (Subject chains
        // count levels too, so they are bounded by the same numbers.)
        let deepest = match kind {
            ContentKind::Index => self.options.max_depth,
            _ => self.options.max_depth + 1,
        };
        if depth > deepest {
            return Err((
                PathBuf::from(digest.blob_path()),
                Rule::TooDeep(self.options.max_depth),
            ));
        }
        let file = PathBuf::from(digest.blob_path());
        let at = |rule| (file.clone(), rule);
        if size > self.options.max_manifest {
            return Err(at(Rule::TooLarge {
                size,
                limit: self.options.max_manifest,
            }));
        }
        self.admit(size);
        let bytes = fsx::read_verified(
            &self.dir.join(&file),
            &digest,
            size,
            self.options.max_manifest,
            self.pre,
        )
        .map_err(at)?;
        self.bytes_verified += size;

        // What differs between the two is which descriptors they list and
        // what those must be; the rest is read alike (`parse_document`,
        // `finish_document`).
        let manifest = match kind {
            ContentKind::Index => {
                let index: ImageIndex = parse_document(&bytes, media_type).map_err(at)?;
                for d in index.manifests() {
                    self.visit_listed(d, &file, depth + 1)?;
                }
                self.finish_document(&index, media_type, bytes, &file, depth)?
            }
            ContentKind::Manifest => {
                let m: ImageManifest = parse_document(&bytes, media_type).map_err(at)?;
                let (config, _) = self.check_descriptor(m.config(), &file)?;
                self.add_blob(config, m.config().size(), &file)?;
                for layer in m.layers() {
                    let (digest, size) = self.check_descriptor(layer, &file)?;
                    let non_distributable = layer.urls().as_ref().is_some_and(|u| !u.is_empty());
                    if non_distributable
                        && std::fs::symlink_metadata(self.dir.join(digest.blob_path())).is_err()
                    {
                        continue; // lives elsewhere; simply not served
                    }
                    self.add_blob(digest, size, &file)?;
                }
                self.finish_document(&m, media_type, bytes, &file, depth)?
            }
            ContentKind::Blob => unreachable!("documents are manifests or indexes"),
        };
        self.manifests.insert(digest, manifest);
        // Its parse tree is gone; its bytes stay as part of the model.
        self.held -= size;
        Ok(())
    }

    /// The end of a document's walk, alike for indexes and manifests (after
    /// their listed descriptors): its `subject`, one level down, then the
    /// model entry, with what the referrers API lists it under when it
    /// has a subject.
    fn finish_document<D: Document>(
        &mut self,
        doc: &D,
        media_type: &str,
        bytes: Vec<u8>,
        file: &Path,
        depth: usize,
    ) -> Result<Manifest, Broken> {
        if let Some(subject) = doc.subject() {
            self.visit_subject(subject, file, depth + 1)?;
        }
        let referring = subject_digest(doc.subject()).map(|subject| Referring {
            subject,
            artifact_type: doc.referrer_artifact_type().map(|t| self.intern(&t)),
            annotations: sorted(doc.annotations()),
        });
        Ok(Manifest {
            media_type: self.intern(media_type),
            bytes: bytes.into(),
            referring: referring.map(Box::new),
        })
    }
}

pub(super) fn subject_digest(d: &Option<Descriptor>) -> Option<Digest> {
    // Validated by check_descriptor before this is called.
    d.as_ref()
        .and_then(|d| Digest::parse(d.digest().as_ref()).ok())
}

pub(super) fn sorted(a: &Option<HashMap<String, String>>) -> Option<BTreeMap<String, String>> {
    a.as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// What the walk reads alike in image indexes and image manifests.
pub(super) trait Document: serde::de::DeserializeOwned {
    /// How rejections name the document (`image index`, `image manifest`).
    const WHAT: &'static str;
    /// `schemaVersion`.
    fn schema_version(&self) -> u32;
    /// The document's own `mediaType`, if it states one.
    fn own_media_type(&self) -> Option<String>;
    /// `subject`.
    fn subject(&self) -> &Option<Descriptor>;
    /// `annotations`.
    fn annotations(&self) -> &Option<HashMap<String, String>>;
    /// The artifact type the referrers API lists it under: `artifactType`;
    /// for a manifest without one, its config's media type (image spec).
    fn referrer_artifact_type(&self) -> Option<String>;
}

impl Document for ImageIndex {
    const WHAT: &'static str = "image index";
    fn schema_version(&self) -> u32 {
        ImageIndex::schema_version(self)
    }
    fn own_media_type(&self) -> Option<String> {
        ImageIndex::media_type(self).as_ref().map(|m| m.to_string())
    }
    fn subject(&self) -> &Option<Descriptor> {
        ImageIndex::subject(self)
    }
    fn annotations(&self) -> &Option<HashMap<String, String>> {
        ImageIndex::annotations(self)
    }
    fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type().as_ref().map(|t| t.to_string())
    }
}

impl Document for ImageManifest {
    const WHAT: &'static str = "image manifest";
    fn schema_version(&self) -> u32 {
        ImageManifest::schema_version(self)
    }
    fn own_media_type(&self) -> Option<String> {
        ImageManifest::media_type(self)
            .as_ref()
            .map(|m| m.to_string())
    }
    fn subject(&self) -> &Option<Descriptor> {
        ImageManifest::subject(self)
    }
    fn annotations(&self) -> &Option<HashMap<String, String>> {
        ImageManifest::annotations(self)
    }
    fn referrer_artifact_type(&self) -> Option<String> {
        Some(
            self.artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| self.config().media_type().to_string()),
        )
    }
}

/// Parses an index or a manifest and checks what they share: UTF-8 text,
/// the typed shape (a malformed descriptor digest named as such),
/// `schemaVersion` 2, and the document's own `mediaType`, when present,
/// equal to `expected` (the media type of the descriptor that points at
/// it).
pub(super) fn parse_document<D: Document>(bytes: &[u8], expected: &str) -> Result<D, Rule> {
    let doc: D = serde_json::from_str(require_utf8(D::WHAT, bytes)?)
        .map_err(|e| digest_rule(bytes).unwrap_or_else(|| invalid(D::WHAT, e)))?;
    if doc.schema_version() != 2 {
        return Err(Rule::SchemaVersion(doc.schema_version()));
    }
    if let Some(own) = doc.own_media_type() {
        if own != expected {
            return Err(Rule::MediaTypeMismatch {
                expected: expected.into(),
                found: own,
            });
        }
    }
    Ok(doc)
}

/// JSON text is UTF-8 throughout (RFC 8259, section 8.1). serde_json checks
/// only the strings it keeps: parsing from bytes skips ignored fields
/// without validating them, so a document with invalid UTF-8 inside an
/// unknown field would pass. The whole document is checked first instead
/// (`from_utf8` runs at many GB/s, next to nothing beside the SHA-256
/// every document goes through).
pub(super) fn require_utf8<'b>(what: &'static str, bytes: &'b [u8]) -> Result<&'b str, Rule> {
    std::str::from_utf8(bytes).map_err(|e| invalid(what, format_args!("not UTF-8: {e}")))
}

/// `oci-spec` refuses a document whose descriptor digest is malformed
/// (uppercase hex, wrong length) before [`Walker::check_descriptor`] sees
/// it. When typed parsing fails, look for such a digest in the places
/// descriptors live, so the rejection names the digest rule rather than
/// "not valid JSON".
pub(super) fn digest_rule(bytes: &[u8]) -> Option<Rule> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let mut descriptors: Vec<&serde_json::Value> = Vec::new();
    for key in ["manifests", "layers"] {
        if let Some(list) = doc.get(key).and_then(|v| v.as_array()) {
            descriptors.extend(list);
        }
    }
    descriptors.extend(["config", "subject"].iter().filter_map(|k| doc.get(*k)));
    descriptors
        .iter()
        .filter_map(|d| d.get("digest")?.as_str())
        .find_map(|s| Digest::parse(s).err())
        .map(Rule::Digest)
}

/// Documents an application may hold at once (raw bytes, parsed trees
/// are a few times more) before it needs a [`BigDocuments`] permit.
pub(super) const SMALL_DOCUMENTS: u64 = 1 << 20;

/// Bounds how many applications hold large documents at once.
///
/// Structure is read on many threads because small files are latency
/// bound, but a hostile root can hold an `index.json` of 16 MiB (and
/// nested indexes of 4 MiB) in every application: at most `permits`
/// applications may hold more than [`SMALL_DOCUMENTS`] at a time, so the
/// transient memory stays *CPU threads x the per-application bound* plus
/// *I/O threads x a few MiB*, as it was before the I/O threads existed.
/// An application takes at most one permit and never waits while holding
/// one, so this cannot deadlock.
pub(super) struct BigDocuments {
    pub(super) free: std::sync::Mutex<usize>,
    pub(super) released: std::sync::Condvar,
}

/// Held by an application that may hold large documents.
pub(super) struct Permit<'a>(&'a BigDocuments);

impl BigDocuments {
    pub(super) fn new(permits: usize) -> Self {
        BigDocuments {
            free: std::sync::Mutex::new(permits.max(1)),
            released: std::sync::Condvar::new(),
        }
    }

    pub(super) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.released.notify_one();
    }
}
