//! notation's trust store: `DIR/x509/{ca,signingAuthority,tsa}/NAME/` holding PEM or DER
//! certificate files.

use std::collections::BTreeMap;
use std::path::Path;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::policy::{is_valid_store_name, StoreKind};
use crate::Error;

/// Largest certificate file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most files in one named store, and most named stores of one type.
const MAX_ENTRIES: usize = 1024;
/// Most certificates in one file.
const MAX_CERTS_PER_FILE: usize = 64;

/// Every named store under a trust store directory, loaded and parsed.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    stores: BTreeMap<(StoreKind, String), Vec<CertificateDer<'static>>>,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::InvalidTrustStore(format!("{}: {msg}", path.display()))
}

impl TrustStore {
    /// Loads `dir/x509/<type>/<name>/*`. A missing `x509/<type>` directory is an empty set
    /// of stores; a named store must hold only regular files that are certificates (as notation
    /// requires), and a `ca` or `signingAuthority` store only CA or self-signed certificates.
    /// Directory entries whose names are not valid store names are ignored: no policy can
    /// name them.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let mut stores = BTreeMap::new();
        for kind in [StoreKind::Ca, StoreKind::SigningAuthority, StoreKind::Tsa] {
            let kind_dir = dir.join("x509").join(kind.as_str());
            let entries = match std::fs::read_dir(&kind_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(invalid(&kind_dir, e)),
            };
            for (n, entry) in entries.enumerate() {
                if n >= MAX_ENTRIES {
                    return Err(invalid(&kind_dir, "too many stores"));
                }
                let entry = entry.map_err(|e| invalid(&kind_dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let ft = entry.file_type().map_err(|e| invalid(&entry.path(), e))?;
                if !ft.is_dir() || !is_valid_store_name(&name) {
                    continue;
                }
                let certs = load_named_store(&entry.path(), kind)?;
                stores.insert((kind, name), certs);
            }
        }
        Ok(TrustStore { stores })
    }

    /// The certificates of store `kind:name`, or `None` when there is no such store.
    pub fn certificates(&self, kind: StoreKind, name: &str) -> Option<&[CertificateDer<'static>]> {
        self.stores
            .get(&(kind, name.to_string()))
            .map(Vec::as_slice)
    }

    /// Names of the stores present, as `type:name`.
    pub fn store_names(&self) -> impl Iterator<Item = String> + '_ {
        self.stores
            .keys()
            .map(|(k, n)| format!("{}:{n}", k.as_str()))
    }
}

fn load_named_store(dir: &Path, kind: StoreKind) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut certs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| invalid(dir, e))?
        .take(MAX_ENTRIES + 1)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(dir, e))?;
    if entries.len() > MAX_ENTRIES {
        return Err(invalid(dir, "too many files"));
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // notation refuses symlinks and subdirectories in a named store.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| invalid(&path, e))?;
        if !meta.is_file() {
            return Err(invalid(
                &path,
                "not a regular file (symlinks and directories are refused)",
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(invalid(&path, "larger than 1 MiB"));
        }
        let bytes = std::fs::read(&path).map_err(|e| invalid(&path, e))?;
        let found = parse_certificates(&bytes).map_err(|m| invalid(&path, m))?;
        for der in &found {
            check_store_certificate(der, kind).map_err(|m| invalid(&path, m))?;
        }
        certs.extend(found);
    }
    if certs.is_empty() {
        return Err(invalid(dir, "store holds no certificate"));
    }
    Ok(certs)
}

/// PEM (one or more `CERTIFICATE` blocks) or DER (one or more concatenated certificates).
pub(crate) fn parse_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    // A DER certificate starts with a SEQUENCE tag; anything else is read as PEM.
    if bytes.first() != Some(&0x30) {
        for pem in Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| format!("bad PEM: {e}"))?;
            if pem.label != "CERTIFICATE" {
                return Err(format!("PEM block {:?} is not a CERTIFICATE", pem.label));
            }
            X509Certificate::from_der(&pem.contents)
                .map_err(|e| format!("bad certificate: {e}"))?;
            out.push(CertificateDer::from(pem.contents));
            if out.len() > MAX_CERTS_PER_FILE {
                return Err("too many certificates".into());
            }
        }
    } else {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, _) =
                X509Certificate::from_der(rest).map_err(|e| format!("bad certificate: {e}"))?;
            let len = rest.len() - next.len();
            out.push(CertificateDer::from(rest[..len].to_vec()));
            rest = next;
            if out.len() > MAX_CERTS_PER_FILE {
                return Err("too many certificates".into());
            }
        }
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

/// notation admits CA certificates, and self-signed signing certificates, in `ca` and
/// `signingAuthority` stores.
fn check_store_certificate(der: &CertificateDer<'_>, kind: StoreKind) -> Result<(), String> {
    if kind == StoreKind::Tsa {
        return Ok(());
    }
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    // Self-issued is enough here: the store is operator input, and a chain through this
    // certificate still has its signature checked when it is used as a trust anchor.
    let self_issued = cert.subject() == cert.issuer();
    if is_ca || self_issued {
        Ok(())
    } else {
        Err(format!(
            "{} is neither a CA certificate nor self-signed",
            cert.subject()
        ))
    }
}
