//! The validated configuration: [`crate::cli`] parses the command line
//! (with clap's range parsers for limits), [`Config::from_args`] consumes
//! the flags, checks what spans several of them, and derives everything the
//! server uses: paths resolved against the crate root, sizes in bytes, the
//! listener and its limits, the transport and what it trusts
//! ([`TransportConfig`]), the loader's options, the signature policy's
//! sources. Nothing after it reads a raw flag (the `lowargs` / `hiargs`
//! split of ripgrep): every rule that spans flags lives here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ir_oci::LoadOptions;

use crate::auth::{AuthConfig, TokenSource};
use crate::cli::{crate_root, Args, ReportFormat, TlsMode, DEFAULT_VERAISON_URL};
use crate::snapshot::policy_gate::{TrustConfig, TrustError};
use crate::transport::proxy_protocol::ProxySources;
use crate::transport::server::ConnLimits;
use crate::transport::ServeOptions;

/// Why the flags cannot be used together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--client-ca` without `-t tls`.
    #[error("--client-ca needs -t tls (RA-TLS clients are identified by attestation)")]
    ClientCaNeedsTls,
    /// `--proxy-protocol` without `--proxy-protocol-from`.
    #[error(
        "--proxy-protocol needs --proxy-protocol-from CIDR[,CIDR...], the balancers' \
         addresses: without it, a client reaching the port directly could name any address"
    )]
    ProxyProtocolNeedsSources,
    /// `-t ra-tls` without `-j`: there is no default set of realms.
    #[error(
        "-t ra-tls needs -j FILE|DIR: the reference values of the realms that may pull \
         (there is no default; ratls/example.json is an example to adapt)"
    )]
    RaTlsNeedsReferences,
    /// `-t ra-tls` with Veraison (no `--cpak`, or `-u`) without `-v`.
    #[error(
        "-t ra-tls with Veraison (no --cpak, or -u given) needs -v FILE: the public key \
         (JWK) your Veraison deployment signs its attestation results with (there is no default)"
    )]
    VeraisonNeedsKey,
    /// `--access-map` without an identity to map.
    #[error(
        "--access-map needs identities to map: --client-ca (with -t tls), --htpasswd or \
         --token-jwks"
    )]
    AccessMapNeedsIdentities,
    /// A token flag without `--htpasswd` or `--token-jwks`.
    #[error("{0} needs {1}")]
    AuthFlagNeeds(&'static str, &'static str),
    /// Both token sources.
    #[error(
        "--token-jwks and --htpasswd exclude each other: tokens come either from an \
         external issuer or from this server"
    )]
    TwoTokenSources,
    /// Authentication over plain HTTP.
    #[error(
        "{0} with -t no-tls would let passwords and tokens travel in clear: use -t tls \
         (or -t ra-tls), or --proxy-protocol behind a balancer that terminates TLS"
    )]
    AuthNeedsTls(&'static str),
    /// A realm, service or issuer that cannot be put in a challenge.
    #[error("{0} {1:?}: {2}")]
    AuthValue(&'static str, String, &'static str),
    /// The signature policy flags (`--policy`, `--registry-host`,
    /// `--notation-trust-*`) do not fit together.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// Everything the server runs with, derived once from [`Args`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The registry root (`-r`, default `{crate_root}/registry`).
    pub root: PathBuf,
    /// `--check`: load, print the report in this format, and exit.
    pub check: Option<ReportFormat>,
    /// Where the API listens (`--bind`, `-p`) and its accept backlog.
    pub listen: Listen,
    /// The transports' limits and timeouts.
    pub serve: ServeOptions,
    /// The metrics listener (`--metrics-addr`; `None`: no metrics).
    pub metrics_addr: Option<SocketAddr>,
    /// One log line per request (off with `--no-access-log`).
    pub access_log: bool,
    /// The server certificate (`-c`).
    pub cert: PathBuf,
    /// The server private key (`-k`).
    pub key: PathBuf,
    /// The transport and what it trusts.
    pub transport: TransportConfig,
    /// Where the signature policy comes from (`None`: no policy).
    pub trust: Option<TrustConfig>,
    /// How the loader reads and verifies the root.
    pub load: LoadOptions,
    /// Reload when files under the root change (`--watch`).
    pub watch: bool,
    /// Memory for chunk seals, in bytes (`--seal-memory` MiB).
    pub seal_budget: u64,
    /// Memory for verified blob copies, in bytes (`--blob-cache` MiB;
    /// `None`: the default budget).
    pub blob_cache: Option<u64>,
    /// Receipts and events (`--receipts*`, `--events-url`).
    pub audit: crate::audit::AuditConfig,
    /// Registry authentication (`None`: off).
    pub auth: Option<AuthConfig>,
}

