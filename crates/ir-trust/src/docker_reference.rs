//! Docker references as containers/image compares them: `host[:port]/path`
//! with an optional `:tag` and `@digest`, normalized the way
//! `reference.ParseNormalizedNamed` does (a first component without `.` or
//! `:` that is not `localhost` means Docker Hub, and a one-component Hub
//! name is under `library/`).
//!
//! Written here because no crate on crates.io implements the distribution
//! grammar with Docker's normalization; the path, tag and digest grammars
//! are ir-oci's.

use std::fmt;

use ir_oci::{Digest, RepoName, Tag};

/// Docker Hub's canonical host after normalization.
const DOCKER_HUB: &str = "docker.io";
/// Longest reference text accepted (the signed payload is untrusted).
const MAX_REFERENCE_LEN: usize = 1024;

/// A normalized docker reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerReference {
    host: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a text is not a docker reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a docker reference: {why}")]
pub struct ReferenceError {
    text: String,
    why: &'static str,
}

impl DockerReference {
    /// Parses and normalizes `text`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let err = |why| ReferenceError {
            text: text.chars().take(200).collect(),
            why,
        };
        if text.is_empty() || text.len() > MAX_REFERENCE_LEN {
            return Err(err("empty or too long"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|_| err("invalid digest"))?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it
        // is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                let tag = Tag::parse(&t[1..]).map_err(|_| err("invalid tag"))?;
                (n, Some(tag.as_str().to_owned()))
            }
            None => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            // An upper-case first component is not a host (and not a
            // valid path either: refused below).
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if !valid_host(&host) {
            return Err(err("invalid registry host"));
        }
        let host = if host == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            host
        };
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        RepoName::parse(&path).map_err(|_| err("invalid repository path"))?;
        Ok(DockerReference {
            host,
            path,
            tag,
            digest,
        })
    }

    /// `host/path` of a repository that ir-server serves, with a tag or a
    /// digest (either may be absent).
    pub fn of_repository(host: &str, repository: &RepoName) -> Result<Self, ReferenceError> {
        DockerReference::parse(&format!("{host}/{repository}"))
    }

    /// The same repository with `tag`.
    pub fn with_tag(&self, tag: &Tag) -> Self {
        DockerReference {
            tag: Some(tag.as_str().to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository with `digest`.
    pub fn with_digest(&self, digest: &Digest) -> Self {
        DockerReference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// `host/path`, without tag or digest (`reference.Named.Name()`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// The registry host (with its port).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path under the host.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// True without a tag and without a digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// True with a tag.
    pub fn has_tag(&self) -> bool {
        self.tag.is_some()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for DockerReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A registry host (ir-oci's grammar: DNS labels or an IPv4 address, or a
/// bracketed IPv6 address, with an optional port).
pub(crate) fn valid_host(host: &str) -> bool {
    ir_oci::name::is_registry_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        DockerReference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_as_docker_does() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox");
        assert_eq!(norm("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(norm("user/app"), "docker.io/user/app");
        assert_eq!(norm("index.docker.io/app"), "docker.io/library/app");
        assert_eq!(norm("localhost/app:1"), "localhost/app:1");
        assert_eq!(norm("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(norm("reg.example:443/a:t"), "reg.example:443/a:t");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("r.io/a:t@{d}")), format!("r.io/a:t@{d}"));
        assert_eq!(norm("[::1]:5000/a"), "[::1]:5000/a");
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "Upper/app",
            "r.io/App",
            "r.io/a:",
            "r.io/a@sha256:zz",
            "r.io//a",
            "-r.io/a",
            "r.io:port/a",
            "r.io/a b",
        ] {
            assert!(DockerReference::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DockerReference::parse(&"a".repeat(2000)).is_err());
    }

    #[test]
    fn parts() {
        let r = DockerReference::parse("r.io:5000/team/app:1").unwrap();
        assert_eq!(r.name(), "r.io:5000/team/app");
        assert_eq!(r.host(), "r.io:5000");
        assert_eq!(r.path(), "team/app");
        assert!(r.has_tag() && !r.is_name_only() && r.digest().is_none());
        assert!(DockerReference::parse("r.io/a").unwrap().is_name_only());
    }
}
