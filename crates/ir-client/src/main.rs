//! `ir-client`: pulls and browses OCI images over http, https or ra-tls.
//! Exit statuses (docs/client.md): 0 success, 1 transport or local
//! failure, 2 usage, 3 the registry refused, 4 verification failed,
//! 5 attestation failed; the reason is one line on stderr.

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ir_client::emulated::{self, Export};
use ir_client::ratls::{KeyAlg, RaTlsOptions, TokenSource};
use ir_client::signatures::SignaturePolicy;
use ir_client::{
    AuthOptions, Client, ClientOptions, Digest, Error, HttpOptions, ImageLocation, Platform,
    Progress, ReferenceError, RegistryUrl, Scheme, TokenError, Transport,
};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ir-client",
    version,
    about = "Pull and browse OCI images over http, https or RA-TLS, verifying every digest"
)]
struct Cli {
    /// Print no progress.
    #[arg(long, short, global = true, env = "IR_CLIENT_QUIET")]
    quiet: bool,
    /// Log the HTTP exchange on stderr (-vv: also the HTTP stack's).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image: `ir-client pull ra-tls://localhost:1337/app:tag --out DIR --emulate-realm`.
    Pull(PullArgs),
    /// List a repository's tags: `ir-client ls http://host:port/app`.
    Ls(RefArgs),
    /// List the registry's repositories: `ir-client catalog http://host:port`.
    Catalog(RefArgs),
    /// Print a manifest exactly as served (digest checked).
    Manifest(RefArgs),
    /// List the manifests that refer to an image (signatures, SBOMs).
    Discover(DiscoverArgs),
    /// Copy a blob (`REPO@DIGEST`) to standard output, digest checked.
    Blob(RefArgs),
    /// Serve the OCI pull API locally, forwarding to UPSTREAM, every
    /// manifest and blob verified: `ir-client serve ra-tls://server:1337 --emulate-realm`.
    Serve(ServeArgs),
    /// Copy repositories (tags, signatures, referrers) into a root of OCI
    /// layouts that ir-server serves: `ir-client sync --root DIR https://registry/app`.
    Sync(SyncArgs),
    /// Create (or load) an emulated realm's keys and export what a server
    /// needs to trust it. NOT SECURE: for testing and demos.
    EmulatedRealm(RealmArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// How to reach the registry: common to every command that does.
#[derive(Args)]
struct ConnArgs {
    /// PEM file with the CA certificate(s) the server's certificate must
    /// chain to (https, ra-tls); default: the platform's roots.
    #[arg(long, env = "IR_CLIENT_CA")]
    ca: Option<PathBuf>,
    /// https: PEM client certificate chain to present (a server that
    /// requires one, e.g. ir-server with --client-ca).
    #[arg(long, value_name = "FILE", requires = "key", env = "IR_CLIENT_CERT")]
    cert: Option<PathBuf>,
    /// https: PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert", env = "IR_CLIENT_KEY")]
    key: Option<PathBuf>,
    /// Connection timeout in seconds.
    #[arg(long, default_value_t = 30, env = "IR_CLIENT_CONNECT_TIMEOUT")]
    connect_timeout: u64,
    /// Retries on connection errors, 5xx and 429 answers and cut
    /// transfers (with backoff).
    #[arg(long, default_value_t = 3, env = "IR_CLIENT_RETRIES")]
    retries: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, env = "IR_CLIENT_FORMAT")]
    format: Format,
    /// Registry credentials (containers auth.json or Docker config.json
    /// format); default: $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.config/containers/auth.json, ~/.docker/config.json.
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    authfile: Option<PathBuf>,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    realm: MeasurementArgs,
}

