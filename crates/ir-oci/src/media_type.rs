//! Media types: the manifest and index types (one definition for the
//! loader, the server and the client), and how each is treated.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (schema 2 multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The OCI empty descriptor's type (`{}`), used by artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The `Accept` header of a manifest request: the four manifest and index
/// types above.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// What a descriptor's media type says the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// An image manifest (OCI or Docker schema 2): has config and layers.
    Manifest,
    /// An image index (OCI or Docker manifest list): has manifests.
    Index,
    /// Anything else: an opaque blob (config, layer, artifact payload).
    Blob,
}

/// Classifies a media type.
pub fn kind_of(media_type: &str) -> ContentKind {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => ContentKind::Manifest,
        OCI_INDEX | DOCKER_MANIFEST_LIST => ContentKind::Index,
        _ => ContentKind::Blob,
    }
}

/// True if `s` has the RFC 6838 shape `type/subtype` (with optional
/// parameters after `;`), using restricted-name characters only.
pub fn is_valid(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("");
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    let restricted = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
    };
    restricted(ty) && restricted(sub) && s.len() <= 255 && !s.bytes().any(|c| c.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(kind_of(OCI_MANIFEST), ContentKind::Manifest);
        assert_eq!(kind_of(DOCKER_MANIFEST), ContentKind::Manifest);
        assert_eq!(kind_of(OCI_INDEX), ContentKind::Index);
        assert_eq!(kind_of(DOCKER_MANIFEST_LIST), ContentKind::Index);
        assert_eq!(
            kind_of("application/vnd.oci.image.layer.v1.tar+gzip"),
            ContentKind::Blob
        );
    }

    #[test]
    fn the_manifest_accept_header_lists_the_manifest_and_index_types() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(", ").collect();
        assert_eq!(
            listed,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST
            ]
        );
        assert!(listed.iter().all(|m| kind_of(m) != ContentKind::Blob));
    }

    #[test]
    fn validates_shape() {
        assert!(is_valid("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert!(is_valid(OCI_EMPTY));
        assert!(is_valid("text/plain; charset=utf-8"));
        assert!(!is_valid("nonsense"));
        assert!(!is_valid("a/"));
        assert!(!is_valid("/b"));
        assert!(!is_valid("a/b c"));
        assert!(!is_valid("a/b\n"));
    }
}
