//! Applying a [`Trust`] to a loaded [`Registry`]: what the policy refuses is
//! taken out of the model before anything is served.
//!
//! Per application:
//!
//! * every **tag** is judged under `HOST/APP:TAG`; the served tags are
//!   exactly the accepted ones (and the signature tags below), whatever
//!   else names the same manifest.
//! * every other **manifest** is served when an accepted tag names it,
//!   when it is judged acceptable under `HOST/APP@DIGEST`, or when an
//!   accepted index reaches it (the index's digest covers its children).
//! * a **signature artifact** is served without a verdict of its own, so
//!   clients can verify again, only when it is structurally nothing but a
//!   signature of its kind ([`signatures::structural_kind`]), every
//!   signature in it is well formed and (cosign, sigstore bundle) signs
//!   the manifest it is attached to, and that manifest is served. It is
//!   attached by its `subject` (a referrer), or by a `sha256-<hex>.sig`
//!   tag whose hex names the manifest it signs; that tag is then served.
//! * a **blob** is served when a served manifest lists it as its config
//!   or a layer (as the loader does: never through an artifact's `blobs`).
//!
//! The application's other content keeps being served; an application
//! whose every image is refused stays in the catalog with no tags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ir_oci::{Application, Blob, Digest, DigestMap, Manifest, Registry, RepoName, Tag};
use rayon::prelude::*;
use serde::Deserialize;

use crate::budget::{self, Budget, Budgeted};
use crate::docker_reference::DockerReference;
use crate::memo::Memo;
use crate::reason::Reason;
use crate::signatures::{self, ArtifactKind, ArtifactSource};
use crate::verdict::{Evidence, Subject, Trust, Verdict};

/// Deepest chain of indexes followed when covering an index's children.
const MAX_INDEX_DEPTH: usize = 8;

/// The verdicts of one application.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The application.
    pub application: RepoName,
    /// Each judged tag with its digest and verdict, by tag.
    pub tags: BTreeMap<Tag, (Digest, Verdict)>,
    /// Manifests refused (not reachable by digest).
    pub manifests_withdrawn: usize,
    /// Blobs no longer served because only refused images reach them.
    pub blobs_withdrawn: usize,
    /// Signature artifacts served.
    pub signature_artifacts: usize,
}

impl Judgement {
    /// Refused tags, with their reasons.
    pub fn refused(&self) -> impl Iterator<Item = (&Tag, &crate::Refusal)> {
        self.tags.iter().filter_map(|(t, (_, v))| match v {
            Verdict::Refused(r) => Some((t, r)),
            Verdict::Accepted { .. } => None,
        })
    }
}

/// `registry` with what `trust` refuses taken out, and every
/// application's verdicts. Images are named under `host` (the name clients
/// use for this server). Signature artifacts are recalled from and
/// recorded in `memo`.
pub fn enforce(
    trust: &Trust,
    memo: &Memo,
    host: &str,
    registry: Registry,
) -> (Registry, Vec<Judgement>) {
    enforce_within(trust, memo, host, registry, &Budget::per_load())
}

/// [`enforce`], reading at most [`budget::PER_APPLICATION`] bytes of
/// signatures per application and drawing every read from `load` too
/// (one budget may be shared by several judgements of one load).
pub fn enforce_within(
    trust: &Trust,
    memo: &Memo,
    host: &str,
    mut registry: Registry,
    load: &Budget,
) -> (Registry, Vec<Judgement>) {
    let judged: Vec<(RepoName, Option<Arc<Application>>, Judgement)> = registry
        .applications
        .par_iter()
        .map(|(name, app)| {
            let (filtered, judgement) = enforce_application(trust, memo, host, app, load);
            (name.clone(), filtered, judgement)
        })
        .collect();
    let mut judgements = Vec::with_capacity(judged.len());
    for (name, filtered, judgement) in judged {
        if let Some(app) = filtered {
            registry.applications.insert(name, app);
        }
        judgements.push(judgement);
    }
    (registry, judgements)
}

/// An application as an [`ArtifactSource`]: its verified manifests, tags
/// and referrers, and its blobs read from disk and hashed again.
pub struct ApplicationSource<'a> {
    app: &'a Application,
    /// Cosign signature tags by the digest they sign.
    cosign_tags: HashMap<Digest, Digest>,
}

impl<'a> ApplicationSource<'a> {
    /// The source of `app`.
    pub fn new(app: &'a Application) -> Self {
        let cosign_tags = app
            .tags
            .iter()
            .filter_map(|(tag, digest)| {
                signatures::cosign_tag_target(tag.as_str()).map(|t| (t, digest.clone()))
            })
            .collect();
        ApplicationSource { app, cosign_tags }
    }
}

