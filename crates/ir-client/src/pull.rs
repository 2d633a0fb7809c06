//! The pull: manifest (or index), config and layers into an OCI layout.

use crate::digest::{Algorithm, Digest};
use crate::layout::{LayoutWriter, OCI_INDEX};
use crate::ratls::{tls_config, CertResolver, RaTlsOptions, TokenSource};
use crate::reference::{Reference, Scheme, Target};
use crate::Error;
use reqwest::header;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or index accepted.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;
/// Longest OCI error body read for an error message.
const MAX_ERROR_BODY: usize = 16 * 1024;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach the registry.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain HTTP (`http://` references).
    Plain,
    /// TLS (`https://` references); `ca` is a PEM file's content, `None`
    /// for the platform's roots.
    Tls {
        /// Trusted CA certificates (PEM).
        ca: Option<Vec<u8>>,
    },
    /// RA-TLS (`ra-tls://` references).
    RaTls {
        /// Trusted CA certificates (PEM) for the server.
        ca: Option<Vec<u8>>,
        /// Where each handshake's token comes from.
        token_source: TokenSource,
    },
}

impl Transport {
    fn scheme(&self) -> Scheme {
        match self {
            Transport::Plain => Scheme::Http,
            Transport::Tls { .. } => Scheme::Https,
            Transport::RaTls { .. } => Scheme::RaTls,
        }
    }
}

/// A platform, `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: String,
    /// `architecture`, e.g. `amd64`.
    pub architecture: String,
    /// `variant`, e.g. `v8`; when `None` any variant matches.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty();
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "platform {s:?}: expected os/architecture[/variant]"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    fn matches(&self, p: &Value) -> bool {
        p["os"].as_str() == Some(&self.os)
            && p["architecture"].as_str() == Some(&self.architecture)
            && self
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    }

    fn describe(p: &Value) -> String {
        let mut s = format!(
            "{}/{}",
            p["os"].as_str().unwrap_or("?"),
            p["architecture"].as_str().unwrap_or("?")
        );
        if let Some(v) = p["variant"].as_str() {
            s.push('/');
            s.push_str(v);
        }
        s
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The platform picked from an index.
    pub platform: Platform,
    /// Pull every manifest of an index (the index is what gets tagged).
    pub all_platforms: bool,
    /// The tag written to `index.json` (default: the reference's tag; a
    /// digest reference gets an untagged entry).
    pub tag: Option<String>,
    /// RA-TLS client-certificate options.
    pub ra_tls: RaTlsOptions,
    /// Bound on establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on each read.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            platform: Platform::default(),
            all_platforms: false,
            tag: None,
            ra_tls: RaTlsOptions::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Digest of what `index.json` now points to (the platform's manifest,
    /// or the index with `all_platforms`).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The index the manifest was picked from, if the reference named one.
    pub index_digest: Option<String>,
    /// Manifests and indexes written.
    pub manifests: usize,
    /// Blobs (manifests, indexes, configs, layers) in place after the pull.
    pub blobs: usize,
    /// Blobs already present and intact, not downloaded again.
    pub reused: usize,
    /// Bytes downloaded (blobs and manifests).
    pub bytes: u64,
}

/// A registry client. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    scheme: Scheme,
    resolver: Option<Arc<CertResolver>>,
    options: ClientOptions,
}

/// A descriptor's essentials.
#[derive(Debug, Clone)]
struct Desc {
    digest: Digest,
    size: u64,
    media_type: String,
    raw: Value,
}

impl Desc {
    fn parse(v: &Value, what: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Manifest(format!("{what}: {why}"));
        let digest = v["digest"]
            .as_str()
            .ok_or_else(|| bad("descriptor without digest"))?;
        let digest = Digest::parse(digest).map_err(|e| bad(&e))?;
        let size = v["size"]
            .as_u64()
            .ok_or_else(|| bad("descriptor without a valid size"))?;
        let media_type = v["mediaType"].as_str().unwrap_or_default().to_string();
        Ok(Self {
            digest,
            size,
            media_type,
            raw: v.clone(),
        })
    }

    /// The descriptor for `index.json`: media type, digest, size, platform.
    fn entry(&self) -> Value {
        let mut e = json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size,
        });
        if self.raw["platform"].is_object() {
            e["platform"] = self.raw["platform"].clone();
        }
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Manifest,
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => None,
    }
}

