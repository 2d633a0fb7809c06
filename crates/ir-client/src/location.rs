//! Where images are: [`ImageLocation`]
//! (`<scheme>://<host>[:<port>]/<name>[:<tag>|@<digest>]`, its tag or
//! digest an [`ir_oci::Reference`]) and [`RegistryUrl`] (a registry
//! without a repository).

use crate::ReferenceError;
use ir_oci::{Digest, Reference, RepoName, Tag};
use std::fmt;

/// How the registry is reached, from the reference's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: plain HTTP.
    Http,
    /// `https://`: TLS.
    Https,
    /// `ra-tls://`: TLS with an attested client certificate.
    RaTls,
}

impl Scheme {
    /// The scheme as written in references.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::RaTls => "ra-tls",
        }
    }
}

/// Where an image is: the registry (scheme, `host[:port]`), the
/// repository, and the tag or digest, written
/// `<scheme>://<host>[:<port>]/<name>[:<tag>|@<digest>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLocation {
    /// The scheme.
    pub scheme: Scheme,
    /// `host[:port]`, as written.
    pub authority: String,
    /// The repository name (e.g. `team/app`).
    pub name: RepoName,
    /// The tag or digest (`latest` when none is given).
    pub reference: Reference,
}

impl ImageLocation {
    /// Parses a location; the tag defaults to `latest`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let bad = |why: &'static str| ReferenceError::Syntax {
            text: text.to_string(),
            why,
        };
        let name_err = |source| ReferenceError::Name {
            text: text.to_string(),
            source,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            bad("expected <http|https|ra-tls>://<host>[:<port>]/<name>[:<tag>|@<digest>]")
        })?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ra-tls" => Scheme::RaTls,
            other => {
                return Err(ReferenceError::UnknownScheme {
                    text: text.to_string(),
                    scheme: other.to_string(),
                })
            }
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository name after the host"))?;
        if authority.is_empty()
            || authority.contains('@')
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("invalid host"));
        }
        let (name, reference) = if let Some((name, digest)) = path.split_once('@') {
            (
                name,
                Reference::Digest(Digest::parse(digest).map_err(|source| {
                    ReferenceError::Digest {
                        text: text.to_string(),
                        source,
                    }
                })?),
            )
        } else {
            // A tag follows the last ':' of the last path segment.
            let last = path.rfind('/').map_or(0, |i| i + 1);
            match path[last..].rfind(':') {
                Some(i) => {
                    let tag = Tag::parse(&path[last + i + 1..]).map_err(name_err)?;
                    (&path[..last + i], Reference::Tag(tag))
                }
                None => (
                    path,
                    Reference::Tag(Tag::parse("latest").map_err(name_err)?),
                ),
            }
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            name: RepoName::parse(name).map_err(name_err)?,
            reference,
        })
    }

    /// The registry's base URL (`http[s]://host:port`); RA-TLS is https
    /// on the wire.
    pub fn base_url(&self) -> String {
        base_url(self.scheme, &self.authority)
    }

    /// The tag, if the location names one.
    pub fn tag(&self) -> Option<&Tag> {
        match &self.reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        }
    }

    /// The digest, if the location names one.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.reference {
            Reference::Tag(_) => None,
            Reference::Digest(d) => Some(d),
        }
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: Digest) -> Self {
        Self {
            reference: Reference::Digest(digest),
            ..self.clone()
        }
    }

    /// The tag or digest as written in a URL path.
    pub fn reference_text(&self) -> String {
        match &self.reference {
            Reference::Tag(t) => t.to_string(),
            Reference::Digest(d) => d.to_string(),
        }
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = match self.reference {
            Reference::Tag(_) => ':',
            Reference::Digest(_) => '@',
        };
        write!(
            f,
            "{}://{}/{}{sep}{}",
            self.scheme.as_str(),
            self.authority,
            self.name,
            self.reference_text()
        )
    }
}

fn base_url(scheme: Scheme, authority: &str) -> String {
    let scheme = match scheme {
        Scheme::Http => "http",
        Scheme::Https | Scheme::RaTls => "https",
    };
    format!("{scheme}://{authority}")
}

/// A registry without a repository: `<scheme>://<host>[:<port>][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// `host[:port]`, as written.
    pub authority: String,
}

impl RegistryUrl {
    /// Parses `<scheme>://<host>[:<port>][/]`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let bad = |why| ReferenceError::Registry {
            text: text.to_string(),
            why,
        };
        let r = ImageLocation::parse(&format!("{}/x", text.trim_end_matches('/')))
            .map_err(|_| bad("expected <http|https|ra-tls>://<host>[:<port>]"))?;
        if r.name.as_str() != "x" {
            return Err(bad("expected no repository name"));
        }
        Ok(Self {
            scheme: r.scheme,
            authority: r.authority,
        })
    }

    /// The base URL (`http[s]://host:port`).
    pub fn base_url(&self) -> String {
        base_url(self.scheme, &self.authority)
    }
}

/// The distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
/// (ir-oci's parser).
pub fn valid_tag(tag: &str) -> bool {
    Tag::parse(tag).is_ok()
}

/// The distribution spec's name grammar: lowercase components separated
/// by `/`, each `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (ir-oci's parser).
pub fn valid_name(name: &str) -> bool {
    RepoName::parse(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageLocation::parse("ra-tls://localhost:1337/team/app:1.0").unwrap();
        assert_eq!(r.scheme, Scheme::RaTls);
        assert_eq!(r.authority, "localhost:1337");
        assert_eq!(r.name.as_str(), "team/app");
        assert_eq!(r.tag().map(Tag::as_str), Some("1.0"));
        assert_eq!(r.base_url(), "https://localhost:1337");
        assert_eq!(r.to_string(), "ra-tls://localhost:1337/team/app:1.0");

        let r = ImageLocation::parse("http://127.0.0.1:5000/app").unwrap();
        assert_eq!(r.tag().map(Tag::as_str), Some("latest"));
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");

        let d = Digest::of_bytes(ir_oci::Algorithm::Sha256, b"x");
        let r = ImageLocation::parse(&format!("https://reg.example/a/b@{d}")).unwrap();
        assert_eq!(r.reference, Reference::Digest(d.clone()));
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "localhost/app",
            "ftp://host/app",
            "http://host",
            "http:///app",
            "http://host/App",
            "http://host/app:",
            "http://host/app:-x",
            "http://host/app@sha256:00",
            "http://user@host/app",
            "http://host/a//b",
            "http://host/a-/b",
        ] {
            assert!(ImageLocation::parse(bad).is_err(), "{bad}");
        }
        assert!(valid_name("a__b/c-d/e.f/g---h"));
        assert!(!valid_name("a___b"));
    }
}
