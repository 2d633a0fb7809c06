//! The registry client and the pull: resolve the manifests (index,
//! platform manifests), then fetch config and layers in parallel, each
//! verified before it is renamed into place, then write the manifests and
//! the tag.

use crate::http::{backoff, Http, HttpOptions, Transport};
use crate::layout::{LayoutWriter, OCI_INDEX};
use crate::location::{ImageLocation, Scheme};
use crate::platform_filter::Platform;
use crate::progress::{Progress, Silent};
use crate::ratls::CertResolver;
use crate::{Error, ManifestError, ReferenceError};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use ir_oci::{Algorithm, Digest};
use ir_trust::Trust;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use reqwest::header;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use ir_oci::media_type::{kind_of, ContentKind};
pub use ir_oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST};

/// Largest manifest or index accepted.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;
/// Most manifests one pull resolves (all platforms of nested indexes).
const MAX_MANIFESTS: usize = 1024;
/// Most attempts at one blob, progress or not (each failure without
/// progress also counts against `retries`).
const MAX_BLOB_ATTEMPTS: u32 = 64;

pub(crate) use ir_oci::media_type::MANIFEST_ACCEPT as ACCEPT;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The platform picked from an index (default: the host's).
    pub platform: Platform,
    /// Pull every manifest of an index (the index is what gets tagged).
    pub all_platforms: bool,
    /// The tag written to `index.json` (default: the reference's tag; a
    /// digest reference gets an untagged entry).
    pub tag: Option<String>,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    /// Connections, timeouts, retries, proxies.
    pub http: HttpOptions,
    /// Judge each pulled image by this signature policy before writing
    /// anything (`None`: no signature is required).
    pub signature_policy: Option<SignaturePolicy>,
}

/// A signature policy and the name images are judged under
/// ([`Client::judge`]).
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    /// The policies.
    pub trust: Arc<Trust>,
    /// The registry host images are named under (`HOST[:PORT]`; default:
    /// the location's own host).
    pub registry_host: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            all_platforms: false,
            tag: None,
            concurrency: 4,
            http: HttpOptions::default(),
            signature_policy: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Digest of what `index.json` now points to (the platform's manifest,
    /// or the index with `all_platforms`).
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The index the manifest was picked from, if the reference named one.
    pub index_digest: Option<Digest>,
    /// Manifests and indexes written.
    pub manifests: usize,
    /// Blobs (manifests, indexes, configs, layers) in place after the pull.
    pub blobs: usize,
    /// Blobs already present and intact, not downloaded again.
    pub reused: usize,
    /// Bytes downloaded (blobs and manifests).
    pub bytes: u64,
    /// Who signed the image, as far as the signature policy required a
    /// signature (empty without a policy).
    pub signers: Vec<String>,
}

/// A registry client. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) http: Http,
    options: ClientOptions,
}

/// A manifest or index as fetched: its digest, bytes and parsed form.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The descriptor naming it (media type, digest, size; with the
    /// platform when it was picked from an index).
    pub descriptor: Descriptor,
    /// Its digest, validated.
    pub digest: Digest,
    /// The bytes, verified against the digest.
    pub bytes: Vec<u8>,
    /// The parsed content.
    pub content: Content,
}

/// A manifest's parsed content.
#[derive(Debug, Clone)]
pub enum Content {
    /// An image manifest (OCI or Docker schema 2).
    Manifest(Box<ImageManifest>),
    /// An index (OCI or Docker manifest list).
    Index(Box<ImageIndex>),
}

/// Everything a pull will write, resolved before any file is written:
/// what a signature policy judges.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the tag will point to.
    pub top: Fetched,
    /// The index a platform's manifest was picked from, if any.
    pub index: Option<Fetched>,
    /// The image manifests (and nested indexes) to write, children first.
    pub manifests: Vec<Fetched>,
    /// The configs and layers to fetch, each once.
    pub blobs: Vec<(Digest, u64)>,
}

/// A descriptor's digest, validated by ir-oci.
pub(crate) fn digest_of(d: &Descriptor, what: &str) -> Result<Digest, Error> {
    Digest::parse(d.digest().as_ref()).map_err(|source| {
        ManifestError::Digest {
            what: what.to_string(),
            source,
        }
        .into()
    })
}

fn media_type_str(m: &MediaType) -> String {
    m.to_string()
}

impl Client {
    /// A client with default options.
    pub fn new(transport: Transport) -> Result<Self, Error> {
        Self::with_options(transport, ClientOptions::default())
    }

    /// A client with `options`.
    pub fn with_options(transport: Transport, options: ClientOptions) -> Result<Self, Error> {
        Ok(Self {
            http: Http::new(transport, &options.http)?,
            options,
        })
    }

