//! The command line. The seed's flags (`-r -c -k -t -p -u -v -j -h -V`) are
//! a contract with existing users; additions are long options in the same
//! style, and every option can also come from an `IR_SERVER_*` variable.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The transport the registry is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Plain HTTP (HTTP/1.1 and h2c).
    NoTls,
    /// TLS with the server certificate (`-c`, `-k`).
    Tls,
    /// TLS where clients must present an attested Arm CCA realm certificate.
    RaTls,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The format of the `--check` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One line per application, orphans, and a summary.
    Text,
    /// One JSON document (applications, rules broken, tags, orphans, totals).
    Json,
}

/// ir-server: a pull-only OCI registry that serves only verified content.
#[derive(Debug, Clone, Parser)]
#[command(name = "ir-server", version, about, long_about = None)]
pub struct Args {
    /// runtime server root directory, none to use {crate_root}/registry
    #[arg(short = 'r', long, env = "IR_SERVER_ROOT")]
    pub root: Option<PathBuf>,

    /// path to server certificate, none to use {crate_root}/certs/server.crt
    #[arg(short = 'c', long, env = "IR_SERVER_CERT")]
    pub cert: Option<PathBuf>,

    /// path to server private key, none to use {crate_root}/certs/server.key
    #[arg(short = 'k', long, env = "IR_SERVER_KEY")]
    pub key: Option<PathBuf>,

