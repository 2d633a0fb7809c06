//! Server certificates: loading and checking a PEM certificate chain and
//! private key, and a store that rotates them without a restart.
//!
//! A pair is only put in service after it loaded completely: the chain
//! parses, the key is PKCS#8, PKCS#1 (RSA) or SEC1 (EC), the key matches the
//! leaf certificate, and the leaf is within its validity period. A broken
//! replacement is reported and the pair in service stays.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate or key file read.
const MAX_PEM: u64 = 1 << 20;

/// Why a certificate/key pair cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read.
    #[error("{path}: cannot be read: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file is larger than a PEM file can reasonably be.
    #[error("{0}: larger than 1 MiB; not a PEM certificate or key")]
    TooLarge(PathBuf),
    /// No certificate in the file.
    #[error("{0}: contains no PEM certificate")]
    NoCertificate(PathBuf),
    /// A PEM block did not parse.
    #[error("{path}: invalid PEM: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// No private key, or one of an unsupported kind.
    #[error("{path}: no usable private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM): {detail}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key}: private key does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf certificate does not parse as X.509.
    #[error("{path}: leaf certificate is not valid X.509: {detail}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The leaf certificate expired.
    #[error("{path}: certificate expired on {not_after}")]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its notAfter.
        not_after: String,
    },
    /// The leaf certificate is not valid yet.
    #[error("{path}: certificate is not valid before {not_before}")]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// Its notBefore.
        not_before: String,
    },
}

fn read_pem(path: &Path) -> Result<Vec<u8>, CertError> {
    use std::io::Read;
    let read_err = |error| CertError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_PEM {
        return Err(CertError::TooLarge(path.to_path_buf()));
    }
    Ok(buf)
}

/// A loaded pair with what the logs say about it.
pub struct LoadedPair {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's subject.
    pub subject: String,
    /// The leaf's notAfter.
    pub not_after: String,
}

impl fmt::Debug for LoadedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoadedPair(serial {}, {})", self.serial, self.subject)
    }
}

/// Loads and checks a certificate chain (leaf first) and its private key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<LoadedPair, CertError> {
    let cert_pem = read_pem(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::BadPem {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    let leaf = chain
        .first()
        .ok_or_else(|| CertError::NoCertificate(cert.to_path_buf()))?;

    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| CertError::BadCertificate {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(CertError::Expired {
            path: cert.to_path_buf(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before {
        return Err(CertError::NotYetValid {
            path: cert.to_path_buf(),
            not_before: validity.not_before.to_string(),
        });
    }
    let serial = parsed.raw_serial_as_string().replace(':', "");
    let subject = parsed.subject().to_string();
    let not_after = validity.not_after.to_string();

    let key_pem = read_pem(key)?;
    let bad_key = |detail: String| CertError::BadKey {
        path: key.to_path_buf(),
        detail,
    };
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })?;
    Ok(LoadedPair {
        key: Arc::new(certified),
        serial,
        subject,
        not_after,
    })
}

/// What identifies the files' current versions, to notice replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    })
}

/// The certificate in service, replaceable at any time. Serves as rustls'
/// certificate resolver, so every new handshake picks up the current pair.
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CertStore({}, {})",
            self.cert.display(),
            self.key.display()
        )
    }
}

impl CertStore {
    /// Loads the pair; fails if it is not usable.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let seen = (stamp(cert), stamp(key));
        let pair = load_pair(cert, key)?;
        tracing::info!(
            serial = %pair.serial, subject = %pair.subject, not_after = %pair.not_after,
            "TLS certificate loaded from {}", cert.display()
        );
        Ok(CertStore {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from(pair.key),
            seen: Mutex::new(seen),
        })
    }

    /// Reloads the pair from its files. On error the pair in service stays.
    pub fn reload(&self) -> Result<LoadedPair, CertError> {
        let seen = (stamp(&self.cert), stamp(&self.key));
        // Remember the stamps even on failure, so a broken pair is reported
        // once, not on every poll.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        let pair = load_pair(&self.cert, &self.key)?;
        self.current.store(pair.key.clone());
        tracing::info!(serial = %pair.serial, subject = %pair.subject, not_after = %pair.not_after, "TLS certificate rotated");
        Ok(pair)
    }

    /// Reloads if either file changed since the last load; logs the outcome.
    pub fn reload_if_changed(&self) {
        let now = (stamp(&self.cert), stamp(&self.key));
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            self.reload_logged();
        }
    }

    /// Reloads and logs a failure (the old pair stays in service).
    pub fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            tracing::error!("TLS certificate not rotated, the previous one stays in service: {e}");
        }
    }

    /// The pair in service.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration for `-t tls`: TLS 1.2 and 1.3 with rustls'
/// default (modern, AEAD-only) cipher suites, ALPN `h2` then `http/1.1`,
/// no client authentication.
pub fn server_config(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("rustls supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// [`server_config`] that also requires a client certificate accepted by
/// `clients` (`--client-ca`, see [`crate::transport::client_access`]).
pub fn server_config_with_client_auth(
    store: Arc<CertStore>,
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("rustls supports TLS 1.2 and 1.3")
        .with_client_cert_verifier(clients)
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