#[derive(Args)]
struct RefArgs {
    /// `<http|https|ra-tls>://<host>[:<port>]/<name>[:<tag>|@<digest>]`
    /// (for `catalog`: `<scheme>://<host>[:<port>]`).
    reference: String,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
struct DiscoverArgs {
    /// `<http|https|ra-tls>://<host>[:<port>]/<name>[:<tag>|@<digest>]`.
    reference: String,
    /// Only referrers of this artifact type.
    #[arg(long, env = "IR_CLIENT_ARTIFACT_TYPE")]
    artifact_type: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
struct PullArgs {
    /// `<http|https|ra-tls>://<host>[:<port>]/<name>[:<tag>|@<digest>]`.
    reference: String,
    /// The OCI layout directory to write (created if missing; other tags
    /// and blobs in it are kept and reused).
    #[arg(long, short, env = "IR_CLIENT_OUT")]
    out: PathBuf,
    /// The platform to pick from an index (default: the host's).
    #[arg(long, conflicts_with = "all_platforms", env = "IR_CLIENT_PLATFORM")]
    platform: Option<Platform>,
    /// Pull every platform of an index and tag the index.
    #[arg(long, env = "IR_CLIENT_ALL_PLATFORMS")]
    all_platforms: bool,
    /// The tag to write in index.json (default: the reference's tag).
    #[arg(long, env = "IR_CLIENT_TAG")]
    tag: Option<String>,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), env = "IR_CLIENT_CONCURRENCY")]
    concurrency: u16,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// The registry to forward to: `<http|https|ra-tls>://<host>[:<port>]`.
    upstream: String,
    /// The local address to serve on; a non-loopback one needs
    /// --tls-cert and --tls-key.
    #[arg(long, default_value = ir_client::serve::DEFAULT_LISTEN, env = "IR_CLIENT_LISTEN")]
    listen: std::net::SocketAddr,
    /// PEM certificate chain to serve TLS with.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "IR_CLIENT_TLS_CERT"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key to serve TLS with.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "IR_CLIENT_TLS_KEY"
    )]
    tls_key: Option<PathBuf>,
    /// Upstream connections (each attested once) shared by all local clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), env = "IR_CLIENT_CONNECTIONS")]
    connections: u16,
    /// Keep verified blobs and manifests in this directory (created 0700).
    #[arg(long, value_name = "DIR", env = "IR_CLIENT_CACHE")]
    cache: Option<PathBuf>,
    /// Bound on the cache, in bytes (suffixes K, M, G); least recently
    /// used files go first.
    #[arg(long, default_value = "10G", value_parser = parse_size, env = "IR_CLIENT_CACHE_SIZE")]
    cache_size: u64,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Args)]
struct SyncArgs {
    /// `<http|https|ra-tls>://<host>[:<port>]/<name>` (every tag) or
    /// `…/<name>:<tag>`; repeatable.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    references: Vec<String>,
    /// A YAML file in the shape `skopeo sync` reads (registry -> images ->
    /// tags, images-by-tag-regex); see docs/client.md.
    #[arg(long, value_name = "FILE", env = "IR_CLIENT_SYNC_FILE")]
    file: Option<PathBuf>,
    /// The root of OCI layouts to fill (one layout per repository,
    /// namespaces as directories).
    #[arg(long, value_name = "DIR", env = "IR_CLIENT_ROOT")]
    root: PathBuf,
    /// Copy only this platform of an index (the tag then points to its
    /// manifest); default: every platform.
    #[arg(long, env = "IR_CLIENT_PLATFORM")]
    platform: Option<Platform>,
    /// Remove tags that are gone upstream (or no longer selected).
    #[arg(long, env = "IR_CLIENT_PRUNE")]
    prune: bool,
    /// Keep syncing, this long between runs (30s, 5m, 1h).
    #[arg(long, value_parser = ir_client::sync::parse_interval, env = "IR_CLIENT_INTERVAL")]
    interval: Option<Duration>,
    /// After a run that changed something, send SIGHUP to this process
    /// (the server; not needed when it runs with --watch).
    #[arg(long, value_name = "PID", env = "IR_CLIENT_RELOAD_PID")]
    reload_pid: Option<i32>,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), env = "IR_CLIENT_CONCURRENCY")]
    concurrency: u16,
    /// Reuse blobs already in the root by hard link instead of by copy
    /// (saves disk; a running server stops serving a linked blob until
    /// its next reload).
    #[arg(long, env = "IR_CLIENT_HARD_LINKS")]
    hard_links: bool,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))
}