    /// The RA-TLS certificate resolver (to inspect the last session).
    pub fn resolver(&self) -> Option<&Arc<CertResolver>> {
        self.http.resolver.as_ref()
    }

    /// The underlying HTTP client (its TLS is this client's).
    pub fn http(&self) -> &reqwest::Client {
        &self.http.client
    }

    pub(crate) fn check_scheme(&self, scheme: Scheme, what: &str) -> Result<(), Error> {
        if scheme != self.http.scheme {
            return Err(ReferenceError::WrongTransport {
                what: what.to_string(),
                wanted: scheme.as_str(),
                speaks: self.http.scheme.as_str(),
            }
            .into());
        }
        Ok(())
    }

    /// Pulls `reference` (text) into the layout at `out`.
    pub async fn pull(&self, reference: &str, out: &Path) -> Result<PullReport, Error> {
        let reference = ImageLocation::parse(reference)?;
        self.pull_reference(&reference, out).await
    }

    /// Pulls `reference` into the layout at `out`.
    pub async fn pull_reference(
        &self,
        reference: &ImageLocation,
        out: &Path,
    ) -> Result<PullReport, Error> {
        self.pull_with_progress(reference, out, Arc::new(Silent))
            .await
    }

    /// Pulls `reference` into the layout at `out`, reporting each blob to
    /// `progress`.
    pub async fn pull_with_progress(
        &self,
        reference: &ImageLocation,
        out: &Path,
        progress: Arc<dyn Progress>,
    ) -> Result<PullReport, Error> {
        self.check_scheme(reference.scheme, &format!("reference {reference}"))?;
        if let Some(tag) = &self.options.tag {
            ir_oci::Tag::parse(tag).map_err(|source| ReferenceError::Tag {
                tag: tag.clone(),
                source,
            })?;
        }
        let layout = LayoutWriter::open(out)?;
        let resolved = self.resolve(reference).await?;
        // The signature policy judges what the reference names before
        // anything is written: a refusal returns before any file is.
        let signers = match &self.options.signature_policy {
            Some(policy) => {
                let named = resolved.index.as_ref().unwrap_or(&resolved.top);
                self.judge(reference, named, policy).await?
            }
            None => Vec::new(),
        };
        let mut report = self.write(reference, &layout, resolved, progress).await?;
        report.signers = signers;
        Ok(report)
    }

    /// Fetches the manifests a pull of `reference` needs (the index, the
    /// host's or every platform's manifest), all verified, none written.
    pub async fn resolve(&self, reference: &ImageLocation) -> Result<Resolved, Error> {
        let expected = reference.digest().map(|d| (d.clone(), None));
        let top = self
            .fetch_manifest(reference, &reference.reference_text(), expected)
            .await?;
        let mut manifests = Vec::new();
        let (top, index) = match &top.content {
            Content::Manifest(_) => {
                manifests.push(top.clone());
                (top, None)
            }
            Content::Index(_) if self.options.all_platforms => {
                self.resolve_index(reference, &top, 0, &mut manifests)
                    .await?;
                (top, None)
            }
            Content::Index(index) => {
                let chosen = self.pick_platform(&top.digest, index)?;
                let digest = digest_of(&chosen, "index entry")?;
                let mut child = self
                    .fetch_manifest(
                        reference,
                        &digest.to_string(),
                        Some((digest, Some(chosen.size()))),
                    )
                    .await?;
                if !matches!(child.content, Content::Manifest(_)) {
                    return Err(ManifestError::PlatformEntryIsIndex {
                        digest: child.digest,
                    }
                    .into());
                }
                // The tag keeps the index entry's platform.
                child.descriptor.set_platform(chosen.platform().clone());
                manifests.push(child.clone());
                (child, Some(top))
            }
        };
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        for m in &manifests {
            let Content::Manifest(image) = &m.content else {
                continue;
            };
            let what = m.digest.to_string();
            for (i, d) in std::iter::once(image.config())
                .chain(image.layers())
                .enumerate()
            {
                let digest = digest_of(d, &format!("{what} descriptor {i}"))?;
                if seen.insert(digest.clone()) {
                    blobs.push((digest, d.size()));
                }
            }
        }
        Ok(Resolved {
            top,
            index,
            manifests,
            blobs,
        })
    }