/// The cause chain of an error on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

struct Pull<'a> {
    client: &'a Client,
    reference: &'a Reference,
    layout: LayoutWriter,
    report: PullReport,
}

impl Client {
    /// A client with default options.
    pub fn new(transport: Transport) -> Result<Self, Error> {
        Self::with_options(transport, ClientOptions::default())
    }

    /// A client with `options`.
    pub fn with_options(transport: Transport, options: ClientOptions) -> Result<Self, Error> {
        let scheme = transport.scheme();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ir-client/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout);
        builder = if scheme == Scheme::RaTls {
            // The attested connection is to this host only.
            builder.redirect(reqwest::redirect::Policy::none())
        } else {
            builder.redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first().map(|u| u.scheme().to_string());
                if attempt.previous().len() > 5 {
                    attempt.error("too many redirects")
                } else if first.as_deref() != Some(attempt.url().scheme()) {
                    attempt.error("redirect changes the scheme")
                } else {
                    attempt.follow()
                }
            }))
        };
        let mut resolver = None;
        match transport {
            Transport::Plain => {}
            Transport::Tls { ca } => {
                builder = builder.tls_backend_preconfigured(tls_config(ca.as_deref(), None)?);
            }
            Transport::RaTls { ca, token_source } => {
                let r = Arc::new(CertResolver::new(token_source, options.ra_tls.clone()));
                builder =
                    builder.tls_backend_preconfigured(tls_config(ca.as_deref(), Some(r.clone()))?);
                resolver = Some(r);
            }
        }
        let http = builder.build().map_err(|e| Error::Tls(chain(&e)))?;
        Ok(Self {
            http,
            scheme,
            resolver,
            options,
        })
    }

    /// The RA-TLS certificate resolver (to inspect the last session).
    pub fn resolver(&self) -> Option<&Arc<CertResolver>> {
        self.resolver.as_ref()
    }

    /// The underlying HTTP client (its TLS is this client's).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Pulls `reference` (text) into the layout at `out`.
    pub async fn pull(&self, reference: &str, out: &Path) -> Result<PullReport, Error> {
        let reference = Reference::parse(reference).map_err(Error::Reference)?;
        self.pull_reference(&reference, out).await
    }

    /// Pulls `reference` into the layout at `out`.
    pub async fn pull_reference(
        &self,
        reference: &Reference,
        out: &Path,
    ) -> Result<PullReport, Error> {
        if reference.scheme != self.scheme {
            return Err(Error::Reference(format!(
                "reference {reference} needs the {} transport, this client speaks {}",
                reference.scheme.as_str(),
                self.scheme.as_str()
            )));
        }
        if let Some(tag) = &self.options.tag {
            if !crate::reference::valid_tag(tag) {
                return Err(Error::Reference(format!("invalid tag {tag:?}")));
            }
        }
        let mut pull = Pull {
            client: self,
            reference,
            layout: LayoutWriter::open(out)?,
            report: PullReport {
                digest: String::new(),
                media_type: String::new(),
                index_digest: None,
                manifests: 0,
                blobs: 0,
                reused: 0,
                bytes: 0,
            },
        };
        let expected = match &reference.target {
            Target::Digest(d) => Some((d.clone(), None)),
            Target::Tag(_) => None,
        };
        let (top, bytes) = pull
            .fetch_manifest(&reference.target.to_string(), expected)
            .await?;
        let tag = self.options.tag.as_deref().or(reference.tag());
        let tagged = match kind_of(&top.media_type) {
            Some(Kind::Manifest) => {
                pull.image(&top, &bytes).await?;
                top
            }
            Some(Kind::Index) if self.options.all_platforms => {
                pull.index_all(&top, &bytes, 0).await?;
                top
            }
            Some(Kind::Index) => {
                let chosen = pull.pick_platform(&top, &bytes)?;
                let (child, child_bytes) = pull
                    .fetch_manifest(
                        &chosen.digest.to_string(),
                        Some((chosen.digest.clone(), Some(chosen.size))),
                    )
                    .await?;
                if kind_of(&child.media_type) != Some(Kind::Manifest) {
                    return Err(Error::Manifest(format!(
                        "{}: the platform's entry is a {:?}, not an image manifest",
                        chosen.digest, child.media_type
                    )));
                }
                pull.image(&child, &child_bytes).await?;
                pull.report.index_digest = Some(top.digest.to_string());
                Desc {
                    raw: chosen.raw.clone(),
                    ..child
                }
            }
            None => {
                return Err(Error::Manifest(format!(
                    "unsupported media type {:?}",
                    top.media_type
                )))
            }
        };
        pull.layout.set_tag(&tagged.entry(), tag)?;
        pull.report.digest = tagged.digest.to_string();
        pull.report.media_type = tagged.media_type.clone();
        Ok(pull.report)
    }

    fn url(&self, reference: &Reference, kind: &str, target: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{target}",
            reference.base_url(),
            reference.name
        )
    }

    async fn get(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, Error> {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(url, &e))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            let message = oci_error(resp).await;
            return Err(Error::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(resp)
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> Error {
        let mut reason = chain(e);
        if let Some(why) = self.resolver.as_ref().and_then(|r| r.take_error()) {
            reason = format!("RA-TLS client certificate not sent ({why}); {reason}");
        }
        Error::Transport {
            url: url.to_string(),
            reason,
        }
    }
}

/// `: CODE: message` from an OCI error body, if there is one.
async fn oci_error(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            return String::new();
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return String::new();
    };
    let e = &v["errors"][0];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        _ => String::new(),
    }
}