/// The API's listening socket.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// The address (`--bind`, `-p`).
    pub addr: SocketAddr,
    /// The accept queue's length (`--backlog`).
    pub backlog: u32,
}

/// The transport (`-t`) and what it needs.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    /// Plain HTTP (`-t no-tls`); also `--check`, which serves nothing.
    Plain,
    /// TLS with the server certificate (`-t tls`).
    Tls {
        /// Require client certificates from these CAs (`--client-ca`).
        client_ca: Option<PathBuf>,
        /// Limit each client certificate to some applications
        /// (`--access-map`, its certificate entries).
        client_map: Option<PathBuf>,
    },
    /// TLS where clients are attested CCA realms (`-t ra-tls`).
    RaTls(AttestConfig),
}

/// What RA-TLS checks clients against, and its limits.
#[derive(Debug, Clone)]
pub struct AttestConfig {
    /// The realms' reference values (`-j`).
    pub references: PathBuf,
    /// How platforms are checked (`--cpak`, Veraison).
    pub platform: PlatformConfig,
    /// Attestation results kept for resumed sessions (`--max-attestations`).
    pub max_attestations: usize,
    /// INSECURE: tokens not bound to the connection's challenge
    /// (`--insecure-skip-challenge`).
    pub insecure_skip_challenge: bool,
    /// Also accept TLS 1.2 (`--ratls-tls12`).
    pub tls12: bool,
    /// Attested connections are closed between requests once this old
    /// (`--max-connection-age`).
    pub max_connection_age: Duration,
}

/// How RA-TLS checks a client's platform: local keys (`--cpak`), Veraison,
/// or both. Read at start-up and again on SIGHUP.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Platform keys checked locally (`--cpak`).
    pub cpak: Option<PathBuf>,
    /// Accept `--cpak` keys that pin no firmware (`--cpak-any-firmware`).
    pub cpak_any_firmware: bool,
    /// Veraison, used without `--cpak` or when `-u` is given.
    pub veraison: Option<VeraisonConfig>,
    /// Trust keys whose private half is published, with a loud warning
    /// (`--insecure-dev-keys`).
    pub insecure_dev_keys: bool,
}

/// Where Veraison is and how its results are checked.
#[derive(Debug, Clone)]
pub struct VeraisonConfig {
    /// Its base URL (`-u`, default the seed's).
    pub url: String,
    /// The key its attestation results are signed with (`-v`).
    pub pubkey: PathBuf,
    /// An extra CA for its HTTPS certificate (`--veraison-ca`).
    pub ca: Option<PathBuf>,
    /// Time a request to it may take (`--veraison-timeout`).
    pub timeout: Duration,
    /// The verifier identity its results must name
    /// (`--veraison-verifier-id`).
    pub verifier_id: Option<String>,
}

const MIB: u64 = 1 << 20;

/// `--receipts*` and `--events-url` (clap already requires the key with
/// the directory and the other way round).
fn audit(args: &Args) -> crate::audit::AuditConfig {
    let receipts = args
        .receipts
        .clone()
        .zip(args.receipts_key.clone())
        .map(|(dir, key)| crate::audit::ReceiptsConfig {
            dir,
            key,
            checkpoint_every: args.receipts_checkpoint,
            max_file_bytes: args.receipts_file_size.saturating_mul(MIB),
        });
    crate::audit::AuditConfig {
        receipts,
        events: args.events_url.clone(),
    }
}

