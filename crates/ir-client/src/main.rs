//! `ir-client`: pulls an OCI image into an OCI image layout over http,
//! https or ra-tls. Exit status 0 on success, 1 with a one-line reason on
//! failure, 2 on usage errors.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ir_client::emulated::{self, Export};
use ir_client::ratls::{KeyAlg, RaTlsOptions, TokenSource};
use ir_client::{Client, ClientOptions, Error, Platform, Reference, Scheme, Transport};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ir-client",
    version,
    about = "Pull OCI images over http, https or RA-TLS into an OCI image layout, verifying every digest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image: `ir-client pull ra-tls://localhost:1337/app:tag --out DIR --emulate-realm`.
    Pull(PullArgs),
    /// Create (or load) an emulated realm's keys and export what a server
    /// needs to trust it. NOT SECURE: for testing and demos.
    EmulatedRealm(RealmArgs),
}

#[derive(Args)]
struct PullArgs {
    /// `<http|https|ra-tls>://<host>[:<port>]/<name>[:<tag>|@<digest>]`.
    reference: String,
    /// The OCI layout directory to write (created if missing; other tags
    /// in it are kept).
    #[arg(long, short)]
    out: PathBuf,
    /// PEM file with the CA certificate(s) the server's certificate must
    /// chain to (https, ra-tls); default: the platform's roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The platform to pick from an index.
    #[arg(long, default_value = "linux/amd64", conflicts_with = "all_platforms")]
    platform: Platform,
    /// Pull every platform of an index and tag the index.
    #[arg(long)]
    all_platforms: bool,
    /// The tag to write in index.json (default: the reference's tag).
    #[arg(long)]
    tag: Option<String>,
    /// Connection timeout in seconds.
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    realm: MeasurementArgs,
}

#[derive(Args)]
#[group(multiple = false)]
struct SourceArgs {
    /// RA-TLS: send this fixed token file (cannot be bound to the session:
    /// only servers built with their insecure skip-challenge feature accept
    /// it).
    #[arg(long)]
    token: Option<PathBuf>,
    /// RA-TLS: sign a token for each session with an emulated realm. NOT
    /// SECURE: for testing and demos.
    #[arg(long)]
    emulate_realm: bool,
    /// RA-TLS: get tokens from the realm firmware through /dev/rsi (needs
    /// the `rsi` build feature).
    #[arg(long)]
    rsi: bool,
}

#[derive(Args)]
struct MeasurementArgs {
    /// Emulated realm: directory with rak.pem and cpak.pem (generated
    /// there if absent); default: fresh keys for this run.
    #[arg(long)]
    realm_keys: Option<PathBuf>,
    /// Emulated realm: RIM in hex (default: hash of "ir-attest emulated realm").
    #[arg(long)]
    rim: Option<String>,
    /// Emulated realm: a REM in hex; up to four, in order (missing ones are zero).
    #[arg(long = "rem")]
    rems: Vec<String>,
    /// Emulated realm: measurement hash algorithm.
    #[arg(long, default_value = "sha-256")]
    hash_algo: String,
    /// RA-TLS session key type.
    #[arg(long, value_enum, default_value_t = KeyType::P256)]
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
    /// Write the CPAK public key as a raw SEC1 point (a server's --cpak file).
    #[arg(long)]
    cpak_out: Option<PathBuf>,
    /// Write the CPAK public key as a JWK.
    #[arg(long)]
    cpak_jwk_out: Option<PathBuf>,
    /// Write a Veraison-style trust-anchor list for the emulated platform.
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

fn token_source(p: &PullArgs) -> Result<Option<TokenSource>, Error> {
    let s = &p.source;
    if let Some(path) = &s.token {
        return TokenSource::file(path).map(Some);
    }
    if s.emulate_realm {
        warn_emulated();
        let m = emulated::measurements(&p.realm.hash_algo, p.realm.rim.as_deref(), &p.realm.rems)?;
        let realm = match &p.realm.realm_keys {
            Some(dir) => emulated::load_or_generate(dir, m)?,
            None => {
                ir_attest::EmulatedRealm::generate(m).map_err(|e| Error::Token(e.to_string()))?
            }
        };
        return Ok(Some(TokenSource::emulated(realm)));
    }
    if s.rsi {
        #[cfg(feature = "rsi")]
        return Ok(Some(TokenSource::rsi()));
        #[cfg(not(feature = "rsi"))]
        return Err(Error::Token(
            "--rsi needs ir-client built with the `rsi` feature".into(),
        ));
    }
    Ok(None)
}

async fn pull(p: PullArgs) -> Result<(), Error> {
    let reference = Reference::parse(&p.reference).map_err(Error::Reference)?;
    let ca = p.ca.as_ref().map(read).transpose()?;
    let has_source = p.source.token.is_some() || p.source.emulate_realm || p.source.rsi;
    match (reference.scheme, has_source) {
        (Scheme::RaTls, false) => {
            return Err(Error::Reference(
                "ra-tls:// needs a token source: --token FILE, --emulate-realm or --rsi".into(),
            ))
        }
        (Scheme::Http | Scheme::Https, true) => {
            return Err(Error::Reference(
                "--token, --emulate-realm and --rsi are for ra-tls:// references".into(),
            ))
        }
        (Scheme::Http, false) if ca.is_some() => {
            return Err(Error::Reference("http:// takes no --ca".into()))
        }
        _ => {}
    }
    let transport = match (reference.scheme, token_source(&p)?) {
        (Scheme::RaTls, Some(token_source)) => Transport::RaTls { ca, token_source },
        (Scheme::Https, _) => Transport::Tls { ca },
        _ => Transport::Plain,
    };
    let options = ClientOptions {
        platform: p.platform,
        all_platforms: p.all_platforms,
        tag: p.tag,
        ra_tls: RaTlsOptions {
            key_alg: match p.realm.key_type {
                KeyType::P256 => KeyAlg::P256,
                KeyType::P384 => KeyAlg::P384,
            },
            ..RaTlsOptions::default()
        },
        connect_timeout: Duration::from_secs(p.connect_timeout),
        ..ClientOptions::default()
    };
    let client = Client::with_options(transport, options)?;
    let report = client.pull_reference(&reference, &p.out).await?;
    println!(
        "pulled {reference} {} into {}: {} blobs ({} already present), {} bytes downloaded",
        report.digest,
        p.out.display(),
        report.blobs,
        report.reused,
        report.bytes
    );
    Ok(())
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(p) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "tokio runtime".into(),
                source,
            })
            .and_then(|rt| rt.block_on(pull(p))),
        Command::EmulatedRealm(r) => realm(r),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ir-client: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
