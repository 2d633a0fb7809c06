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
#[command(
    name = "ir-server",
    version,
    about,
    long_about = None,
    after_help = "Subcommand:\n  ir-server probe [URL] [--timeout SECONDS]\n          exit 0 if URL (default: /readyz on IR_SERVER_METRICS_ADDR) answers 2xx; for health checks",
)]
pub struct Args {
    /// runtime server root directory (default: registry/ in the source tree
    /// the binary was built from)
    #[arg(short = 'r', long, env = "IR_SERVER_ROOT", help = in_build_tree("runtime server root directory", "registry"))]
    pub root: Option<PathBuf>,

    /// path to server certificate (default: certs/server.crt in the source
    /// tree)
    #[arg(short = 'c', long, env = "IR_SERVER_CERT", help = in_build_tree("path to server certificate", "certs/server.crt"))]
    pub cert: Option<PathBuf>,

    /// path to server private key (default: certs/server.key in the source
    /// tree)
    #[arg(short = 'k', long, env = "IR_SERVER_KEY", help = in_build_tree("path to server private key", "certs/server.key"))]
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

    /// RA-TLS: Veraison verification service host (https, or http to a
    /// loopback address only) [default: http://localhost:8080]; with
    /// --cpak, both checks must pass
    #[arg(short = 'u', long, env = "IR_SERVER_VERAISON_URL")]
    pub veraison_url: Option<String>,

    /// RA-TLS: a CA certificate (PEM) to trust for Veraison's HTTPS, in
    /// addition to the system's roots
    #[arg(long, value_name = "FILE", env = "IR_SERVER_VERAISON_CA")]
    pub veraison_ca: Option<PathBuf>,

    /// RA-TLS: Veraison's EAR public key (JWK); required when Veraison
    /// is used (without --cpak, or with -u)
    #[arg(short = 'v', long, env = "IR_SERVER_VERAISON_PUBKEY")]
    pub veraison_pubkey: Option<PathBuf>,

    /// RA-TLS: require Veraison's EARs to name this developer in
    /// ear.verifier-id (as Veraison's configuration sets it)
    #[arg(long, value_name = "DEVELOPER", env = "IR_SERVER_VERAISON_VERIFIER_ID")]
    pub veraison_verifier_id: Option<String>,

    /// RA-TLS: JSON containing reference values (a file, or a directory of
    /// them); required with -t ra-tls
    #[arg(short = 'j', long, env = "IR_SERVER_REFERENCE_JSON")]
    pub reference_json: Option<PathBuf>,

    /// RA-TLS: check platform tokens locally with these platform keys (raw
    /// SEC1 point, PEM, JWK, or a Veraison trust-anchor list whose entries
    /// pin the firmware with reference values) instead of asking Veraison,
    /// or before asking it when -u is given too
    #[arg(long, env = "IR_SERVER_CPAK")]
    pub cpak: Option<PathBuf>,

    /// RA-TLS, INSECURE: accept any firmware a --cpak key signs (a single
    /// key, or trust-anchor entries without reference-values sw-components)
    #[arg(long, env = "IR_SERVER_CPAK_ANY_FIRMWARE", requires = "cpak")]
    pub cpak_any_firmware: bool,

    /// RA-TLS, INSECURE, for development only: accept keys whose private
    /// half is published (the RFC 9052 example keys, Veraison's demo EAR
    /// key) as -v or --cpak
    #[arg(long, env = "IR_SERVER_INSECURE_DEV_KEYS")]
    pub insecure_dev_keys: bool,

    /// RA-TLS, INSECURE, for testing clients that send a fixed recorded
    /// token: do not check the session binding. Only builds with the cargo
    /// feature insecure-skip-challenge accept it; others refuse to start
    #[arg(long, env = "IR_SERVER_INSECURE_SKIP_CHALLENGE")]
    pub insecure_skip_challenge: bool,

    /// RA-TLS: seconds a Veraison appraisal may take
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_VERAISON_TIMEOUT")]
    pub veraison_timeout: u64,