    /// TLS variant to use
    #[arg(
        short = 't',
        long,
        value_enum,
        default_value = "no-tls",
        env = "IR_SERVER_TLS"
    )]
    pub tls: TlsMode,

    /// server port
    #[arg(short = 'p', long, default_value_t = 1337, env = "IR_SERVER_PORT")]
    pub port: u16,

    /// RA-TLS: Veraison verification service host
    #[arg(
        short = 'u',
        long,
        default_value = "http://localhost:8080",
        env = "IR_SERVER_VERAISON_URL"
    )]
    pub veraison_url: String,

    /// RA-TLS: Veraisons public key, none to use {crate_root}/ratls/pkey.jwk
    #[arg(short = 'v', long, env = "IR_SERVER_VERAISON_PUBKEY")]
    pub veraison_pubkey: Option<PathBuf>,

    /// RA-TLS: JSON containing reference values, none to use {crate_root}/ratls/example.json
    #[arg(short = 'j', long, env = "IR_SERVER_REFERENCE_JSON")]
    pub reference_json: Option<PathBuf>,

    /// RA-TLS: check platform tokens locally with these platform keys (raw
    /// SEC1 point, PEM, JWK, or a Veraison trust-anchor list) instead of
    /// asking Veraison
    #[arg(long, env = "IR_SERVER_CPAK")]
    pub cpak: Option<PathBuf>,

    /// RA-TLS: seconds a Veraison appraisal may take
    #[arg(long, default_value_t = 5, env = "IR_SERVER_VERAISON_TIMEOUT")]
    pub veraison_timeout: u64,

    /// RA-TLS: most Veraison appraisals in flight at once
    #[arg(long, default_value_t = 32, env = "IR_SERVER_MAX_ATTESTATIONS")]
    pub max_attestations: usize,

    /// RA-TLS: also accept TLS 1.2 (default: TLS 1.3 only)
    #[arg(long, env = "IR_SERVER_RATLS_TLS12")]
    pub ratls_tls12: bool,

    /// load and verify the registry, print the report, and exit without
    /// serving: 0 if something is served and every application verified, 1
    /// if one was rejected or none is served, 2 if the root cannot be read
    #[arg(long, env = "IR_SERVER_CHECK")]
    pub check: bool,

    /// format of the --check report
    #[arg(long, value_enum, default_value = "text", env = "IR_SERVER_FORMAT")]
    pub format: ReportFormat,

    /// name to serve the root under when the root is itself an OCI layout
    /// (default: the root directory's name)
    #[arg(long, env = "IR_SERVER_NAME")]
    pub name: Option<String>,

    /// address to listen on
    #[arg(long, default_value = "0.0.0.0", env = "IR_SERVER_BIND")]
    pub bind: IpAddr,

    /// do not log one line per request
    #[arg(long, env = "IR_SERVER_NO_ACCESS_LOG")]
    pub no_access_log: bool,

    /// log format
    #[arg(long, value_enum, default_value = "text", env = "IR_SERVER_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// verification threads (default: one per core)
    #[arg(long, env = "IR_SERVER_VERIFY_THREADS")]
    pub verify_threads: Option<usize>,

    /// threads for disk-bound loading work: listing, manifests, small blobs
    /// (default: 16 per core, at most 64; many reads in flight speed up cold starts)
    #[arg(long, env = "IR_SERVER_IO_THREADS")]
    pub io_threads: Option<usize>,

    /// MiB of memory for chunk seals of blobs served once in full, so later
    /// downloads and ranges are checked per chunk with a GMAC tag instead of
    /// re-hashed whole (0: always hash whole; 64 MiB covers 1 TiB of blobs)
    #[arg(long, default_value_t = 64, env = "IR_SERVER_SEAL_MEMORY")]
    pub seal_memory: u64,

    /// MiB of memory for verified copies of large blobs, kept from their
    /// first whole download and sent from memory afterwards instead of being
    /// read from disk and checked again (default: an eighth of the memory
    /// available to the server, at most 1024; 0: off)
    #[arg(long, value_name = "MIB", env = "IR_SERVER_BLOB_CACHE")]
    pub blob_cache: Option<u64>,

    /// also reload when files change under the root (SIGHUP always reloads)
    #[arg(long, env = "IR_SERVER_WATCH")]
    pub watch: bool,

    /// length of the accept queue (capped by net.core.somaxconn)
    #[arg(long, default_value_t = crate::transport::DEFAULT_BACKLOG, env = "IR_SERVER_BACKLOG")]
    pub backlog: u32,

    /// most connections open at once; more wait in the accept backlog
    #[arg(long, default_value_t = 10_000, env = "IR_SERVER_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// seconds a client has to complete the TLS handshake
    #[arg(long, default_value_t = 10, env = "IR_SERVER_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: u64,

    /// seconds a client has to send a request's headers
    #[arg(long, default_value_t = 20, env = "IR_SERVER_HEADER_TIMEOUT")]
    pub header_timeout: u64,

    /// seconds a response may wait for a client that stopped reading
    #[arg(long, default_value_t = 60, env = "IR_SERVER_SEND_TIMEOUT")]
    pub send_timeout: u64,

    /// seconds a connection may stay without traffic (before its first
    /// request and between requests)
    #[arg(long, default_value_t = 60, env = "IR_SERVER_IDLE_TIMEOUT")]
    pub idle_timeout: u64,

    /// seconds requests in flight get to finish on SIGTERM/SIGINT
    #[arg(long, default_value_t = 30, env = "IR_SERVER_SHUTDOWN_GRACE")]
    pub shutdown_grace: u64,

    /// serve Prometheus metrics (/metrics), /healthz and /readyz on this
    /// separate address, e.g. 127.0.0.1:9090 (off by default)
    #[arg(long, value_name = "ADDR:PORT", env = "IR_SERVER_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The directory the seed calls `{crate_root}`: the repository root of the
/// source tree this binary was built from, so that `cargo run` works with no
/// flags. Installed binaries should be given explicit paths.
pub fn crate_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

impl Args {
    /// The registry root, resolved against the crate root if not given.
    pub fn root_dir(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| crate_root().join("registry"))
    }

    /// The server certificate path.
    pub fn cert_path(&self) -> PathBuf {
        self.cert
            .clone()
            .unwrap_or_else(|| crate_root().join("certs/server.crt"))
    }

    /// The server private key path.
    pub fn key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| crate_root().join("certs/server.key"))
    }

    /// Veraison's EAR public key (JWK).
    pub fn veraison_pubkey_path(&self) -> PathBuf {
        self.veraison_pubkey
            .clone()
            .unwrap_or_else(|| crate_root().join("ratls/pkey.jwk"))
    }

    /// Reference values.
    pub fn reference_json_path(&self) -> PathBuf {
        self.reference_json
            .clone()
            .unwrap_or_else(|| crate_root().join("ratls/example.json"))
    }
}