    /// Writes what [`resolve`](Self::resolve) found: blobs in parallel,
    /// then the manifests, then the tag.
    pub async fn write(
        &self,
        reference: &ImageLocation,
        layout: &LayoutWriter,
        resolved: Resolved,
        progress: Arc<dyn Progress>,
    ) -> Result<PullReport, Error> {
        let mut report = PullReport {
            digest: resolved.top.digest.clone(),
            media_type: media_type_str(resolved.top.descriptor.media_type()),
            index_digest: resolved.index.as_ref().map(|i| i.digest.clone()),
            manifests: 0,
            blobs: 0,
            reused: 0,
            bytes: resolved
                .manifests
                .iter()
                .chain(resolved.index.as_ref())
                .map(|m| m.bytes.len() as u64)
                .sum(),
            signers: Vec::new(),
        };
        // The futures are made first (they do nothing until polled), so
        // that the stream's type has no closure over borrowed items: a
        // pull stays a `Send` future for any caller's `tokio::spawn`.
        let fetches: Vec<_> = resolved
            .blobs
            .iter()
            .map(|(digest, size)| self.blob_into(reference, layout, digest, *size, &*progress))
            .collect();
        let downloads: Vec<Option<u64>> = stream::iter(fetches)
            .buffer_unordered(self.options.concurrency.max(1))
            .try_collect()
            .await?;
        for d in downloads {
            report.blobs += 1;
            match d {
                Some(bytes) => report.bytes += bytes,
                None => report.reused += 1,
            }
        }
        for m in &resolved.manifests {
            if !layout.has_blob(&m.digest, m.bytes.len() as u64) {
                layout.put_blob(&m.digest, &m.bytes)?;
            }
            report.manifests += 1;
            report.blobs += 1;
        }
        let tag = self
            .options
            .tag
            .as_deref()
            .or(reference.tag().map(ir_oci::Tag::as_str));
        layout.set_tag(&resolved.top.descriptor, tag)?;
        Ok(report)
    }

    pub(crate) fn url(&self, reference: &ImageLocation, kind: &str, target: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{target}",
            reference.base_url(),
            reference.name
        )
    }

    /// Fetches a manifest or index, checks it against `expected` (digest
    /// and size, when known) and the registry's `Docker-Content-Digest`,
    /// and parses it.
    pub async fn fetch_manifest(
        &self,
        reference: &ImageLocation,
        target: &str,
        expected: Option<(Digest, Option<u64>)>,
    ) -> Result<Fetched, Error> {
        let url = self.url(reference, "manifests", target);
        let mut resp = self.http.get(&url, Some(ACCEPT), 0).await?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_SIZE as u64)
        {
            return Err(ManifestError::TooLarge {
                url,
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(|s| Digest::parse(s.trim()))
            .transpose()
            .map_err(|source| ManifestError::Digest {
                what: format!("{url}: Docker-Content-Digest"),
                source,
            })?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.http.transport_error(&url, e))?
        {
            if bytes.len() + chunk.len() > MAX_MANIFEST_SIZE {
                return Err(ManifestError::TooLarge {
                    url,
                    limit: MAX_MANIFEST_SIZE,
                }
                .into());
            }
            bytes.extend_from_slice(&chunk);
        }
        // The digest that names the content: the one asked for, else the
        // registry's header, else SHA-256.
        let digest = match (&expected, &header_digest) {
            (Some((d, _)), _) => d.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => Digest::of_bytes(Algorithm::Sha256, &bytes),
        };
        for want in std::iter::once(&digest).chain(header_digest.as_ref()) {
            let found = Digest::of_bytes(want.algorithm(), &bytes);
            if found != *want {
                return Err(Error::DigestMismatch {
                    what: format!("{reference} manifest"),
                    expected: want.clone(),
                    found,
                });
            }
        }
        if let Some((_, Some(size))) = expected {
            if size != bytes.len() as u64 {
                return Err(Error::Size {
                    digest: digest.clone(),
                    expected: size,
                    found: bytes.len().to_string(),
                });
            }
        }
        let (media_type, content) = parse_manifest(&digest, &bytes, content_type.as_deref())?;
        let descriptor = Descriptor::new(
            MediaType::from(media_type.as_str()),
            bytes.len() as u64,
            oci_spec::image::Digest::try_from(digest.to_string()).map_err(|source| {
                ManifestError::Descriptor {
                    digest: digest.clone(),
                    source,
                }
            })?,
        );
        Ok(Fetched {
            descriptor,
            digest,
            bytes,
            content,
        })
    }

    fn pick_platform(
        &self,
        index_digest: &Digest,
        index: &ImageIndex,
    ) -> Result<Descriptor, Error> {
        let wanted = &self.options.platform;
        let mut available = Vec::new();
        for e in index.manifests() {
            if let Some(p) = e.platform() {
                if wanted.matches(p) {
                    return Ok(e.clone());
                }
                available.push(Platform::describe(p));
            }
        }
        Err(Error::NoPlatform {
            index: index_digest.clone(),
            wanted: wanted.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        })
    }

    /// Every manifest of an index (recursively) into `out`, children
    /// before the index that lists them.
    async fn resolve_index(
        &self,
        reference: &ImageLocation,
        index: &Fetched,
        depth: usize,
        out: &mut Vec<Fetched>,
    ) -> Result<(), Error> {
        if depth >= MAX_DEPTH {
            return Err(ManifestError::TooDeep {
                digest: index.digest.clone(),
                limit: MAX_DEPTH,
            }
            .into());
        }
        let Content::Index(parsed) = &index.content else {
            unreachable!("called with an index");
        };
        for (i, e) in parsed.manifests().iter().enumerate() {
            if out.len() >= MAX_MANIFESTS {
                return Err(ManifestError::TooManyManifests {
                    reference: reference.to_string(),
                    limit: MAX_MANIFESTS,
                }
                .into());
            }
            let d = digest_of(e, &format!("{} entry {i}", index.digest))?;
            let child = self
                .fetch_manifest(reference, &d.to_string(), Some((d, Some(e.size()))))
                .await?;
            if matches!(child.content, Content::Index(_)) {
                Box::pin(self.resolve_index(reference, &child, depth + 1, out)).await?;
            } else {
                out.push(child);
            }
        }
        out.push(index.clone());
        Ok(())
    }

    /// Downloads one blob into the layout, resuming a cut transfer with a
    /// Range request; `None` when it was already there.
    pub(crate) async fn blob_into(
        &self,
        reference: &ImageLocation,
        layout: &LayoutWriter,
        digest: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<Option<u64>, Error> {
        if layout.has_blob(digest, size) {
            progress.finish(digest, size, false);
            return Ok(None);
        }
        let url = self.url(reference, "blobs", &digest.to_string());
        let mut w = layout.begin_blob(digest, size)?;
        progress.start(digest, size);
        let mut downloaded = 0u64;
        let mut failures = 0u32;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let from = w.written();
            let mut resp = self.http.get(&url, None, from).await?;
            let partial = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
            if from > 0 && !partial {
                // The registry ignored the range: start again.
                w.reset()?;
                progress.restart(digest, 0, "registry sent the whole blob");
            } else if partial {
                let start = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(from) {
                    return Err(Error::Transport {
                        url,
                        reason: format!("asked for bytes {from}-, got Content-Range {start:?}"),
                        source: None,
                    });
                }
            }
            let remaining = size - w.written();
            if let Some(len) = resp.content_length() {
                if len != remaining {
                    return Err(Error::Size {
                        digest: digest.clone(),
                        expected: size,
                        found: format!("{} (Content-Length)", len + w.written()),
                    });
                }
            }
            let before = w.written();
            let cut = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        w.write(&chunk)?;
                        downloaded += chunk.len() as u64;
                        progress.advance(digest, chunk.len() as u64);
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(self.http.transport_error(&url, e)),
                }
            };
            let Some(err) = cut else {
                if w.written() == size {
                    break;
                }
                // Connection closed early without an error: resume too.
                failures += 1;
                if failures > self.http.retries || attempts >= MAX_BLOB_ATTEMPTS {
                    return Err(Error::Size {
                        digest: digest.clone(),
                        expected: size,
                        found: w.written().to_string(),
                    });
                }
                continue;
            };
            if w.written() > before {
                failures = 0;
            }
            failures += 1;
            if failures > self.http.retries || attempts >= MAX_BLOB_ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(%digest, offset = w.written(), error = %err, "resuming");
            progress.restart(digest, w.written(), &err.to_string());
            tokio::time::sleep(backoff(failures)).await;
        }
        w.finish()?;
        progress.finish(digest, size, true);
        Ok(Some(downloaded))
    }
}

