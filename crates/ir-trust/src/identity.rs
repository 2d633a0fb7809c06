//! `signedIdentity`: which docker reference a signature must name for the
//! image it is checked for, with containers/image's semantics for each form
//! (containers-policy.json(5), `policy_reference_match.go`).

use crate::docker_reference::DockerReference;

/// A `signedIdentity` of a `sigstoreSigned` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    /// `matchExact`: the image reference and the signed one are identical,
    /// and both carry a tag or a digest.
    MatchExact,
    /// `matchRepoDigestOrExact` (the default): for an image named by
    /// digest, the repositories are equal; for one named by tag, the
    /// references are identical.
    MatchRepoDigestOrExact,
    /// `matchRepository`: the repositories are equal.
    MatchRepository,
    /// `exactReference`: the signed reference is exactly this one (which
    /// has a tag or a digest), whatever the image is called.
    ExactReference(DockerReference),
    /// `exactRepository`: the signed reference's repository is exactly
    /// this one.
    ExactRepository(DockerReference),
    /// `remapIdentity`: an image whose name starts with `prefix` is
    /// matched as if it started with `signed_prefix` instead, then as
    /// `matchRepoDigestOrExact`.
    RemapIdentity {
        /// A host or `host/namespace` prefix of the image's name.
        prefix: String,
        /// What replaces it.
        signed_prefix: String,
    },
}

impl SignedIdentity {
    /// True when a signature naming `signed` satisfies this identity for
    /// the image called `image`.
    pub fn matches(&self, image: &DockerReference, signed: &DockerReference) -> bool {
        match self {
            SignedIdentity::MatchExact => {
                !image.is_name_only() && !signed.is_name_only() && image == signed
            }
            SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(image, signed),
            SignedIdentity::MatchRepository => image.name() == signed.name(),
            SignedIdentity::ExactReference(wanted) => wanted == signed,
            SignedIdentity::ExactRepository(wanted) => wanted.name() == signed.name(),
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let name = image.name();
                if !name_has_prefix(&name, prefix) {
                    return repo_digest_or_exact(image, signed);
                }
                let text = image.to_string();
                let remapped = format!("{signed_prefix}{}", &text[prefix.len()..]);
                match DockerReference::parse(&remapped) {
                    Ok(remapped) => repo_digest_or_exact(&remapped, signed),
                    Err(_) => false,
                }
            }
        }
    }

    /// The form's name as the policy file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            SignedIdentity::MatchExact => "matchExact",
            SignedIdentity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            SignedIdentity::MatchRepository => "matchRepository",
            SignedIdentity::ExactReference(_) => "exactReference",
            SignedIdentity::ExactRepository(_) => "exactRepository",
            SignedIdentity::RemapIdentity { .. } => "remapIdentity",
        }
    }
}

fn repo_digest_or_exact(image: &DockerReference, signed: &DockerReference) -> bool {
    if signed.is_name_only() {
        return false;
    }
    if image.has_tag() {
        image == signed
    } else if image.digest().is_some() {
        // The digest itself is compared with the payload's
        // docker-manifest-digest, not here.
        image.name() == signed.name()
    } else {
        false
    }
}

/// containers/image's `refMatchesPrefix`: the whole name, or the name
/// followed by `/`.
fn name_has_prefix(name: &str, prefix: &str) -> bool {
    name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> DockerReference {
        DockerReference::parse(s).unwrap()
    }
    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn match_exact_needs_the_same_tagged_or_digested_reference() {
        let m = SignedIdentity::MatchExact;
        assert!(m.matches(&r("r.io/a:1"), &r("r.io/a:1")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a:2")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a")));
        assert!(!m.matches(&r("r.io/a"), &r("r.io/a")));
        let by_digest = r(&format!("r.io/a@{D}"));
        assert!(m.matches(&by_digest, &by_digest));
        assert!(!m.matches(&by_digest, &r("r.io/a:1")));
    }

    #[test]
    fn repo_digest_or_exact_by_tag_and_by_digest() {
        let m = SignedIdentity::MatchRepoDigestOrExact;
        assert!(m.matches(&r("r.io/a:1"), &r("r.io/a:1")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a:2")));
        // A name-only signed reference never matches.
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a")));
        let by_digest = r(&format!("r.io/a@{D}"));
        assert!(m.matches(&by_digest, &r("r.io/a:anything")));
        assert!(!m.matches(&by_digest, &r("r.io/b:1")));
        assert!(!m.matches(&by_digest, &r("r.io/a")));
    }

    #[test]
    fn match_repository_ignores_tag_and_digest() {
        let m = SignedIdentity::MatchRepository;
        assert!(m.matches(&r("r.io/a:1"), &r("r.io/a")));
        assert!(m.matches(&r("r.io/a:1"), &r("r.io/a:2")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a/b:1")));
        assert!(!m.matches(&r("r.io/a:1"), &r("other.io/a:1")));
    }

    #[test]
    fn exact_forms_ignore_the_image_name() {
        let m = SignedIdentity::ExactReference(r("r.io/a:1"));
        assert!(m.matches(&r("mirror.io/x:9"), &r("r.io/a:1")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/a:2")));
        let m = SignedIdentity::ExactRepository(r("r.io/a"));
        assert!(m.matches(&r("mirror.io/x:9"), &r("r.io/a:7")));
        assert!(!m.matches(&r("r.io/a:1"), &r("r.io/ab:1")));
    }

    #[test]
    fn remap_identity_replaces_a_prefix_at_a_component_boundary() {
        let m = SignedIdentity::RemapIdentity {
            prefix: "mirror.local/ns".into(),
            signed_prefix: "r.io/team".into(),
        };
        assert!(m.matches(&r("mirror.local/ns/app:1"), &r("r.io/team/app:1")));
        assert!(!m.matches(&r("mirror.local/ns/app:1"), &r("r.io/team/app:2")));
        // "ns2" is not under "ns": no remapping, so the plain rule applies.
        assert!(!m.matches(&r("mirror.local/ns2/app:1"), &r("r.io/team2/app:1")));
        assert!(m.matches(&r("mirror.local/ns2/app:1"), &r("mirror.local/ns2/app:1")));
        let by_digest = r(&format!("mirror.local/ns/app@{D}"));
        assert!(m.matches(&by_digest, &r("r.io/team/app:1")));
        let host_only = SignedIdentity::RemapIdentity {
            prefix: "mirror.local".into(),
            signed_prefix: "r.io".into(),
        };
        assert!(host_only.matches(&r("mirror.local/a/b:1"), &r("r.io/a/b:1")));
    }
}
