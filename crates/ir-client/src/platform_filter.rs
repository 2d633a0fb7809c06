//! Platforms (`os/architecture[/variant]`): the host's, parsed from the
//! command line, and matched against an index's entries.

use oci_spec::image::Platform as OciPlatform;
use std::fmt;

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
    /// The host's: see [`Platform::host`].
    fn default() -> Self {
        Self::host()
    }
}

impl Platform {
    /// The platform this program runs on, in OCI terms (Go's GOOS/GOARCH
    /// names): `linux/arm64/v8` on an Arm realm, `linux/amd64` on x86-64.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an index entry's platform is this one. A wanted variant
    /// also matches an entry without one when it is the architecture's
    /// default (`arm64` means `arm64/v8`).
    pub fn matches(&self, p: &OciPlatform) -> bool {
        if p.os().to_string() != self.os || p.architecture().to_string() != self.architecture {
            return false;
        }
        match (&self.variant, p.variant()) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            (Some(w), None) => default_variant(&self.architecture) == Some(w.as_str()),
        }
    }

    /// `os/architecture[/variant]` of an index entry's platform.
    pub fn describe(p: &OciPlatform) -> String {
        let mut s = format!("{}/{}", p.os(), p.architecture());
        if let Some(v) = p.variant() {
            s.push('/');
            s.push_str(v);
        }
        s
    }
}

fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        _ => None,
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

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(json: &str) -> OciPlatform {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn platforms() {
        let arm64v8 = oci(r#"{"os": "linux", "architecture": "arm64", "variant": "v8"}"#);
        let arm64 = oci(r#"{"os": "linux", "architecture": "arm64"}"#);
        let amd64 = oci(r#"{"os": "linux", "architecture": "amd64"}"#);
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(&arm64v8));
        assert!(p.matches(&arm64), "v8 is arm64's default variant");
        let p: Platform = "linux/arm64/v9".parse().unwrap();
        assert!(!p.matches(&arm64));
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches(&arm64v8));
        assert!(!p.matches(&amd64));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
        assert_eq!(Platform::describe(&arm64v8), "linux/arm64/v8");
    }

    #[test]
    fn host_platform() {
        let host = Platform::host();
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host.to_string(), "linux/amd64");
        #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
        assert_eq!(host.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::default(), host);
    }
}