impl ArtifactSource for ApplicationSource<'_> {
    fn cosign_signature(&self, digest: &Digest) -> Option<Digest> {
        self.cosign_tags.get(digest).cloned()
    }

    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])> {
        self.app
            .manifests
            .get(digest)
            .map(|m| (&*m.media_type, m.bytes.as_ref()))
    }

    fn tagged(&self, tag: &str) -> Option<Digest> {
        let tag = Tag::parse(tag).ok()?;
        self.app.tags.get(&tag).cloned()
    }

    fn referrers(&self, digest: &Digest) -> Vec<Digest> {
        self.app.referrers.get(digest).cloned().unwrap_or_default()
    }

    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        let Some(blob) = self.app.blobs.get(digest) else {
            return Err(format!("blob {digest} is not in the layout"));
        };
        if blob.size() > limit {
            return Err(format!(
                "blob {digest} has {} bytes, more than {limit}",
                blob.size()
            ));
        }
        // The very file that was verified (no symlink, not a device, same
        // identity), read no further than its verified size.
        let file = ir_oci::open_unchanged(&self.app.blob_path(digest), &blob.identity)
            .map_err(|rule| format!("blob {digest}: {rule}"))?;
        let mut bytes = Vec::with_capacity(blob.size() as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, blob.size() + 1), &mut bytes)
            .map_err(|e| format!("blob {digest}: {e}"))?;
        // Hashed again: the file may have changed in place since.
        if Digest::of_bytes(digest.algorithm(), &bytes) != *digest {
            return Err(format!("blob {digest} changed since it was verified"));
        }
        Ok(bytes)
    }
}

fn enforce_application(
    trust: &Trust,
    memo: &Memo,
    host: &str,
    app: &Arc<Application>,
    load: &Budget,
) -> (Option<Arc<Application>>, Judgement) {
    let mut judgement = Judgement {
        application: app.name.clone(),
        tags: BTreeMap::new(),
        manifests_withdrawn: 0,
        blobs_withdrawn: 0,
        signature_artifacts: 0,
    };
    let source = ApplicationSource::new(app);
    let budget = Budget::new(format!("application {}", app.name), budget::PER_APPLICATION);
    let budgeted = Budgeted::new(&source, &budget, load);
    let Ok(base) = DockerReference::of_repository(host, &app.name) else {
        // Unreachable for a valid host (checked at start-up): refuse all.
        return (Some(Arc::new(emptied(app))), judgement);
    };

    let artifacts = signature_artifacts(app, &source, memo);
    judgement.signature_artifacts = artifacts.len();
    let mut evidence: HashMap<Digest, Evidence> = HashMap::with_capacity(app.tags.len());
    let mut judge = |reference: &DockerReference, digest: &Digest| -> Verdict {
        let Some(m) = app.manifests.get(digest) else {
            return Verdict::Refused(crate::Refusal {
                requirement: "layout".into(),
                reason: Reason::NoSignature,
                detail: format!("{digest} is not a manifest of the layout"),
            });
        };
        let ev = evidence
            .entry(digest.clone())
            .or_insert_with(|| Evidence::with_memo(memo));
        let subject = Subject {
            digest,
            media_type: &m.media_type,
            size: m.bytes.len() as u64,
        };
        let verdict = trust.judge(reference, &subject, &budgeted, ev);
        // What was learnt is kept, the signature bytes are not: held
        // memory is one manifest's signatures, not the application's.
        ev.release();
        verdict
    };

    let mut accepted: HashSet<Digest> = HashSet::new();
    let mut served_tags: BTreeMap<Tag, Digest> = BTreeMap::new();
    // Signature tags, served when the manifest they sign is.
    let mut signature_tags: Vec<(&Tag, &Digest, Digest)> = Vec::new();
    for (tag, digest) in &app.tags {
        if let Some(target) = signatures::cosign_tag_target(tag.as_str()) {
            if artifacts.get(digest).is_some_and(|t| t.contains(&target)) {
                signature_tags.push((tag, digest, target));
                continue;
            }
        }
        let verdict = judge(&base.with_tag(tag), digest);
        if verdict.is_accepted() {
            accepted.insert(digest.clone());
            served_tags.insert(tag.clone(), digest.clone());
        }
        judgement
            .tags
            .insert(tag.clone(), (digest.clone(), verdict));
    }
    cover_children(app, &mut accepted);
    let rest: Vec<Digest> = app
        .manifests
        .keys()
        .filter(|d| !accepted.contains(*d) && !artifacts.contains_key(*d))
        .cloned()
        .collect();
    let mut newly = false;
    for digest in rest {
        if judge(&base.with_digest(&digest), &digest).is_accepted() {
            accepted.insert(digest);
            newly = true;
        }
    }
    if newly {
        cover_children(app, &mut accepted);
    }

    // Signature artifacts of served manifests (and of served signature
    // artifacts, a bounded number of levels down).
    let mut served: HashSet<&Digest> = accepted.iter().collect();
    let mut signatures_served = 0;
    for _ in 0..MAX_INDEX_DEPTH {
        let next: Vec<&Digest> = artifacts
            .iter()
            .filter(|(a, targets)| {
                !served.contains(a) && targets.iter().any(|t| served.contains(t))
            })
            .map(|(a, _)| a)
            .collect();
        if next.is_empty() {
            break;
        }
        signatures_served += next.len();
        served.extend(next);
    }
    judgement.signature_artifacts = signatures_served;
    for (tag, digest, target) in signature_tags {
        if served.contains(&target) {
            served_tags.insert(tag.clone(), digest.clone());
        }
    }

    if served.len() == app.manifests.len() && served_tags.len() == app.tags.len() {
        return (None, judgement);
    }
    let mut blobs: HashSet<Digest> = HashSet::new();
    for d in &served {
        if let Some(m) = app.manifests.get(d) {
            blobs.extend(referenced_blobs(m));
        }
    }
    let manifests: DigestMap<Manifest> = app
        .manifests
        .iter()
        .filter(|(d, _)| served.contains(d))
        .map(|(d, m)| (d.clone(), m.clone()))
        .collect();
    let kept_blobs: DigestMap<Blob> = app
        .blobs
        .iter()
        .filter(|(d, _)| blobs.contains(*d))
        .map(|(d, b)| (d.clone(), copy_blob(b)))
        .collect();
    let referrers = app
        .referrers
        .iter()
        .filter(|(subject, _)| served.contains(subject))
        .map(|(subject, list)| {
            let list: Vec<Digest> = list
                .iter()
                .filter(|d| served.contains(d))
                .cloned()
                .collect();
            (subject.clone(), list)
        })
        .filter(|(_, list)| !list.is_empty())
        .collect();
    judgement.manifests_withdrawn = app.manifests.len() - manifests.len();
    judgement.blobs_withdrawn = app.blobs.len() - kept_blobs.len();
    let filtered = Application {
        name: app.name.clone(),
        dir: app.dir.clone(),
        tags: served_tags,
        manifests,
        blobs: kept_blobs,
        referrers,
        bytes_verified: app.bytes_verified,
    };
    (Some(Arc::new(filtered)), judgement)
}