    /// RA-TLS: most Veraison appraisals in flight at once
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "IR_SERVER_MAX_ATTESTATIONS")]
    pub max_attestations: usize,

    /// RA-TLS: also accept TLS 1.2 (default: TLS 1.3 only)
    #[arg(long, env = "IR_SERVER_RATLS_TLS12")]
    pub ratls_tls12: bool,

    /// RA-TLS: seconds after which an attested connection is closed between
    /// requests, so the realm attests again
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_MAX_CONNECTION_AGE")]
    pub max_connection_age: u64,

    /// most connections in a TLS handshake at once from one source address,
    /// waiting for the client or for a slot included (more from that
    /// address are closed at once)
    #[arg(long, default_value_t = crate::transport::DEFAULT_MAX_HANDSHAKES_PER_ADDRESS as u32, value_parser = clap::value_parser!(u32).range(1..), env = "IR_SERVER_MAX_HANDSHAKES_PER_ADDRESS")]
    pub max_handshakes_per_address: u32,

    /// IPv6 addresses sharing their first LEN bits count as one source
    /// address, for every per-address limit and log budget
    #[arg(long, value_name = "LEN", default_value_t = crate::transport::DEFAULT_IPV6_PREFIX_LEN, value_parser = clap::value_parser!(u8).range(1..=128), env = "IR_SERVER_IPV6_PREFIX_LEN")]
    pub ipv6_prefix_len: u8,

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
    #[arg(long, default_value_t = crate::transport::DEFAULT_BACKLOG, value_parser = clap::value_parser!(u32).range(1..), env = "IR_SERVER_BACKLOG")]
    pub backlog: u32,

    /// most connections open at once; more wait in the accept backlog
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), env = "IR_SERVER_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// seconds a client has to complete the TLS handshake
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: u64,

    /// seconds a TLS client has to send its next flight once the server
    /// answered its ClientHello (RA-TLS: its certificate and token); the
    /// ClientHello itself has 3
    #[arg(long, default_value_t = crate::transport::DEFAULT_FLIGHT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_FLIGHT_TIMEOUT")]
    pub flight_timeout: u64,

    /// seconds a client has to send a request's headers
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_HEADER_TIMEOUT")]
    pub header_timeout: u64,

    /// seconds a response may wait for a client that stopped reading
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_SEND_TIMEOUT")]
    pub send_timeout: u64,

    /// seconds a connection may stay without traffic (before its first
    /// request and between requests)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_IDLE_TIMEOUT")]
    pub idle_timeout: u64,

    /// seconds requests in flight get to finish on SIGTERM/SIGINT
    #[arg(long, default_value_t = 30, env = "IR_SERVER_SHUTDOWN_GRACE")]
    pub shutdown_grace: u64,

    /// TLS: require a client certificate issued by a CA in this PEM file
    #[arg(long, value_name = "FILE", env = "IR_SERVER_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// JSON mapping client certificates (--client-ca: subject, common name
    /// or SAN) and users (--htpasswd, token subjects) to the applications
    /// each may see; unmatched identities see none (default without it:
    /// everyone sees all)
    #[arg(
        long,
        visible_alias = "client-map",
        value_name = "FILE",
        env = "IR_SERVER_ACCESS_MAP"
    )]
    pub access_map: Option<PathBuf>,

    /// require credentials: users and bcrypt hashes (htpasswd -B); serves
    /// the token endpoint /token and accepts its tokens and Basic
    /// credentials. Needs -t tls or ra-tls (or --proxy-protocol behind a
    /// TLS-terminating balancer)
    #[arg(long, value_name = "FILE", env = "IR_SERVER_HTPASSWD")]
    pub htpasswd: Option<PathBuf>,

    /// with --htpasswd: the EC P-256 private key (PEM) tokens are signed
    /// with (ES256) [default: a key generated at start]
    #[arg(long, value_name = "FILE", env = "IR_SERVER_TOKEN_KEY")]
    pub token_key: Option<PathBuf>,

    /// with --htpasswd: seconds a token is valid
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), env = "IR_SERVER_TOKEN_TTL")]
    pub token_ttl: u64,

    /// the token endpoint's URL in challenges [default with --htpasswd:
    /// https://HOST/token, HOST as --registry-host; required with
    /// --token-jwks]
    #[arg(long, value_name = "URL", env = "IR_SERVER_TOKEN_REALM")]
    pub token_realm: Option<String>,

    /// the service name in challenges, the tokens' audience [default: HOST,
    /// as --registry-host]
    #[arg(long, value_name = "NAME", env = "IR_SERVER_TOKEN_SERVICE")]
    pub token_service: Option<String>,

    /// the tokens' issuer: with --htpasswd the one written [default: the
    /// service], with --token-jwks the one required
    #[arg(long, value_name = "ISS", env = "IR_SERVER_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,

    /// require bearer tokens of an external issuer (--token-issuer) signed
    /// by a key in this JWK set (EC P-256, each with a kid), instead of
    /// --htpasswd
    #[arg(long, value_name = "FILE", env = "IR_SERVER_TOKEN_JWKS")]
    pub token_jwks: Option<PathBuf>,

    /// signature policy (containers-policy.json): serve only images it
    /// accepts (sigstore/cosign keys; see docs/signatures.md). Without it,
    /// every verified image is served
    #[arg(long, value_name = "FILE", env = "IR_SERVER_POLICY")]
    pub policy: Option<PathBuf>,

    /// the name clients use for this server, HOST[:PORT]: images are named
    /// HOST/APPLICATION:TAG for policy scopes and signed identities
    /// (default: localhost:PORT)
    #[arg(long, value_name = "HOST", env = "IR_SERVER_REGISTRY_HOST")]
    pub registry_host: Option<String>,

    /// remember verified signatures in FILE across restarts, so a start
    /// verifies only signatures it has not seen (trusted like the policy:
    /// only the server may write the file and its directory)
    #[arg(
        long,
        value_name = "FILE",
        env = "IR_SERVER_SIGNATURE_CACHE",
        requires = "policy"
    )]
    pub signature_cache: Option<PathBuf>,

    /// notation trust policy (trustpolicy.json): images must also pass it
    #[arg(
        long,
        value_name = "FILE",
        env = "IR_SERVER_NOTATION_TRUST_POLICY",
        requires = "notation_trust_store"
    )]
    pub notation_trust_policy: Option<PathBuf>,

    /// notation trust store directory (x509/ca/NAME/*.pem, ...)
    #[arg(
        long,
        value_name = "DIR",
        env = "IR_SERVER_NOTATION_TRUST_STORE",
        requires = "notation_trust_policy"
    )]
    pub notation_trust_store: Option<PathBuf>,

    /// every connection to the API port comes from a balancer in
    /// --proxy-protocol-from (required) and starts with a PROXY protocol
    /// header (v1 or v2, haproxy send-proxy / send-proxy-v2) naming the
    /// real client; other connections are refused
    #[arg(long, env = "IR_SERVER_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// the balancers that send PROXY headers, CIDR[,CIDR...] (e.g.
    /// 10.0.0.0/24,192.0.2.7); a connection from any other address is
    /// closed unread
    #[arg(
        long,
        value_name = "CIDR",
        value_delimiter = ',',
        env = "IR_SERVER_PROXY_PROTOCOL_FROM",
        requires = "proxy_protocol"
    )]
    pub proxy_protocol_from: Vec<crate::transport::proxy_protocol::Cidr>,

    /// serve Prometheus metrics (/metrics), /healthz and /readyz on this
    /// separate address, e.g. 127.0.0.1:9090 (off by default)
    #[arg(long, value_name = "ADDR:PORT", env = "IR_SERVER_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// append a signed receipt for every manifest served to an attested
    /// realm, a client certificate or a user to the journal in DIR
    /// (check it with `ir-server receipts verify DIR --key PUB`)
    #[arg(
        long,
        value_name = "DIR",
        env = "IR_SERVER_RECEIPTS",
        requires = "receipts_key"
    )]
    pub receipts: Option<PathBuf>,

    /// P-256 private key (PEM) that signs the receipts' checkpoints
    #[arg(
        long,
        value_name = "FILE",
        env = "IR_SERVER_RECEIPTS_KEY",
        requires = "receipts"
    )]
    pub receipts_key: Option<PathBuf>,

    /// sign the receipts at least every N records (and at shutdown, and
    /// after a minute without new ones)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_RECEIPTS_CHECKPOINT")]
    pub receipts_checkpoint: u64,

    /// start a new receipts file past this size, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..), env = "IR_SERVER_RECEIPTS_FILE_SIZE")]
    pub receipts_file_size: u64,

    /// post each delivery, each refused pull and each receipts head as a
    /// CloudEvent (batched JSON) to this http(s) URL
    #[arg(long, value_name = "URL", value_parser = parse_events_url, env = "IR_SERVER_EVENTS_URL")]
    pub events_url: Option<reqwest::Url>,

    /// read options from this TOML file: each long option is a key of the
    /// same name in the table of its heading here (`[listener] port =
    /// 8080`); flags and the environment take precedence over it
    #[arg(long, value_name = "FILE", env = "IR_SERVER_CONFIG")]
    pub config: Option<PathBuf>,

    /// print the effective configuration as a file that --config reads,
    /// and exit (paths of secrets, never their contents)
    #[arg(long, env = "IR_SERVER_PRINT_CONFIG")]
    pub print_config: bool,
}

