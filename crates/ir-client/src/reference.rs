//! Image references: `<scheme>://<host>[:<port>]/<name>[:<tag>|@<digest>]`.

use crate::ReferenceError;
use ir_oci::{Digest, RepoName, Tag};
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

/// A tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tag (`:tag`; `latest` when none is given).
    Tag(String),
    /// A digest (`@sha256:…`).
    Digest(Digest),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(t) => f.write_str(t),
            Target::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The scheme.
    pub scheme: Scheme,
    /// `host[:port]`, as written.
    pub authority: String,
    /// The repository name (e.g. `team/app`).
    pub name: String,
    /// The tag or digest.
    pub target: Target,
}

impl Reference {
    /// Parses a reference; the tag defaults to `latest`.
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
        let (name, target) = if let Some((name, digest)) = path.split_once('@') {
            (
                name,
                Target::Digest(
                    Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                        text: text.to_string(),
                        source,
                    })?,
                ),
            )
        } else {
            // A tag follows the last ':' of the last path segment.
            let last = path.rfind('/').map_or(0, |i| i + 1);
            match path[last..].rfind(':') {
                Some(i) => {
                    let tag = Tag::parse(&path[last + i + 1..]).map_err(name_err)?;
                    (&path[..last + i], Target::Tag(tag.as_str().to_string()))
                }
                None => (path, Target::Tag("latest".into())),
            }
        };
        RepoName::parse(name).map_err(name_err)?;
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            name: name.to_string(),
            target,
        })
    }

    /// The registry's base URL (`http[s]://host:port`); RA-TLS is https
    /// on the wire.
    pub fn base_url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https | Scheme::RaTls => "https",
        };
        format!("{scheme}://{}", self.authority)
    }

    /// The tag, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        match &self.target {
            Target::Tag(t) => Some(t),
            Target::Digest(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = match self.target {
            Target::Tag(_) => ':',
            Target::Digest(_) => '@',
        };
        write!(
            f,
            "{}://{}/{}{sep}{}",
            self.scheme.as_str(),
            self.authority,
            self.name,
            self.target
        )
    }
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
        let r = Reference::parse(&format!("{}/x", text.trim_end_matches('/')))
            .map_err(|_| bad("expected <http|https|ra-tls>://<host>[:<port>]"))?;
        if r.name != "x" {
            return Err(bad("expected no repository name"));
        }
        Ok(Self {
            scheme: r.scheme,
            authority: r.authority,
        })
    }

    /// The base URL (`http[s]://host:port`).
    pub fn base_url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https | Scheme::RaTls => "https",
        };
        format!("{scheme}://{}", self.authority)
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
        let r = Reference::parse("ra-tls://localhost:1337/team/app:1.0").unwrap();
        assert_eq!(r.scheme, Scheme::RaTls);
        assert_eq!(r.authority, "localhost:1337");
        assert_eq!(r.name, "team/app");
        assert_eq!(r.target, Target::Tag("1.0".into()));
        assert_eq!(r.base_url(), "https://localhost:1337");
        assert_eq!(r.to_string(), "ra-tls://localhost:1337/team/app:1.0");

        let r = Reference::parse("http://127.0.0.1:5000/app").unwrap();
        assert_eq!(r.target, Target::Tag("latest".into()));
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");

        let d = Digest::of_bytes(ir_oci::Algorithm::Sha256, b"x");
        let r = Reference::parse(&format!("https://reg.example/a/b@{d}")).unwrap();
        assert_eq!(r.target, Target::Digest(d));
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
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(valid_name("a__b/c-d/e.f/g---h"));
        assert!(!valid_name("a___b"));
    }
}