/// The same application with nothing in it.
fn emptied(app: &Application) -> Application {
    Application {
        name: app.name.clone(),
        dir: app.dir.clone(),
        tags: BTreeMap::new(),
        manifests: DigestMap::default(),
        blobs: DigestMap::default(),
        referrers: HashMap::new(),
        bytes_verified: app.bytes_verified,
    }
}

fn copy_blob(b: &Blob) -> Blob {
    let copy = Blob::new(b.identity);
    if b.is_withdrawn() {
        copy.withdraw();
    }
    copy
}

/// The manifests of `app` that may be served as signature artifacts, each
/// with the manifests it is a signature of: attached by a
/// `sha256-<hex>.sig` tag (the manifest the hex names) or by its
/// `subject`, structurally a signature ([`signatures::structural_kind`]),
/// and every signature in it well formed and (cosign, bundle) signing
/// that manifest.
fn signature_artifacts(
    app: &Application,
    source: &ApplicationSource<'_>,
    memo: &Memo,
) -> HashMap<Digest, Vec<Digest>> {
    let mut candidates: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (target, digest) in &source.cosign_tags {
        if target != digest
            && app.manifests.contains_key(target)
            && app.manifests.contains_key(digest)
        {
            candidates.entry(digest).or_default().push(target);
        }
    }
    for (digest, m) in &app.manifests {
        if let Some(subject) = m.subject() {
            if subject != digest && app.manifests.contains_key(subject) {
                let targets = candidates.entry(digest).or_default();
                if !targets.contains(&subject) {
                    targets.push(subject);
                }
            }
        }
    }
    let mut out = HashMap::new();
    for (digest, targets) in candidates {
        let Ok(kind) = signatures::structural_kind(source, digest) else {
            continue;
        };
        let layers = signature_layers(source, memo, digest, kind);
        let targets: Vec<Digest> = targets
            .into_iter()
            .filter(|t| layers.as_ref().is_some_and(|l| l.signs(kind, t)))
            .cloned()
            .collect();
        if !targets.is_empty() {
            out.insert(digest.clone(), targets);
        }
    }
    out
}