/// The signature policy a pull is judged by (the files the server reads).
#[derive(Args)]
struct TrustArgs {
    /// Signature policy (containers-policy.json): write the image only if
    /// the policy accepts it (sigstore/cosign keys; see docs/signatures.md).
    #[arg(long, value_name = "FILE", env = "IR_CLIENT_POLICY")]
    policy: Option<PathBuf>,
    /// The registry name images are judged under, HOST[:PORT] (default:
    /// the reference's host).
    #[arg(long, value_name = "HOST", env = "IR_CLIENT_REGISTRY_HOST")]
    registry_host: Option<String>,
    /// Notation trust policy (trustpolicy.json): the image must also pass it.
    #[arg(
        long,
        value_name = "FILE",
        env = "IR_CLIENT_NOTATION_TRUST_POLICY",
        requires = "notation_trust_store"
    )]
    notation_trust_policy: Option<PathBuf>,
    /// Notation trust store directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "IR_CLIENT_NOTATION_TRUST_STORE",
        requires = "notation_trust_policy"
    )]
    notation_trust_store: Option<PathBuf>,
}

impl TrustArgs {
    /// The policy asked for, read and checked (`None`: none asked for).
    fn load(&self) -> Result<Option<SignaturePolicy>, Error> {
        let files = ir_trust::TrustFiles {
            policy: self.policy.clone(),
            notation: match (&self.notation_trust_policy, &self.notation_trust_store) {
                (Some(p), Some(s)) => Some(ir_trust::NotationFiles {
                    trust_policy: p.clone(),
                    trust_store: s.clone(),
                }),
                _ => None,
            },
        };
        if files.is_empty() {
            return Ok(None);
        }
        Ok(Some(SignaturePolicy {
            trust: Arc::new(files.load()?),
            registry_host: self.registry_host.clone(),
        }))
    }
}

#[derive(Args)]
#[group(multiple = false)]
struct SourceArgs {
    /// RA-TLS: send this fixed token file (cannot be bound to the session:
    /// only servers built with their insecure skip-challenge feature accept
    /// it).
    #[arg(long, env = "IR_CLIENT_TOKEN")]
    token: Option<PathBuf>,
    /// RA-TLS: sign a token for each session with an emulated realm. NOT
    /// SECURE: for testing and demos.
    #[arg(long, env = "IR_CLIENT_EMULATE_REALM")]
    emulate_realm: bool,
    /// RA-TLS: get tokens from the realm firmware through /dev/rsi (needs
    /// the `rsi` build feature).
    #[arg(long, env = "IR_CLIENT_RSI")]
    rsi: bool,
}

