//! Repository names, tags and references, per the distribution spec's
//! grammars. Each type is parsed once at the edge (directory names, index
//! annotations, request paths) so that everything behind it handles valid
//! values only.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// Longest repository name we accept. The distribution spec lets registries
/// cap names; 255 matches what common clients accept with a host prefix.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag, from the tag grammar (1 + 127).
pub const MAX_TAG_LEN: usize = 128;
/// The annotation of an `index.json` entry that names its tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a repository name or tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Name does not match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/…)*`.
    #[error("repository name {0:?} does not match the distribution-spec grammar")]
    InvalidName(String),
    /// Name longer than [`MAX_NAME_LEN`].
    #[error("repository name is {0} bytes long, at most {MAX_NAME_LEN} allowed")]
    NameTooLong(usize),
    /// Tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    InvalidTag(String),
}

fn quote(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A repository (application) name such as `team/app`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(Box<str>);

impl RepoName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(s.len()));
        }
        // Split on the byte: cheaper than a `char` search, same pieces.
        if !s.as_bytes().split(|b| *b == b'/').all(is_path_component) {
            return Err(NameError::InvalidName(quote(s)));
        }
        Ok(RepoName(s.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(b: &[u8]) -> bool {
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

/// A tag such as `1.0` or `latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Box<str>);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b[1.min(b.len())..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(NameError::InvalidTag(quote(s)));
        }
        Ok(Tag(s.into()))
    }

    /// Reads the tag out of an `org.opencontainers.image.ref.name`
    /// annotation.
    ///
    /// Most tools write a bare tag (`1.0`). Some write a whole reference
    /// (`registry.example:5000/team/app:1.0`). The rule: if the value is a
    /// valid tag, it is the tag; otherwise, if it contains a `:` and what
    /// precedes the last `:` is a valid repository reference (an optional
    /// `host[:port]/` prefix and a repository name), the part after the last
    /// `:` is the tag. Anything else (a digest reference, an invalid name)
    /// is an invalid tag.
    pub fn from_ref_name(value: &str) -> Result<Self, NameError> {
        if let Ok(tag) = Tag::parse(value) {
            return Ok(tag);
        }
        if let Some((repo, tag)) = value.rsplit_once(':') {
            if is_repository_reference(repo) {
                return Tag::parse(tag);
            }
        }
        Err(NameError::InvalidTag(quote(value)))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[domain/]name`, where the domain is `host[:port]` and is recognised, as
/// docker does, by containing a `.` or `:` or being `localhost`.
fn is_repository_reference(s: &str) -> bool {
    if s.contains('@') {
        return false;
    }
    match s.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            is_registry_host(first) && RepoName::parse(rest).is_ok()
        }
        _ => RepoName::parse(s).is_ok(),
    }
}

/// A registry host as references name it: DNS labels (or an IPv4
/// address), or a bracketed IPv6 address, with an optional port.
pub fn is_registry_host(s: &str) -> bool {
    let (name, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    port_ok && !name.is_empty() && name.len() <= 255 && name.split('.').all(label_ok)
}

/// Maps keyed by tags are looked up with a `&str` (no allocation); a text
/// found among valid tags is one.
impl std::borrow::Borrow<str> for Tag {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// The `<reference>` of a manifest request: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

/// Why a reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Looked like a tag but is not one.
    #[error(transparent)]
    Tag(#[from] NameError),
    /// Looked like a digest (contains `:`) but is not one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Reference {
    /// A reference containing `:` is a digest; anything else is a tag
    /// (tags cannot contain `:`).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "app",
            "team/app",
            "a.b_c__d---e/f0",
            "0",
            "a/b/c/d",
            "hello-world",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "App", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a/../b", "..", "a%2fb",
            "a b", "a\\b", "é", "a.-b", "_a",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            RepoName::parse(&"a".repeat(256)),
            Err(NameError::NameTooLong(256))
        ));
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "1.0", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a b", &"a".repeat(129), "é"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_from_full_references() {
        let t = |s: &str| Tag::from_ref_name(s).map(|t| t.to_string());
        assert_eq!(t("1.0").unwrap(), "1.0");
        assert_eq!(t("registry.example/app:1.0").unwrap(), "1.0");
        assert_eq!(t("localhost:5000/team/app:v2").unwrap(), "v2");
        assert_eq!(t("docker.io/library/busybox:latest").unwrap(), "latest");
        assert_eq!(t("app:edge").unwrap(), "edge");
        assert!(t("app@sha256:abcd").is_err());
        assert!(t("Bad/Name:1.0").is_err());
        assert!(t("app:").is_err());
        assert!(t("app:bad tag").is_err());
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("..."),
            Err(ReferenceError::Tag(_))
        ));
    }
}