/// What the layers of a signature artifact sign, as far as serving it
/// without a verdict needs to know.
enum Layers {
    /// The digests each (cosign or bundle) layer claims to sign.
    Claims(Vec<Vec<String>>),
    /// Every (notation) layer is an envelope of its media type's shape.
    Envelopes,
}

impl Layers {
    /// True when every layer signs `target` (notation: the artifact's
    /// `subject` is the one target it can have).
    fn signs(&self, kind: ArtifactKind, target: &Digest) -> bool {
        match self {
            Layers::Envelopes => kind == ArtifactKind::Notation,
            Layers::Claims(layers) => {
                let wanted = target.text();
                !layers.is_empty()
                    && layers
                        .iter()
                        .all(|claims| claims.iter().any(|c| c == wanted.as_str()))
            }
        }
    }
}

/// The layers of signature artifact `digest` of `kind`, recalled from
/// `memo` or read; `None` when one is not a well-formed signature.
fn signature_layers(
    source: &ApplicationSource<'_>,
    memo: &Memo,
    digest: &Digest,
    kind: ArtifactKind,
) -> Option<Layers> {
    use crate::memo::LayerRecord;
    use crate::signatures::Signature;
    if kind != ArtifactKind::Notation {
        if let Some(record) = memo.get(digest).filter(|r| r.kind == kind) {
            return record
                .layers
                .iter()
                .map(|layer| match layer {
                    LayerRecord::Signed(r) if r.unusable.is_none() => r
                        .claims
                        .as_ref()
                        .ok()
                        .map(|c| c.iter().map(|c| c.digest.clone()).collect()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Layers::Claims);
        }
    }
    let (read_kind, layers) = signatures::read_artifact(source, digest)?;
    if read_kind != kind {
        return None;
    }
    if kind == ArtifactKind::Notation {
        return layers
            .iter()
            .all(|l| {
                matches!(l, Signature::Notation { media_type, envelope }
                    if signatures::notation_envelope_shaped(media_type, envelope))
            })
            .then_some(Layers::Envelopes);
    }
    layers
        .into_iter()
        .map(|layer| match layer {
            Signature::Simple { payload, .. } => crate::payload::simple_signing(&payload)
                .ok()
                .map(|c| vec![c.digest]),
            Signature::Dsse {
                payload_type,
                payload,
                ..
            } if payload_type == crate::payload::IN_TOTO_PAYLOAD_TYPE => {
                crate::payload::in_toto(&payload)
                    .ok()
                    .map(|c| c.into_iter().map(|c| c.digest).collect())
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Layers::Claims)
}

#[derive(Deserialize)]
struct Refs {
    #[serde(default)]
    config: Option<Ref>,
    #[serde(default)]
    layers: Vec<Ref>,
    #[serde(default)]
    manifests: Vec<Ref>,
}

#[derive(Deserialize)]
struct Ref {
    digest: String,
}

fn refs(bytes: &[u8]) -> Option<Refs> {
    serde_json::from_slice(bytes).ok()
}

/// Digests of the blobs the loader lists for a manifest: an image
/// manifest's config and layers (an index lists none; no other field,
/// such as an artifact's `blobs`, makes a blob served).
fn referenced_blobs(m: &Manifest) -> Vec<Digest> {
    if ir_oci::media_type::kind_of(&m.media_type) != ir_oci::media_type::ContentKind::Manifest {
        return Vec::new();
    }
    let Some(r) = refs(&m.bytes) else {
        return Vec::new();
    };
    r.config
        .iter()
        .chain(r.layers.iter())
        .filter_map(|d| Digest::parse(&d.digest).ok())
        .collect()
}

/// Adds to `accepted` every manifest an accepted index reaches.
fn cover_children(app: &Application, accepted: &mut HashSet<Digest>) {
    let mut frontier: Vec<(Digest, usize)> = accepted.iter().map(|d| (d.clone(), 0)).collect();
    while let Some((digest, depth)) = frontier.pop() {
        if depth >= MAX_INDEX_DEPTH {
            continue;
        }
        let Some(m) = app.manifests.get(&digest) else {
            continue;
        };
        // Only indexes list manifests (their media type was checked at load).
        if ir_oci::media_type::kind_of(&m.media_type) != ir_oci::media_type::ContentKind::Index {
            continue;
        }
        let Some(r) = refs(&m.bytes) else {
            continue;
        };
        for child in r.manifests {
            let Ok(child) = Digest::parse(&child.digest) else {
                continue;
            };
            if app.manifests.contains_key(&child) && accepted.insert(child.clone()) {
                frontier.push((child, depth + 1));
            }
        }
    }
}