impl Pull<'_> {
    /// Fetches a manifest or index, checks it against `expected` (digest
    /// and size, when known) and the registry's `Docker-Content-Digest`,
    /// and writes it as a blob.
    async fn fetch_manifest(
        &mut self,
        target: &str,
        expected: Option<(Digest, Option<u64>)>,
    ) -> Result<(Desc, Vec<u8>), Error> {
        let url = self.client.url(self.reference, "manifests", target);
        let mut resp = self.client.get(&url, Some(ACCEPT)).await?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_SIZE as u64)
        {
            return Err(Error::Manifest(format!(
                "{url}: larger than {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(|s| Digest::parse(s.trim()))
            .transpose()
            .map_err(|e| Error::Manifest(format!("{url}: Docker-Content-Digest: {e}")))?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.client.transport_error(&url, &e))?
        {
            if bytes.len() + chunk.len() > MAX_MANIFEST_SIZE {
                return Err(Error::Manifest(format!(
                    "{url}: larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        self.report.bytes += bytes.len() as u64;
        // The digest that names the content: the one asked for, else the
        // registry's header, else SHA-256.
        let digest = match (&expected, &header_digest) {
            (Some((d, _)), _) => d.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => Algorithm::Sha256.digest(&bytes),
        };
        for want in std::iter::once(&digest).chain(header_digest.as_ref()) {
            let found = want.algorithm().digest(&bytes);
            if found != *want {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    found: found.to_string(),
                });
            }
        }
        if let Some((_, Some(size))) = expected {
            if size != bytes.len() as u64 {
                return Err(Error::Size {
                    digest: digest.to_string(),
                    expected: size,
                    found: bytes.len().to_string(),
                });
            }
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Manifest(format!("{digest}: not JSON: {e}")))?;
        let media_type = match (value["mediaType"].as_str(), content_type.as_deref()) {
            (Some(m), _) => m.to_string(),
            (None, Some(c)) if kind_of(c).is_some() => c.to_string(),
            (None, _) if value["manifests"].is_array() => OCI_INDEX.to_string(),
            (None, _) if value["config"].is_object() => OCI_MANIFEST.to_string(),
            (None, c) => {
                return Err(Error::Manifest(format!(
                    "{digest}: unknown media type {c:?}"
                )))
            }
        };
        if value["schemaVersion"].as_u64() != Some(2) {
            return Err(Error::Manifest(format!("{digest}: schemaVersion is not 2")));
        }
        let desc = Desc {
            raw: json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}),
            digest,
            size: bytes.len() as u64,
            media_type,
        };
        Ok((desc, bytes))
    }

    fn put_manifest(&mut self, desc: &Desc, bytes: &[u8]) -> Result<(), Error> {
        if !self.layout.has_blob(&desc.digest, desc.size) {
            self.layout.put_blob(&desc.digest, bytes)?;
        }
        self.report.manifests += 1;
        self.report.blobs += 1;
        Ok(())
    }

    /// Pulls an image manifest's config and layers, then writes the
    /// manifest itself.
    async fn image(&mut self, manifest: &Desc, bytes: &[u8]) -> Result<(), Error> {
        let value: Value = serde_json::from_slice(bytes).expect("checked JSON");
        let what = manifest.digest.to_string();
        let config = Desc::parse(&value["config"], &format!("{what} config"))?;
        let layers = value["layers"]
            .as_array()
            .ok_or_else(|| Error::Manifest(format!("{what}: no layers array")))?;
        let mut blobs = vec![config];
        for (i, l) in layers.iter().enumerate() {
            blobs.push(Desc::parse(l, &format!("{what} layer {i}"))?);
        }
        for b in &blobs {
            self.blob(b).await?;
        }
        self.put_manifest(manifest, bytes)
    }

    /// Streams one blob into the layout, verified.
    async fn blob(&mut self, d: &Desc) -> Result<(), Error> {
        if self.layout.has_blob(&d.digest, d.size) {
            self.report.reused += 1;
            self.report.blobs += 1;
            return Ok(());
        }
        let url = self
            .client
            .url(self.reference, "blobs", &d.digest.to_string());
        let mut resp = self.client.get(&url, None).await?;
        if let Some(len) = resp.content_length() {
            if len != d.size {
                return Err(Error::Size {
                    digest: d.digest.to_string(),
                    expected: d.size,
                    found: format!("{len} (Content-Length)"),
                });
            }
        }
        let mut w = self.layout.begin_blob(&d.digest, d.size)?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.client.transport_error(&url, &e))?
        {
            w.write(&chunk)?;
        }
        self.report.bytes += w.written();
        w.finish()?;
        self.report.blobs += 1;
        Ok(())
    }

    fn pick_platform(&self, index: &Desc, bytes: &[u8]) -> Result<Desc, Error> {
        let value: Value = serde_json::from_slice(bytes).expect("checked JSON");
        let entries = value["manifests"]
            .as_array()
            .ok_or_else(|| Error::Manifest(format!("{}: no manifests array", index.digest)))?;
        let wanted = &self.client.options.platform;
        let mut available = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if wanted.matches(&e["platform"]) {
                return Desc::parse(e, &format!("{} entry {i}", index.digest));
            }
            if e["platform"].is_object() {
                available.push(Platform::describe(&e["platform"]));
            }
        }
        Err(Error::NoPlatform {
            wanted: wanted.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        })
    }

    /// Pulls every manifest of an index (recursively), then the index.
    async fn index_all(&mut self, index: &Desc, bytes: &[u8], depth: usize) -> Result<(), Error> {
        if depth >= MAX_DEPTH {
            return Err(Error::Manifest(format!(
                "{}: indexes nested deeper than {MAX_DEPTH}",
                index.digest
            )));
        }
        let value: Value = serde_json::from_slice(bytes).expect("checked JSON");
        let entries = value["manifests"]
            .as_array()
            .ok_or_else(|| Error::Manifest(format!("{}: no manifests array", index.digest)))?;
        for (i, e) in entries.iter().enumerate() {
            let d = Desc::parse(e, &format!("{} entry {i}", index.digest))?;
            let (child, child_bytes) = Box::pin(self.fetch_manifest(
                &d.digest.to_string(),
                Some((d.digest.clone(), Some(d.size))),
            ))
            .await?;
            match kind_of(&child.media_type) {
                Some(Kind::Manifest) => Box::pin(self.image(&child, &child_bytes)).await?,
                Some(Kind::Index) => {
                    Box::pin(self.index_all(&child, &child_bytes, depth + 1)).await?
                }
                None => {
                    return Err(Error::Manifest(format!(
                        "{}: unsupported media type {:?}",
                        child.digest, child.media_type
                    )))
                }
            }
        }
        self.put_manifest(index, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!p.matches(&json!({"os": "linux", "architecture": "arm64"})));
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!p.matches(&json!({"os": "linux", "architecture": "amd64"})));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }
}
