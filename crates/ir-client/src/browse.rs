//! Browsing a registry in the style of crane and oras: tags, catalog, a
//! raw manifest, referrers and a blob, each verified where a digest is
//! known.

use crate::location::{ImageLocation, RegistryUrl};
use crate::pull::{Client, Fetched};
use crate::{Error, ManifestError, ReferenceError};
use ir_oci::Digest;
use oci_spec::image::{Descriptor, ImageIndex};
use reqwest::header;

/// Most pages followed through `Link` headers.
const MAX_PAGES: usize = 10_000;
/// Largest list page (tags, catalog, referrers) read.
const MAX_LIST_PAGE: usize = 16 * 1024 * 1024;

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// Its digest (checked).
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The bytes, exactly as served.
    pub bytes: Vec<u8>,
}

/// What [`Client::blob`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The digest, checked.
    pub digest: Digest,
    /// Bytes copied.
    pub size: u64,
}

/// The next page's path from a `Link: <path>; rel="next"` header; only a
/// path on the same registry is followed.
fn next_link(headers: &header::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        (next && target.starts_with("/v2/") && !target.contains("//")).then(|| target.to_string())
    })
}

impl Client {
    /// GETs a JSON list, following `Link` pages; `field` names the array
    /// collected from each page.
    async fn paginated(
        &self,
        base: &str,
        first: String,
        field: &str,
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut path = Some(first);
        let mut pages = 0;
        while let Some(p) = path.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ManifestError::TooManyPages {
                    url: base.to_string(),
                    limit: MAX_PAGES,
                }
                .into());
            }
            let url = format!("{base}{p}");
            let resp = self.http.get(&url, Some("application/json"), 0).await?;
            path = next_link(resp.headers());
            let body = self.read_bounded(&url, resp, MAX_LIST_PAGE).await?;
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
                .map_err(|source| ManifestError::NotJsonObject {
                    url: url.clone(),
                    source,
                })?;
            match v.get(field) {
                Some(serde_json::Value::Array(items)) => {
                    out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)))
                }
                Some(serde_json::Value::Null) | None => {}
                Some(_) => {
                    return Err(ManifestError::NotAList {
                        url,
                        field: field.to_string(),
                    }
                    .into())
                }
            }
        }
        Ok(out)
    }

    async fn read_bounded(
        &self,
        url: &str,
        mut resp: reqwest::Response,
        max: usize,
    ) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.http.transport_error(url, e))?
        {
            if body.len() + chunk.len() > max {
                return Err(ManifestError::TooLarge {
                    url: url.to_string(),
                    limit: max,
                }
                .into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The repository's tags, every page.
    pub async fn tags(&self, repo: &ImageLocation) -> Result<Vec<String>, Error> {
        self.check_scheme(repo.scheme, &format!("repository {repo}"))?;
        self.paginated(
            &repo.base_url(),
            format!("/v2/{}/tags/list", repo.name),
            "tags",
        )
        .await
    }

    /// The registry's repositories, every page.
    pub async fn catalog(&self, registry: &RegistryUrl) -> Result<Vec<String>, Error> {
        self.check_scheme(registry.scheme, "the registry")?;
        self.paginated(&registry.base_url(), "/v2/_catalog".into(), "repositories")
            .await
    }

    /// The manifest `reference` names, as served, its digest checked.
    pub async fn manifest(&self, reference: &ImageLocation) -> Result<RawManifest, Error> {
        self.check_scheme(reference.scheme, &format!("reference {reference}"))?;
        let expected = reference.digest().map(|d| (d.clone(), None));
        let Fetched {
            descriptor,
            digest,
            bytes,
            ..
        } = self
            .fetch_manifest(reference, &reference.reference_text(), expected)
            .await?;
        Ok(RawManifest {
            digest,
            media_type: descriptor.media_type().to_string(),
            bytes,
        })
    }

    /// The manifests that refer to `reference` (its referrers), of
    /// `artifact_type` only when given (filtered here too, in case the
    /// registry does not).
    pub async fn referrers(
        &self,
        reference: &ImageLocation,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        let digest = match reference.digest() {
            Some(d) => d.clone(),
            None => self.manifest(reference).await?.digest,
        };
        let mut url = self.url(reference, "referrers", &digest.to_string());
        if let Some(t) = artifact_type {
            url.push_str("?artifactType=");
            url.push_str(&t.replace('+', "%2B").replace('/', "%2F"));
        }
        let resp = self
            .http
            .get(&url, Some(crate::layout::OCI_INDEX), 0)
            .await?;
        let body = self.read_bounded(&url, resp, MAX_LIST_PAGE).await?;
        let index: ImageIndex =
            serde_json::from_slice(&body).map_err(|source| ManifestError::NotAnIndex {
                url: url.clone(),
                source,
            })?;
        Ok(index
            .manifests()
            .iter()
            .filter(|d| {
                artifact_type.is_none_or(|t| {
                    d.artifact_type().as_ref().map(|a| a.to_string()).as_deref() == Some(t)
                })
            })
            .cloned()
            .collect())
    }

    /// Copies the blob `reference` names (it must be a digest) to `out`,
    /// hashing it on the way; a mismatch is an error once it is all read
    /// (the bytes are already out: check the exit status).
    pub async fn blob(
        &self,
        reference: &ImageLocation,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Blob, Error> {
        self.check_scheme(reference.scheme, &format!("reference {reference}"))?;
        let Some(digest) = reference.digest() else {
            return Err(ReferenceError::BlobByTag {
                reference: reference.to_string(),
            }
            .into());
        };
        let url = self.url(reference, "blobs", &digest.to_string());
        let mut resp = self.http.get(&url, None, 0).await?;
        let mut hasher = digest.algorithm().hasher();
        let mut size = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.http.transport_error(&url, e))?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk).map_err(|source| Error::Io {
                path: "standard output".into(),
                source,
            })?;
        }
        out.flush().map_err(|source| Error::Io {
            path: "standard output".into(),
            source,
        })?;
        let found = hasher.finish();
        if found != *digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {reference}"),
                expected: digest.clone(),
                found,
            });
        }
        Ok(Blob {
            digest: digest.clone(),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_only_local_next_links() {
        let mut h = header::HeaderMap::new();
        h.insert(
            header::LINK,
            "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/app/tags/list?n=2&last=b")
        );
        h.insert(
            header::LINK,
            "<https://elsewhere/v2/x>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
        h.insert(header::LINK, "</v2/x>; rel=\"prev\"".parse().unwrap());
        assert_eq!(next_link(&h), None);
    }
}