impl Config {
    /// Checks `args` and derives the configuration.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        if args.client_ca.is_some() && args.tls != TlsMode::Tls {
            return Err(ConfigError::ClientCaNeedsTls);
        }
        let or_root = |given: &Option<PathBuf>, default: &str| {
            given.clone().unwrap_or_else(|| crate_root().join(default))
        };
        let root = or_root(&args.root, "registry");
        let serve = serve_options(&args)?;
        let transport = if args.check {
            TransportConfig::Plain
        } else {
            transport(&args)?
        };
        Ok(Config {
            trust: trust(&args, &root)?,
            audit: audit(&args),
            auth: auth_config(&args)?,
            serve,
            root,
            check: args.check.then_some(args.format),
            listen: Listen {
                addr: SocketAddr::new(args.bind, args.port),
                backlog: args.backlog,
            },
            metrics_addr: args.metrics_addr,
            access_log: !args.no_access_log,
            cert: or_root(&args.cert, "certs/server.crt"),
            key: or_root(&args.key, "certs/server.key"),
            transport,
            load: LoadOptions {
                threads: args.verify_threads,
                io_threads: args.io_threads,
                root_name: args.name,
                ..LoadOptions::default()
            },
            watch: args.watch,
            seal_budget: args.seal_memory.saturating_mul(MIB),
            blob_cache: args.blob_cache.map(|mib| mib.saturating_mul(MIB)),
        })
    }
}