#[derive(Args)]
struct MeasurementArgs {
    /// Emulated realm: directory with rak.pem and cpak.pem (generated
    /// there if absent); default: fresh keys for this run.
    #[arg(long, env = "IR_CLIENT_REALM_KEYS")]
    realm_keys: Option<PathBuf>,
    /// Emulated realm: RIM in hex (default: hash of "ir-attest emulated realm").
    #[arg(long, env = "IR_CLIENT_RIM")]
    rim: Option<String>,
    /// Emulated realm: a REM in hex; up to four, in order (missing ones are zero).
    #[arg(long = "rem", env = "IR_CLIENT_REM", value_delimiter = ',')]
    rems: Vec<String>,
    /// Emulated realm: measurement hash algorithm.
    #[arg(long, default_value = "sha-256", env = "IR_CLIENT_HASH_ALGO")]
    hash_algo: String,
    /// RA-TLS session key type.
    #[arg(long, value_enum, default_value_t = KeyType::P256, env = "IR_CLIENT_KEY_TYPE")]
    key_type: KeyType,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyType {
    P256,
    P384,
}

#[derive(Args)]
struct RealmArgs {
    /// Directory with rak.pem and cpak.pem (generated there if absent).
    #[arg(long)]
    realm_keys: PathBuf,
    /// Write the CPAK public key as a raw SEC1 point (a server's --cpak
    /// file with --cpak-any-firmware: a single key pins no firmware).
    #[arg(long)]
    cpak_out: Option<PathBuf>,
    /// Write the CPAK public key as a JWK.
    #[arg(long)]
    cpak_jwk_out: Option<PathBuf>,
    /// Write a Veraison-style trust-anchor list for the emulated platform,
    /// its firmware pinned by reference values (a server's --cpak file).
    #[arg(long)]
    trust_anchors_out: Option<PathBuf>,
    /// Write reference values (islet JSON) matching the realm.
    #[arg(long)]
    reference_values_out: Option<PathBuf>,
    /// The realm's name in the reference values.
    #[arg(long, default_value = "emulated-realm")]
    name: String,
    /// An application the realm may pull (repeatable; none: all).
    #[arg(long = "application")]
    applications: Vec<String>,
    /// RIM in hex.
    #[arg(long)]
    rim: Option<String>,
    /// A REM in hex; up to four.
    #[arg(long = "rem")]
    rems: Vec<String>,
    /// Measurement hash algorithm.
    #[arg(long, default_value = "sha-256")]
    hash_algo: String,
}

fn warn_emulated() {
    eprintln!("WARNING: {}", emulated::WARNING);
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn token_source(p: &ConnArgs) -> Result<Option<TokenSource>, Error> {
    let s = &p.source;
    if let Some(path) = &s.token {
        return TokenSource::file(path).map(Some);
    }
    if s.emulate_realm {
        warn_emulated();
        let m = emulated::measurements(&p.realm.hash_algo, p.realm.rim.as_deref(), &p.realm.rems)?;
        let realm = match &p.realm.realm_keys {
            Some(dir) => emulated::load_or_generate(dir, m)?,
            None => ir_attest::EmulatedRealm::generate(m).map_err(TokenError::from)?,
        };
        return Ok(Some(TokenSource::emulated(realm)));
    }
    if s.rsi {
        #[cfg(feature = "rsi")]
        return Ok(Some(TokenSource::rsi()));
        #[cfg(not(feature = "rsi"))]
        return Err(TokenError::RsiNotBuilt.into());
    }
    Ok(None)
}

/// A client for `scheme` from the connection flags.
fn connect(scheme: Scheme, c: &ConnArgs, options: ClientOptions) -> Result<Client, Error> {
    let (transport, http) = transport(scheme, c)?;
    Client::with_options(transport, ClientOptions { http, ..options })
}

/// The transport and connection settings for `scheme` from the flags.
fn transport(scheme: Scheme, c: &ConnArgs) -> Result<(Transport, HttpOptions), Error> {
    let ca = c.ca.as_ref().map(read).transpose()?;
    let has_source = c.source.token.is_some() || c.source.emulate_realm || c.source.rsi;
    match (scheme, has_source) {
        (Scheme::RaTls, false) => {
            return Err(ReferenceError::Flags(
                "ra-tls:// needs a token source: --token FILE, --emulate-realm or --rsi",
            )
            .into())
        }
        (Scheme::Http | Scheme::Https, true) => {
            return Err(ReferenceError::Flags(
                "--token, --emulate-realm and --rsi are for ra-tls:// references",
            )
            .into())
        }
        (Scheme::Http, false) if ca.is_some() => {
            return Err(ReferenceError::Flags("http:// takes no --ca").into())
        }
        (Scheme::Http | Scheme::RaTls, _) if c.cert.is_some() => {
            return Err(ReferenceError::Flags(
                "--cert and --key are for https:// (ra-tls:// presents its attested certificate)",
            )
            .into())
        }
        _ => {}
    }
    let transport = match (scheme, token_source(c)?) {
        (Scheme::RaTls, Some(token_source)) => Transport::RaTls { ca, token_source },
        (Scheme::Https, _) => Transport::Tls { ca },
        _ => Transport::Plain,
    };
    let http = HttpOptions {
        ra_tls: RaTlsOptions {
            key_alg: match c.realm.key_type {
                KeyType::P256 => KeyAlg::P256,
                KeyType::P384 => KeyAlg::P384,
            },
            ..RaTlsOptions::default()
        },
        connect_timeout: Duration::from_secs(c.connect_timeout),
        retries: c.retries,
        auth: AuthOptions::standard(c.authfile.clone()),
        client_identity: match (&c.cert, &c.key) {
            (Some(cert), Some(key)) => Some(ir_client::client_identity(cert, key)?),
            _ => None,
        },
        ..HttpOptions::default()
    };
    Ok((transport, http))
}

async fn serve(a: ServeArgs) -> Result<(), Error> {
    let upstream = RegistryUrl::parse(&a.upstream)?;
    let (transport, http) = transport(upstream.scheme, &a.conn)?;
    let mut options = ir_client::serve::ServeOptions::new(upstream, transport);
    options.http = http;
    options.connections = a.connections.into();
    options.listen = a.listen;
    options.tls = a.tls_cert.zip(a.tls_key);
    options.policy = a.trust.load()?;
    options.cache = a.cache;
    options.cache_size = a.cache_size;
    ir_client::serve::run(options, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    })
    .await
}

/// One sync run over every source; the first failure's exit status.
async fn sync_once(
    a: &SyncArgs,
    sources: &[ir_client::sync::Source],
    policy: &Option<SignaturePolicy>,
    progress: &Arc<dyn Progress>,
) -> Result<Option<u8>, Error> {
    use ir_client::sync::{RootLock, SyncOptions, Syncer};
    let _lock = RootLock::take(&a.root)?;
    let mut syncer = Syncer::new(
        SyncOptions {
            root: a.root.clone(),
            prune: a.prune,
            signature_policy: policy.clone(),
            concurrency: a.concurrency.into(),
            hard_links: a.hard_links,
        },
        progress.clone(),
    )?;
    let mut clients: HashMap<&'static str, Client> = HashMap::new();
    let mut reports = Vec::new();
    for s in sources {
        let scheme = s.location.scheme;
        let client = match clients.get(scheme.as_str()) {
            Some(c) => c.clone(),
            None => {
                let options = ClientOptions {
                    platform: a.platform.clone().unwrap_or_default(),
                    all_platforms: a.platform.is_none(),
                    ..ClientOptions::default()
                };
                let c = connect(scheme, &a.conn, options)?;
                clients.insert(scheme.as_str(), c.clone());
                c
            }
        };
        reports.push(syncer.sync(&client, s).await);
    }
    let changed = reports
        .iter()
        .any(|r| r.status == "added" || r.status == "updated");
    if a.conn.format == Format::Json {
        print_json(&serde_json::json!({"root": a.root, "repositories": reports}));
    } else {
        for r in &reports {
            match &r.error {
                Some(e) => println!("{} failed: {e}", r.repository),
                None => println!(
                    "{} {}: {} tags added, {} updated, {} removed{}; {} blobs ({} bytes) downloaded, {} reused",
                    r.repository,
                    r.status,
                    r.tags_added.len(),
                    r.tags_updated.len(),
                    r.tags_removed.len(),
                    if r.refused.is_empty() { String::new() } else { format!(", {} refused by the policy", r.refused.len()) },
                    r.blobs_downloaded,
                    r.bytes_downloaded,
                    r.blobs_reused
                ),
            }
            for why in &r.refused {
                println!("  refused {why}");
            }
        }
    }
    if changed {
        if let Some(pid) = a.reload_pid {
            ir_client::sync::signal_reload(pid)?;
        }
    }
    let refused = reports.iter().any(|r| !r.refused.is_empty());
    Ok(reports
        .iter()
        .find(|r| r.error.is_some())
        .map(|r| r.exit_code)
        .or(refused.then_some(6)))
}

async fn sync(a: SyncArgs, progress: Arc<dyn Progress>) -> Result<ExitCode, Error> {
    let sources = match &a.file {
        Some(f) => ir_client::sync::config::read_file(f)?,
        None => a
            .references
            .iter()
            .map(|r| ir_client::sync::config::from_reference(r))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let sources = ir_client::sync::Source::merge(sources)?;
    let policy = a.trust.load()?;
    loop {
        let code = sync_once(&a, &sources, &policy, &progress).await;
        let Some(interval) = a.interval else {
            return match code? {
                None => Ok(ExitCode::SUCCESS),
                Some(c) => Ok(ExitCode::from(c)),
            };
        };
        if let Err(e) = code {
            eprintln!("ir-client: {}", e.to_string().replace('\n', " "));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn reference(text: &str) -> Result<ImageLocation, Error> {
    Ok(ImageLocation::parse(text)?)
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

async fn pull(p: PullArgs, progress: Arc<dyn Progress>) -> Result<(), Error> {
    let r = reference(&p.reference)?;
    let options = ClientOptions {
        platform: p.platform.unwrap_or_default(),
        all_platforms: p.all_platforms,
        tag: p.tag,
        concurrency: p.concurrency.into(),
        signature_policy: p.trust.load()?,
        ..ClientOptions::default()
    };
    let client = connect(r.scheme, &p.conn, options)?;
    let report = client.pull_with_progress(&r, &p.out, progress).await?;
    if p.conn.format == Format::Json {
        print_json(&serde_json::json!({
            "reference": r.to_string(),
            "digest": report.digest.to_string(),
            "mediaType": report.media_type,
            "index": report.index_digest.as_ref().map(Digest::to_string),
            "layout": p.out,
            "manifests": report.manifests,
            "blobs": report.blobs,
            "reused": report.reused,
            "bytes": report.bytes,
            "signers": report.signers,
        }));
    } else {
        println!(
            "pulled {r} {} into {}: {} blobs ({} already present), {} bytes downloaded",
            report.digest,
            p.out.display(),
            report.blobs,
            report.reused,
            report.bytes
        );
        if !report.signers.is_empty() {
            println!("signed by {}", report.signers.join(", "));
        }
    }
    Ok(())
}

async fn browse(command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(a) => {
            let r = reference(&a.reference)?;
            let tags = connect(r.scheme, &a.conn, ClientOptions::default())?
                .tags(&r)
                .await?;
            match a.conn.format {
                Format::Json => {
                    print_json(&serde_json::json!({"name": r.name.as_str(), "tags": tags}))
                }
                Format::Text => tags.iter().for_each(|t| println!("{t}")),
            }
        }
        Command::Catalog(a) => {
            let reg = RegistryUrl::parse(&a.reference)?;
            let repos = connect(reg.scheme, &a.conn, ClientOptions::default())?
                .catalog(&reg)
                .await?;
            match a.conn.format {
                Format::Json => print_json(&serde_json::json!({"repositories": repos})),
                Format::Text => repos.iter().for_each(|t| println!("{t}")),
            }
        }
        Command::Manifest(a) => {
            let r = reference(&a.reference)?;
            let m = connect(r.scheme, &a.conn, ClientOptions::default())?
                .manifest(&r)
                .await?;
            // The bytes as served: a JSON document already.
            std::io::stdout()
                .write_all(&m.bytes)
                .map_err(|source| Error::Io {
                    path: "standard output".into(),
                    source,
                })?;
        }
        Command::Discover(a) => {
            let r = reference(&a.reference)?;
            let found = connect(r.scheme, &a.conn, ClientOptions::default())?
                .referrers(&r, a.artifact_type.as_deref())
                .await?;
            match a.conn.format {
                Format::Json => print_json(&serde_json::json!({"manifests": found})),
                Format::Text => {
                    for d in found {
                        let t = d.artifact_type().as_ref().map(|t| t.to_string());
                        println!(
                            "{} {} {}",
                            d.digest(),
                            t.as_deref().unwrap_or("-"),
                            d.size()
                        );
                    }
                }
            }
        }
        Command::Blob(a) => {
            let r = reference(&a.reference)?;
            let client = connect(r.scheme, &a.conn, ClientOptions::default())?;
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
            client.blob(&r, &mut out).await?;
        }
        Command::Pull(_) | Command::EmulatedRealm(_) | Command::Serve(_) | Command::Sync(_) => {
            unreachable!("not a browse command")
        }
    }
    Ok(())
}

/// Progress on a terminal: a bar per blob and a total.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("total {bytes}/{total_bytes} {bytes_per_sec} {elapsed}")
                .expect("template"),
        );
        Self {
            multi,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

fn short(d: &Digest) -> String {
    let s = d.to_string();
    s.chars().take(19).collect()
}

impl Progress for Bars {
    fn start(&self, digest: &Digest, size: u64) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(short(digest));
        self.total.inc_length(size);
        self.bars.lock().unwrap().insert(digest.clone(), bar);
    }
    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().unwrap().get(digest) {
            b.inc(bytes);
        }
        self.total.inc(bytes);
    }
    fn restart(&self, digest: &Digest, offset: u64, why: &str) {
        if let Some(b) = self.bars.lock().unwrap().get(digest) {
            let done = b.position();
            b.set_position(offset);
            self.total
                .set_position(self.total.position() - (done - offset.min(done)));
            b.println(format!("{digest}: resuming at {offset}: {why}"));
        }
    }
    fn finish(&self, digest: &Digest, size: u64, downloaded: bool) {
        if let Some(b) = self.bars.lock().unwrap().remove(digest) {
            b.finish_and_clear();
        }
        let how = if downloaded { "pulled" } else { "present" };
        self.multi
            .suspend(|| eprintln!("{how} {digest} ({size} bytes)"));
    }
}

/// Progress elsewhere: one line per finished blob.
struct Lines;

impl Progress for Lines {
    fn restart(&self, digest: &Digest, offset: u64, why: &str) {
        eprintln!("{digest}: resuming at {offset}: {why}");
    }
    fn finish(&self, digest: &Digest, size: u64, downloaded: bool) {
        let how = if downloaded { "pulled" } else { "present" };
        eprintln!("{how} {digest} ({size} bytes)");
    }
}

fn realm(r: RealmArgs) -> Result<(), Error> {
    warn_emulated();
    let m = emulated::measurements(&r.hash_algo, r.rim.as_deref(), &r.rems)?;
    let realm = emulated::load_or_generate(&r.realm_keys, m)?;
    emulated::export(
        &realm,
        &Export {
            cpak: r.cpak_out,
            cpak_jwk: r.cpak_jwk_out,
            trust_anchors: r.trust_anchors_out,
            reference_values: r.reference_values_out,
            name: r.name,
            applications: r.applications,
        },
    )?;
    println!(
        "emulated realm keys in {}; CPAK {}",
        r.realm_keys.display(),
        hex::encode(realm.cpak_public_sec1())
    );
    Ok(())
}

/// `serve` passes every blob through in 256 KiB chunks while up to a few
/// MiB of them are in flight. glibc's malloc gave that memory back to the
/// kernel and faulted it in again, over and over (some 30,000 page faults
/// per 256 MiB blob, a fifth of the endpoint's CPU time): a fixed mmap
/// threshold and a trim threshold above the working set keep it, and one
/// arena keeps the peak RSS as low as before.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc_for_serve() {
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc_for_serve() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    if serving {
        tune_malloc_for_serve();
    }
    if cli.verbose > 0 || serving {
        let filter = match cli.verbose {
            0 if cli.quiet => "ir_client=warn",
            // The access log and refusals.
            0 => "ir_client=info",
            1 => "ir_client=debug",
            _ => "debug",
        };
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let progress: Arc<dyn Progress> = if cli.quiet {
        Arc::new(ir_client::progress::Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines)
    };
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "tokio runtime".into(),
                source,
            })
    };
    let result = match cli.command {
        Command::Pull(p) => runtime().and_then(|rt| rt.block_on(pull(p, progress))),
        Command::EmulatedRealm(r) => realm(r),
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve(a))),
        Command::Sync(a) => match runtime().and_then(|rt| rt.block_on(sync(a, progress))) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        other => runtime().and_then(|rt| rt.block_on(browse(other))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ir-client: {}", e.to_string().replace('\n', " "));
            ExitCode::from(e.exit_code())
        }
    }
}