/// Veraison's URL when `-u` is not given (the seed's default).
pub const DEFAULT_VERAISON_URL: &str = "http://localhost:8080";

/// The directory the seed calls `{crate_root}`: the repository root of the
/// source tree this binary was built from, so that `cargo run` works with no
/// flags. Installed binaries should be given explicit paths.
pub fn crate_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// A flag's help naming the path under [`crate_root`] it defaults to, as
/// the binary will use it.
fn in_build_tree(what: &str, relative: &str) -> String {
    format!(
        "{what} [default: {}]",
        crate_root().join(relative).display()
    )
}

/// `--events-url`: an absolute http or https URL.
fn parse_events_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("give an http:// or https:// URL with a host".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits that cannot be 0 are refused when parsed, with clap's error
    /// naming the flag, rather than silently raised to 1 later.
    #[test]
    fn zero_limits_are_refused_when_parsed() {
        for flag in [
            "--handshake-timeout",
            "--header-timeout",
            "--send-timeout",
            "--idle-timeout",
            "--veraison-timeout",
            "--max-attestations",
            "--max-connections",
            "--backlog",
            "--max-connection-age",
            "--max-handshakes-per-address",
            "--flight-timeout",
            "--ipv6-prefix-len",
            "--token-ttl",
        ] {
            let e = Args::try_parse_from(["ir-server", flag, "0"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{flag}");
            assert!(e.to_string().contains(flag), "{flag}: {e}");
            Args::try_parse_from(["ir-server", flag, "1"]).unwrap();
        }
    }

    #[test]
    fn proxy_sources_are_address_blocks() {
        let a = Args::try_parse_from([
            "ir-server",
            "--proxy-protocol",
            "--proxy-protocol-from",
            "10.0.0.0/24,192.0.2.7",
            "--proxy-protocol-from",
            "2001:db8::/32",
        ])
        .unwrap();
        let blocks: Vec<String> = a
            .proxy_protocol_from
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(blocks, ["10.0.0.0/24", "192.0.2.7/32", "2001:db8::/32"]);
        for bad in ["10.0.0.1/24", "10.0.0.0/33", "haproxy.local", ""] {
            let e = Args::try_parse_from([
                "ir-server",
                "--proxy-protocol",
                "--proxy-protocol-from",
                bad,
            ])
            .unwrap_err();
            assert!(
                e.to_string().contains("--proxy-protocol-from"),
                "{bad}: {e}"
            );
        }
        let e =
            Args::try_parse_from(["ir-server", "--proxy-protocol-from", "10.0.0.0/8"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--proxy-protocol"), "{e}");
        let e = Args::try_parse_from(["ir-server", "--ipv6-prefix-len", "129"]).unwrap_err();
        assert!(e.to_string().contains("--ipv6-prefix-len"), "{e}");
    }
}