/// The accept loops' limits and timeouts.
fn serve_options(args: &Args) -> Result<ServeOptions, ConfigError> {
    if args.proxy_protocol && args.proxy_protocol_from.is_empty() {
        return Err(ConfigError::ProxyProtocolNeedsSources);
    }
    Ok(ServeOptions {
        limits: ConnLimits {
            header_read_timeout: Duration::from_secs(args.header_timeout),
            ..ConnLimits::default()
        },
        max_connections: args.max_connections,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        flight_timeout: Duration::from_secs(args.flight_timeout),
        ipv6_prefix_len: args.ipv6_prefix_len,
        grace: Duration::from_secs(args.shutdown_grace),
        send_timeout: Duration::from_secs(args.send_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_handshakes_per_address: args.max_handshakes_per_address as usize,
        proxy_protocol: args
            .proxy_protocol
            .then(|| ProxySources::new(args.proxy_protocol_from.clone())),
        ..ServeOptions::default()
    })
}

/// The transport `-t` names, with what it trusts. In RA-TLS mode the trust
/// inputs have no defaults: a default key or realm list would be trusted
/// without anyone having chosen it.
fn transport(args: &Args) -> Result<TransportConfig, ConfigError> {
    Ok(match args.tls {
        TlsMode::NoTls => TransportConfig::Plain,
        TlsMode::Tls => TransportConfig::Tls {
            client_ca: args.client_ca.clone(),
            client_map: args.access_map.clone(),
        },
        TlsMode::RaTls => {
            let references = args
                .reference_json
                .clone()
                .ok_or(ConfigError::RaTlsNeedsReferences)?;
            let uses_veraison = args.cpak.is_none() || args.veraison_url.is_some();
            let veraison = if uses_veraison {
                Some(VeraisonConfig {
                    url: args
                        .veraison_url
                        .clone()
                        .unwrap_or_else(|| DEFAULT_VERAISON_URL.to_string()),
                    pubkey: args
                        .veraison_pubkey
                        .clone()
                        .ok_or(ConfigError::VeraisonNeedsKey)?,
                    ca: args.veraison_ca.clone(),
                    timeout: Duration::from_secs(args.veraison_timeout),
                    verifier_id: args.veraison_verifier_id.clone(),
                })
            } else {
                None
            };
            TransportConfig::RaTls(AttestConfig {
                references,
                platform: PlatformConfig {
                    cpak: args.cpak.clone(),
                    cpak_any_firmware: args.cpak_any_firmware,
                    veraison,
                    insecure_dev_keys: args.insecure_dev_keys,
                },
                max_attestations: args.max_attestations,
                insecure_skip_challenge: args.insecure_skip_challenge,
                tls12: args.ratls_tls12,
                max_connection_age: Duration::from_secs(args.max_connection_age),
            })
        }
    })
}

/// The signature policy's sources, or `None` when no policy is asked for.
fn trust(args: &Args, root: &Path) -> Result<Option<TrustConfig>, TrustError> {
    let notation = match (&args.notation_trust_policy, &args.notation_trust_store) {
        (Some(p), Some(s)) => Some((p.clone(), s.clone())),
        (None, None) => None,
        _ => return Err(TrustError::NotationIncomplete),
    };
    if args.policy.is_none() && notation.is_none() {
        return Ok(None);
    }
    let host = args
        .registry_host
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", args.port));
    if ir_trust::DockerReference::parse(&format!("{host}/x")).map(|r| r.host().to_owned())
        != Ok(host.clone())
    {
        return Err(TrustError::Host(host));
    }
    if let Some(cache) = &args.signature_cache {
        let (cache_at, root_at) = (resolved(cache), resolved(root));
        if cache_at.starts_with(&root_at) {
            return Err(TrustError::CacheInRoot {
                cache: cache.display().to_string(),
                root: root.display().to_string(),
            });
        }
    }
    let mut config = TrustConfig::new(args.policy.clone(), notation, &host);
    config.memo = args.signature_cache.clone();
    Ok(Some(config))
}

/// `path` made absolute with its links resolved, as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // The longest existing ancestor, resolved, and the rest as given.
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// A value that goes into a quoted challenge parameter: printable, no
/// quote or backslash, bounded.
fn header_safe(flag: &'static str, v: &str, max: usize) -> Result<(), ConfigError> {
    let bad = |why| Err(ConfigError::AuthValue(flag, v.to_owned(), why));
    if v.is_empty() || v.len() > max {
        return bad("empty or too long");
    }
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\\')
    {
        return bad("no spaces, quotes, backslashes or control characters");
    }
    Ok(())
}

/// The authentication settings: who issues tokens, the realm, service and
/// issuer (with their defaults), and the cross-flag rules.
fn auth_config(args: &Args) -> Result<Option<AuthConfig>, ConfigError> {
    let source = match (&args.htpasswd, &args.token_jwks) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoTokenSources),
        (Some(htpasswd), None) => Some(TokenSource::Local {
            htpasswd: htpasswd.clone(),
            key: args.token_key.clone(),
            ttl: Duration::from_secs(args.token_ttl),
        }),
        (None, Some(jwks)) => {
            if args.token_key.is_some() {
                return Err(ConfigError::AuthFlagNeeds("--token-key", "--htpasswd"));
            }
            if args.token_issuer.is_none() {
                return Err(ConfigError::AuthFlagNeeds(
                    "--token-jwks",
                    "--token-issuer ISS, the issuer whose tokens are accepted",
                ));
            }
            if args.token_realm.is_none() {
                return Err(ConfigError::AuthFlagNeeds(
                    "--token-jwks",
                    "--token-realm URL, the external token service's address for clients",
                ));
            }
            Some(TokenSource::External { jwks: jwks.clone() })
        }
        (None, None) => None,
    };
    let identities = args.client_ca.is_some() || source.is_some();
    if args.access_map.is_some() && !identities {
        return Err(ConfigError::AccessMapNeedsIdentities);
    }
    let Some(source) = source else {
        for (flag, given) in [
            ("--token-key", args.token_key.is_some()),
            ("--token-realm", args.token_realm.is_some()),
            ("--token-service", args.token_service.is_some()),
            ("--token-issuer", args.token_issuer.is_some()),
        ] {
            if given {
                return Err(ConfigError::AuthFlagNeeds(
                    flag,
                    "--htpasswd or --token-jwks",
                ));
            }
        }
        return Ok(None);
    };
    let flag = match source {
        TokenSource::Local { .. } => "--htpasswd",
        TokenSource::External { .. } => "--token-jwks",
    };
    if args.tls == TlsMode::NoTls && !args.proxy_protocol && !args.check {
        return Err(ConfigError::AuthNeedsTls(flag));
    }
    let host = args
        .registry_host
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", args.port));
    // Never from a request's Host header: a client could name any realm.
    let realm = args
        .token_realm
        .clone()
        .unwrap_or_else(|| format!("https://{host}/token"));
    header_safe("--token-realm", &realm, 1024)?;
    if !(realm.starts_with("https://") || realm.starts_with("http://")) {
        return Err(ConfigError::AuthValue(
            "--token-realm",
            realm,
            "not an http(s) URL",
        ));
    }
    let service = args.token_service.clone().unwrap_or(host);
    header_safe("--token-service", &service, 256)?;
    let issuer = args.token_issuer.clone().unwrap_or_else(|| service.clone());
    header_safe("--token-issuer", &issuer, 256)?;
    Ok(Some(AuthConfig {
        source,
        realm,
        service,
        issuer,
        access_map: args.access_map.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(argv: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["ir-server"];
        all.extend_from_slice(argv);
        Config::from_args(Args::try_parse_from(all).unwrap())
    }

    fn attest(c: Config) -> AttestConfig {
        match c.transport {
            TransportConfig::RaTls(a) => a,
            other => panic!("not RA-TLS: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_resolved_once_against_the_crate_root() {
        let c = config(&[]).unwrap();
        assert_eq!(c.root, crate_root().join("registry"));
        assert_eq!(c.cert, crate_root().join("certs/server.crt"));
        assert!(matches!(c.transport, TransportConfig::Plain));
        assert!(c.trust.is_none());
        assert_eq!(c.blob_cache, None);
        assert!(c.access_log && !c.watch && c.check.is_none());
        assert_eq!(c.listen.addr.port(), 1337);
        let ratls = ["-t", "ra-tls", "-j", "/r.json", "-v", "/k.jwk"];
        let veraison = attest(config(&ratls).unwrap()).platform.veraison.unwrap();
        assert_eq!(veraison.url, DEFAULT_VERAISON_URL);
        let c =
            config(&[&ratls[..], &["-r", "/srv/r", "-u", "https://v.example"]].concat()).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/r"));
        assert_eq!(
            attest(c).platform.veraison.unwrap().url,
            "https://v.example"
        );
    }

    #[test]
    fn sizes_are_in_bytes() {
        let c = config(&["--seal-memory", "3", "--blob-cache", "2"]).unwrap();
        assert_eq!(c.seal_budget, 3 << 20);
        assert_eq!(c.blob_cache, Some(2 << 20));
        let c = config(&["--blob-cache", "0"]).unwrap();
        assert_eq!(c.blob_cache, Some(0), "0 turns the cache off");
    }

    #[test]
    fn limits_reach_the_options() {
        let c = config(&[
            "--max-connections",
            "7",
            "--header-timeout",
            "3",
            "--verify-threads",
            "2",
        ])
        .unwrap();
        assert_eq!(c.serve.max_connections, 7);
        assert_eq!(c.serve.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.load.threads, Some(2));
    }

    #[test]
    fn flags_that_do_not_fit_together_name_themselves() {
        let e = config(&["--client-ca", "/ca.pem"]).unwrap_err();
        assert!(matches!(e, ConfigError::ClientCaNeedsTls));
        assert!(e.to_string().starts_with("--client-ca needs -t tls"));
        let c = config(&["--client-ca", "/ca.pem", "-t", "tls", "--client-map", "/m"]).unwrap();
        assert!(matches!(
            c.transport,
            TransportConfig::Tls {
                client_ca: Some(_),
                client_map: Some(_)
            }
        ));
        let e = config(&["--policy", "/p.json", "--registry-host", "not a host"]).unwrap_err();
        assert!(e.to_string().contains("--registry-host"), "{e}");
        let c = config(&["--policy", "/p.json", "-p", "5000"]).unwrap();
        assert_eq!(c.trust.unwrap().host, "localhost:5000");
    }

    #[test]
    fn proxy_protocol_needs_its_sources() {
        let e = config(&["--proxy-protocol"]).unwrap_err();
        assert!(matches!(e, ConfigError::ProxyProtocolNeedsSources));
        assert!(
            e.to_string()
                .starts_with("--proxy-protocol needs --proxy-protocol-from"),
            "{e}"
        );
        let c = config(&["--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8"]).unwrap();
        let sources = c.serve.proxy_protocol.unwrap();
        assert!(sources.contains("10.1.2.3".parse().unwrap()));
        assert!(!sources.contains("192.0.2.1".parse().unwrap()));
        assert!(config(&[]).unwrap().serve.proxy_protocol.is_none());
        let c = config(&["--flight-timeout", "2", "--ipv6-prefix-len", "56"]).unwrap();
        assert_eq!(c.serve.flight_timeout, Duration::from_secs(2));
        assert_eq!(c.serve.ipv6_prefix_len, 56);
    }

    /// In RA-TLS mode the trust inputs must be named: no `-j`, or no `-v`
    /// when Veraison is used, is a start-up error saying what to pass.
    #[test]
    fn ra_tls_trust_inputs_have_no_defaults() {
        let e = config(&["-t", "ra-tls", "-v", "/k.jwk"]).unwrap_err();
        assert!(matches!(e, ConfigError::RaTlsNeedsReferences));
        assert!(
            e.to_string().starts_with("-t ra-tls needs -j FILE|DIR"),
            "{e}"
        );
        for argv in [
            &["-t", "ra-tls", "-j", "/r.json"][..],
            &["-t", "ra-tls", "-j", "/r.json", "-u", "https://v.example"],
            &[
                "-t",
                "ra-tls",
                "-j",
                "/r.json",
                "--cpak",
                "/c",
                "-u",
                "https://v",
            ],
        ] {
            let e = config(argv).unwrap_err();
            assert!(matches!(e, ConfigError::VeraisonNeedsKey), "{argv:?}");
            assert!(e.to_string().contains("needs -v FILE"), "{e}");
        }
        // Local platform checks only: no Veraison, no key needed.
        let a = attest(config(&["-t", "ra-tls", "-j", "/r.json", "--cpak", "/c"]).unwrap());
        assert_eq!(a.references, PathBuf::from("/r.json"));
        assert_eq!(a.platform.cpak, Some(PathBuf::from("/c")));
        assert!(a.platform.veraison.is_none(), "no Veraison, no key");
        let a = attest(config(&["-t", "ra-tls", "-j", "/r.json", "-v", "/k.jwk"]).unwrap());
        assert_eq!(a.platform.veraison.unwrap().pubkey, PathBuf::from("/k.jwk"));
        // Both local keys and Veraison when -u is given with --cpak.
        let a = attest(
            config(&[
                "-t",
                "ra-tls",
                "-j",
                "/r.json",
                "--cpak",
                "/c",
                "-u",
                "https://v",
                "-v",
                "/k",
            ])
            .unwrap(),
        );
        assert!(a.platform.cpak.is_some() && a.platform.veraison.is_some());
        // Other modes need neither, nor does --check, which serves nothing.
        config(&["-t", "tls"]).unwrap();
        let c = config(&["-t", "ra-tls", "--check"]).unwrap();
        assert!(matches!(c.transport, TransportConfig::Plain));
        assert_eq!(c.check, Some(ReportFormat::Text));
    }

    #[test]
    fn signature_policy_flags_fit_together() {
        // The notation pair is held together by clap already.
        assert!(Args::try_parse_from(["ir-server", "--notation-trust-policy", "/t"]).is_err());
        let e = config(&[
            "-r",
            "/srv/r",
            "--policy",
            "/p.json",
            "--signature-cache",
            "/srv/r/c",
        ])
        .unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Trust(TrustError::CacheInRoot { .. })
        ));
        assert!(
            e.to_string()
                .starts_with("--signature-cache /srv/r/c: inside the root /srv/r"),
            "{e}"
        );
        let c = config(&[
            "-r",
            "/srv/r",
            "--policy",
            "/p.json",
            "--signature-cache",
            "/var/c",
        ])
        .unwrap();
        assert_eq!(c.trust.unwrap().memo, Some(PathBuf::from("/var/c")));
    }

    #[test]
    fn cpak_any_firmware_needs_cpak() {
        let mut argv = vec!["ir-server", "-t", "ra-tls", "--cpak-any-firmware"];
        assert!(Args::try_parse_from(&argv).is_err());
        argv.extend(["--cpak", "/c"]);
        assert!(Args::try_parse_from(&argv).unwrap().cpak_any_firmware);
    }

    #[test]
    fn authentication_flags_fit_together() {
        assert!(config(&[]).unwrap().auth.is_none());
        let c = config(&["-t", "tls", "--htpasswd", "/h", "-p", "5000"]).unwrap();
        let a = c.auth.unwrap();
        assert_eq!(a.realm, "https://localhost:5000/token");
        assert_eq!(a.service, "localhost:5000");
        assert_eq!(a.issuer, "localhost:5000");
        assert!(
            matches!(a.source, TokenSource::Local { ttl, .. } if ttl == Duration::from_secs(300))
        );
        let a = config(&[
            "-t",
            "tls",
            "--htpasswd",
            "/h",
            "--registry-host",
            "reg.example:443",
            "--token-ttl",
            "60",
            "--access-map",
            "/m.json",
        ])
        .unwrap()
        .auth
        .unwrap();
        assert_eq!(a.realm, "https://reg.example:443/token");
        assert_eq!(a.access_map, Some(PathBuf::from("/m.json")));
        assert!(
            matches!(a.source, TokenSource::Local { ttl, .. } if ttl == Duration::from_secs(60))
        );
        // Passwords never travel in clear: plain HTTP only behind a balancer.
        let e = config(&["--htpasswd", "/h"]).unwrap_err();
        assert!(matches!(e, ConfigError::AuthNeedsTls("--htpasswd")), "{e}");
        assert!(
            e.to_string().starts_with("--htpasswd with -t no-tls"),
            "{e}"
        );
        config(&[
            "--htpasswd",
            "/h",
            "--proxy-protocol",
            "--proxy-protocol-from",
            "10.0.0.0/8",
        ])
        .unwrap();
        // External issuers: issuer and realm are required, no own key.
        let ext = ["-t", "tls", "--token-jwks", "/k.json"];
        let e = config(&ext).unwrap_err();
        assert!(e.to_string().contains("--token-issuer"), "{e}");
        let e = config(&[&ext[..], &["--token-issuer", "kbs"]].concat()).unwrap_err();
        assert!(e.to_string().contains("--token-realm"), "{e}");
        let a = config(
            &[
                &ext[..],
                &[
                    "--token-issuer",
                    "kbs",
                    "--token-realm",
                    "https://kbs/token",
                ],
            ]
            .concat(),
        )
        .unwrap()
        .auth
        .unwrap();
        assert_eq!(a.issuer, "kbs");
        let e = config(&[&ext[..], &["--htpasswd", "/h"]].concat()).unwrap_err();
        assert!(matches!(e, ConfigError::TwoTokenSources));
        for argv in [
            &["--token-key", "/k.pem"][..],
            &["--token-realm", "https://x/token"],
            &["-t", "tls", "--access-map", "/m.json"],
        ] {
            let e = config(argv).unwrap_err();
            assert!(
                e.to_string().starts_with(argv[argv.len() - 2]),
                "{argv:?}: {e}"
            );
        }
        config(&["-t", "tls", "--client-ca", "/ca", "--client-map", "/m.json"]).unwrap();
        for bad in ["https://x/\"token", "ftp://x/token", "https://x/ token"] {
            let e = config(&["-t", "tls", "--htpasswd", "/h", "--token-realm", bad]).unwrap_err();
            assert!(
                matches!(e, ConfigError::AuthValue("--token-realm", ..)),
                "{bad}: {e}"
            );
        }
    }
}