/// The media type and parsed content of a manifest's bytes: the
/// `mediaType` field, else the `Content-Type`, else its shape.
pub(crate) fn parse_manifest(
    digest: &Digest,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(String, Content), Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u64>,
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let digest = digest.clone();
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::NotJson {
        digest: digest.clone(),
        source,
    })?;
    if probe.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion { digest }.into());
    }
    let is_index = |m: &str| kind_of(m) == ContentKind::Index;
    let is_manifest = |m: &str| kind_of(m) == ContentKind::Manifest;
    let media_type = match (probe.media_type, content_type) {
        (Some(m), _) => m,
        (None, Some(c)) if is_index(c) || is_manifest(c) => c.to_string(),
        (None, _) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, _) if probe.config.is_some() => OCI_MANIFEST.to_string(),
        (None, c) => {
            return Err(ManifestError::UnknownMediaType {
                digest,
                content_type: c.map(str::to_string),
            }
            .into())
        }
    };
    let content = if is_index(&media_type) {
        Content::Index(Box::new(
            serde_json::from_slice(bytes)
                .map_err(|source| ManifestError::Index { digest, source })?,
        ))
    } else if is_manifest(&media_type) {
        Content::Manifest(Box::new(
            serde_json::from_slice(bytes)
                .map_err(|source| ManifestError::Manifest { digest, source })?,
        ))
    } else {
        return Err(ManifestError::UnsupportedMediaType { digest, media_type }.into());
    };
    Ok((media_type, content))
}
